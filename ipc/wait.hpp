// Waiting for the other side of a ring without burning a core: spin,
// spin-then-block, or block on a futex in the segment (shared, not
// FUTEX_PRIVATE_FLAG). Every wait has a timeout. The notifying side makes
// no syscall unless somebody sleeps. The eventfd mode lets an event loop
// wait instead: the consumer arms the word, the producer, holding the
// consumer's eventfd, signals it as well as the futex.
#pragma once

#include "core/unique_fd.hpp"
#include "ipc/layout.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <system_error>

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
/// Adds 1 to an eventfd's counter (the eventfd mode's wake-up).
void signal_eventfd(int fd) noexcept;

inline void cpu_relax() noexcept
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

} // namespace detail

/// The waking side, after it published (release-stored) what the sleeper
/// waits for. `wake_fd`, when not -1, is the sleeper's eventfd.
inline void notify(ipc::WaitWord& word, int wake_fd = -1) noexcept
{
    // seq_cst fence: orders the caller's publishing store before the load of
    // sleepers; pairs with the seq_cst fence in arm() (Dekker): either
    // we see the sleeper, or the sleeper sees what we published.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (std::atomic_ref(word.sleepers).load(std::memory_order_relaxed) == 0)
        return;
    std::atomic_ref(word.seq).fetch_add(1, std::memory_order_release);
    detail::futex_wake_all(&word.seq);
    if (wake_fd >= 0)
        detail::signal_eventfd(wake_fd);
}

/// Registers the caller as a sleeper on `word`, then checks `ready()` once
/// more: true means it is ready and the caller is not registered; false
/// means the caller is registered and will be notified (futex and eventfd)
/// and must call disarm() once it wakes.
template <typename Ready>
bool arm(ipc::WaitWord& word, Ready&& ready) noexcept
{
    std::atomic_ref(word.sleepers).fetch_add(1, std::memory_order_relaxed);
    // seq_cst fence: pairs with the fence in notify(); see there.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!ready())
        return false;
    std::atomic_ref(word.sleepers).fetch_sub(1, std::memory_order_relaxed);
    return true;
}

inline void disarm(ipc::WaitWord& word) noexcept
{
    std::atomic_ref(word.sleepers).fetch_sub(1, std::memory_order_relaxed);
}

/// An eventfd for the eventfd mode: non-blocking, close-on-exec. The consumer
/// watches it (poll, epoll, an Asio descriptor); the producer's process must
/// hold it too (inherited, or passed over a Unix socket) to signal it.
UniqueFd create_wake_fd(std::error_code& ec) noexcept;
/// Resets the eventfd's counter after a wake-up; never blocks.
void drain_wake_fd(BorrowedFd fd) noexcept;

/// now + timeout, saturated instead of overflowing.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds timeout) noexcept
{
    const auto now = std::chrono::steady_clock::now();
    if (timeout <= std::chrono::nanoseconds::zero())
        return now;
    return timeout > std::chrono::steady_clock::time_point::max() - now ? std::chrono::steady_clock::time_point::max()
                                                                       : now + timeout;
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
    for (;;) {
        // acquire: pairs with the release increment in notify().
        const std::uint32_t seen = std::atomic_ref(word.seq).load(std::memory_order_acquire);
        if (arm(word, ready))
            return true;
        const int rc = detail::futex_wait(&word.seq, seen, deadline);
        disarm(word);
        if (ready())
            return true;
        if (rc == ETIMEDOUT || std::chrono::steady_clock::now() >= deadline)
            return false;
    }
}

} // namespace shmlink
