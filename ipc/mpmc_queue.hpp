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
// claimed: consumers see the queue empty at that point until the queue is
// recreated (recovery of such claims is planned with the fault-injection work).
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
        // relaxed: the cell's sequence number, loaded with acquire, orders what follows.
        std::uint64_t pos = enqueue.load(std::memory_order_relaxed);
        for (;;) {
            std::byte* cell = cell_at(pos);
            // acquire: pairs with the consumer's release store of pos + capacity in try_pop().
            const std::uint64_t seq = std::atomic_ref(sequence(cell)).load(std::memory_order_acquire);
            const auto ahead = static_cast<std::int64_t>(seq - pos);
            if (ahead == 0) {
                if (enqueue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    std::memcpy(cell + sizeof(std::uint64_t), &item, sizeof(T));
                    // release: pairs with the acquire load of the sequence in try_pop(); the item is written before.
                    std::atomic_ref(sequence(cell)).store(pos + 1, std::memory_order_release);
                    notify(layout_.control->readable);
                    return RingStatus::ok;
                }
                continue; // pos now holds the newer enqueue_pos
            }
            // Behind by a lap: the item there (committed, or claimed) is not consumed yet.
            if (ahead == 1 - static_cast<std::int64_t>(layout_.capacity) || ahead == -static_cast<std::int64_t>(layout_.capacity))
                return RingStatus::full;
            // Ahead: another producer took pos; a correct queue has moved enqueue_pos on.
            const std::uint64_t newer = enqueue.load(std::memory_order_relaxed);
            if (ahead < 0 || newer == pos)
                return RingStatus::corrupt;
            pos = newer;
        }
    }

    /// ok (with `item` written), empty, or corrupt.
    RingStatus try_pop(T& item) noexcept
    {
        std::atomic_ref dequeue(layout_.control->dequeue_pos);
        // relaxed: as in try_push().
        std::uint64_t pos = dequeue.load(std::memory_order_relaxed);
        for (;;) {
            std::byte* cell = cell_at(pos);
            // acquire: pairs with the producer's release store of pos + 1 in try_push().
            const std::uint64_t seq = std::atomic_ref(sequence(cell)).load(std::memory_order_acquire);
            const auto ahead = static_cast<std::int64_t>(seq - (pos + 1));
            if (ahead == 0) {
                if (dequeue.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    std::memcpy(&item, cell + sizeof(std::uint64_t), sizeof(T));
                    // release: pairs with the acquire load in try_push(); we are done reading the cell.
                    std::atomic_ref(sequence(cell)).store(pos + layout_.capacity, std::memory_order_release);
                    notify(layout_.control->writable);
                    return RingStatus::ok;
                }
                continue;
            }
            // Not written yet (or claimed and not committed); or a consumer a
            // lap behind still copies the cell's last item out.
            if (ahead == -1 || ahead == -static_cast<std::int64_t>(layout_.capacity))
                return RingStatus::empty;
            const std::uint64_t newer = dequeue.load(std::memory_order_relaxed);
            if (ahead < 0 || newer == pos)
                return RingStatus::corrupt;
            pos = newer;
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

    // Whether the next try_* could succeed: each re-reads the shared state, for wait_until().
    bool has_item() const noexcept
    {
        const auto pos = std::atomic_ref(layout_.control->dequeue_pos).load(std::memory_order_relaxed);
        return std::atomic_ref(sequence(cell_at(pos))).load(std::memory_order_acquire) == pos + 1;
    }
    bool has_room() const noexcept
    {
        const auto pos = std::atomic_ref(layout_.control->enqueue_pos).load(std::memory_order_relaxed);
        return std::atomic_ref(sequence(cell_at(pos))).load(std::memory_order_acquire) == pos;
    }

    detail::MpmcLayout layout_;
};

} // namespace shmlink
