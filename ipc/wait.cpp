#include <shmlink/ipc/wait.hpp>

#include <shmlink/core/error.hpp>
#include <shmlink/core/log.hpp>

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstring>
#include <thread>
#include <ctime>

namespace shmlink::detail {

int futex_wait(std::uint32_t* word, std::uint32_t expected, std::chrono::steady_clock::time_point deadline) noexcept
{
    // steady_clock is CLOCK_MONOTONIC on Linux, which FUTEX_WAIT_BITSET takes
    // as an absolute deadline: no recomputation after a spurious wake-up.
    const auto since_epoch = deadline.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    timespec at {};
    at.tv_sec = static_cast<time_t>(seconds.count());
    at.tv_nsec = static_cast<long>(std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds).count());
    if (at.tv_sec < 0)
        return ETIMEDOUT;
    // No FUTEX_PRIVATE_FLAG: the word lives in memory shared between processes.
    const long rc = ::syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &at, nullptr, FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
        return 0;
    return errno == EAGAIN || errno == EINTR ? 0 : errno;
}

void futex_wake_all(std::uint32_t* word) noexcept { ::syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

} // namespace shmlink::detail

namespace shmlink {

bool detail::light_waker_fence = false;

namespace {

long membarrier(int command) noexcept { return ::syscall(SYS_membarrier, command, 0, 0); }

void register_this_process() noexcept
{
    const long supported = membarrier(MEMBARRIER_CMD_QUERY);
    detail::light_waker_fence = supported > 0 && (supported & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0
        && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
}

} // namespace

void detail::register_waker() noexcept
{
    static const bool once = [] {
        register_this_process();
        // The registration belongs to the process's memory; a forked child
        // registers its own rather than rely on inheriting it.
        ::pthread_atfork(nullptr, nullptr, register_this_process);
        return true;
    }();
    static_cast<void>(once);
}

bool detail::sleeper_fence() noexcept
{
    if (membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0)
        return true;
    static std::atomic<bool> warned {false};
    if (!warned.exchange(true, std::memory_order_relaxed)) // relaxed: only whether to warn once
        logger().warn("membarrier(GLOBAL_EXPEDITED) failed ({}): waits wake up every {} ms to look",
            std::strerror(errno), kUnfencedSleep.count());
    return false;
}

namespace {

constexpr auto kSpinFallback = std::chrono::microseconds(50);
constexpr int kSpinProbeRounds = 9;

/// Median futex round trip between this thread and a new one, halved.
std::chrono::nanoseconds measure_wake_up() noexcept
try {
    alignas(64) std::uint32_t ping = 0; // atomic (atomic_ref): this thread -> the echo
    alignas(64) std::uint32_t pong = 0; // atomic (atomic_ref): the echo -> this thread
    const auto wait_for = [](std::uint32_t& word, std::uint32_t value) {
        // acquire: pairs with the release store in post().
        for (std::uint32_t seen; (seen = std::atomic_ref(word).load(std::memory_order_acquire)) != value;)
            detail::futex_wait(&word, seen, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
    };
    const auto post = [](std::uint32_t& word, std::uint32_t value) {
        std::atomic_ref(word).store(value, std::memory_order_release); // release: pairs with wait_for()
        detail::futex_wake_all(&word);
    };
    std::thread echo([&] {
        for (std::uint32_t round = 1; round <= kSpinProbeRounds; ++round) {
            wait_for(ping, round);
            post(pong, round);
        }
    });
    std::array<std::chrono::nanoseconds, kSpinProbeRounds> trips {};
    for (std::uint32_t round = 1; round <= kSpinProbeRounds; ++round) {
        const auto start = std::chrono::steady_clock::now();
        post(ping, round);
        wait_for(pong, round);
        trips[round - 1] = std::chrono::steady_clock::now() - start;
    }
    echo.join();
    std::nth_element(trips.begin(), trips.begin() + kSpinProbeRounds / 2, trips.end());
    return std::clamp<std::chrono::nanoseconds>(trips[kSpinProbeRounds / 2] / 2, std::chrono::microseconds(2),
        std::chrono::microseconds(200));
} catch (...) { // no thread to be had
    return kSpinFallback;
}

} // namespace

std::chrono::nanoseconds detail::spin_budget() noexcept
{
    static const std::chrono::nanoseconds budget = measure_wake_up();
    return budget;
}

void detail::pause_briefly() noexcept
{
    const timespec millisecond {0, 1'000'000};
    ::nanosleep(&millisecond, nullptr);
}

void detail::signal_eventfd(int fd) noexcept
{
    const std::uint64_t one = 1;
    // EAGAIN (the counter is at its maximum) still leaves the fd readable: nothing is lost.
    [[maybe_unused]] const ssize_t rc = ::write(fd, &one, sizeof(one));
}

UniqueFd create_wake_fd(std::error_code& ec) noexcept
{
    UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    ec = fd ? std::error_code {} : errno_code();
    return fd;
}

void drain_wake_fd(BorrowedFd fd) noexcept
{
    std::uint64_t count = 0;
    [[maybe_unused]] const ssize_t rc = ::read(fd.get(), &count, sizeof(count));
}

} // namespace shmlink
