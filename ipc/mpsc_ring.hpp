// MpscRing: many producers (guests) to one consumer (the host), variable-
// length byte messages, in a segment.
//
// Each producer takes a lane of its own when it opens the ring: an SPSC ring
// (ipc/spsc_ring.hpp) with an owner word. Producers therefore never contend
// with each other (no compare-and-swap on the hot path), per-producer order
// is the lane's order, and a producer that is killed between reserve() and
// commit() blocks nobody: its claim was never published, so the consumer
// simply does not see it.
//
// A producer holds an open-file-description lock on one byte of the segment
// file for its lane while it owns the lane. The kernel drops that lock when
// the last fd of the description closes, so when the producer's process
// dies (however it dies: SIGKILL included), the lock is gone. The consumer's
// reap() tests the locks of owned lanes: a lane whose lock is gone belongs
// to a dead producer. It delivers what the lane had committed, counts the
// abandoned claim, and frees the lane for a new producer. Unlike a pid, the
// lock means the same in every pid namespace, survives pid reuse, and
// follows the file description across fork().
//
// The consumer reaps while it waits (every reap_interval) and, while busy,
// every reap_interval as well (it looks at the clock once per 1024 calls).
//
// Contract: one consumer (MpscRing) at a time; each MpscProducer from one
// thread at a time. A lane the consumer finds corrupt is quarantined (the
// others go on) and freed once its producer is gone. /proc must be mounted:
// each side opens its own file description of the segment through it.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/wait.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <atomic>
#include <bit>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace shmlink {

struct MpscStats {
    std::uint32_t producers = 0;        ///< lanes owned by a live (or not yet reaped) producer
    std::uint32_t draining = 0;         ///< lanes whose producer left or died, not yet drained and freed
    std::uint64_t abandoned_claims = 0; ///< reservations whose producer died before commit
    std::uint64_t dead_producers = 0;   ///< producers the consumer found dead
    std::uint64_t corrupt_lanes = 0;    ///< lanes quarantined because their records were broken
};

/// A producer's end: the SPSC producer API on a lane of its own.
class MpscProducer : private SpscRing {
public:
    MpscProducer() noexcept = default;
    MpscProducer(MpscProducer&& other) noexcept;
    MpscProducer& operator=(MpscProducer&& other) noexcept;
    ~MpscProducer(); ///< gives the lane back: the consumer drains and frees it

    /// Takes a free lane of the MPSC ring `name`.
    /// Errors: those of SpscRing::open, Errc::no_free_lane, and errno when
    /// the segment cannot be reopened through /proc for the lane's lock.
    static MpscProducer open(Segment& segment, std::string_view name);
    static MpscProducer open(Segment& segment, std::string_view name, std::error_code& ec) noexcept;
    /// Takes lane `lane`, which the consumer holds for this producer under
    /// `token` (MpscRing::hold_lane(), told to it by the consumer, as a
    /// host's welcome does). Errors: those of open(), and Errc::no_free_lane
    /// when the lane is not held under that token (any more).
    static MpscProducer open_held(Segment& segment, std::string_view name, std::uint32_t lane, std::uint32_t token,
        std::error_code& ec) noexcept;

    using SpscRing::capacity_bytes;
    using SpscRing::commit;
    using SpscRing::commit_deferred;
    using SpscRing::publish;
    using SpscRing::max_message_bytes;
    using SpscRing::push;
    using SpscRing::reserve;
    using SpscRing::set_wake_fd;
    using SpscRing::try_push;
    using SpscRing::try_push_batch;
    using SpscRing::valid;
    using SpscRing::wait_writable;
    /// Which lane this producer writes (0 .. lanes - 1).
    [[nodiscard]] std::uint32_t lane() const noexcept { return lane_index_; }

private:
    /// Takes lane `index` of an opened control block if its owner word is
    /// `expected`; `lock` (our own description) moves into the producer then.
    static MpscProducer take(Segment& segment, ipc::MpscRingControl* control, std::uint64_t lane_capacity,
        std::uint32_t index, std::uint64_t expected, UniqueFd& lock) noexcept;
    MpscProducer(SpscRing lane, ipc::MpscLane* shared, std::uint32_t index, UniqueFd lock) noexcept
        : SpscRing(std::move(lane)), shared_(shared), lane_index_(index), lock_(std::move(lock))
    {
    }
    void leave() noexcept;

    ipc::MpscLane* shared_ = nullptr;
    std::uint32_t lane_index_ = 0;
    UniqueFd lock_; // our own file description of the segment, holding the lane's lock
};

