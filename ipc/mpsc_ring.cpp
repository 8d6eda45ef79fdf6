#include "ipc/mpsc_ring.hpp"

#include "core/log.hpp"
#include "core/process.hpp"
#include "ipc/detail/object.hpp"

#include <unistd.h>

#include <new>

namespace shmlink {
namespace {

constexpr std::uint32_t kMaxLanes = 64;

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
    // acquire: pairs with the release store of lane_capacity_bytes in create().
    lane_capacity = std::atomic_ref(control->lane_capacity_bytes).load(std::memory_order_acquire);
    lanes = control->lane_count;
    if (lanes == 0 || lanes > kMaxLanes || !SpscRing::valid_capacity(lane_capacity)
        || object_bytes(lanes, lane_capacity) != length) {
        ec = Errc::corrupt_directory;
        logger().warn("MPSC ring '{}': {} lanes of {} bytes do not fill its {}-byte object", name, lanes,
            lane_capacity, length);
        return nullptr;
    }
    return control;
}

} // namespace

// ---- producer ----

MpscProducer::MpscProducer(MpscProducer&& other) noexcept
    : SpscRing(other), shared_(std::exchange(other.shared_, nullptr)), lane_index_(other.lane_index_)
{
}

MpscProducer& MpscProducer::operator=(MpscProducer&& other) noexcept
{
    if (this != &other) {
        leave();
        SpscRing::operator=(other);
        shared_ = std::exchange(other.shared_, nullptr);
        lane_index_ = other.lane_index_;
    }
    return *this;
}

MpscProducer::~MpscProducer() { leave(); }

void MpscProducer::leave() noexcept
{
    if (shared_ == nullptr)
        return;
    std::uint64_t owned = owner_word(::getpid(), ipc::LaneState::owned);
    // release: pairs with the acquire load of owner in reap(); our last
    // commit is published before the consumer may free the lane. A consumer
    // that already found us "dead" (it cannot, while we run) keeps its state.
    std::atomic_ref(shared_->owner).compare_exchange_strong(owned, owner_word(::getpid(), ipc::LaneState::draining),
        std::memory_order_release, std::memory_order_relaxed);
    shared_ = nullptr;
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
    const pid_t self = ::getpid();
    for (std::uint32_t i = 0; i < lanes; ++i) {
        ipc::MpscLane* shared = lane_at(control, lane_capacity, i);
        std::uint64_t free = owner_word(0, ipc::LaneState::free);
        // acquire: pairs with the release store of a free owner in MpscRing::reset(),
        // so the lane's reset positions are visible before we start at them.
        if (!std::atomic_ref(shared->owner).compare_exchange_strong(free, owner_word(self, ipc::LaneState::owned),
                std::memory_order_acquire, std::memory_order_relaxed))
            continue;
        // relaxed: read by reap() only to tell this process from a later one with our pid.
        std::atomic_ref(shared->owner_start_time).store(process_start_time(self), std::memory_order_relaxed);
        SpscRing ring(&shared->ring, reinterpret_cast<std::byte*>(shared + 1), lane_capacity, &control->readable_seq);
        return MpscProducer(ring, shared, i);
    }
    ec = Errc::no_free_lane;
    return {};
}

// ---- consumer ----

SpscRing MpscRing::consumer_view(ipc::MpscLane* shared) const noexcept
{
    return SpscRing(&shared->ring, reinterpret_cast<std::byte*>(shared + 1), lane_capacity_, &control_->readable_seq);
}

MpscRing MpscRing::create(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
    std::uint32_t lanes, const MpscOptions& options)
{
    return detail::or_throw("create MPSC ring", name,
        [&](std::error_code& ec) { return create(segment, name, lane_capacity_bytes, lanes, options, ec); });
}

MpscRing MpscRing::create(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
    std::uint32_t lanes, const MpscOptions& options, std::error_code& ec)
{
    if (lanes == 0 || lanes > kMaxLanes || !SpscRing::valid_capacity(lane_capacity_bytes)) {
        ec = Errc::invalid_argument;
        return {};
    }
    std::byte* object = detail::create_object(segment, name, ipc::ObjectKind::mpsc_ring, ipc::kMpscRingVersion,
        object_bytes(lanes, lane_capacity_bytes), ec);
    if (object == nullptr)
        return {};
    auto* control = reinterpret_cast<ipc::MpscRingControl*>(object);
    control->lane_count = lanes;
    for (std::uint32_t i = 0; i < lanes; ++i)
        lane_at(control, lane_capacity_bytes, i)->ring.capacity_bytes = lane_capacity_bytes;
    // release: pairs with the acquire load in open_control(); lanes are written before.
    std::atomic_ref(control->lane_capacity_bytes).store(lane_capacity_bytes, std::memory_order_release);
    return open(segment, name, options, ec);
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
    ring.control_ = open_control(segment, name, ring.lane_capacity_, lanes, ec);
    if (ring.control_ == nullptr)
        return {};
    ring.options_ = options;
    ring.lanes_.resize(lanes);
    for (std::uint32_t i = 0; i < lanes; ++i) {
        Lane& lane = ring.lanes_[i];
        lane.shared = lane_at(ring.control_, ring.lane_capacity_, i);
        lane.ring = ring.consumer_view(lane.shared);
    }
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
    const std::size_t count = lanes_.size();
    for (std::size_t i = 0, index = next_; i < count; ++i, index = index + 1 == count ? 0 : index + 1) {
        Lane& lane = lanes_[index];
        if (lane.quarantined)
            continue;
        const auto message = lane.ring.peek();
        if (message) {
            peeked_ = index;
            return message;
        }
        if (message.status == RingStatus::corrupt)
            return {quarantine(lane), {}};
    }
    return {RingStatus::empty, {}};
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
    const auto message = peek();
    if (!message)
        return message.status;
    if (message.bytes.size() > buffer.size()) {
        peeked_ = SIZE_MAX;
        return RingStatus::too_large;
    }
    if (!message.bytes.empty())
        std::memcpy(buffer.data(), message.bytes.data(), message.bytes.size());
    length = message.bytes.size();
    release();
    return RingStatus::ok;
}

