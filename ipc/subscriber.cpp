#include <shmlink/ipc/subscriber.hpp>

#include <shmlink/core/layout.hpp>
#include <shmlink/core/log.hpp>
#include <shmlink/core/mmap.hpp>
#include <shmlink/ipc/detail/liveness.hpp>
#include <shmlink/ipc/detail/object.hpp>
#include <shmlink/ipc/detail/topic.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <new>
#include <string>

namespace shmlink {
namespace detail {

struct SubscriberCore {
    Segment* segment = nullptr;
    TopicView view {};
    ipc::TopicSlot* slot = nullptr;
    ipc::TopicDelivery* queue = nullptr;
    std::uint64_t* releases = nullptr;
    std::uint32_t index = 0;
    std::uint32_t depth = 0; // ours, as we told the publisher
    std::uint32_t max_held = 0;
    std::uint32_t held = 0;
    bool blocks_publisher = false; // Overflow::block_publisher
    std::uint64_t release_tail = 0; // ours; the shared one is a copy
    std::uint64_t release_read = 0; // the publisher's release_head when we last looked
    std::uint64_t lost_releases = 0;
    bool publisher_dead = false;
    bool armed = false; // arm_readable() registered us as the slot's sleeper
    std::uint32_t empty_takes = 0;
    std::chrono::milliseconds liveness_interval {};
    std::chrono::steady_clock::time_point next_probe {};
    UniqueFd lock; // our own description: holds the slot's byte, probes the publisher's
    // SubscriberOptions::own_slot: the slot file, mapped, and the file
    // (share_slot() hands out copies; `lock` is a description of its own).
    Mapping own;
    UniqueFd own_fd;
    std::string name;

