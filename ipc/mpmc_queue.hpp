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
// Contract: any number of threads and processes on either side. T is copied
// with memcpy; if peers are not trusted, T should accept any bit pattern.
// A producer killed between its claim and its store leaves that cell
// claimed, and a consumer killed between its claim and its store leaves it
// full: the queue then stops at that cell (empty for consumers, full for
// producers, never a hang past a timeout) until it is recreated. Recovering
// such claims is left to the fault-injection work; MpscRing, whose lanes
// isolate a dead producer, is the structure for untrusted producers.
#pragma once

#include "core/segment.hpp"
#include "ipc/detail/object.hpp"
#include "ipc/layout.hpp"
#include "ipc/spsc_ring.hpp"
#include "ipc/wait.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace shmlink {
namespace detail {

/// The untyped half of MpmcQueue: creation and checked opening by item size.
struct MpmcLayout {
    ipc::MpmcQueueControl* control = nullptr;
    std::byte* cells = nullptr;
    std::uint64_t capacity = 0;
    std::uint32_t cell_bytes = 0;
};

MpmcLayout create_mpmc(Segment& segment, std::string_view name, std::size_t capacity, std::size_t item_bytes,
    std::error_code& ec) noexcept;
MpmcLayout open_mpmc(Segment& segment, std::string_view name, std::size_t item_bytes, std::error_code& ec) noexcept;

} // namespace detail

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
            [&](std::error_code& ec) { return create(segment, name, capacity, ec); });
    }
    static MpmcQueue create(Segment& segment, std::string_view name, std::size_t capacity,
        std::error_code& ec) noexcept
    {
        return MpmcQueue(detail::create_mpmc(segment, name, capacity, sizeof(T), ec));
    }
    /// Either side: the queue `name`, whose items must be sizeof(T) bytes
    /// (Errc::item_size_mismatch otherwise).
    static MpmcQueue open(Segment& segment, std::string_view name)
    {
        return detail::or_throw("open MPMC queue", name, [&](std::error_code& ec) { return open(segment, name, ec); });
    }
    static MpmcQueue open(Segment& segment, std::string_view name, std::error_code& ec) noexcept
    {
        return MpmcQueue(detail::open_mpmc(segment, name, sizeof(T), ec));
    }

    [[nodiscard]] bool valid() const noexcept { return layout_.control != nullptr; }
    [[nodiscard]] std::size_t capacity() const noexcept { return layout_.capacity; }

    /// ok, full, or corrupt.
    RingStatus try_push(const T& item) noexcept
    {
        std::atomic_ref enqueue(layout_.control->enqueue_pos);
        // acquire: pairs with the acq_rel claims of other producers, so the
        // sequence read next is at least as new as the position.
        std::uint64_t pos = enqueue.load(std::memory_order_acquire);
        for (;;) {
            if (const Cell cell = find(Side::producer, pos); cell != Cell::claimable)
                return cell == Cell::busy ? RingStatus::full : RingStatus::corrupt;
            // acq_rel: see above; a failure reloads pos (acquire) and looks again.
            if (enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                std::byte* cell = cell_at(pos);
                std::memcpy(cell + sizeof(std::uint64_t), &item, sizeof(T));
                // release: pairs with the acquire load of the sequence in find(); the item is written before.
                std::atomic_ref(sequence(cell)).store(pos + 1, std::memory_order_release);
                notify(layout_.control->readable);
                return RingStatus::ok;
            }
        }
    }

    /// ok (with `item` written), empty, or corrupt.
    RingStatus try_pop(T& item) noexcept
    {
        std::atomic_ref dequeue(layout_.control->dequeue_pos);
        // acquire: as in try_push().
        std::uint64_t pos = dequeue.load(std::memory_order_acquire);
        for (;;) {
            if (const Cell cell = find(Side::consumer, pos); cell != Cell::claimable)
                return cell == Cell::busy ? RingStatus::empty : RingStatus::corrupt;
            if (dequeue.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                std::byte* cell = cell_at(pos);
                std::memcpy(&item, cell + sizeof(std::uint64_t), sizeof(T));
                // release: pairs with the acquire load in find(); we are done reading the cell.
                std::atomic_ref(sequence(cell)).store(pos + layout_.capacity, std::memory_order_release);
                notify(layout_.control->writable);
                return RingStatus::ok;
            }
        }
    }
    std::optional<T> try_pop() noexcept
    {
        T item;
        return try_pop(item) == RingStatus::ok ? std::optional<T>(item) : std::nullopt;
    }

    /// try_push, waiting for room up to `timeout`.
    RingStatus push(const T& item, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        return detail::retry(RingStatus::full, timeout, [&] { return try_push(item); }, [&](auto deadline) {
            return wait_until(layout_.control->writable, [&] { return has_room(); }, options, deadline);
        });
    }
    /// try_pop, waiting for an item up to `timeout`.
    RingStatus pop(T& item, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        return detail::retry(RingStatus::empty, timeout, [&] { return try_pop(item); }, [&](auto deadline) {
            return wait_until(layout_.control->readable, [&] { return has_item(); }, options, deadline);
        });
    }

    /// Items claimed by producers and not yet by consumers (approximate while they run).
    [[nodiscard]] std::size_t size() const noexcept
    {
        const auto out = std::atomic_ref(layout_.control->dequeue_pos).load(std::memory_order_relaxed);
        const auto in = std::atomic_ref(layout_.control->enqueue_pos).load(std::memory_order_relaxed);
        return in > out && in - out <= layout_.capacity ? static_cast<std::size_t>(in - out) : 0;
    }

private:
    explicit MpmcQueue(detail::MpmcLayout layout) noexcept : layout_(layout) {}

    std::byte* cell_at(std::uint64_t pos) const noexcept
    {
        return layout_.cells + (pos & (layout_.capacity - 1)) * layout_.cell_bytes;
    }
    static std::uint64_t& sequence(std::byte* cell) noexcept { return *reinterpret_cast<std::uint64_t*>(cell); }

    enum class Side { producer, consumer };
    enum class Cell {
        claimable, ///< the cell at pos is this side's to claim
        busy,      ///< full (producer) or empty (consumer) at pos
        corrupt,   ///< a sequence number no correct queue can hold
    };

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
            // acquire: pairs with the release stores of the sequence in try_push() and try_pop().
            const std::uint64_t seq = std::atomic_ref(sequence(cell_at(pos))).load(std::memory_order_acquire);
            const auto ahead = static_cast<std::int64_t>(seq - expected);
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
};

} // namespace shmlink
