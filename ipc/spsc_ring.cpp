#include <shmlink/ipc/spsc_ring.hpp>

#include <shmlink/core/log.hpp>
#include <shmlink/ipc/detail/object.hpp>

namespace shmlink {

const char* to_string(RingStatus status) noexcept
{
    switch (status) {
    case RingStatus::ok: return "ok";
    case RingStatus::empty: return "empty";
    case RingStatus::full: return "full";
    case RingStatus::too_large: return "too large";
    case RingStatus::corrupt: return "corrupt";
    case RingStatus::timed_out: return "timed out";
    }
    return "unknown";
}

SpscRing::SpscRing(ipc::SpscRingControl* control, std::byte* data, std::uint64_t capacity,
    std::uint32_t* wake_seq) noexcept
    : control_(control), wake_seq_(wake_seq), data_(data), capacity_(capacity),
      max_message_(capacity / 2 - sizeof(ipc::RecordHeader))
{
    detail::register_waker(); // before this process's first notify() (ipc/wait.hpp)
    // Each side starts where the shared positions are; a side that finds
    // them inconsistent reports corrupt on first use.
    // Head first: tail only grows, so a tail read after it is never behind it,
    // even while both sides run.
    read_ = std::atomic_ref(control_->head).load(std::memory_order_acquire);
    write_ = std::atomic_ref(control_->tail).load(std::memory_order_acquire);
    cached_head_ = read_;
    cached_tail_ = read_;
    // relaxed: counts for inspection, carried on from where they stand.
    committed_messages_ = std::atomic_ref(control_->committed_messages).load(std::memory_order_relaxed);
    released_messages_ = std::atomic_ref(control_->released_messages).load(std::memory_order_relaxed);
    broken_ = read_ > write_ || write_ - read_ > capacity_ || (read_ | write_) % ipc::kRecordAlignment != 0;
    if (!broken_)
        skip_published();
}

void SpscRing::skip_published() noexcept
{
    // Each record's end held a zero word before the record was published, so
    // the walk stops at the first word not published since: it never takes
    // a stale header for a new one. Bounded by the capacity, checked as peek() checks.
    while (write_ - read_ < capacity_ - sizeof(ipc::RecordHeader)) {
        const std::uint64_t index = write_ & (capacity_ - 1);
        // acquire: pairs with the release store of a header in publish().
        const auto header = std::bit_cast<ipc::RecordHeader>(
            std::atomic_ref(*header_word(write_)).load(std::memory_order_acquire));
        std::uint64_t bytes = 0;
        if (header.type == static_cast<std::uint32_t>(ipc::RecordType::padding)
            && header.length == capacity_ - index - sizeof(header))
            bytes = capacity_ - index;
        else if (header.type == static_cast<std::uint32_t>(ipc::RecordType::message)
            && header.length <= max_message_bytes() && index + record_bytes(header.length) <= capacity_)
            bytes = record_bytes(header.length);
        if (bytes == 0 || write_ + bytes - read_ > capacity_ - sizeof(ipc::RecordHeader))
            return;
        write_ += bytes;
    }
}

RingSpan<const std::byte> SpscRing::peek_checked() noexcept
{
    if (broken_)
        return {RingStatus::corrupt, {}};
    std::uint64_t at = read_;
    // Where published records end, as far as we know: the tail, or, right
    // after a wait saw a header published (header_seen_), as far as the
    // producer could have written.
    std::uint64_t published = cached_tail_;
    if (at == cached_tail_) {
        if (header_seen_) {
            published = at + capacity_ - sizeof(ipc::RecordHeader);
        } else {
            // acquire: pairs with the release store of tail in publish().
            const std::uint64_t tail = std::atomic_ref(control_->tail).load(std::memory_order_acquire);
            if (tail > at && tail - at > capacity_)
                return {fail(), {}};
            if (tail <= at) // not published yet, or a tail lagging the headers a wait followed
                return {RingStatus::empty, {}};
            published = cached_tail_ = tail;
        }
    }
    header_seen_ = false;
    for (int records = 0; records < 2; ++records) { // at most one padding record, then a message
        const std::uint64_t index = at & (capacity_ - 1);
        const std::uint64_t available = published - at;
        if (available < sizeof(ipc::RecordHeader))
            return {fail(), {}};
        // acquire: pairs with the release store of a header in publish(). A
        // private copy, checked: the peer may rewrite it.
        const std::uint64_t word = std::atomic_ref(*header_word(at)).load(std::memory_order_acquire);
        if (word == 0 && published != cached_tail_ && records == 0) // a wait's header, gone: not published after all
            return {RingStatus::empty, {}};
        const auto header = std::bit_cast<ipc::RecordHeader>(word);
        if (header.type == static_cast<std::uint32_t>(ipc::RecordType::padding)) {
            const std::uint64_t to_end = capacity_ - index;
            if (records != 0 || header.length != to_end - sizeof(header) || to_end >= available)
                return {fail(), {}};
            at += to_end;
            continue;
        }
        if (header.type != static_cast<std::uint32_t>(ipc::RecordType::message) || header.length > max_message_bytes())
            return {fail(), {}};
        const std::uint64_t bytes = record_bytes(header.length);
        if (bytes > available || index + bytes > capacity_)
            return {fail(), {}};
        peeked_end_ = at + bytes;
        if (published != cached_tail_) // beyond the tail we know: the record's end is published too
            cached_tail_ = peeked_end_;
        return {RingStatus::ok, {data_ + index + sizeof(header), header.length}};
    }
    return {fail(), {}};
}

RingStatus SpscRing::push_reserved(std::span<const std::byte> message) noexcept
{
    auto slot = reserve(message.size());
    if (!slot)
        return slot.status;
    if (!message.empty())
        std::memcpy(slot.bytes.data(), message.data(), message.size());
    commit();
    return RingStatus::ok;
}

SpscRing SpscRing::create(Segment& segment, std::string_view name, std::size_t capacity_bytes)
{
    return detail::or_throw("create SPSC ring", name,
        [&](std::error_code& ec) { return create(segment, name, capacity_bytes, ec); },
        [&] { return detail::capacity_rule("capacity_bytes", capacity_bytes); });
}

SpscRing SpscRing::create(Segment& segment, std::string_view name, std::size_t capacity_bytes,
    std::error_code& ec) noexcept
{
    if (!valid_capacity(capacity_bytes)) {
        ec = Errc::invalid_argument;
        return {};
    }
    std::byte* object = detail::create_object(segment, name, ipc::ObjectKind::spsc_ring, ipc::kSpscRingVersion,
        sizeof(ipc::SpscRingControl) + capacity_bytes,
        [&](std::byte* bytes) { reinterpret_cast<ipc::SpscRingControl*>(bytes)->capacity_bytes = capacity_bytes; }, ec);
    if (object == nullptr)
        return {};
    auto* control = reinterpret_cast<ipc::SpscRingControl*>(object);
    return SpscRing(control, object + sizeof(ipc::SpscRingControl), capacity_bytes, &control->readable.seq);
}

SpscRing SpscRing::open(Segment& segment, std::string_view name)
{
    return detail::or_throw("open SPSC ring", name, [&](std::error_code& ec) { return open(segment, name, ec); });
}

SpscRing SpscRing::open(Segment& segment, std::string_view name, std::error_code& ec) noexcept
{
    std::uint64_t length = 0;
    std::byte* object = detail::open_object(segment, name, ipc::ObjectKind::spsc_ring, ipc::kSpscRingVersion,
        sizeof(ipc::SpscRingControl), length, ec);
    if (object == nullptr)
        return {};
    auto* control = reinterpret_cast<ipc::SpscRingControl*>(object);
    // relaxed: written before the directory entry was published (acquire in find()).
    const std::uint64_t capacity = std::atomic_ref(control->capacity_bytes).load(std::memory_order_relaxed);
    // The capacity is read once, here, and must agree with the directory's length.
    if (!valid_capacity(capacity) || capacity != length - sizeof(ipc::SpscRingControl)) {
        ec = Errc::corrupt_object;
        logger().warn("SPSC ring '{}': capacity {} does not match its {}-byte object", name, capacity, length);
        return {};
    }
    return SpscRing(control, object + sizeof(ipc::SpscRingControl), capacity, &control->readable.seq);
}

void SpscRing::reinitialize() noexcept
{
    if (!valid())
        return;
    // relaxed: nobody else uses the ring now; whoever opens it next finds
    // these through the acquire loads of its open.
    std::atomic_ref(control_->capacity_bytes).store(capacity_, std::memory_order_relaxed);
    std::atomic_ref(control_->claim).store(0, std::memory_order_relaxed);
    std::atomic_ref(control_->tail).store(0, std::memory_order_relaxed);
    std::atomic_ref(control_->head).store(0, std::memory_order_relaxed);
    std::atomic_ref(control_->committed_messages).store(0, std::memory_order_relaxed);
    std::atomic_ref(control_->released_messages).store(0, std::memory_order_relaxed);
    std::atomic_ref(control_->readable.sleepers).store(0, std::memory_order_relaxed);
    std::atomic_ref(control_->writable.sleepers).store(0, std::memory_order_relaxed);
    // The zero word where the first record will start (see the top of
    // spsc_ring.hpp); whatever else the last peer left in the data is never read.
    write_ = read_ = cached_head_ = cached_tail_ = peeked_end_ = 0;
    header_seen_ = false;
    std::atomic_ref(*header_word(0)).store(0, std::memory_order_relaxed);
    committed_messages_ = released_messages_ = 0;
    reserved_ = false;
    batch_ = false;
    armed_ = false;
    broken_ = false;
}

std::size_t SpscRing::size_bytes() const noexcept
{
    if (!valid())
        return 0;
    const auto head = std::atomic_ref(control_->head).load(std::memory_order_acquire);
    const auto tail = std::atomic_ref(control_->tail).load(std::memory_order_acquire);
    return tail >= head && tail - head <= capacity_ ? static_cast<std::size_t>(tail - head) : 0;
}

std::size_t SpscRing::try_push_batch(std::span<const std::span<const std::byte>> messages) noexcept
{
    std::size_t pushed = 0;
    for (const auto& message : messages) {
        auto slot = reserve(message.size());
        if (!slot)
            break;
        if (!message.empty())
            std::memcpy(slot.bytes.data(), message.data(), message.size());
        commit_deferred();
        ++pushed;
    }
    publish();
    return pushed;
}

bool SpscRing::fits_now(std::uint64_t need) const noexcept
{
    const std::uint64_t to_end = capacity_ - (write_ & (capacity_ - 1));
    const std::uint64_t pad = need > to_end ? to_end : 0;
    // acquire: pairs with the release store of head in publish_head().
    const auto head = std::atomic_ref(control_->head).load(std::memory_order_acquire);
    // As reserve() counts: the record and the zero word after it. A bad head: let reserve() report it.
    return head > write_ || write_ + pad + need + sizeof(ipc::RecordHeader) - head <= capacity_;
}

RingStatus SpscRing::wait_writable(std::size_t length, std::chrono::nanoseconds timeout,
    const WaitOptions& options) noexcept
{
    if (broken_)
        return RingStatus::corrupt;
    if (length > max_message_bytes())
        return RingStatus::too_large;
    if (!wait_for_room(record_bytes(length), deadline_after(timeout), options))
        return RingStatus::timed_out;
    return RingStatus::ok;
}

bool SpscRing::wait_for_room(std::uint64_t need, std::chrono::steady_clock::time_point deadline,
    const WaitOptions& options) noexcept
{
    return wait_until(control_->writable, [&] { return fits_now(need); }, options, deadline);
}

RingStatus SpscRing::push(std::span<const std::byte> message, std::chrono::nanoseconds timeout,
    const WaitOptions& options) noexcept
{
    return detail::retry(RingStatus::full, timeout, [&] { return try_push(message); },
        [&](auto deadline) { return wait_for_room(record_bytes(message.size()), deadline, options); });
}

RingSpan<std::byte> SpscRing::reserve(std::size_t length, std::chrono::nanoseconds timeout,
    const WaitOptions& options) noexcept
{
    return detail::retry_span<RingSpan<std::byte>>(RingStatus::full, timeout, [&] { return reserve(length); },
        [&](auto deadline) { return wait_for_room(record_bytes(length), deadline, options); });
}

RingSpan<const std::byte> SpscRing::peek(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    return detail::retry_span<RingSpan<const std::byte>>(RingStatus::empty, timeout, [&] { return peek(); },
        [&](auto deadline) { return wait_for_message(deadline, options); });
}

bool SpscRing::wait_for_message(std::chrono::steady_clock::time_point deadline, const WaitOptions& options) noexcept
{
    return wait_until(*wake_seq_, SleeperCount {control_->readable}, [this] { return readable_now(); }, options,
        deadline);
}

RingStatus SpscRing::wait_readable(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    if (broken_)
        return RingStatus::corrupt;
    if (readable_now())
        return RingStatus::ok;
    if (!wait_for_message(deadline_after(timeout), options))
        return RingStatus::timed_out;
    return RingStatus::ok;
}

RingStatus SpscRing::arm_readable() noexcept
{
    if (broken_)
        return RingStatus::corrupt;
    if (armed_ || readable_now())
        return readable_now() ? RingStatus::ok : RingStatus::empty;
    armed_ = !arm(control_->readable, [this] { return readable_now(); });
    return armed_ ? RingStatus::empty : RingStatus::ok;
}

RingStatus SpscRing::pop(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
    const WaitOptions& options) noexcept
{
    return detail::retry(RingStatus::empty, timeout, [&] { return try_pop(buffer, length); },
        [&](auto deadline) { return wait_for_message(deadline, options); });
}

} // namespace shmlink
