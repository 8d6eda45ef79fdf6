// SpscRing: a single-producer, single-consumer ring of variable-length byte
// messages that lives in a segment, for two processes (or threads).
//
// Contract: one producer calls reserve/commit/try_push/push; one consumer
// calls peek/release/try_pop/pop/consume; each from one thread at a time.
// Neither side trusts the other: every position and record header read from
// shared memory is checked before use, and a ring found corrupt answers
// RingStatus::corrupt from then on, never reading or writing outside its area.
// The hot path takes no lock, allocates nothing, throws nothing, and makes a
// syscall only to wake a side that sleeps.
//
// Records are 8-byte aligned (an 8-byte header, then the payload) and never
// wrap: a padding record fills the end of the buffer instead. The largest
// message is capacity/2 - 8 bytes, which always fits in an empty ring.
//
// Two ways to see a message. peek()/consume() load the tail, as a bare ring
// does: while the producer runs ahead the consumer reads many records per
// load of the tail line, and it never polls a line the producer is still
// writing. A consumer that waits (wait_readable(), pop(), peek(timeout))
// polls the header word at its read position instead, so that a message
// crosses the lines it occupies and no other: a record's header is its
// commit mark. That is sound because the word where the next record will
// start is always zero until that record is published: each commit zeroes
// the word after its record before it publishes its own header (and a ring
// starts, or restarts, with a zero word at position 0). Polling headers in
// the try path too was measured: the consumer then keeps taking the line
// the producer is writing, 6x slower for 8-byte messages.
#pragma once

#include <shmlink/core/error.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/wait.hpp>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <system_error>

namespace shmlink {

enum class RingStatus : std::uint8_t {
    ok,
    empty,     ///< nothing to read
    full,      ///< no room for this message now
    too_large, ///< longer than max_message_bytes(), or than the caller's buffer
    corrupt,   ///< the peer broke the ring's invariants; the ring stays unusable
    timed_out, ///< a blocking call reached its timeout
};

const char* to_string(RingStatus status) noexcept;

/// A span handed out by the ring, with the status that explains an empty one.
template <typename Byte>
struct RingSpan {
    RingStatus status = RingStatus::empty;
    std::span<Byte> bytes {};
    explicit operator bool() const noexcept { return status == RingStatus::ok; }
};

namespace detail {

/// The blocking form of a try_ call: `attempt()` until it answers other
/// than `busy`, with `wait(deadline)` in between; timed_out at the deadline,
/// also when waits keep succeeding and attempts keep losing (to other
/// consumers, say). The clock is read only once the first attempt is busy.
template <typename Attempt, typename Wait>
RingStatus retry(RingStatus busy, std::chrono::nanoseconds timeout, Attempt&& attempt, Wait&& wait) noexcept
{
    RingStatus status = attempt();
    if (status != busy)
        return status;
    const auto deadline = deadline_after(timeout);
    do {
        if (!wait(deadline))
            return RingStatus::timed_out;
        status = attempt();
    } while (status == busy && std::chrono::steady_clock::now() < deadline);
    return status == busy ? RingStatus::timed_out : status;
}

/// retry() of a call that answers a RingSpan: the span of the attempt that
/// succeeded, or the status alone.
template <typename Span, typename Attempt, typename Wait>
Span retry_span(RingStatus busy, std::chrono::nanoseconds timeout, Attempt&& attempt, Wait&& wait) noexcept
{
    Span span;
    span.status = retry(busy, timeout, [&] { return (span = attempt()).status; }, wait);
    return span.status == RingStatus::ok ? span : Span {span.status, {}};
}

/// try_pop() of a ring with peek() and release(): copies the oldest message
/// into `buffer` and frees it, or, when it is longer than `buffer`, calls
/// `leave()` so that it stays (too_large).
template <typename Ring, typename Leave>
RingStatus pop_into(Ring& ring, std::span<std::byte> buffer, std::size_t& length, Leave&& leave) noexcept
{
    const auto message = ring.peek();
    if (!message)
        return message.status;
    if (message.bytes.size() > buffer.size()) {
        leave();
        return RingStatus::too_large;
    }
    if (!message.bytes.empty())
        std::memcpy(buffer.data(), message.bytes.data(), message.bytes.size());
    length = message.bytes.size();
    ring.release();
    return RingStatus::ok;
}

} // namespace detail

class SpscRing {
public:
    SpscRing() noexcept = default;
    /// Move-only: a ring object is one side's process-local state, and two
    /// copies would be two producers (or consumers) of one ring.
    SpscRing(SpscRing&& other) noexcept : SpscRing(static_cast<const SpscRing&>(other)) { other.forget(); }
    SpscRing& operator=(SpscRing&& other) noexcept
    {
        if (this != &other) {
            publish(); // deferred commits are not lost with the object
            operator=(static_cast<const SpscRing&>(other));
            other.forget();
        }
        return *this;
    }

