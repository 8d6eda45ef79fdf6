#include <shmlink/ipc/mpsc_ring.hpp>

#include <shmlink/core/log.hpp>
#include <shmlink/ipc/detail/liveness.hpp>
#include <shmlink/ipc/detail/object.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <new>

namespace shmlink {
namespace {

using detail::byte_locked;
using detail::lock_byte;
using detail::reopen_segment;
using detail::unlock_byte;

constexpr std::uint32_t kMaxLanes = 64;
/// Tries of open_held() while another producer's try holds the lane's lock,
/// a millisecond apart (pause_briefly()): far longer than such a try takes,
/// even when its process is descheduled in the middle of it.
constexpr int kHeldLaneAttempts = 500;

std::uint64_t owner_word(pid_t pid, ipc::LaneState state) noexcept
{
    return (std::uint64_t {static_cast<std::uint32_t>(pid)} << 32) | static_cast<std::uint32_t>(state);
}

ipc::LaneState state_of(std::uint64_t owner) noexcept { return static_cast<ipc::LaneState>(owner & 0xffffffffU); }

pid_t pid_of(std::uint64_t owner) noexcept { return static_cast<pid_t>(owner >> 32); }

std::size_t lane_stride(std::uint64_t lane_capacity) noexcept { return sizeof(ipc::MpscLane) + lane_capacity; }

std::size_t object_bytes(std::uint32_t lanes, std::uint64_t lane_capacity) noexcept
{
    return sizeof(ipc::MpscRingControl) + lanes * lane_stride(lane_capacity);
}

ipc::MpscLane* lane_at(ipc::MpscRingControl* control, std::uint64_t lane_capacity, std::uint32_t index) noexcept
{
    auto* first = reinterpret_cast<std::byte*>(control) + sizeof(ipc::MpscRingControl);
    return reinterpret_cast<ipc::MpscLane*>(first + index * lane_stride(lane_capacity));
}

// ---- lane locks: one byte of the segment file per lane, at the object's offset + lane (detail/liveness.hpp) ----

/// The control block's fixed fields, checked against the object's length;
/// null with `ec` set when a peer rewrote them.
ipc::MpscRingControl* open_control(Segment& segment, std::string_view name, std::uint64_t& lane_capacity,
    std::uint32_t& lanes, std::error_code& ec) noexcept
{
    std::uint64_t length = 0;
    std::byte* object = detail::open_object(segment, name, ipc::ObjectKind::mpsc_ring, ipc::kMpscRingVersion,
        sizeof(ipc::MpscRingControl), length, ec);
    if (object == nullptr)
        return nullptr;
    auto* control = reinterpret_cast<ipc::MpscRingControl*>(object);
    // relaxed: written before the directory entry was published (acquire in find()).
    lane_capacity = std::atomic_ref(control->lane_capacity_bytes).load(std::memory_order_relaxed);
    lanes = control->lane_count;
    if (lanes == 0 || lanes > kMaxLanes || !SpscRing::valid_capacity(lane_capacity)
        || object_bytes(lanes, lane_capacity) != length) {
        ec = Errc::corrupt_object;
        logger().warn("MPSC ring '{}': {} lanes of {} bytes do not fill its {}-byte object", name, lanes,
            lane_capacity, length);
        return nullptr;
    }
    return control;
}

} // namespace

// ---- producer ----

MpscProducer::MpscProducer(MpscProducer&& other) noexcept
    : SpscRing(std::move(other)),
      shared_(std::exchange(other.shared_, nullptr)),
      lane_index_(other.lane_index_),
      lock_(std::move(other.lock_))
{
}

MpscProducer& MpscProducer::operator=(MpscProducer&& other) noexcept
{
    if (this != &other) {
        leave();
        SpscRing::operator=(std::move(other));
        shared_ = std::exchange(other.shared_, nullptr);
        lane_index_ = other.lane_index_;
        lock_ = std::move(other.lock_);
    }
    return *this;
}

MpscProducer::~MpscProducer() { leave(); }

void MpscProducer::leave() noexcept
{
    if (shared_ == nullptr)
        return;
    publish(); // deferred commits first: the consumer drains the lane before it frees it
    std::atomic_ref owner(shared_->owner);
    // relaxed: only to build the value we expect; the exchange below orders.
    std::uint64_t owned = owner.load(std::memory_order_relaxed);
    if (state_of(owned) == ipc::LaneState::owned) {
        // release: pairs with the acquire load of owner in reap(); our last
        // commit is published before the consumer may free the lane.
        owner.compare_exchange_strong(owned, owner_word(pid_of(owned), ipc::LaneState::draining),
            std::memory_order_release, std::memory_order_relaxed);
    }
    lock_.reset(); // after the owner word: the consumer never sees owned and unlocked from us
    shared_ = nullptr;
    SpscRing::operator=(SpscRing());
}

MpscProducer MpscProducer::open(Segment& segment, std::string_view name)
{
    return detail::or_throw("open MPSC ring producer", name,
        [&](std::error_code& ec) { return open(segment, name, ec); });
}

MpscProducer MpscProducer::open(Segment& segment, std::string_view name, std::error_code& ec) noexcept
{
    std::uint64_t lane_capacity = 0;
    std::uint32_t lanes = 0;
    ipc::MpscRingControl* control = open_control(segment, name, lane_capacity, lanes, ec);
    if (control == nullptr)
        return {};
    UniqueFd lock = reopen_segment(segment, ec);
    if (!lock)
        return {};
    for (std::uint32_t i = 0; i < lanes; ++i) {
        // Only a lane that looks free is worth its lock: locking a lane held
        // for another producer would make that producer's take fail meanwhile.
        // (relaxed: the take's own swap decides.)
        if (std::atomic_ref(lane_at(control, lane_capacity, i)->owner).load(std::memory_order_relaxed)
            != owner_word(0, ipc::LaneState::free))
            continue;
        MpscProducer producer = take(segment, control, lane_capacity, i, owner_word(0, ipc::LaneState::free), lock);
        if (producer.valid())
            return producer;
    }
    ec = Errc::no_free_lane;
    return {};
}

MpscProducer MpscProducer::open_held(Segment& segment, std::string_view name, std::uint32_t lane,
    std::uint32_t token, std::error_code& ec) noexcept
{
    std::uint64_t lane_capacity = 0;
    std::uint32_t lanes = 0;
    ipc::MpscRingControl* control = open_control(segment, name, lane_capacity, lanes, ec);
    if (control == nullptr)
        return {};
    if (lane >= lanes) {
        ec = Errc::invalid_argument;
        return {};
    }
    UniqueFd lock = reopen_segment(segment, ec);
    if (!lock)
        return {};
    // Another producer looking for a free lane may hold this lane's lock for
    // the few instructions of its own try (it saw the lane free just before
    // it was held for us): while the lane is still held for us, try again.
    const std::uint64_t held = owner_word(static_cast<pid_t>(token), ipc::LaneState::held);
    ipc::MpscLane* shared = lane_at(control, lane_capacity, lane);
    for (int attempt = 0; attempt < kHeldLaneAttempts; ++attempt) {
        MpscProducer producer = take(segment, control, lane_capacity, lane, held, lock);
        if (producer.valid())
            return producer;
        // relaxed: only whether to try again; the take's swap decides.
        if (std::atomic_ref(shared->owner).load(std::memory_order_relaxed) != held)
            break;
        detail::pause_briefly();
    }
    ec = Errc::no_free_lane;
    return {};
}

MpscProducer MpscProducer::take(Segment& segment, ipc::MpscRingControl* control, std::uint64_t lane_capacity,
    std::uint32_t index, std::uint64_t expected, UniqueFd& lock) noexcept
{
    const auto lock_offset = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(control) - segment.base()) + index;
    ipc::MpscLane* shared = lane_at(control, lane_capacity, index);
    // The lock first: an owned lane is always locked while its owner lives.
    if (!lock_byte(lock, lock_offset))
        return {};
    // acquire: pairs with the release store of a free owner in MpscRing::reset(),
    // so the lane's reset positions are visible before we start at them.
    if (!std::atomic_ref(shared->owner).compare_exchange_strong(expected,
            owner_word(::getpid(), ipc::LaneState::owned), std::memory_order_acquire, std::memory_order_relaxed)) {
        // Not ours to take (owned, draining, or held for another): give the lock back.
        unlock_byte(lock, lock_offset);
        return {};
    }
    // release: pairs with the acquire load in MpscRing::refresh_lanes(); our owner word is written before.
    std::atomic_ref(control->lanes_taken).fetch_add(1, std::memory_order_release);
    SpscRing ring(&shared->ring, reinterpret_cast<std::byte*>(shared + 1), lane_capacity, &control->readable_seq);
    return MpscProducer(std::move(ring), shared, index, std::move(lock));
}

