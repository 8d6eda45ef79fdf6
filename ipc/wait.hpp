// Waiting for the other side of a ring without burning a core: spin,
// spin-then-block, or block on a futex in the segment (shared, not
// FUTEX_PRIVATE_FLAG). Every wait has a timeout. The notifying side makes
// no syscall unless somebody sleeps. The eventfd mode lets an event loop
// wait instead: the consumer arms the word, the producer, holding the
// consumer's eventfd, signals it as well as the futex. Each side's sleeper
// count lives on the cache line its waker writes anyway (next to tail or
// head).
//
// No lost wake-up needs a store-load fence on both sides (Dekker): the
// waker publishes then reads the sleeper count, the sleeper counts itself
// then re-reads what is published. The waker runs on every message, the
// sleeper only when it is about to sleep, so the fence is asymmetric: the
// waker's is a compiler barrier, and the sleeper, after counting itself,
// calls membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which makes every
// running thread of every registered process (each process that opens a
// ring registers) pass a full barrier before it returns. Where membarrier
// is not available the waker reads the count with a locked
// read-modify-write instead, as a symmetric Dekker does.
#pragma once

#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/layout.hpp>

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

/// WaitOptions::spin's default: spin about as long as a wake-up from the
/// futex costs on this machine (measured once per process, see spin_budget()).
inline constexpr std::chrono::nanoseconds kSpinAsLongAsAWakeUp {-1};

struct WaitOptions {
    WaitMode mode = WaitMode::spin_then_block;
    /// How long spin_then_block polls before it sleeps. Spinning longer than
    /// a wake-up costs buys no latency; spinning shorter pays a wake-up for a
    /// message that was about to come.
    std::chrono::nanoseconds spin = kSpinAsLongAsAWakeUp;
};

namespace detail {

/// futex(FUTEX_WAIT_BITSET) on a shared word until `deadline` (CLOCK_MONOTONIC).
/// Returns 0 when woken (or the word differed), ETIMEDOUT, or another errno.
int futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::steady_clock::time_point deadline) noexcept;
/// Wakes every process waiting on `word`.
void futex_wake_all(std::uint32_t* word) noexcept;
/// Adds 1 to an eventfd's counter (the eventfd mode's wake-up).
void signal_eventfd(int fd) noexcept;
/// Sleeps a millisecond: the fallback when futex itself fails.
void pause_briefly() noexcept;

/// What a wake-up costs here: the median of a few futex ping-pongs between
/// two threads, halved, measured on first use (well under a millisecond)
/// and clamped to 2 .. 200 us; 50 us if the measurement cannot run.
std::chrono::nanoseconds spin_budget() noexcept;

/// Registers this process for the sleepers' membarrier, once per process
/// (again in a forked child); rings and queues call it when they open.
/// Afterwards waker_fence_is_light() says whether it took.
void register_waker() noexcept;
/// True when this process is registered: notify() then reads the sleeper
/// count with a plain load. Set once, before any ring of the process exists.
extern bool light_waker_fence;
inline bool waker_fence_is_light() noexcept { return light_waker_fence; }
/// The sleeper's half of the fence, after it counted itself and before it
/// re-checks: membarrier(GLOBAL_EXPEDITED). False when the call failed (a
/// seccomp filter, say): the caller must then not sleep unbounded, as a
/// registered waker elsewhere may have missed its count.
bool sleeper_fence() noexcept;
/// How long a sleeper whose fence failed sleeps before it looks again.
inline constexpr std::chrono::milliseconds kUnfencedSleep {1};

inline void cpu_relax() noexcept
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

/// The waker's read of a sleeper word, after it published what the sleeper
/// waits for: the Dekker half of notify() and notify_sole().
inline std::uint32_t waker_reads(std::uint32_t& sleepers) noexcept
{
    if (waker_fence_is_light()) {
        // A compiler barrier only: the sleeper's membarrier (sleeper_fence())
        // turns it into a full fence on this CPU when it matters, so either
        // the sleeper re-reads what we published, or we read its registration.
        std::atomic_signal_fence(std::memory_order_seq_cst);
        // relaxed: ordered after our publishing store by the fence above; see there.
        return std::atomic_ref(sleepers).load(std::memory_order_relaxed);
    }
    // acq_rel read-modify-write, not a load: it and the waiter's registration
    // are ordered in sleepers' modification order. If ours comes first, the
    // waiter's acquire sees what we published before it; if theirs does, we
    // read it and wake it.
    return std::atomic_ref(sleepers).fetch_add(0, std::memory_order_acq_rel);
}
} // namespace detail

/// The waking side, after it published (release-stored) what a waiter waits
/// for: wakes the waiters registered in `sleepers` that sleep on the futex
/// word `seq` (usually the two halves of one WaitWord), and signals
/// `wake_fd` (the eventfd mode) unless it is -1.
inline void notify(std::uint32_t& sleepers, std::uint32_t& seq, int wake_fd = -1) noexcept
{
    if (detail::waker_reads(sleepers) == 0)
        return;
    // release: pairs with the acquire load of seq in wait_until().
    std::atomic_ref(seq).fetch_add(1, std::memory_order_release);
    detail::futex_wake_all(&seq);
    if (wake_fd >= 0)
        detail::signal_eventfd(wake_fd);
}

inline void notify(ipc::WaitWord& word, int wake_fd = -1) noexcept { notify(word.sleepers, word.seq, wake_fd); }