    bool publisher_gone() noexcept
    {
        // acquire: pairs with the publisher's release store of closed, after its last tail.
        const std::uint64_t word = shared(view.control->publisher).load(std::memory_order_acquire);
        if (static_cast<ipc::PublisherState>(word & 0xffffffffU) != ipc::PublisherState::open)
            return true;
        return publisher_dead;
    }
    void probe_publisher() noexcept
    {
        next_probe = std::chrono::steady_clock::now() + liveness_interval;
        // Apart, `lock` is our slot file's: the segment's fd probes, a
        // description the publisher never locks through (it locks its own).
        if (!publisher_dead && !byte_locked(own.valid() ? segment->fd() : lock, view.publisher_lock_byte())) {
            publisher_dead = true;
            logger().info("topic '{}': its publisher is gone", name);
        }
    }
    /// Whether the publisher marked the delivery at `position` (acquire:
    /// pairs with its release store of the mark in deliver()).
    bool marked(std::uint64_t position) const noexcept
    {
        const std::uint64_t& mark = queue[position & (view.geometry.queue_depth - 1)].mark;
        return shared(const_cast<std::uint64_t&>(mark)).load(std::memory_order_acquire) == position + 1;
    }
    bool queued() const noexcept
    {
        // relaxed: only we move head but for the publisher's drops; take() reads it again.
        return marked(shared(slot->head).load(std::memory_order_relaxed));
    }
    bool quarantined() const noexcept
    {
        // acquire: pairs with the publisher's release in quarantine().
        return (shared(slot->flags).load(std::memory_order_acquire) & ipc::kSlotQuarantined) != 0;
    }
    /// What a waiter wakes for: corrupt, ok (queued), closed; empty if none.
    TopicStatus readiness() noexcept
    {
        if (quarantined())
            return TopicStatus::corrupt;
        if (queued())
            return TopicStatus::ok;
        return publisher_gone() ? TopicStatus::closed : TopicStatus::empty;
    }
    void release(std::uint64_t position) noexcept
    {
        --held;
        const std::uint32_t capacity = view.geometry.release_capacity;
        // The publisher's line is read only when the ring looks full, as a
        // ring's producer reads its consumer's head: not once a sample.
        if (release_tail - release_read >= capacity) // acquire: pairs with the publisher's release store after it read the entries
            release_read = shared(slot->release_head).load(std::memory_order_acquire);
        if (release_tail - release_read >= capacity) {
            // Cannot happen while the publisher follows the rules (the ring
            // holds all one can release between two of its reads); the chunk
            // stays the publisher's until this subscriber leaves.
            ++lost_releases;
            return;
        }
        // relaxed: published by the release store of release_tail.
        std::atomic_ref(releases[release_tail & (capacity - 1)]).store(position, std::memory_order_relaxed);
        ++release_tail;
        // release: pairs with the publisher's acquire load in drain_releases(); our reads of the sample came before.
        shared(slot->release_tail).store(release_tail, std::memory_order_release);
    }
};

namespace {

/// A slot file of our own (SubscriberOptions::own_slot): created, mapped,
/// locked, sealed against any change of size (so that the publisher that maps
/// it can never fault on it) and against further seals, and marked joined.
template <typename WriteOptions>
bool open_own_slot(SubscriberCore& core, const WriteOptions& write_options, std::error_code& ec) noexcept
{
    const std::size_t bytes = own_slot_file_bytes(core.view.geometry);
    core.own_fd = memfd_create("shmlink-topic-slot", Memfd::cloexec | Memfd::allow_sealing, ec);
    if (!core.own_fd)
        return false;
    if (::ftruncate(core.own_fd.get(), static_cast<off_t>(bytes)) != 0
        || ::fcntl(core.own_fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        ec = errno_code();
        return false;
    }
    core.own = map(bytes, Prot::read | Prot::write, MapFlags(Map::shared), core.own_fd, 0, ec);
    if (!core.own.valid())
        return false;
    // Our lock, through a description the publisher never holds (it gets the
    // file itself), taken before the slot says joined: the publisher admits
    // only a slot whose subscriber holds it.
    core.lock = reopen(core.own_fd, O_RDWR, ec);
    if (!core.lock || !lock_byte(core.lock, kOwnSlotLockByte, ec))
        return false;
    std::byte* at = core.own.data();
    core.slot = &slot_at(at);
    core.queue = queue_at(at);
    core.releases = releases_at(at, core.view.geometry);
    write_options(*core.slot);
    // release: pairs with the publisher's acquire load of owner in admit().
    shared(core.slot->owner).store(owner_word(getpid(), ipc::SlotState::joined), std::memory_order_release);
    return true;
}

} // namespace

} // namespace detail

// ---- Sample ----

Sample<void>& Sample<void>::operator=(Sample&& other) noexcept
{
    if (this != &other) {
        release();
        core_ = std::exchange(other.core_, nullptr);
        position_ = other.position_;
        sequence_ = other.sequence_;
        bytes_ = std::exchange(other.bytes_, {});
        status_ = std::exchange(other.status_, TopicStatus::invalid);
    }
    return *this;
}

void Sample<void>::release() noexcept
{
    if (core_ == nullptr)
        return;
    core_->release(position_);
    core_ = nullptr;
    bytes_ = {};
    status_ = TopicStatus::invalid;
}

// ---- Subscriber ----

Subscriber<void>::Subscriber() noexcept = default;
Subscriber<void>::Subscriber(Subscriber&&) noexcept = default;
Subscriber<void>& Subscriber<void>::operator=(Subscriber&& other) noexcept
{
    if (this != &other) {
        Subscriber gone(std::move(*this));
        core_ = std::move(other.core_);
    }
    return *this;
}

Subscriber<void>::~Subscriber()
{
    if (!core_)
        return;
    detail::SubscriberCore& core = *core_;
    if (core.held != 0)
        logger().warn("topic '{}': subscriber left holding {} samples; they must not be read any more", core.name,
            core.held);
    std::uint64_t joined = detail::owner_word(getpid(), ipc::SlotState::joined);
    // release: pairs with the publisher's acquire load of owner; our releases come before.
    detail::shared(core.slot->owner)
        .compare_exchange_strong(joined, detail::owner_word(getpid(), ipc::SlotState::leaving),
            std::memory_order_release, std::memory_order_relaxed);
    // release: pairs with the publisher's acquire load of joins. A slot of our
    // own is seen leaving at the publisher's next reap: the table is not ours to write.
    if (!core.own.valid())
        detail::shared(core.view.control->joins).fetch_add(1, std::memory_order_release);
    notify_sole(core.slot->writable); // a publisher blocked on our queue stops waiting for us
    core.lock.reset(); // after the owner word: the publisher never sees joined and unlocked from us
}

Subscriber<void> Subscriber<void>::open(Segment& segment, std::string_view name, const SubscriberOptions& options)
{
    return detail::or_throw("subscribe to topic", name,
        [&](std::error_code& ec) { return open(segment, name, options, ec); },
        [&] {
            if (!segment.is_writable() && !options.own_slot)
                return std::string("the segment is attached read-only: the subscriber's slot must be its own "
                                   "(SubscriberOptions::own_slot)");
            return std::string("queue_depth and max_held must be 0 (the topic's) or at most the topic's, and "
                               "liveness_interval positive");
        });
}

Subscriber<void> Subscriber<void>::open(Segment& segment, std::string_view name, const SubscriberOptions& options,
    std::error_code& ec) noexcept
{
    ec.clear();
    try {
        detail::TopicView view = detail::open_topic(segment, name, ec);
        if (view.control == nullptr)
            return {};
        const detail::TopicGeometry& g = view.geometry;
        const std::uint32_t depth = options.queue_depth == 0 ? g.queue_depth : options.queue_depth;
        const std::uint32_t max_held = options.max_held == 0 ? g.max_held : options.max_held;
        if (depth > g.queue_depth || max_held > g.max_held
            || options.liveness_interval <= std::chrono::milliseconds::zero()
            || (options.overflow != Overflow::drop_oldest && options.overflow != Overflow::block_publisher)) {
            ec = Errc::invalid_argument;
            return {};
        }
        if (!segment.is_writable() && !options.own_slot) {
            ec = Errc::invalid_argument;
            return {};
        }
        detail::register_waker(); // before this process's first notify() (ipc/wait.hpp)
        auto core = std::make_unique<detail::SubscriberCore>();
        core->segment = &segment;
        core->view = view;
        core->depth = depth;
        core->max_held = max_held;
        core->blocks_publisher = options.overflow == Overflow::block_publisher;
        core->liveness_interval = options.liveness_interval;
        core->next_probe = std::chrono::steady_clock::now() + options.liveness_interval;
        core->name = std::string(name);
        const pid_t pid = getpid();
        const auto write_options = [&](ipc::TopicSlot& slot) {
            // relaxed: published by the release store of joined.
            detail::shared(slot.depth).store(depth, std::memory_order_relaxed);
            detail::shared(slot.max_held).store(max_held, std::memory_order_relaxed);
            detail::shared(slot.overflow).store(static_cast<std::uint32_t>(options.overflow), std::memory_order_relaxed);
        };
        Subscriber subscriber;
        if (options.own_slot) {
            if (!detail::open_own_slot(*core, write_options, ec))
                return {};
            subscriber.core_ = std::move(core);
            return subscriber;
        }
        core->lock = detail::reopen_segment(segment, ec);
        if (!core->lock)
            return {};
        for (std::uint32_t i = 0; i < g.slot_count; ++i) {
            ipc::TopicSlot& slot = view.slot(i);
            // relaxed: the compare-and-swap decides; this only skips taken slots without touching their locks.
            if (detail::shared(slot.owner).load(std::memory_order_relaxed) != 0)
                continue;
            // The lock first: a slot that says joining with no lock behind it
            // is one whose subscriber died, and the publisher frees it.
            if (!detail::lock_byte(core->lock, view.slot_lock_byte(i)))
                continue;
            std::uint64_t free = 0;
            // acquire: pairs with the publisher's release store of free, after it reset the fields.
            if (!detail::shared(slot.owner).compare_exchange_strong(free,
                    detail::owner_word(pid, ipc::SlotState::joining), std::memory_order_acquire,
                    std::memory_order_relaxed)) {
                detail::unlock_byte(core->lock, view.slot_lock_byte(i));
                continue;
            }
            write_options(slot);
            // release: pairs with the publisher's acquire load of owner in look_for_joins().
            detail::shared(slot.owner).store(detail::owner_word(pid, ipc::SlotState::joined), std::memory_order_release);
            // release: pairs with the publisher's acquire load of joins.
            detail::shared(view.control->joins).fetch_add(1, std::memory_order_release);
            core->slot = &slot;
            core->queue = view.queue(i);
            core->releases = view.releases(i);
            core->index = i;
            subscriber.core_ = std::move(core);
            return subscriber;
        }
        ec = Errc::no_free_lane;
        return {};
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return {};
    }
}

std::uint32_t Subscriber<void>::slot() const noexcept
{
    if (!core_)
        return 0;
    if (!core_->own.valid())
        return core_->index;
    // relaxed: a number for the caller; what the publisher delivers is ordered by the marks.
    const std::uint64_t admitted = detail::shared(core_->slot->admitted).load(std::memory_order_relaxed);
    return admitted != 0 && admitted <= detail::kMaxTopicSlots ? static_cast<std::uint32_t>(admitted - 1) : kNoSlot;
}

UniqueFd Subscriber<void>::share_slot()
{
    std::error_code ec;
    UniqueFd copy = share_slot(ec);
    if (ec)
        throw Error(ec, "share the slot file of a subscriber to topic '" + (core_ ? core_->name : std::string()) + "'",
            ec == Errc::invalid_argument ? "it has no slot of its own (SubscriberOptions::own_slot)" : "");
    return copy;
}

UniqueFd Subscriber<void>::share_slot(std::error_code& ec) const noexcept
{
    ec.clear();
    if (!core_ || !core_->own.valid()) {
        ec = Errc::invalid_argument;
        return {};
    }
    UniqueFd copy(::fcntl(core_->own_fd.get(), F_DUPFD_CLOEXEC, 3));
    if (!copy)
        ec = errno_code();
    return copy;
}

Sample<> Subscriber<void>::take() noexcept
{
    Sample<> sample;
    if (!core_)
        return sample;
    detail::SubscriberCore& core = *core_;
    ipc::TopicSlot& slot = *core.slot;
    if (core.quarantined()) {
        sample.status_ = TopicStatus::corrupt;
        return sample;
    }
    const std::uint32_t depth = core.view.geometry.queue_depth;
    // relaxed: only the value to compare-and-swap; the mark's acquire orders the delivery.
    std::uint64_t head = detail::shared(slot.head).load(std::memory_order_relaxed);
    ipc::TopicDelivery copy {};
    for (int tries = 0;; ++tries) {
        const ipc::TopicDelivery& d = core.queue[head & (depth - 1)];
        // acquire: pairs with the publisher's release store of the mark in
        // deliver(). The fast path reads the delivery alone, not the tail: the
        // publisher's line is left alone while samples are queued.
        if (detail::shared(const_cast<std::uint64_t&>(d.mark)).load(std::memory_order_acquire) == head + 1) {
            if (core.held >= core.max_held) {
                sample.status_ = TopicStatus::hold_limit;
                return sample;
            }
            // relaxed: ordered by the acquire load of the mark; a copy the
            // publisher overwrote meanwhile (it dropped `head` first) loses
            // the compare-and-swap below.
            copy.offset = detail::shared(const_cast<std::uint64_t&>(d.offset)).load(std::memory_order_relaxed);
            copy.size = detail::shared(const_cast<std::uint64_t&>(d.size)).load(std::memory_order_relaxed);
            copy.sequence = detail::shared(const_cast<std::uint64_t&>(d.sequence)).load(std::memory_order_relaxed);
            // acq_rel: release pairs with the publisher's acquire in sync() (our
            // releases before it are visible with it); it competes with the
            // publisher's drop of the oldest, and a failure reloads head.
            if (detail::shared(slot.head).compare_exchange_strong(head, head + 1, std::memory_order_acq_rel,
                    std::memory_order_relaxed))
                break;
            continue;
        }
        // Nothing marked at head: judge by the tail. acquire: pairs with the
        // publisher's release store in deliver(), after the mark.
        const std::uint64_t tail = detail::shared(slot.tail).load(std::memory_order_acquire);
        // The publisher's drops move head meanwhile: only a head that stayed
        // the same across our read of tail is one the tail can be judged by
        // (the publisher stored that tail once head was within a queue of it).
        // A head that never holds still, or a tail ahead of a delivery that
        // never shows its mark, is a peer's scribble.
        const std::uint64_t again = detail::shared(slot.head).load(std::memory_order_relaxed);
        if (again != head && tries < 1000) {
            head = again;
            continue;
        }
        // The publisher marks a delivery before it stores the tail past it:
        // we may have taken that one already, and be one ahead of the tail.
        if (tail <= head && head - tail <= 1) {
            // The publisher's closed word is stored after its last mark: read
            // it, then the mark once more, so that nothing queued is lost.
            if ((++core.empty_takes & 255) == 0 && std::chrono::steady_clock::now() >= core.next_probe)
                core.probe_publisher();
            sample.status_ = core.publisher_gone() && !core.marked(head) ? TopicStatus::closed : TopicStatus::empty;
            return sample;
        }
        if (head > tail || tail - head > depth || tries >= 1000) {
            sample.status_ = TopicStatus::corrupt;
            return sample;
        }
        // A tail ahead of head: the delivery's mark was stored before it and
        // shows now, unless the publisher dropped head meanwhile and wrote
        // the next lap's delivery there, or a peer wrote over the queue.
        if (!core.marked(head)) {
            const std::uint64_t now = detail::shared(slot.head).load(std::memory_order_relaxed);
            if (now == head) {
                sample.status_ = TopicStatus::corrupt;
                return sample;
            }
            head = now;
        }
    }
    // A publisher blocked on our full queue sleeps until it is half empty
    // (deliver()). Only a blocking subscriber's publisher sleeps, and only
    // then is the tail read: the sleeper count is on our own line.
    // (Without the light fence, notify_sole()'s read-modify-write must decide.)
    if (core.blocks_publisher
        && (!detail::waker_fence_is_light()
            || std::atomic_ref(slot.writable.sleepers).load(std::memory_order_relaxed) != 0) // relaxed: as notify_sole()'s
        && detail::shared(slot.tail).load(std::memory_order_relaxed) - (head + 1) <= core.depth / 2) // relaxed: a hint
        notify_sole(slot.writable);
    ++core.held;
    sample.core_ = &core;
    sample.position_ = head;
    sample.sequence_ = copy.sequence;
    // Every field is the publisher's word: check it before it is used.
    const std::uint64_t max = core.segment->max_size_bytes();
    const bool in_reach = copy.offset >= layout::kHeaderBytes && copy.offset <= max
        && copy.size <= max - copy.offset;
    if (in_reach && copy.offset + copy.size > core.segment->size_bytes()) {
        std::error_code ec;
        core.segment->refresh(ec); // a chunk of an extent the pool added since we last mapped
    }
    if (!in_reach || copy.offset + copy.size > core.segment->size_bytes()) {
        // Given back at once (the publisher knows the position), then said to be corrupt.
        logger().warn("topic '{}': delivery {} names bytes [{}, +{}) beyond the segment", core.name, head,
            copy.offset, copy.size);
        sample.release();
        sample.status_ = TopicStatus::corrupt;
        return sample;
    }
    sample.bytes_ = {core.segment->base() + copy.offset, static_cast<std::size_t>(copy.size)};
    sample.status_ = TopicStatus::ok;
    return sample;
}

TopicStatus Subscriber<void>::wait(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    if (!core_)
        return TopicStatus::invalid;
    detail::SubscriberCore& core = *core_;
    const auto deadline = deadline_after(timeout);
    const auto answer = [&] { return core.readiness(); };
    for (;;) {
        // A killed publisher cannot wake us: sleep in slices, and ask the kernel between them.
        const auto slice = std::min(deadline, std::chrono::steady_clock::now() + core.liveness_interval);
        wait_until(core.slot->readable.seq, SoleSleeper {core.slot->readable},
            [&] { return answer() != TopicStatus::empty; }, options, slice);
        const TopicStatus status = answer();
        if (status != TopicStatus::empty)
            return status;
        if (std::chrono::steady_clock::now() >= deadline)
            return TopicStatus::timed_out;
        core.probe_publisher();
    }
}

TopicStatus Subscriber<void>::arm_readable() noexcept
{
    if (!core_)
        return TopicStatus::invalid;
    detail::SubscriberCore& core = *core_;
    if (std::chrono::steady_clock::now() >= core.next_probe)
        core.probe_publisher(); // a killed publisher signals nothing: the caller's timer brings us here
    // Registered afresh at every arm: a sole sleeper's registration names the
    // seq it sleeps on, and one wake-up moved it.
    core.armed = !arm(SoleSleeper {core.slot->readable}, [&] { return core.readiness() != TopicStatus::empty; });
    return core.armed ? TopicStatus::empty : core.readiness();
}

void Subscriber<void>::disarm_readable() noexcept
{
    if (core_ && std::exchange(core_->armed, false))
        SoleSleeper {core_->slot->readable}(false);
}

Sample<> Subscriber<void>::take(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    Sample<> first = take(); // a sample already queued costs no clock read
    if (first.status() != TopicStatus::empty)
        return first;
    const auto deadline = deadline_after(timeout);
    for (;;) {
        Sample<> sample = take();
        if (sample.status() != TopicStatus::empty)
            return sample;
        const auto left = deadline - std::chrono::steady_clock::now();
        const TopicStatus waited = wait(std::max(left, std::chrono::steady_clock::duration::zero()), options);
        if (waited == TopicStatus::timed_out || waited == TopicStatus::invalid) {
            sample.status_ = waited;
            return sample;
        }
    }
}

SubscriberStats Subscriber<void>::stats() const noexcept
{
    SubscriberStats s;
    if (!core_)
        return s;
    const ipc::TopicSlot& slot = *core_->slot;
    // relaxed: statistics.
    s.missed = detail::shared(const_cast<std::uint64_t&>(slot.missed)).load(std::memory_order_relaxed);
    s.reclaimed = detail::shared(const_cast<std::uint64_t&>(slot.reclaimed)).load(std::memory_order_relaxed);
    s.held = core_->held;
    const std::uint64_t tail = detail::shared(const_cast<std::uint64_t&>(slot.tail)).load(std::memory_order_relaxed);
    const std::uint64_t head = detail::shared(const_cast<std::uint64_t&>(slot.head)).load(std::memory_order_relaxed);
    s.queued = tail >= head ? static_cast<std::uint32_t>(std::min<std::uint64_t>(tail - head, UINT32_MAX)) : 0;
    return s;
}

} // namespace shmlink
