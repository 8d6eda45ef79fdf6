// Test support: the deterministic message stream of the ring tests. Message
// `seq` of stream `seed` has a length in [0, max_length] and content that
// both sides can regenerate; when long enough it carries its sequence number
// in its first 8 bytes and a checksum of the rest in its last 8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace shmlink::test {

/// Where a helper finds an eventfd its test passed down (Child::PassFd).
inline constexpr int kWakeFd = 3;
/// Where a topic helper finds a segment its test passed down, and a Unix
/// socket to hand its slot file back over (topic_peer apart ...).
inline constexpr int kSegmentFd = 3;
inline constexpr int kSocketFd = 4;

inline std::uint64_t mix(std::uint64_t x) noexcept
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// FNV-1a over 8-byte words (the tail zero-padded): fast enough for gigabytes.
inline std::uint64_t checksum(std::span<const std::byte> bytes) noexcept
{
    std::uint64_t h = 0xcbf29ce484222325ULL;
    std::size_t i = 0;
    for (; i + 8 <= bytes.size(); i += 8) {
        std::uint64_t word;
        std::memcpy(&word, bytes.data() + i, 8);
        h = (h ^ word) * 0x100000001b3ULL;
    }
    if (i < bytes.size()) {
        std::uint64_t word = 0;
        std::memcpy(&word, bytes.data() + i, bytes.size() - i);
        h = (h ^ word) * 0x100000001b3ULL;
    }
    return h;
}

inline std::size_t message_length(std::uint64_t seed, std::uint64_t seq, std::size_t max_length) noexcept
{
    return static_cast<std::size_t>(mix(seed ^ (seq * 0x2545f4914f6cdd1dULL)) % (max_length + 1));
}

/// Writes message `seq` into `out` (which holds message_length() bytes).
inline void make_message(std::uint64_t seed, std::uint64_t seq, std::span<std::byte> out) noexcept
{
    std::uint64_t word = mix(seed + seq);
    for (std::size_t i = 0; i < out.size(); i += 8, word += 0x9e3779b97f4a7c15ULL)
        std::memcpy(out.data() + i, &word, out.size() - i < 8 ? out.size() - i : 8);
    if (out.size() >= 8)
        std::memcpy(out.data(), &seq, 8);
    if (out.size() >= 16) {
        const std::uint64_t sum = checksum(out.first(out.size() - 8));
        std::memcpy(out.data() + out.size() - 8, &sum, 8);
    }
}

/// True when `got` is exactly message `seq`: length, sequence number, checksum and content.
inline bool check_message(std::uint64_t seed, std::uint64_t seq, std::size_t max_length, std::span<const std::byte> got,
    std::span<std::byte> scratch) noexcept
{
    if (got.size() != message_length(seed, seq, max_length))
        return false;
    if (got.size() >= 8 && std::memcmp(got.data(), &seq, 8) != 0)
        return false;
    if (got.size() >= 16) {
        const std::uint64_t sum = checksum(got.first(got.size() - 8));
        if (std::memcmp(got.data() + got.size() - 8, &sum, 8) != 0)
            return false;
    }
    make_message(seed, seq, scratch.first(got.size()));
    return std::memcmp(scratch.data(), got.data(), got.size()) == 0;
}

/// The hash an MPMC test item of producer `id`, number `seq`, carries.
inline std::uint64_t item_hash(std::uint64_t id, std::uint64_t seq) noexcept { return mix(id * 1'000'003 + seq); }

/// The MPMC test item (ring_peer's mpmc jobs and the tests that read them):
/// who sent it, its number, and item_hash() of both.
struct Item {
    std::uint64_t producer;
    std::uint64_t seq;
    std::uint64_t hash;
};

inline Item make_item(std::uint64_t id, std::uint64_t seq) noexcept { return {id, seq, item_hash(id, seq)}; }

/// Message `seq` of producer `id` in the MPSC tests: `id` in 8 bytes, then
/// message `seq` of stream `id` with at most `max_length` bytes. `out` holds
/// 8 + max_length bytes; returns the message's length.
inline std::size_t make_tagged_message(std::uint64_t id, std::uint64_t seq, std::size_t max_length,
    std::span<std::byte> out) noexcept
{
    const std::size_t length = message_length(id, seq, max_length);
    std::memcpy(out.data(), &id, 8);
    make_message(id, seq, out.subspan(8, length));
    return 8 + length;
}

} // namespace shmlink::test
