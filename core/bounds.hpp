// Bounds-checked access to a byte range: the one place where an (offset,
// length) pair from a caller or a peer becomes a span, overflow-safe.
#pragma once

#include <shmlink/core/error.hpp>

#include <cstddef>
#include <cstring>
#include <span>
#include <system_error>

namespace shmlink {

/// True when [offset, offset + length) lies within `size` bytes.
constexpr bool in_bounds(std::size_t size, std::size_t offset, std::size_t length) noexcept
{
    return offset <= size && length <= size - offset;
}

/// The sub-range, or an empty span when it does not lie within `area`.
template <typename Byte>
std::span<Byte> checked_subspan(std::span<Byte> area, std::size_t offset, std::size_t length) noexcept
{
    if (!in_bounds(area.size(), offset, length))
        return {};
    return area.subspan(offset, length);
}

/// Copies `out.size()` bytes from `area` at `offset`; Errc::out_of_range if they do not lie within it.
inline std::error_code copy_out(std::span<const std::byte> area, std::size_t offset, std::span<std::byte> out) noexcept
{
    if (!in_bounds(area.size(), offset, out.size()))
        return Errc::out_of_range;
    if (!out.empty())
        std::memcpy(out.data(), area.data() + offset, out.size());
    return {};
}

/// Copies `in` into `area` at `offset`; Errc::out_of_range if it does not fit.
inline std::error_code copy_in(std::span<std::byte> area, std::size_t offset, std::span<const std::byte> in) noexcept
{
    if (!in_bounds(area.size(), offset, in.size()))
        return Errc::out_of_range;
    if (!in.empty())
        std::memcpy(area.data() + offset, in.data(), in.size());
    return {};
}

} // namespace shmlink