    /// Publishes what commit_deferred() left unpublished.
    ~SpscRing() { publish(); }

    /// Capacities a ring accepts: a power of two from 256 to 2^31 bytes.
    static bool valid_capacity(std::uint64_t capacity_bytes) noexcept
    {
        return capacity_bytes >= 256 && capacity_bytes <= (std::uint64_t {1} << 31)
            && (capacity_bytes & (capacity_bytes - 1)) == 0;
    }

    /// Creator: allocates the ring under `name` in `segment`.
    /// `capacity_bytes` is a power of two from 256 to 2^31.
    static SpscRing create(Segment& segment, std::string_view name, std::size_t capacity_bytes);
    static SpscRing create(Segment& segment, std::string_view name, std::size_t capacity_bytes,
        std::error_code& ec) noexcept;
    /// Either side: opens the ring `name`, checking kind, version and size.
    /// The ring must not outlive `segment`.
    static SpscRing open(Segment& segment, std::string_view name);
    static SpscRing open(Segment& segment, std::string_view name, std::error_code& ec) noexcept;

    /// A ring that is not valid() (default, moved-from, or a failed open) answers corrupt to every call.
    [[nodiscard]] bool valid() const noexcept { return control_ != nullptr; }
    [[nodiscard]] std::size_t capacity_bytes() const noexcept { return capacity_; }
    [[nodiscard]] std::size_t max_message_bytes() const noexcept { return max_message_; }
    /// Bytes committed and not yet released (records and padding), as of now.
    [[nodiscard]] std::size_t size_bytes() const noexcept;

    /// For the ring's owner, when no other process uses the ring any more (a
    /// host whose guest on this ring left): writes the control block afresh
    /// from this object's own geometry, whatever a peer wrote there, empties
    /// the ring, and starts this object at its beginning.
    void reinitialize() noexcept;

    // ---- producer ----

