// MpmcQueue<T>: a bounded, lock-free queue of fixed-size trivially-copyable
// items in a segment, for any number of producer and consumer processes.
//
// Each cell holds a 64-bit sequence number and an item (Vyukov's bounded
// queue): a producer claims position p by compare-and-swap on enqueue_pos
// when cell p % capacity says p, writes the item, then stores p + 1; a
// consumer claims p when the cell says p + 1, copies the item out, then
// stores p + capacity for the next lap. Every sequence number a peer wrote
// is checked: a value no correct queue can hold answers RingStatus::corrupt,
// and the index is always masked, so nothing outside the queue is touched.
//
// Contract: any number of threads and processes on either side, each with
// a handle (MpmcQueue object) of its own: open() one per thread, never share
// one between threads. A handle's slot names the one claim it holds, and
// recovery takes a claim no slot names for a dead handle's; two threads on
// one handle would have their claims taken from under them. T is copied
// with memcpy; if peers are not trusted, T should accept any bit pattern.
//
// A handle that dies holding a claim: each handle owns a participant slot
// whose liveness is a file lock (ipc/detail/liveness.hpp) and writes the
// claim it attempts there before it makes it. A producer killed between its
// claim and its store would stop the queue at that cell (empty to every
// consumer), a consumer killed likewise would leave it full to producers.
// recover() finds such a cell at the head of either side, sees that no live
// handle holds its claim, and releases it: a dead producer's cell is
// skipped by consumers (its item was never written), a dead consumer's cell
// is freed (its item went with it). push() and pop() run recover() every
// kRecoverInterval while they wait; callers of try_push/try_pop alone call
// it themselves when the queue stays empty or full. Each release counts in
// abandoned_claims(). A queue holds at most kMpmcSlots (64) handles.
#pragma once

#include <sys/types.h>

#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/detail/fault_point.hpp>
#include <shmlink/ipc/detail/object.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/wait.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace shmlink {
namespace detail {

/// The untyped half of MpmcQueue: creation and checked opening by item
/// size, the handle's participant slot, and recovery.
struct MpmcLayout {
    ipc::MpmcQueueControl* control = nullptr;
    ipc::MpmcSlot* slots = nullptr; ///< kMpmcSlots of them
    std::byte* cells = nullptr;
    std::uint64_t capacity = 0;
    std::uint32_t cell_bytes = 0;
    std::uint64_t object_offset = 0; ///< slot i's lock is on this byte + i of the file
};

/// A handle's slot: its lock (a file description of its own) and index.
struct MpmcParticipant {
    UniqueFd lock {};
    std::uint32_t slot = 0;
    pid_t pid = 0; ///< the process that joined (a forked child's copy leaves the slot alone)
    std::chrono::steady_clock::time_point next_recovery {}; ///< push()/pop() recover when this has passed
};

MpmcLayout create_mpmc(Segment& segment, std::string_view name, std::size_t capacity, std::size_t item_bytes,
    std::error_code& ec) noexcept;
MpmcLayout open_mpmc(Segment& segment, std::string_view name, std::size_t item_bytes, std::error_code& ec) noexcept;
/// Takes a free slot (one whose lock nobody holds); Errc::no_free_lane when all 64 are taken.
MpmcParticipant join_mpmc(const Segment& segment, const MpmcLayout& layout, std::error_code& ec) noexcept;
void leave_mpmc(const MpmcLayout& layout, MpmcParticipant& participant) noexcept;
/// MpmcQueue::recover(): claims at the head of either side whose holder is dead, released.
std::size_t recover_mpmc(const MpmcLayout& layout, const MpmcParticipant& participant) noexcept;

} // namespace detail

/// How often push() and pop() look for dead claimers while they wait.
inline constexpr std::chrono::milliseconds kRecoverInterval {100};

template <typename T>
class MpmcQueue {
    static_assert(std::is_trivially_copyable_v<T>, "items are copied into shared memory byte for byte");
    static_assert(alignof(T) <= 8, "cells are 8-byte aligned");
    static_assert(sizeof(T) <= 4096, "items are at most 4096 bytes");

public:
    MpmcQueue() noexcept = default;