bool MpscRing::any_readable() noexcept
{
    for (Lane& lane : lanes_)
        if (!lane.quarantined && lane.ring.readable_now())
            return true;
    return false;
}

bool MpscRing::wait(std::chrono::steady_clock::time_point deadline, const WaitOptions& options) noexcept
{
    // Sliced by reap_interval, so that a dead producer's lane is freed within
    // that bound even while the consumer sleeps.
    for (;;) {
        const auto slice = std::min(deadline, std::chrono::steady_clock::now() + options_.reap_interval);
        if (wait_until(control_->readable_seq, [this](bool sleeping) { register_sleeper(sleeping); },
                [this] { return any_readable(); }, options, slice))
            return true;
        reap();
        if (std::chrono::steady_clock::now() >= deadline)
            return any_readable();
    }
}

RingStatus MpscRing::wait_readable(std::chrono::nanoseconds timeout, const WaitOptions& options) noexcept
{
    if (peeked_ != SIZE_MAX || any_readable())
        return RingStatus::ok;
    return wait(deadline_after(timeout), options) ? RingStatus::ok : RingStatus::timed_out;
}

RingStatus MpscRing::pop(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
    const WaitOptions& options) noexcept
{
    return detail::retry(RingStatus::empty, timeout, [&] { return try_pop(buffer, length); },
        [&](auto deadline) { return wait(deadline, options); });
}

RingStatus MpscRing::arm_readable() noexcept
{
    if (peeked_ != SIZE_MAX)
        return RingStatus::ok;
    return arm([this](bool sleeping) { register_sleeper(sleeping); }, [this] { return any_readable(); })
        ? RingStatus::ok
        : RingStatus::empty;
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
    // it before the owner word says free. Start it afresh.
    std::atomic_ref(shared.ring.claim).store(0, std::memory_order_relaxed);
    std::atomic_ref(shared.ring.tail).store(0, std::memory_order_relaxed);
    std::atomic_ref(shared.ring.head).store(0, std::memory_order_relaxed);
    std::atomic_ref(shared.owner_start_time).store(0, std::memory_order_relaxed);
    lane.ring = consumer_view(lane.shared);
    lane.quarantined = false;
    // release: pairs with the acquire compare-and-swap in MpscProducer::open().
    std::atomic_ref(shared.owner).store(owner_word(0, ipc::LaneState::free), std::memory_order_release);
}

std::size_t MpscRing::reap() noexcept
{
    std::size_t freed = 0;
    for (Lane& lane : lanes_) {
        std::atomic_ref owner(lane.shared->owner);
        // acquire: pairs with the release compare-and-swap in MpscProducer::leave().
        std::uint64_t seen = owner.load(std::memory_order_acquire);
        if (state_of(seen) == ipc::LaneState::owned) {
            const auto start = std::atomic_ref(lane.shared->owner_start_time).load(std::memory_order_relaxed);
            if (process_alive(pid_of(seen), start))
                continue;
            if (!owner.compare_exchange_strong(seen, owner_word(pid_of(seen), ipc::LaneState::draining),
                    std::memory_order_acquire, std::memory_order_acquire))
                continue; // it changed meanwhile; look again next time
            std::atomic_ref(control_->dead_producers).fetch_add(1, std::memory_order_relaxed); // relaxed: a statistic
            logger().warn("MPSC ring: the producer of lane {} (pid {}) died", &lane - lanes_.data(), pid_of(seen));
            seen = owner_word(pid_of(seen), ipc::LaneState::draining);
        }
        if (state_of(seen) == ipc::LaneState::owned || state_of(seen) == ipc::LaneState::free)
            continue;
        // Draining (or a state a peer scribbled): free it once everything
        // committed was delivered; a quarantined lane has nothing to deliver.
        if (!lane.quarantined && lane.ring.readable_now())
            continue;
        reset(lane);
        ++freed;
    }
    return freed;
}

MpscStats MpscRing::stats() const noexcept
{
    MpscStats stats;
    if (control_ == nullptr)
        return stats;
    for (const Lane& lane : lanes_)
        stats.producers += state_of(std::atomic_ref(lane.shared->owner).load(std::memory_order_relaxed))
            == ipc::LaneState::owned;
    stats.abandoned_claims = std::atomic_ref(control_->abandoned_claims).load(std::memory_order_relaxed);
    stats.dead_producers = std::atomic_ref(control_->dead_producers).load(std::memory_order_relaxed);
    stats.corrupt_lanes = std::atomic_ref(control_->corrupt_lanes).load(std::memory_order_relaxed);
    return stats;
}

} // namespace shmlink