// ---- consumer ----

MpscRing& MpscRing::operator=(MpscRing&& other) noexcept
{
    if (this != &other) {
        control_ = std::exchange(other.control_, nullptr);
        lanes_ = std::move(other.lanes_);
        other.lanes_.clear();
        lane_capacity_ = other.lane_capacity_;
        object_offset_ = other.object_offset_;
        probe_ = std::move(other.probe_);
        calls_ = other.calls_;
        next_reap_ = other.next_reap_;
        reap_requested_ = std::move(other.reap_requested_);
        held_ = std::move(other.held_);
        armed_ = std::exchange(other.armed_, false);
        live_ = std::exchange(other.live_, 0);
        lanes_taken_seen_ = other.lanes_taken_seen_;
        next_ = other.next_;
        peeked_ = std::exchange(other.peeked_, SIZE_MAX);
        options_ = std::move(other.options_);
    }
    return *this;
}

SpscRing MpscRing::consumer_view(ipc::MpscLane* shared) const noexcept
{
    return SpscRing(&shared->ring, reinterpret_cast<std::byte*>(shared + 1), lane_capacity_, &control_->readable_seq);
}

namespace {

std::string create_rule(std::size_t lane_capacity_bytes, std::uint32_t lanes)
{
    return lanes == 0 || lanes > kMaxLanes
        ? "lanes must be 1 to " + std::to_string(kMaxLanes) + ", not " + std::to_string(lanes)
        : detail::capacity_rule("lane_capacity_bytes", lane_capacity_bytes);
}

} // namespace