    /// Creator: a queue of `capacity` items (a power of two, 2 .. 2^24).
    static MpmcQueue create(Segment& segment, std::string_view name, std::size_t capacity)
    {
        return detail::or_throw("create MPMC queue", name,
            [&](std::error_code& ec) { return create(segment, name, capacity, ec); },
            [&] { return "capacity must be a power of two from 2 to 2^24 items, not " + std::to_string(capacity); });
    }
    static MpmcQueue create(Segment& segment, std::string_view name, std::size_t capacity,
        std::error_code& ec) noexcept
    {
        return joined(segment, detail::create_mpmc(segment, name, capacity, sizeof(T), ec), ec);
    }
    /// Either side: the queue `name`, whose items must be sizeof(T) bytes
    /// (Errc::item_size_mismatch otherwise).
    static MpmcQueue open(Segment& segment, std::string_view name)
    {
        return detail::or_throw("open MPMC queue", name, [&](std::error_code& ec) { return open(segment, name, ec); });
    }
    static MpmcQueue open(Segment& segment, std::string_view name, std::error_code& ec) noexcept
    {
        return joined(segment, detail::open_mpmc(segment, name, sizeof(T), ec), ec);
    }

    MpmcQueue(MpmcQueue&& other) noexcept
        : layout_(std::exchange(other.layout_, {})), participant_(std::move(other.participant_))
    {
    }
    MpmcQueue& operator=(MpmcQueue&& other) noexcept
    {
        if (this != &other) {
            detail::leave_mpmc(layout_, participant_);
            layout_ = std::exchange(other.layout_, {});
            participant_ = std::move(other.participant_);
        }
        return *this;
    }
    ~MpmcQueue() { detail::leave_mpmc(layout_, participant_); }

    [[nodiscard]] bool valid() const noexcept { return layout_.control != nullptr; }
    [[nodiscard]] std::size_t capacity() const noexcept { return layout_.capacity; }

    /// ok, full, or corrupt.
    RingStatus try_push(const T& item) noexcept
    {
        if (!valid())
            return RingStatus::corrupt;
        std::atomic_ref enqueue(layout_.control->enqueue_pos);
        // acquire: pairs with the acq_rel claims of other producers, so the
        // sequence read next is at least as new as the position.
        std::uint64_t pos = enqueue.load(std::memory_order_acquire);
        bool intended = false;
        for (;;) {
            if (const Cell cell = find(Side::producer, pos); cell != Cell::claimable) {
                if (intended)
                    intend_nothing(); // a lost race must not look like a held claim
                return cell == Cell::busy ? RingStatus::full : RingStatus::corrupt;
            }
            intend(pos, Side::producer);
            intended = true;
            // acq_rel: see above, and release of the intent stored just before
            // (recover() reads it after seeing the position move); a failure
            // reloads pos (acquire) and looks again.
            if (enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                std::byte* cell = cell_at(pos);
                SHMLINK_FAULT_POINT("mpmc push claimed");
                std::memcpy(cell + sizeof(std::uint64_t), &item, sizeof(T));
                SHMLINK_FAULT_POINT("mpmc push written");
                // release: pairs with the acquire load of the sequence in find(); the item is written before.
                std::atomic_ref(sequence(cell)).store(pos + 1, std::memory_order_release);
                intend_nothing();
                notify(layout_.control->readable);
                return RingStatus::ok;
            }
        }
    }

