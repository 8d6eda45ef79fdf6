// Waiting for the other side of a ring without burning a core: spin,
// spin-then-block, or block on a futex in the segment (shared, not
// FUTEX_PRIVATE_FLAG). Every wait has a timeout. The notifying side makes
// no syscall unless somebody sleeps.
#pragma once

#include "ipc/layout.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>

namespace shmlink {

enum class WaitMode {
    spin,            ///< poll until ready or timed out: lowest latency, one busy core
    spin_then_block, ///< poll for WaitOptions::spin, then sleep on the futex
    block,           ///< sleep on the futex at once
};

struct WaitOptions {
    WaitMode mode = WaitMode::spin_then_block;
    std::chrono::nanoseconds spin = std::chrono::microseconds(50);
};

namespace detail {

/// futex(FUTEX_WAIT_BITSET) on a shared word until `deadline` (CLOCK_MONOTONIC).
/// Returns 0 when woken (or the word differed), ETIMEDOUT, or another errno.
int futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::steady_clock::time_point deadline) noexcept;
/// Wakes every process waiting on `word`.
void futex_wake_all(std::uint32_t* word) noexcept;

inline void cpu_relax() noexcept
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

} // namespace detail

/// The waking side, after it published (release-stored) what the sleeper waits for.
inline void notify(ipc::WaitWord& word) noexcept
{
    // seq_cst fence: orders the caller's publishing store before the load of
    // sleepers; pairs with the seq_cst fence in wait_until() (Dekker): either
    // we see the sleeper, or the sleeper sees what we published.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (std::atomic_ref(word.sleepers).load(std::memory_order_relaxed) == 0)
        return;
    std::atomic_ref(word.seq).fetch_add(1, std::memory_order_release);
    detail::futex_wake_all(&word.seq);
}

/// Waits until `ready()` (which must re-read the shared state) is true, or
/// until `deadline`. Returns ready()'s last answer. A peer that corrupts the
/// word can cost wake-ups but never extends a wait past its deadline.
template <typename Ready>
bool wait_until(ipc::WaitWord& word, Ready&& ready, const WaitOptions& options,
    std::chrono::steady_clock::time_point deadline) noexcept
{
    if (ready())
        return true;
    if (options.mode != WaitMode::block) {
        const auto spin_end = options.mode == WaitMode::spin ? deadline
                                                             : std::min(deadline, std::chrono::steady_clock::now() + options.spin);
        for (unsigned i = 0;; ++i) {
            if (ready())
                return true;
            detail::cpu_relax();
            if ((i & 63) == 63 && std::chrono::steady_clock::now() >= spin_end)
                break;
        }
        if (options.mode == WaitMode::spin)
            return ready();
    }
    std::atomic_ref seq(word.seq);
    std::atomic_ref sleepers(word.sleepers);
    for (;;) {
        const std::uint32_t seen = seq.load(std::memory_order_acquire);
        sleepers.fetch_add(1, std::memory_order_relaxed);
        // seq_cst fence: pairs with the fence in notify(); see there.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (ready()) {
            sleepers.fetch_sub(1, std::memory_order_relaxed);
            return true;
        }
        const int rc = detail::futex_wait(&word.seq, seen, deadline);
        sleepers.fetch_sub(1, std::memory_order_relaxed);
        if (ready())
            return true;
        if (rc == ETIMEDOUT || std::chrono::steady_clock::now() >= deadline)
            return false;
    }
}

} // namespace shmlink