struct MpscOptions {
    /// How often the consumer checks for dead producers, waiting or busy:
    /// with a consumer that keeps calling in, the bound on how long a dead
    /// producer's lane stays taken.
    std::chrono::milliseconds reap_interval {100};
    /// Called (from reap(), on the consumer's thread) when a lane is freed,
    /// before a new producer can take it: a host empties what it had queued
    /// for that lane's producer here. Must not throw.
    std::function<void(std::uint32_t lane)> on_lane_freed {};
};

/// The consumer's end.
class MpscRing {
public:
    MpscRing() = default;
    /// Move-only; a moved-from ring is not valid() and answers corrupt.
    MpscRing(MpscRing&& other) noexcept { *this = std::move(other); }
    MpscRing& operator=(MpscRing&& other) noexcept;

    /// Creator: allocates a ring with `lanes` producer lanes (1..64) of
    /// `lane_capacity_bytes` each (see SpscRing::valid_capacity).
    static MpscRing create(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
        std::uint32_t lanes, const MpscOptions& options = {});
    /// Allocates the ring as create() does and returns no consumer: for a
    /// process that only sets up the segment; the consumer open()s it.
    static void create_only(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
        std::uint32_t lanes);
    static void create_only(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
        std::uint32_t lanes, std::error_code& ec) noexcept;
    static MpscRing create(Segment& segment, std::string_view name, std::size_t lane_capacity_bytes,
        std::uint32_t lanes, const MpscOptions& options, std::error_code& ec);
    /// The consumer in a process that did not create the ring. It clears
    /// the sleeper counts a consumer that died asleep may have left.
    static MpscRing open(Segment& segment, std::string_view name, const MpscOptions& options = {});
    static MpscRing open(Segment& segment, std::string_view name, const MpscOptions& options, std::error_code& ec);

    [[nodiscard]] bool valid() const noexcept { return control_ != nullptr; }
    [[nodiscard]] std::uint32_t lane_count() const noexcept { return static_cast<std::uint32_t>(lanes_.size()); }
    [[nodiscard]] std::size_t max_message_bytes() const noexcept
    {
        return lanes_.empty() ? 0 : lanes_.front().ring.max_message_bytes();
    }