    /// ok (with `item` written), empty, or corrupt.
    RingStatus try_pop(T& item) noexcept
    {
        if (!valid())
            return RingStatus::corrupt;
        std::atomic_ref dequeue(layout_.control->dequeue_pos);
        // acquire: as in try_push().
        std::uint64_t pos = dequeue.load(std::memory_order_acquire);
        bool intended = false;
        for (;;) {
            const Cell cell = find(Side::consumer, pos);
            if (cell != Cell::claimable && cell != Cell::skipped) {
                if (intended)
                    intend_nothing(); // a lost race must not look like a held claim
                return cell == Cell::busy ? RingStatus::empty : RingStatus::corrupt;
            }
            intend(pos, Side::consumer);
            intended = true;
            if (dequeue.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                std::byte* at = cell_at(pos);
                SHMLINK_FAULT_POINT("mpmc pop claimed");
                if (cell == Cell::claimable)
                    std::memcpy(&item, at + sizeof(std::uint64_t), sizeof(T));
                // release: pairs with the acquire load in find(); we are done reading the cell.
                std::atomic_ref(sequence(at)).store(pos + layout_.capacity, std::memory_order_release);
                intend_nothing();
                intended = false;
                notify(layout_.control->writable);
                if (cell == Cell::claimable)
                    return RingStatus::ok;
                ++pos; // a dead producer's cell, now freed: on to the next
            }
        }
    }
    std::optional<T> try_pop() noexcept
    {
        T item;
        return try_pop(item) == RingStatus::ok ? std::optional<T>(item) : std::nullopt;
    }

    /// try_push, waiting for room up to `timeout` (and recovering the claims
    /// of dead consumers every kRecoverInterval meanwhile).
    RingStatus push(const T& item, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        if (!valid())
            return RingStatus::corrupt;
        return detail::retry(RingStatus::full, timeout, [&] { return try_push(item); }, [&](auto deadline) {
            return wait_recovering(layout_.control->writable, [&] { return has_room(); }, options, deadline);
        });
    }
    /// try_pop, waiting for an item up to `timeout` (and recovering the claims
    /// of dead producers every kRecoverInterval meanwhile).
    RingStatus pop(T& item, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        if (!valid())
            return RingStatus::corrupt;
        return detail::retry(RingStatus::empty, timeout, [&] { return try_pop(item); }, [&](auto deadline) {
            return wait_recovering(layout_.control->readable, [&] { return has_item(); }, options, deadline);
        });
    }

    /// Releases the claim at the head of either side when its holder is dead
    /// (see the top of this file), and frees dead handles' slots. Answers the
    /// claims released. A few syscalls (one lock test per live handle): for
    /// a slow path, not every call.
    std::size_t recover() noexcept { return valid() ? detail::recover_mpmc(layout_, participant_) : 0; }
    /// Claims released by recover() in any process, since the queue was created.
    [[nodiscard]] std::uint64_t abandoned_claims() const noexcept
    {
        if (!valid())
            return 0;
        return std::atomic_ref(layout_.control->abandoned_claims).load(std::memory_order_relaxed);
    }

    /// Items claimed by producers and not yet by consumers (approximate while they run).
    [[nodiscard]] std::size_t size() const noexcept
    {
        if (!valid())
            return 0;
        const auto out = std::atomic_ref(layout_.control->dequeue_pos).load(std::memory_order_relaxed);
        const auto in = std::atomic_ref(layout_.control->enqueue_pos).load(std::memory_order_relaxed);
        return in > out && in - out <= layout_.capacity ? static_cast<std::size_t>(in - out) : 0;
    }

private:
    MpmcQueue(detail::MpmcLayout layout, detail::MpmcParticipant participant) noexcept
        : layout_(layout), participant_(std::move(participant))
    {
    }

    static MpmcQueue joined(Segment& segment, detail::MpmcLayout layout, std::error_code& ec) noexcept
    {
        if (layout.control == nullptr)
            return {};
        detail::MpmcParticipant participant = detail::join_mpmc(segment, layout, ec);
        if (ec)
            return {};
        return MpmcQueue(layout, std::move(participant));
    }

    /// wait_until(), with recover() whenever kRecoverInterval has passed
    /// since the last one: across calls, so that many short waits recover too.
    template <typename Ready>
    bool wait_recovering(ipc::WaitWord& word, Ready&& ready, const WaitOptions& options,
        std::chrono::steady_clock::time_point deadline) noexcept
    {
        for (;;) {
            if (wait_until(word, ready, options, std::min(deadline, participant_.next_recovery)))
                return true;
            const auto now = std::chrono::steady_clock::now();
            if (now >= participant_.next_recovery) {
                participant_.next_recovery = now + kRecoverInterval;
                if (recover() > 0)
                    return true;
            }
            if (now >= deadline)
                return false;
        }
    }