MpscRing MpscRing::create(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
    std::uint32_t lanes, const MpscOptions& options)
{
    return detail::or_throw("create MPSC ring", name,
        [&](std::error_code& ec) { return create(segment, name, lane_capacity_bytes, lanes, options, ec); },
        [&] { return create_rule(lane_capacity_bytes, lanes); });
}

MpscRing MpscRing::create(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
    std::uint32_t lanes, const MpscOptions& options, std::error_code& ec)
{
    create_only(segment, name, lane_capacity_bytes, lanes, ec);
    return ec ? MpscRing() : open(segment, name, options, ec);
}

void MpscRing::create_only(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
    std::uint32_t lanes)
{
    detail::or_throw("create MPSC ring", name,
        [&](std::error_code& ec) {
            create_only(segment, name, lane_capacity_bytes, lanes, ec);
            return !ec;
        },
        [&] { return create_rule(lane_capacity_bytes, lanes); });
}

void MpscRing::create_only(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
    std::uint32_t lanes, std::error_code& ec) noexcept
{
    ec.clear();
    if (lanes == 0 || lanes > kMaxLanes || !SpscRing::valid_capacity(lane_capacity_bytes)) {
        ec = Errc::invalid_argument;
        return;
    }
    detail::create_object(segment, name, ipc::ObjectKind::mpsc_ring, ipc::kMpscRingVersion,
        object_bytes(lanes, lane_capacity_bytes), [&](std::byte* object) {
            auto* control = reinterpret_cast<ipc::MpscRingControl*>(object);
            control->lane_count = lanes;
            control->lane_capacity_bytes = lane_capacity_bytes;
            for (std::uint32_t i = 0; i < lanes; ++i)
                lane_at(control, lane_capacity_bytes, i)->ring.capacity_bytes = lane_capacity_bytes;
        }, ec);
}

