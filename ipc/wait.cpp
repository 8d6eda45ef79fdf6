#include <shmlink/ipc/wait.hpp>

#include <shmlink/core/error.hpp>

#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
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