    /// The oldest message of the next lane (round robin) that has one, left
    /// in the ring until release(). corrupt once for each lane that breaks.
    RingSpan<const std::byte> peek() noexcept;
    /// peek(), waiting for a message up to `timeout` (timed_out then).
    RingSpan<const std::byte> peek(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    void release() noexcept;
    RingStatus try_pop(std::span<std::byte> buffer, std::size_t& length) noexcept;
    RingStatus pop(std::span<std::byte> buffer, std::size_t& length, std::chrono::nanoseconds timeout,
        const WaitOptions& options = {}) noexcept;
    /// Calls `handle(std::span<const std::byte>)`, or `handle(lane, bytes)`
    /// to learn which producer's lane a message came from, for up to `max`
    /// messages, lane after lane, freeing each lane's share with one store.
    template <typename Handle>
    std::size_t consume(Handle&& handle, std::size_t max, RingStatus* status = nullptr) noexcept;
    /// Waits until some lane is readable (ok), or timed_out; reaps meanwhile.
    RingStatus wait_readable(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    /// Eventfd mode, as SpscRing::arm_readable(); every producer needs the fd.
    RingStatus arm_readable() noexcept;
    void disarm_readable() noexcept
    {
        if (armed_)
            register_sleeper(false);
        armed_ = false;
    }

    /// Finds producers that died or left, frees their lanes once drained,
    /// and counts their abandoned claims. Returns how many lanes it freed.
    /// Makes one syscall per owned lane; the ring calls it every
    /// reap_interval by itself, from its consumer calls.
    std::size_t reap() noexcept;
    /// From any thread: asks the consumer to reap at its next call (peek,
    /// try_pop, consume, pop, wait_readable, arm_readable), as when a
    /// producer's connection hung up. A consumer idle in eventfd mode reaps
    /// when it next calls in.
    void request_reap() noexcept
    {
        if (reap_requested_)
            reap_requested_->store(true, std::memory_order_relaxed); // relaxed: only a hint to look
    }
    [[nodiscard]] MpscStats stats() const noexcept;

    /// Lanes held for one producer each. hold_lane(), taken_held() and
    /// unhold_lane() are called from one thread at a time (any thread, not
    /// necessarily the consumer's): the thread that hands lanes out.
    ///
    /// Holds a free lane for one producer, which takes it with
    /// MpscProducer::open_held(lane, token); no other producer can take it
    /// meanwhile. The lane, or -1 when none is free now (a lane its producer
    /// left is free again once the consumer has drained it).
    [[nodiscard]] int hold_lane(std::uint32_t token) noexcept;
    /// Whether the producer took the lane held for it under `token`; once it
    /// has, the lane is its own, and is freed when it leaves, as any lane.
    [[nodiscard]] bool taken_held(std::uint32_t lane, std::uint32_t token) noexcept;
    /// Gives back a lane held under `token`: the consumer frees it at its
    /// next call (re-initialised, on_lane_freed). False when the producer
    /// took it meanwhile (then it is freed when that producer leaves).
    bool unhold_lane(std::uint32_t lane, std::uint32_t token) noexcept;

private:
    struct Lane {
        ipc::MpscLane* shared = nullptr;
        SpscRing ring; // the consumer's view
        bool quarantined = false;
    };
    RingStatus quarantine(Lane& lane) noexcept;
    void maybe_reap() noexcept
    {
        // A clock read per 1024 calls keeps reaping off the hot path.
        if (!valid())
            return;
        if (reap_requested_->load(std::memory_order_relaxed)
            || ((++calls_ & 1023) == 0 && std::chrono::steady_clock::now() >= next_reap_))
            reap();
    }
    bool any_readable() noexcept;
    /// Rescans the owner words when a producer took a lane since the last look.
    void refresh_lanes() noexcept;
    void rescan_lanes() noexcept;
    /// Calls `visit(index, lane)` for each lane with a producer (owned,
    /// draining or held) that is not quarantined, round robin from next_,
    /// until it returns false: a free lane costs nothing to skip.
    template <typename Visit>
    void for_each_lane(Visit&& visit) noexcept
    {
        refresh_lanes();
        const std::size_t start = next_;
        for (std::uint64_t rest = std::rotr(live_, static_cast<int>(start)); rest != 0; rest &= rest - 1) {
            const std::size_t index = (static_cast<std::size_t>(std::countr_zero(rest)) + start) & 63;
            Lane& lane = lanes_[index];
            if (!lane.quarantined && !visit(index, lane))
                return;
        }
    }
    void register_sleeper(bool sleeping) noexcept;
    void reset(Lane& lane) noexcept;
    SpscRing consumer_view(ipc::MpscLane* shared) const noexcept;
    bool wait(std::chrono::steady_clock::time_point deadline, const WaitOptions& options) noexcept;

    ipc::MpscRingControl* control_ = nullptr;
    std::vector<Lane> lanes_;
    std::uint64_t lane_capacity_ = 0;
    std::uint64_t object_offset_ = 0; // where the lanes' lock bytes are
    UniqueFd probe_;                  // our own file description, to test producers' locks
    std::uint64_t calls_ = 0;
    std::chrono::steady_clock::time_point next_reap_ {};
    std::unique_ptr<std::atomic<bool>> reap_requested_; // set by request_reap() from any thread
    // The owner word of each lane held for a producer that has not taken it
    // yet (hold_lane()), 0 for none; written by the holding thread only. A
    // held word without our mark is a peer's scribble, and is reaped as draining.
    std::unique_ptr<std::atomic<std::uint64_t>[]> held_;
    bool armed_ = false;
    std::size_t next_ = 0;         // where the round robin starts
    std::uint64_t live_ = 0;       // bit i: lane i has a producer (not free), as of the last scan
    std::uint32_t lanes_taken_seen_ = 0; // lanes_taken at the last scan
    std::size_t peeked_ = SIZE_MAX; // the lane peek() returned a message from
    MpscOptions options_;
};

template <typename Handle>
std::size_t MpscRing::consume(Handle&& handle, std::size_t max, RingStatus* status) noexcept
{
    maybe_reap();
    std::size_t handled = 0;
    RingStatus last = RingStatus::empty;
    const std::size_t count = lanes_.size();
    for_each_lane([&](std::size_t index, Lane& lane) {
        RingStatus lane_status = RingStatus::ok;
        if constexpr (std::is_invocable_v<Handle&, std::uint32_t, std::span<const std::byte>>) {
            const auto lane_index = static_cast<std::uint32_t>(index);
            handled += lane.ring.consume(
                [&](std::span<const std::byte> bytes) { handle(lane_index, bytes); }, max - handled, &lane_status);
        } else {
            handled += lane.ring.consume(handle, max - handled, &lane_status);
        }
        if (lane_status == RingStatus::corrupt)
            last = quarantine(lane);
        return handled < max;
    });
    next_ = next_ + 1 >= count ? 0 : next_ + 1;
    if (status != nullptr)
        *status = last == RingStatus::corrupt || handled != max ? last : RingStatus::ok;
    return handled;
}

} // namespace shmlink