MpscRing MpscRing::open(Segment& segment, std::string_view name, const MpscOptions& options)
{
    return detail::or_throw("open MPSC ring", name,
        [&](std::error_code& ec) { return open(segment, name, options, ec); });
}

MpscRing MpscRing::open(Segment& segment, std::string_view name, const MpscOptions& options, std::error_code& ec)
try {
    MpscRing ring;
    std::uint32_t lanes = 0;
    ipc::MpscRingControl* control = open_control(segment, name, ring.lane_capacity_, lanes, ec);
    if (control == nullptr)
        return {};
    ring.probe_ = reopen_segment(segment, ec);
    if (!ring.probe_)
        return {};
    ring.control_ = control;
    ring.object_offset_ = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(control) - segment.base());
    ring.options_ = options;
    ring.next_reap_ = std::chrono::steady_clock::now() + options.reap_interval;
    ring.reap_requested_ = std::make_unique<std::atomic<bool>>(false);
    ring.held_ = std::make_unique<std::atomic<std::uint64_t>[]>(lanes);
    ring.lanes_.resize(lanes);
    for (std::uint32_t i = 0; i < lanes; ++i) {
        Lane& lane = ring.lanes_[i];
        lane.shared = lane_at(control, ring.lane_capacity_, i);
        lane.ring = ring.consumer_view(lane.shared);
        // We are the one consumer: a count left by one that died asleep would
        // cost every commit a futex syscall from now on.
        std::atomic_ref(lane.shared->ring.readable.sleepers).store(0, std::memory_order_relaxed);
        // A lane an earlier consumer held for a producer that never came is
        // nobody's now: free it (relaxed: the swap orders nothing else).
        std::uint64_t owner = std::atomic_ref(lane.shared->owner).load(std::memory_order_relaxed);
        if (state_of(owner) == ipc::LaneState::held)
            std::atomic_ref(lane.shared->owner).compare_exchange_strong(owner, owner_word(0, ipc::LaneState::free),
                std::memory_order_relaxed);
    }
    ring.lanes_taken_seen_ = std::atomic_ref(control->lanes_taken).load(std::memory_order_acquire); // acquire: as in refresh_lanes()
    ring.rescan_lanes();
    logger(); // made now, so the noexcept slow paths that log never allocate it
    return ring;
} catch (const std::bad_alloc&) {
    ec = std::make_error_code(std::errc::not_enough_memory);
    return {};
}

RingStatus MpscRing::quarantine(Lane& lane) noexcept
{
    lane.quarantined = true;
    // relaxed: a statistic.
    std::atomic_ref(control_->corrupt_lanes).fetch_add(1, std::memory_order_relaxed);
    logger().warn("MPSC ring: lane {} is corrupt; quarantined until its producer leaves", &lane - lanes_.data());
    return RingStatus::corrupt;
}

RingSpan<const std::byte> MpscRing::peek() noexcept
{
    maybe_reap();
    RingSpan<const std::byte> found {RingStatus::empty, {}};
    for_each_lane([&](std::size_t index, Lane& lane) {
        const auto message = lane.ring.peek();
        if (message) {
            peeked_ = index;
            found = message;
            return false;
        }
        if (message.status != RingStatus::corrupt)
            return true;
        found = {quarantine(lane), {}};
        return false;
    });
    return found;
}

void MpscRing::refresh_lanes() noexcept
{
    if (!valid())
        return;
    // acquire: pairs with the release increment in MpscProducer::take(); the owner word it took is written before.
    const std::uint32_t taken = std::atomic_ref(control_->lanes_taken).load(std::memory_order_acquire);
    if (taken == lanes_taken_seen_)
        return;
    lanes_taken_seen_ = taken;
    rescan_lanes();
}

