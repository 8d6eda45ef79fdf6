// Test support: the samples a topic test publishes. Their sizes mix 0 bytes
// to 4 MiB by sequence number, and their bytes follow a pattern of that
// sequence number: written sparsely (the ends and one byte a page), so that
// a 4 MiB sample costs a few thousand stores, and checked the same way, in
// place, by every subscriber.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace shmlink::test {

/// 4 MiB every 997th, 64 KiB and some every 101st, none every 13th, else up to 1 KiB.
inline std::size_t sample_size(std::uint64_t sequence)
{
    if (sequence % 997 == 0)
        return std::size_t {4} << 20;
    if (sequence % 101 == 0)
        return (std::size_t {64} << 10) + sequence % 4096;
    if (sequence % 13 == 0)
        return 0;
    return 1 + sequence % 1024;
}

inline std::byte pattern_byte(std::uint64_t sequence, std::size_t at)
{
    return static_cast<std::byte>((sequence * 131 + at * 7 + (at >> 12)) & 0xff);
}

/// Calls visit(at) for the bytes the pattern covers.
template <typename Visit>
bool for_pattern(std::size_t size, Visit&& visit)
{
    const std::size_t ends = size < 128 ? size : 64;
    for (std::size_t at = 0; at < ends; ++at)
        if (!visit(at) || !visit(size - 1 - at))
            return false;
    for (std::size_t at = 4096; at < size; at += 4096)
        if (!visit(at))
            return false;
    return true;
}

inline void fill_sample(std::span<std::byte> bytes, std::uint64_t sequence)
{
    for_pattern(bytes.size(), [&](std::size_t at) {
        bytes[at] = pattern_byte(sequence, at);
        return true;
    });
}

/// Whether `bytes` are sample `sequence`, size and pattern.
inline bool check_sample(std::span<const std::byte> bytes, std::uint64_t sequence)
{
    return bytes.size() == sample_size(sequence)
        && for_pattern(bytes.size(), [&](std::size_t at) { return bytes[at] == pattern_byte(sequence, at); });
}

} // namespace shmlink::test