    /// A writable span of `length` bytes in the ring, or full/too_large/corrupt.
    /// Nothing is visible to the consumer until commit(). One reservation at
    /// a time: reserving again drops one not committed.
    RingSpan<std::byte> reserve(std::size_t length) noexcept;
    /// reserve(), waiting for room up to `timeout` (timed_out then).
    RingSpan<std::byte> reserve(std::size_t length, std::chrono::nanoseconds timeout,
        const WaitOptions& options = {}) noexcept;
    /// Publishes the reserved message, shortened to `length` if given, with
    /// any commit_deferred() before it.
    void commit() noexcept { commit(reserved_length_); }
    void commit(std::size_t length) noexcept
    {
        if (commit_unpublished(length))
            publish();
    }
    /// Commits the reserved message but leaves it invisible until publish()
    /// (or the next commit(), or the ring object's end): a zero-copy batch,
    /// reserve and commit_deferred several, then publish them all with one
    /// store and at most one wake-up.
    void commit_deferred() noexcept { commit_deferred(reserved_length_); }
    void commit_deferred(std::size_t length) noexcept { static_cast<void>(commit_unpublished(length)); }
    /// Makes every deferred commit visible; nothing happens without one.
    void publish() noexcept
    {
        if (!batch_)
            return;
        batch_ = false;
        publish_records(batch_at_, batch_header_);
    }
    RingStatus try_push(std::span<const std::byte> message) noexcept;
    /// Pushes as many of `messages` as fit, in order, and publishes them with
    /// one store (and at most one wake-up). Returns how many were pushed.
    std::size_t try_push_batch(std::span<const std::span<const std::byte>> messages) noexcept;
    /// Waits until a message of `length` bytes fits (ok), or timed_out/corrupt/too_large.
    RingStatus wait_writable(std::size_t length, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    /// try_push, waiting for room up to `timeout`.
    RingStatus push(std::span<const std::byte> message, std::chrono::nanoseconds timeout,
        const WaitOptions& options = {}) noexcept;
    /// Eventfd mode: from now on a commit that finds the consumer armed also
    /// signals `wake_fd` (the consumer's eventfd, see create_wake_fd()). The
    /// fd must stay open while the ring is used.
    void set_wake_fd(BorrowedFd wake_fd) noexcept { wake_fd_ = wake_fd.get(); }

    // ---- consumer ----

    /// The oldest message, left in the ring until release(); empty/corrupt otherwise.
    RingSpan<const std::byte> peek() noexcept;
    /// peek(), waiting for a message up to `timeout` (timed_out then).
    RingSpan<const std::byte> peek(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    /// Frees the message that peek() returned.
    void release() noexcept
    {
        if (peeked_end_ == 0)
            return;
        read_ = peeked_end_;
        peeked_end_ = 0;
        ++released_messages_;
        publish_head();
    }
    /// Copies the oldest message into `buffer` and frees it; `length` gets its
    /// size. A message longer than `buffer` stays in the ring (too_large).
    RingStatus try_pop(std::span<std::byte> buffer, std::size_t& length) noexcept;
    /// try_pop, waiting for a message up to `timeout`.
    RingStatus pop(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
        const WaitOptions& options = {}) noexcept;
    /// Calls `handle(std::span<const std::byte>)` for up to `max` of the
    /// messages visible when it starts, and frees them with one store.
    /// Returns how many it handled; `status` is ok when it stopped at `max`,
    /// empty when it took everything visible, corrupt when the ring broke.
    template <typename Handle>
    std::size_t consume(Handle&& handle, std::size_t max, RingStatus* status = nullptr) noexcept;
    /// Waits until a message is readable (ok), or timed_out/corrupt.
    RingStatus wait_readable(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    /// Eventfd mode, for an event loop: ok when a message is readable now;
    /// empty when the consumer is now armed, so that the producer's next
    /// commit signals its wake fd. After the fd fires (or to give up), call
    /// disarm_readable() once, drain the fd, and consume.
    RingStatus arm_readable() noexcept;
    void disarm_readable() noexcept
    {
        if (armed_) // only what arm_readable() armed: a stray disarm must not wrap the count
            disarm(control_->readable);
        armed_ = false;
    }

private:
    SpscRing(const SpscRing&) = default;
    SpscRing& operator=(const SpscRing&) = default;
    void forget() noexcept
    {
        const SpscRing none;
        operator=(none);
    }
    friend class MpscRing;
    friend class MpscProducer;
    /// `wake_seq`: the futex word the consumer sleeps on, this ring's
    /// readable.seq; the lanes of an MPSC ring share the ring's.
    SpscRing(ipc::SpscRingControl* control, std::byte* data, std::uint64_t capacity, std::uint32_t* wake_seq) noexcept;
    static std::uint64_t record_bytes(std::size_t length) noexcept
    {
        return (sizeof(ipc::RecordHeader) + length + ipc::kRecordAlignment - 1) & ~std::uint64_t {ipc::kRecordAlignment - 1};
    }
    /// False (and nothing done) without a reservation, or past its length.
    bool commit_unpublished(std::size_t length) noexcept;
    /// Publishes the records up to write_ by storing `header` at `first`,
    /// the first of them, and then the tail; wakes the consumer if it sleeps.
    void publish_records(std::uint64_t first, std::uint64_t header) noexcept
    {
        // release: pairs with the acquire load of a header in peek(); the
        // records, their other headers and the zeroed word after the last
        // are written before.
        std::atomic_ref(*header_word(first)).store(header, std::memory_order_release);
        // relaxed: a count for inspection; nothing is read through it.
        std::atomic_ref(control_->committed_messages).store(committed_messages_, std::memory_order_relaxed);
        // release: pairs with the acquire load of tail in peek() (and when a producer opens the ring).
        std::atomic_ref(control_->tail).store(write_, std::memory_order_release);
        notify(control_->readable.sleepers, *wake_seq_, wake_fd_);
    }
    /// The room check of a record ending at `end` (its zero word included)
    /// once the cached head says full: reloads the head; full, or corrupt
    /// when the head is not one the producer at `at` can have.
    RingStatus reload_head(std::uint64_t at, std::uint64_t end) noexcept
    {
        // acquire: pairs with the release store of head in publish_head().
        cached_head_ = std::atomic_ref(control_->head).load(std::memory_order_acquire);
        if (cached_head_ > at || at - cached_head_ > capacity_)
            return fail();
        return end - cached_head_ > capacity_ ? RingStatus::full : RingStatus::ok;
    }
    /// try_push() through reserve() and commit(): whatever the inline path
    /// leaves (a reservation or batch open, padding, a ring broken).
    RingStatus push_reserved(std::span<const std::byte> message) noexcept;
    /// peek() of every case but a message record below the tail already seen.
    RingSpan<const std::byte> peek_checked() noexcept;
    /// The 8-byte record header word at `position`; headers are 8-byte aligned.
    std::uint64_t* header_word(std::uint64_t position) const noexcept
    {
        return reinterpret_cast<std::uint64_t*>(data_ + (position & (capacity_ - 1)));
    }
    static std::uint64_t header_bits(std::uint32_t length, ipc::RecordType type) noexcept
    {
        return std::bit_cast<std::uint64_t>(ipc::RecordHeader {length, static_cast<std::uint32_t>(type)});
    }
    /// After a producer that died between a record's header and the tail:
    /// moves write_ past the records published beyond the tail.
    void skip_published() noexcept;
    void publish_head() noexcept
    {
        // relaxed: a count for inspection; nothing is read through it.
        std::atomic_ref(control_->released_messages).store(released_messages_, std::memory_order_relaxed);
        // release: pairs with the acquire load of head in reserve(); we are done reading before.
        std::atomic_ref(control_->head).store(read_, std::memory_order_release);
        notify(control_->writable);
    }
    RingStatus fail() noexcept
    {
        broken_ = true;
        return RingStatus::corrupt;
    }
    bool fits_now(std::uint64_t need) const noexcept;
    bool wait_for_room(std::uint64_t need, std::chrono::steady_clock::time_point deadline,
        const WaitOptions& options) noexcept;
    bool wait_for_message(std::chrono::steady_clock::time_point deadline, const WaitOptions& options) noexcept;
    /// A message is readable: one peeked, known below the tail, or a
    /// published header at the read position (which the next peek() then
    /// takes without loading the tail: header_seen_).
    bool readable_now() noexcept
    {
        if (peeked_end_ != 0 || read_ != cached_tail_)
            return true;
        // acquire: pairs with the release store of a header in publish().
        header_seen_ = std::atomic_ref(*header_word(read_)).load(std::memory_order_acquire) != 0;
        return header_seen_;
    }

    ipc::SpscRingControl* control_ = nullptr;
    std::uint32_t* wake_seq_ = nullptr;
    std::byte* data_ = nullptr;
    std::uint64_t capacity_ = 0; // read once at open; never re-read from shared memory
    std::uint64_t max_message_ = 0; // from capacity_
    bool broken_ = true; // also while not valid(): every call then answers corrupt
    bool armed_ = false; // the consumer is registered as a sleeper by arm_readable()
    // Producer side (process-local).
    int wake_fd_ = -1; // borrowed: the consumer's eventfd in eventfd mode
    std::uint64_t write_ = 0;       // next record position; tail once published
    std::uint64_t cached_head_ = 0; // last head seen: a full check reloads it only when needed
    std::uint64_t reserved_at_ = 0;  // position of the reserved record's header
    std::uint64_t padding_at_ = 0;   // where its padding starts, or reserved_at_ if it needs none
    std::size_t reserved_length_ = 0;
    bool reserved_ = false;
    bool batch_ = false;             // committed records wait for publish()
    bool claim_stale_ = true;        // no commit yet: a dead producer's claim may still show
    std::uint64_t batch_at_ = 0;     // the header whose store publishes them: the first one's
    std::uint64_t batch_header_ = 0; // and its value
    std::uint64_t committed_messages_ = 0; // committed_messages once published
    // Consumer side (process-local).
    std::uint64_t read_ = 0;        // next record position; head once released
    std::uint64_t cached_tail_ = 0; // last tail seen, or the end of a record a wait found beyond it
    std::uint64_t peeked_end_ = 0;  // position after the peeked record; 0: none
    bool header_seen_ = false;      // readable_now() saw a header published at read_
    std::uint64_t released_messages_ = 0; // released_messages once released
};

// ---- inline hot paths ----

inline RingSpan<std::byte> SpscRing::reserve(std::size_t length) noexcept
{
    if (broken_)
        return {RingStatus::corrupt, {}};
    if (length > max_message_bytes())
        return {RingStatus::too_large, {}};
    const std::uint64_t need = record_bytes(length);
    const std::uint64_t at = write_;
    const std::uint64_t to_end = capacity_ - (at & (capacity_ - 1));
    const std::uint64_t pad = need > to_end ? to_end : 0;
    // The record, and the header word after it, which commit zeroes: the
    // consumer stops there until the next record is published.
    const std::uint64_t end = at + pad + need + sizeof(ipc::RecordHeader);
    if (end - cached_head_ > capacity_) {
        const RingStatus room = reload_head(at, end);
        if (room != RingStatus::ok)
            return {room, {}};
    }
    // Nothing is written before commit: the padding header would publish the
    // record after it, and an abandoned reservation leaves no trace.
    padding_at_ = at;
    reserved_at_ = at + pad;
    reserved_length_ = length;
    reserved_ = true;
    // relaxed: only read after this process died (an abandoned claim), or by inspection.
    std::atomic_ref(control_->claim).store((std::uint64_t {length} << 32) | 1, std::memory_order_relaxed);
    return {RingStatus::ok, {data_ + (reserved_at_ & (capacity_ - 1)) + sizeof(ipc::RecordHeader), length}};
}

inline bool SpscRing::commit_unpublished(std::size_t length) noexcept
{
    if (!reserved_ || length > reserved_length_)
        return false;
    const std::uint64_t end = reserved_at_ + record_bytes(length);
    // relaxed, all three: the release store of the batch's first header in
    // publish() orders them. The word after the record first, so that the
    // consumer, once it sees this record, stops after it.
    std::atomic_ref(*header_word(end)).store(0, std::memory_order_relaxed);
    std::uint64_t first_at = reserved_at_;
    std::uint64_t first = header_bits(static_cast<std::uint32_t>(length), ipc::RecordType::message);
    if (padding_at_ != reserved_at_) { // the message, then the padding that leads the consumer to it
        std::atomic_ref(*header_word(reserved_at_)).store(first, std::memory_order_relaxed);
        first_at = padding_at_;
        first = header_bits(static_cast<std::uint32_t>(reserved_at_ - padding_at_ - sizeof(ipc::RecordHeader)),
            ipc::RecordType::padding);
    }
    if (batch_) {
        std::atomic_ref(*header_word(first_at)).store(first, std::memory_order_relaxed);
    } else {
        batch_ = true;
        batch_at_ = first_at;
        batch_header_ = first;
    }
    write_ = end;
    reserved_ = false;
    claim_stale_ = false;
    ++committed_messages_;
    // relaxed: the release store of tail that follows publishes it with the record.
    std::atomic_ref(control_->claim).store(0, std::memory_order_relaxed);
    return true;
}

inline RingStatus SpscRing::try_push(std::span<const std::byte> message) noexcept
{
    // Inline, the common case: nothing reserved or deferred, and the record
    // fits before the end of the buffer. It marks no claim: nothing of the
    // caller's runs between its first store and its header's. A handle's
    // first push goes through commit(), which clears the claim a producer
    // that died mid-reservation may have left.
    const std::uint64_t at = write_;
    const std::uint64_t index = at & (capacity_ - 1);
    const std::uint64_t need = record_bytes(message.size());
    if ((broken_ | reserved_ | batch_ | claim_stale_) || message.size() > max_message_ || need > capacity_ - index)
        return push_reserved(message);
    const std::uint64_t end = at + need;
    if (end + sizeof(ipc::RecordHeader) - cached_head_ > capacity_) {
        const RingStatus room = reload_head(at, end + sizeof(ipc::RecordHeader));
        if (room != RingStatus::ok)
            return room;
    }
    // relaxed: the release store of the header orders it. The word after the
    // record first, so that the consumer, once it sees this record, stops after it.
    std::atomic_ref(*header_word(end)).store(0, std::memory_order_relaxed);
    if (!message.empty())
        std::memcpy(data_ + index + sizeof(ipc::RecordHeader), message.data(), message.size());
    write_ = end;
    ++committed_messages_;
    publish_records(at, header_bits(static_cast<std::uint32_t>(message.size()), ipc::RecordType::message));
    return RingStatus::ok;
}

inline RingSpan<const std::byte> SpscRing::peek() noexcept
{
    // Inline, the common case: a message record below the tail already seen
    // (checked as peek_checked() checks it); everything else out of line.
    const std::uint64_t at = read_;
    if (at != cached_tail_ && !broken_) {
        const std::uint64_t index = at & (capacity_ - 1);
        // acquire: pairs with the release store of a header in publish(). A
        // private copy, checked: the peer may rewrite it.
        const auto header = std::bit_cast<ipc::RecordHeader>(
            std::atomic_ref(*header_word(at)).load(std::memory_order_acquire));
        const std::uint64_t bytes = record_bytes(header.length);
        if (header.type == static_cast<std::uint32_t>(ipc::RecordType::message) && header.length <= max_message_
            && bytes <= cached_tail_ - at && index + bytes <= capacity_) {
            peeked_end_ = at + bytes;
            return {RingStatus::ok, {data_ + index + sizeof(header), header.length}};
        }
    }
    return peek_checked();
}

inline RingStatus SpscRing::try_pop(std::span<std::byte> buffer, std::size_t& length) noexcept
{
    return detail::pop_into(*this, buffer, length, [this] { peeked_end_ = 0; });
}

template <typename Handle>
std::size_t SpscRing::consume(Handle&& handle, std::size_t max, RingStatus* status) noexcept
{
    std::size_t handled = 0;
    RingStatus last = RingStatus::ok;
    while (handled < max) {
        // Only what was visible at the first look: the batch is freed before
        // the consumer takes more, so a fast producer never finds it full for long.
        if (handled != 0 && read_ == cached_tail_) {
            last = RingStatus::empty;
            break;
        }
        const auto message = peek();
        if (!message) {
            last = message.status;
            break;
        }
        handle(message.bytes);
        read_ = peeked_end_;
        peeked_end_ = 0;
        ++released_messages_;
        ++handled;
    }
    if (handled != 0)
        publish_head();
    if (status != nullptr)
        *status = last;
    return handled;
}

} // namespace shmlink