void MpscRing::rescan_lanes() noexcept
{
    std::uint64_t live = 0;
    for (std::size_t i = 0; i < lanes_.size(); ++i) {
        // relaxed: ordered by the acquire load of lanes_taken in refresh_lanes(),
        // or by reap()'s own swaps; a lane taken later bumps lanes_taken again.
        const auto state = state_of(std::atomic_ref(lanes_[i].shared->owner).load(std::memory_order_relaxed));
        if (state != ipc::LaneState::free)
            live |= std::uint64_t {1} << i;
    }
    live_ = live;
}

RingSpan<const std::byte> MpscRing::peek(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    if (!valid())
        return {RingStatus::corrupt, {}};
    return detail::retry_span<RingSpan<const std::byte>>(RingStatus::empty, timeout, [&] { return peek(); },
        [&](auto deadline) { return wait(deadline, options); });
}

void MpscRing::release() noexcept
{
    if (peeked_ == SIZE_MAX)
        return;
    lanes_[peeked_].ring.release();
    next_ = peeked_ + 1 == lanes_.size() ? 0 : peeked_ + 1;
    peeked_ = SIZE_MAX;
}

RingStatus MpscRing::try_pop(std::span<std::byte> buffer, std::size_t& length) noexcept
{
    return detail::pop_into(*this, buffer, length, [this] {
        // The message stays; the round robin moves on, so one producer's long
        // message does not hold up the other lanes.
        lanes_[peeked_].ring.peeked_end_ = 0;
        next_ = peeked_ + 1 == lanes_.size() ? 0 : peeked_ + 1;
        peeked_ = SIZE_MAX;
    });
}

bool MpscRing::any_readable() noexcept
{
    bool readable = false;
    for_each_lane([&](std::size_t, Lane& lane) { return !(readable = lane.ring.readable_now()); });
    return readable;
}

bool MpscRing::wait(std::chrono::steady_clock::time_point deadline, const WaitOptions& options) noexcept
{
    // Sliced by reap_interval, so that a dead producer's lane is freed within
    // that bound even while the consumer sleeps.
    for (;;) {
        const auto slice = std::min(deadline, next_reap_);
        if (wait_until(control_->readable_seq, [this](bool sleeping) { register_sleeper(sleeping); },
                [this] { return any_readable(); }, options, slice))
            return true;
        if (std::chrono::steady_clock::now() >= next_reap_)
            reap();
        if (std::chrono::steady_clock::now() >= deadline)
            return any_readable();
    }
}

RingStatus MpscRing::wait_readable(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    if (!valid())
        return RingStatus::corrupt;
    maybe_reap();
    if (peeked_ != SIZE_MAX || any_readable())
        return RingStatus::ok;
    return wait(deadline_after(timeout), options) ? RingStatus::ok : RingStatus::timed_out;
}

RingStatus MpscRing::pop(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
    const WaitOptions& options) noexcept
{
    if (!valid())
        return RingStatus::corrupt;
    return detail::retry(RingStatus::empty, timeout, [&] { return try_pop(buffer, length); },
        [&](auto deadline) { return wait(deadline, options); });
}

RingStatus MpscRing::arm_readable() noexcept
{
    if (!valid())
        return RingStatus::corrupt;
    maybe_reap();
    if (peeked_ != SIZE_MAX)
        return RingStatus::ok;
    if (armed_)
        return any_readable() ? RingStatus::ok : RingStatus::empty;
    armed_ = !arm([this](bool sleeping) { register_sleeper(sleeping); }, [this] { return any_readable(); });
    return armed_ ? RingStatus::empty : RingStatus::ok;
}

void MpscRing::register_sleeper(bool sleeping) noexcept
{
    // In every lane: each producer checks only its own lane's count, on the
    // line it writes anyway, so producers share no written line.
    for (Lane& lane : lanes_)
        SleeperCount {lane.shared->ring.readable}(sleeping);
}

