// Channel<T>: an SPSC ring that carries values of one trivially-copyable
// type, for the common case of a fixed message struct. Each value is one
// record of sizeof(T) bytes; a record of another size is reported as corrupt.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/detail/object.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace shmlink {

template <typename T>
class Channel {
    static_assert(std::is_trivially_copyable_v<T>, "values are copied into shared memory byte for byte");

public:
    Channel() noexcept = default;

    /// Creator: a channel with room for about `capacity_bytes / (sizeof(T) + 8)` values.
    /// Errc::invalid_argument when a T would not fit (sizeof(T) > capacity_bytes / 2 - 8).
    static Channel create(Segment& segment, std::string_view name, std::size_t capacity_bytes)
    {
        return detail::or_throw("create channel", name,
            [&](std::error_code& ec) { return create(segment, name, capacity_bytes, ec); },
            [&] {
                return capacity_bytes / 2 < sizeof(T) + sizeof(ipc::RecordHeader)
                    ? "an item of " + std::to_string(sizeof(T)) + " bytes does not fit a ring of "
                        + std::to_string(capacity_bytes) + " bytes (at most capacity_bytes / 2 - 8)"
                    : detail::capacity_rule("capacity_bytes", capacity_bytes);
            });
    }
    static Channel create(Segment& segment, std::string_view name, std::size_t capacity_bytes,
        std::error_code& ec) noexcept
    {
        if (capacity_bytes / 2 < sizeof(T) + sizeof(ipc::RecordHeader)) {
            ec = Errc::invalid_argument;
            return {};
        }
        return Channel(SpscRing::create(segment, name, capacity_bytes, ec));
    }
    static Channel open(Segment& segment, std::string_view name) { return Channel(SpscRing::open(segment, name)); }
    static Channel open(Segment& segment, std::string_view name, std::error_code& ec) noexcept
    {
        return Channel(SpscRing::open(segment, name, ec));
    }

    [[nodiscard]] bool valid() const noexcept { return ring_.valid(); }
    /// The ring underneath, for batches, zero-copy access or the eventfd mode.
    [[nodiscard]] SpscRing& ring() noexcept { return ring_; }

    RingStatus try_send(const T& value) noexcept { return ring_.try_push(bytes_of(value)); }
    RingStatus send(const T& value, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        return ring_.push(bytes_of(value), timeout, options);
    }
    /// ok with `value` written; empty or corrupt (also for a record of the wrong size).
    RingStatus try_receive(T& value) noexcept { return checked(ring_.try_pop(writable_bytes_of(value), length_)); }
    RingStatus receive(T& value, std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        return checked(ring_.pop(writable_bytes_of(value), length_, timeout, options));
    }
    std::optional<T> try_receive() noexcept
    {
        T value;
        return try_receive(value) == RingStatus::ok ? std::optional<T>(value) : std::nullopt;
    }

private:
    explicit Channel(SpscRing ring) noexcept : ring_(std::move(ring)) {}
    static std::span<const std::byte> bytes_of(const T& value) noexcept
    {
        return {reinterpret_cast<const std::byte*>(&value), sizeof(T)};
    }
    static std::span<std::byte> writable_bytes_of(T& value) noexcept
    {
        return {reinterpret_cast<std::byte*>(&value), sizeof(T)};
    }
    RingStatus checked(RingStatus status) const noexcept
    {
        // A longer record stays in the ring as too_large; either way the
        // producer did not send a T: the channel is broken, not the caller.
        if (status == RingStatus::too_large || (status == RingStatus::ok && length_ != sizeof(T)))
            return RingStatus::corrupt;
        return status;
    }

    SpscRing ring_;
    std::size_t length_ = 0;
};

} // namespace shmlink
