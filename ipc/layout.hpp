// The shared-memory structures of ipc/, as another process sees them. This
// is an ABI: it matches docs/layout.md ("Rings") field for field, and the
// static_asserts pin it. Fields that change are accessed with std::atomic_ref.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmlink::ipc {

/// Directory kinds (core/layout.hpp DirectoryEntry::kind) of ipc objects.
enum class ObjectKind : std::uint16_t {
    spsc_ring = 0x0101,
};

inline constexpr std::uint16_t kSpscRingVersion = 1;

/// Separates what two sides write: a cache line pair (adjacent-line
/// prefetch pulls lines in twos on x86), so neither side's stores evict the
/// other's line.
inline constexpr std::size_t kFalseSharingRange = 128;

/// A futex word and its sleeper count: a side that will sleep increments
/// `sleepers` and waits on `seq`; the other side bumps `seq` and wakes only
/// when `sleepers` is not zero, so nobody pays a syscall while nobody sleeps.
struct WaitWord {
    std::uint32_t seq;      ///< futex word; atomic
    std::uint32_t sleepers; ///< processes blocked or about to block on seq; atomic
};

/// The control block of an SPSC byte ring; the ring's data follows it.
struct SpscRingControl {
    // Fixed at creation.
    std::uint64_t capacity_bytes; ///< a power of two, 256 .. 2^31
    std::uint8_t reserved0[kFalseSharingRange - 8];
    // Written by the producer only.
    std::uint64_t tail; ///< bytes ever committed; atomic, only grows
    std::uint8_t reserved1[kFalseSharingRange - 8];
    // Written by the consumer only.
    std::uint64_t head; ///< bytes ever released; atomic, only grows, head <= tail
    std::uint8_t reserved2[kFalseSharingRange - 8];
    // Written only by a side that is about to sleep, or waking the other.
    WaitWord readable; ///< the consumer sleeps here while the ring is empty
    WaitWord writable; ///< the producer sleeps here while the ring is full
    std::uint8_t reserved3[kFalseSharingRange - 16];
};

/// Every record in a ring's data starts with this, 8-byte aligned; a
/// record never wraps: a padding record fills the end of the buffer instead.
struct RecordHeader {
    std::uint32_t length; ///< payload bytes (padding: bytes after this header up to the end)
    std::uint32_t type;   ///< RecordType
};

enum class RecordType : std::uint32_t {
    message = 1,
    padding = 2,
};

inline constexpr std::size_t kRecordAlignment = 8;

static_assert(sizeof(WaitWord) == 8);
static_assert(sizeof(SpscRingControl) == 4 * kFalseSharingRange);
static_assert(offsetof(SpscRingControl, capacity_bytes) == 0);
static_assert(offsetof(SpscRingControl, tail) == 128);
static_assert(offsetof(SpscRingControl, head) == 256);
static_assert(offsetof(SpscRingControl, readable) == 384);
static_assert(offsetof(SpscRingControl, writable) == 392);
static_assert(sizeof(RecordHeader) == kRecordAlignment);
static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

} // namespace shmlink::ipc