/// The registration of a word's only sleeper, woken by one thread only (a
/// topic slot's words): the sleeper stores the `seq` it sleeps on, plus 1,
/// in `sleepers` (0: none), instead of counting itself. The waker then wakes
/// it once a sleep: a notify_sole() that finds `seq` moved past what the
/// sleeper registered knows it woke it already and makes no syscall, where
/// a count says "asleep" until the woken sleeper runs, and costs a
/// futex_wake at every notify until then (with four subscribers on one
/// CPU, on nearly every publish).
struct SoleSleeper {
    ipc::WaitWord& word;
    void operator()(bool sleeping) const noexcept
    {
        if (sleeping) // acq_rel read-modify-write: pairs with the one in notify_sole(), as SleeperCount's does.
            std::atomic_ref(word.sleepers)
                .exchange(std::atomic_ref(word.seq).load(std::memory_order_relaxed) + 1, std::memory_order_acq_rel);
        else // relaxed: a stale registration costs one wake-up at most.
            std::atomic_ref(word.sleepers).store(0, std::memory_order_relaxed);
    }
};

/// Whether a SoleSleeper sleeps on `word` now (for inspection).
inline bool sole_sleeper_asleep(const ipc::WaitWord& word) noexcept
{
    // relaxed: a snapshot.
    const auto sleepers = std::atomic_ref(const_cast<std::uint32_t&>(word.sleepers)).load(std::memory_order_relaxed);
    return sleepers != 0 && sleepers == std::atomic_ref(const_cast<std::uint32_t&>(word.seq)).load(std::memory_order_relaxed) + 1;
}

/// notify() for a word whose sleeper is a SoleSleeper; only one thread may
/// call it for a word (it alone writes `seq`).
inline void notify_sole(ipc::WaitWord& word, int wake_fd = -1) noexcept
{
    const std::uint32_t registered = detail::waker_reads(word.sleepers);
    const std::uint32_t seq = std::atomic_ref(word.seq).load(std::memory_order_relaxed); // relaxed: ours alone
    if (registered == 0 || registered != seq + 1)
        return;
    // Never UINT32_MAX, whose "plus 1" would read as no sleeper.
    const std::uint32_t next = seq + 1 == UINT32_MAX ? 0 : seq + 1;
    // release: pairs with the acquire load of seq in wait_until().
    std::atomic_ref(word.seq).store(next, std::memory_order_release);
    detail::futex_wake_all(&word.seq);
    if (wake_fd >= 0)
        detail::signal_eventfd(wake_fd);
}

/// A waiter's registration in one sleeper count; an MPSC consumer registers
/// in one count per lane instead.
struct SleeperCount {
    ipc::WaitWord& word;
    void operator()(bool sleeping) const noexcept
    {
        if (sleeping) // acq_rel: pairs with the read-modify-write in notify(); see there.
            std::atomic_ref(word.sleepers).fetch_add(1, std::memory_order_acq_rel);
        else // relaxed: leaving needs no ordering; a stale count costs one wake-up.
            std::atomic_ref(word.sleepers).fetch_sub(1, std::memory_order_relaxed);
    }
};

/// Registers the caller as a sleeper (`register_as(true)`), fences (see the
/// top of this file), then checks `ready()` once more: true means it is
/// ready and the caller is registered no more; false means it is registered
/// and will be notified (futex and eventfd), and must call
/// `register_as(false)` once it wakes. `fenced`, if given, is false when the
/// fence failed, and the caller must then sleep in bounded slices.
template <typename Register, typename Ready>
bool arm(Register&& register_as, Ready&& ready, bool* fenced = nullptr) noexcept
{
    register_as(true);
    const bool fence = detail::sleeper_fence();
    if (fenced != nullptr)
        *fenced = fence;
    if (!ready())
        return false;
    register_as(false);
    return true;
}

template <typename Ready>
bool arm(ipc::WaitWord& word, Ready&& ready) noexcept
{
    return arm(SleeperCount {word}, ready);
}

inline void disarm(ipc::WaitWord& word) noexcept { SleeperCount {word}(false); }

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
template <typename Register, typename Ready>
bool wait_until(std::uint32_t& seq, Register&& register_as, Ready&& ready, const WaitOptions& options,
    std::chrono::steady_clock::time_point deadline) noexcept
{
    if (ready())
        return true;
    if (options.mode != WaitMode::block) {
        const auto spin = options.spin < std::chrono::nanoseconds::zero() ? detail::spin_budget() : options.spin;
        const auto spin_end = options.mode == WaitMode::spin ? deadline
                                                             : std::min(deadline, std::chrono::steady_clock::now() + spin);
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
        const std::uint32_t seen = std::atomic_ref(seq).load(std::memory_order_acquire);
        bool fenced = true;
        if (arm(register_as, ready, &fenced))
            return true;
        const auto until = fenced ? deadline : std::min(deadline, std::chrono::steady_clock::now() + detail::kUnfencedSleep);
        const int rc = detail::futex_wait(&seq, seen, until);
        register_as(false);
        if (rc != 0 && rc != ETIMEDOUT)
            detail::pause_briefly(); // futex refused (a seccomp filter, say): poll, but not in a busy loop
        if (ready())
            return true;
        if ((rc == ETIMEDOUT && until == deadline) || std::chrono::steady_clock::now() >= deadline)
            return false;
    }
}

/// wait_until() on one WaitWord: its seq and its sleeper count.
template <typename Ready>
bool wait_until(ipc::WaitWord& word, Ready&& ready, const WaitOptions& options,
    std::chrono::steady_clock::time_point deadline) noexcept
{
    return wait_until(word.seq, SleeperCount {word}, ready, options, deadline);
}

} // namespace shmlink