void MpscRing::reset(Lane& lane) noexcept
{
    ipc::MpscLane& shared = *lane.shared;
    const std::uint64_t claim = std::atomic_ref(shared.ring.claim).load(std::memory_order_relaxed);
    if (claim != 0) {
        // relaxed: statistics.
        std::atomic_ref(control_->abandoned_claims).fetch_add(1, std::memory_order_relaxed);
        logger().warn("MPSC ring: lane {} held an uncommitted {}-byte message; dropped", &lane - lanes_.data(),
            claim >> 32);
    }
    // Nobody writes the lane now: its producer is gone and no other can take
    // it before the owner word says free. Start it afresh from our own copy
    // of its geometry, whatever the last producer wrote there, sleeper
    // counts included (a producer killed asleep leaves its count behind).
    lane.ring.reinitialize();
    // Only this consumer counts itself in readable.sleepers, and it is not
    // waiting now: the count is 1 while it is armed for eventfd wake-ups
    // (registered in every lane), else 0, whatever a producer wrote there.
    std::atomic_ref(shared.ring.readable.sleepers).store(armed_ ? 1 : 0, std::memory_order_relaxed);
    lane.quarantined = false;
}

std::size_t MpscRing::reap() noexcept
{
    if (!valid())
        return 0;
    next_reap_ = std::chrono::steady_clock::now() + options_.reap_interval;
    reap_requested_->store(false, std::memory_order_relaxed);
    // The fixed fields every producer checks at open: a producer that
    // scribbled on them would lock every later one out. Ours are the truth.
    // (relaxed: producers read them only to validate, and a torn read fails
    // that producer's open, never a running one.)
    if (std::atomic_ref(control_->lane_capacity_bytes).load(std::memory_order_relaxed) != lane_capacity_)
        std::atomic_ref(control_->lane_capacity_bytes).store(lane_capacity_, std::memory_order_relaxed);
    if (std::atomic_ref(control_->lane_count).load(std::memory_order_relaxed) != lanes_.size())
        std::atomic_ref(control_->lane_count).store(static_cast<std::uint32_t>(lanes_.size()), std::memory_order_relaxed);
    std::size_t freed = 0;
    for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
        Lane& lane = lanes_[i];
        std::atomic_ref owner(lane.shared->owner);
        // acquire: pairs with the release compare-and-swap in MpscProducer::leave().
        std::uint64_t seen = owner.load(std::memory_order_acquire);
        if (state_of(seen) == ipc::LaneState::free)
            continue;
        // Held by us for a producer on its way (relaxed: our own word, set by hold_lane()).
        if (state_of(seen) == ipc::LaneState::held && held_[i].load(std::memory_order_relaxed) == seen)
            continue;
        if (state_of(seen) == ipc::LaneState::owned) {
            if (byte_locked(probe_, object_offset_ + i))
                continue;
            // Owned, and nobody holds its lock: the owner's process is gone.
            if (!owner.compare_exchange_strong(seen, owner_word(pid_of(seen), ipc::LaneState::draining),
                    std::memory_order_acquire, std::memory_order_acquire))
                continue; // it changed meanwhile; look again next time
            std::atomic_ref(control_->dead_producers).fetch_add(1, std::memory_order_relaxed); // relaxed: a statistic
            logger().warn("MPSC ring: the producer of lane {} (pid {}) died", i, pid_of(seen));
        }
        // Draining (or a state a peer scribbled): free it once everything
        // committed was delivered; a quarantined lane has nothing to deliver.
        // A lane still locked has a producer that is still leaving.
        if ((!lane.quarantined && lane.ring.readable_now()) || byte_locked(probe_, object_offset_ + i))
            continue;
        // Ours while we reset it: no producer takes a lane in this state, and
        // a word that changed since we read it (a hold) is left alone.
        if (!owner.compare_exchange_strong(seen, owner_word(0, ipc::LaneState::draining), std::memory_order_acquire,
                std::memory_order_relaxed))
            continue;
        reset(lane);
        if (options_.on_lane_freed) // before the lane is offered again
            options_.on_lane_freed(i);
        // release: pairs with the acquire compare-and-swap in MpscProducer::open().
        owner.store(owner_word(0, ipc::LaneState::free), std::memory_order_release);
        ++freed;
    }
    rescan_lanes();
    return freed;
}