    std::byte* cell_at(std::uint64_t pos) const noexcept
    {
        return layout_.cells + (pos & (layout_.capacity - 1)) * layout_.cell_bytes;
    }
    static std::uint64_t& sequence(std::byte* cell) noexcept { return *reinterpret_cast<std::uint64_t*>(cell); }

    enum class Side { producer, consumer };
    enum class Cell {
        claimable, ///< the cell at pos is this side's to claim
        skipped,   ///< consumer: a dead producer's claim, released by recover(): claim it to free it
        busy,      ///< full (producer) or empty (consumer) at pos
        corrupt,   ///< a sequence number no correct queue can hold
    };

    /// The claim this handle is about to try, in its slot, before the
    /// compare-and-swap whose release publishes it.
    void intend(std::uint64_t pos, Side side) noexcept
    {
        // release: orders the last claim's sequence store before this intent, for a
        // recoverer that reads this intent (a plain mov on x86 and a stlr on ARM).
        std::atomic_ref(layout_.slots[participant_.slot].intent)
            .store(((pos + 1) << 1) | (side == Side::consumer ? 1 : 0), std::memory_order_release);
    }
    void intend_nothing() noexcept
    {
        // release: after the cell's sequence, which settles the claim anyway.
        std::atomic_ref(layout_.slots[participant_.slot].intent).store(0, std::memory_order_release);
    }

    /// Classifies the cell at `pos` for `side`, moving `pos` on when another
    /// claimer has taken it. A cell free for position p holds p; a committed
    /// item at p holds p + 1. A producer at p finds a lap-old item (p + 1 -
    /// capacity) or a lap-old claim (p - capacity) busy; a consumer at p
    /// finds p (not written, or claimed) or p + 1 - capacity (a consumer a
    /// lap behind still copying) busy. Ahead of that, the position must have
    /// moved on; anything else is corrupt.
    Cell find(Side side, std::uint64_t& pos) const noexcept
    {
        std::atomic_ref position(side == Side::producer ? layout_.control->enqueue_pos : layout_.control->dequeue_pos);
        const auto capacity = static_cast<std::int64_t>(layout_.capacity);
        for (;;) {
            const std::uint64_t expected = side == Side::producer ? pos : pos + 1;
            // acquire: pairs with the release stores of the sequence in try_push(), try_pop() and recovery.
            const std::uint64_t stored = std::atomic_ref(sequence(cell_at(pos))).load(std::memory_order_acquire);
            const bool skipped = (stored & ipc::kMpmcSkipped) != 0;
            const std::uint64_t seq = stored & ~ipc::kMpmcSkipped;
            const auto ahead = static_cast<std::int64_t>(seq - expected);
            if (ahead == 0 && skipped)
                return side == Side::consumer ? Cell::skipped : Cell::corrupt;
            if (ahead == 0)
                return Cell::claimable;
            if (side == Side::producer ? (ahead == 1 - capacity || ahead == -capacity)
                                       : (ahead == -1 || ahead == -capacity))
                return Cell::busy;
            const std::uint64_t newer = position.load(std::memory_order_acquire); // acquire: as in try_push()
            if (ahead < 0 || newer == pos)
                return Cell::corrupt;
            pos = newer;
        }
    }

    // Whether the next try_* could succeed or has something to report: for
    // wait_until(), which needs a condition that re-reads the shared state.
    bool has_item() const noexcept
    {
        // acquire: as in try_push().
        std::uint64_t pos = std::atomic_ref(layout_.control->dequeue_pos).load(std::memory_order_acquire);
        return find(Side::consumer, pos) != Cell::busy;
    }
    bool has_room() const noexcept
    {
        std::uint64_t pos = std::atomic_ref(layout_.control->enqueue_pos).load(std::memory_order_acquire);
        return find(Side::producer, pos) != Cell::busy;
    }

    detail::MpmcLayout layout_;
    detail::MpmcParticipant participant_;
};

} // namespace shmlink
