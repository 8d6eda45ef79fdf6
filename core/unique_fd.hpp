// Ownership of file descriptors: UniqueFd owns one and closes it exactly once;
// BorrowedFd names one for the duration of a call without owning it.
#pragma once

#include <unistd.h>

#include <utility>

namespace shmlink {

/// A move-only owner of a file descriptor. The destructor closes it; a
/// moved-from or default-constructed UniqueFd holds nothing (-1).
class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept
    {
        reset(other.release());
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }

    /// Gives up ownership without closing.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    /// Closes the held fd (if any) and takes ownership of `fd`.
    void reset(int fd = -1) noexcept
    {
        // close() is not retried on EINTR: on Linux the fd is released either way.
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

/// A non-owning reference to an open fd, valid while its owner lives.
class BorrowedFd {
public:
    BorrowedFd(const UniqueFd& owner) noexcept : fd_(owner.get()) {} // NOLINT: implicit on purpose
    /// An fd that another owner keeps open, such as an Asio socket's native_handle().
    static BorrowedFd of(int fd) noexcept { return BorrowedFd(fd); }
    [[nodiscard]] int get() const noexcept { return fd_; }

private:
    explicit BorrowedFd(int fd) noexcept : fd_(fd) {}
    int fd_;
};

} // namespace shmlink