int MpscRing::hold_lane(std::uint32_t token) noexcept
{
    const std::uint64_t held = owner_word(static_cast<pid_t>(token), ipc::LaneState::held);
    for (std::uint32_t i = 0; i < lanes_.size(); ++i) {
        if (held_[i].load(std::memory_order_relaxed) != 0)
            continue; // held by us already (the mark goes when its producer took it, or it is given back)
        std::uint64_t free = owner_word(0, ipc::LaneState::free);
        // relaxed: published by the swap below.
        held_[i].store(held, std::memory_order_relaxed);
        // acq_rel: the acquire pairs with the release store of a free owner in
        // reap() (the lane was reset before we hand it out); the release pairs
        // with reap()'s acquire load of owner, which must find our mark with it.
        if (std::atomic_ref(lanes_[i].shared->owner).compare_exchange_strong(free, held, std::memory_order_acq_rel,
                std::memory_order_relaxed))
            return static_cast<int>(i); // the consumer looks at it once its producer's take bumps lanes_taken
        held_[i].store(0, std::memory_order_relaxed);
    }
    return -1;
}

bool MpscRing::taken_held(std::uint32_t lane, std::uint32_t token) noexcept
{
    if (lane >= lanes_.size())
        return false;
    std::uint64_t held = owner_word(static_cast<pid_t>(token), ipc::LaneState::held);
    // relaxed: we only ask whether the producer's swap happened; nothing is read through it here.
    if (std::atomic_ref(lanes_[lane].shared->owner).load(std::memory_order_relaxed) == held)
        return false;
    held_[lane].compare_exchange_strong(held, 0, std::memory_order_relaxed); // our mark, and only ours
    return true;
}

bool MpscRing::unhold_lane(std::uint32_t lane, std::uint32_t token) noexcept
{
    if (lane >= lanes_.size())
        return false;
    std::uint64_t held = owner_word(static_cast<pid_t>(token), ipc::LaneState::held);
    const std::uint64_t mark = held;
    // Handed to the consumer to free rather than freed here: its reap
    // re-initialises the lane (on_lane_freed) before it is offered again,
    // whatever the producer it was held for wrote meanwhile. (relaxed: the
    // reap's own swap orders what it does.)
    const bool given_back = std::atomic_ref(lanes_[lane].shared->owner).compare_exchange_strong(held,
        owner_word(0, ipc::LaneState::draining), std::memory_order_relaxed);
    std::uint64_t ours = mark;
    held_[lane].compare_exchange_strong(ours, 0, std::memory_order_relaxed); // another hold's mark stays
    request_reap();
    return given_back;
}

MpscStats MpscRing::stats() const noexcept
{
    MpscStats stats;
    if (control_ == nullptr)
        return stats;
    for (const Lane& lane : lanes_) {
        const auto state = state_of(std::atomic_ref(lane.shared->owner).load(std::memory_order_relaxed));
        stats.producers += state == ipc::LaneState::owned;
        stats.draining += state != ipc::LaneState::owned && state != ipc::LaneState::free
            && state != ipc::LaneState::held;
    }
    stats.abandoned_claims = std::atomic_ref(control_->abandoned_claims).load(std::memory_order_relaxed);
    stats.dead_producers = std::atomic_ref(control_->dead_producers).load(std::memory_order_relaxed);
    stats.corrupt_lanes = std::atomic_ref(control_->corrupt_lanes).load(std::memory_order_relaxed);
    return stats;
}

} // namespace shmlink
