// The floor for shmlink::MpmcQueue: Dmitry Vyukov's bounded MPMC queue and
// nothing else. Cells of {sequence, item}, a compare-and-swap to claim a
// position, no validation of what a peer wrote, no recovery of a dead
// claimer's cell, no waiting and no wake-ups. Plain data, so that it works
// in a MAP_SHARED mapping made before fork() (bench/process.hpp's Shared).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace shmlink::bench {

/// Any number of producers and consumers, in any processes that map it.
/// A cell free for position p holds p; the item of position p is in when
/// it holds p + 1; a consumer frees it for the next lap with p + Capacity.
template <typename T, std::size_t Capacity>
class VyukovQueue {
    static_assert(std::is_trivially_copyable_v<T>);
    static_assert(Capacity >= 2 && (Capacity & (Capacity - 1)) == 0, "positions are masked");

public:
    VyukovQueue() noexcept
    {
        for (std::size_t i = 0; i < Capacity; ++i)
            cells_[i].sequence.store(i, std::memory_order_relaxed); // published by fork()
    }

    /// False when full.
    bool try_push(const T& item) noexcept
    {
        std::uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
        for (;;) {
            Cell& cell = cells_[pos & kMask];
            // acquire: pairs with the release store in try_pop(); the consumer of the lap before is done.
            const std::uint64_t sequence = cell.sequence.load(std::memory_order_acquire);
            const auto ahead = static_cast<std::int64_t>(sequence - pos);
            if (ahead == 0) {
                // relaxed: the claim orders nothing; the cell's sequence does.
                if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    cell.item = item;
                    // release: pairs with the acquire load in try_pop(); the item is written before.
                    cell.sequence.store(pos + 1, std::memory_order_release);
                    return true;
                }
            } else if (ahead < 0) {
                return false;
            } else {
                pos = enqueue_pos_.load(std::memory_order_relaxed); // another producer took it
            }
        }
    }

    /// False when empty.
    bool try_pop(T& item) noexcept
    {
        std::uint64_t pos = dequeue_pos_.load(std::memory_order_relaxed);
        for (;;) {
            Cell& cell = cells_[pos & kMask];
            // acquire: pairs with the release store in try_push(); the item is written.
            const std::uint64_t sequence = cell.sequence.load(std::memory_order_acquire);
            const auto ahead = static_cast<std::int64_t>(sequence - (pos + 1));
            if (ahead == 0) {
                if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) { // relaxed: as above
                    item = cell.item;
                    // release: pairs with the acquire load in try_push(); we are done reading the item.
                    cell.sequence.store(pos + Capacity, std::memory_order_release);
                    return true;
                }
            } else if (ahead < 0) {
                return false;
            } else {
                pos = dequeue_pos_.load(std::memory_order_relaxed); // another consumer took it
            }
        }
    }

private:
    static constexpr std::uint64_t kMask = Capacity - 1;

    struct Cell {
        std::atomic<std::uint64_t> sequence;
        T item;
    };
    static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

    // 128-byte spacing: adjacent-line prefetch pulls lines in pairs, so
    // producers' and consumers' claims must not share a pair.
    alignas(128) std::atomic<std::uint64_t> enqueue_pos_ {0};
    alignas(128) std::atomic<std::uint64_t> dequeue_pos_ {0};
    alignas(128) Cell cells_[Capacity];
};

} // namespace shmlink::bench
