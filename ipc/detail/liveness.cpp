#include "ipc/detail/liveness.hpp"

#include "core/error.hpp"

#include <fcntl.h>

#include <cstdio>

namespace shmlink::detail {
namespace {

flock byte_lock(short type, std::uint64_t offset) noexcept
{
    flock lock {};
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = static_cast<off_t>(offset);
    lock.l_len = 1;
    return lock;
}

} // namespace

UniqueFd reopen_segment(const Segment& segment, std::error_code& ec) noexcept
{
    char path[48];
    std::snprintf(path, sizeof(path), "/proc/self/fd/%d", segment.fd().get());
    UniqueFd fd(::open(path, O_RDWR | O_CLOEXEC)); // a write lock needs a writable description
    if (!fd)
        ec = errno_code();
    return fd;
}

bool lock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept
{
    flock lock = byte_lock(F_WRLCK, offset);
    return ::fcntl(fd.get(), F_OFD_SETLK, &lock) == 0;
}

void unlock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept
{
    flock lock = byte_lock(F_UNLCK, offset);
    ::fcntl(fd.get(), F_OFD_SETLK, &lock);
}

bool byte_locked(const UniqueFd& probe, std::uint64_t offset) noexcept
{
    flock lock = byte_lock(F_WRLCK, offset);
    return ::fcntl(probe.get(), F_OFD_GETLK, &lock) != 0 || lock.l_type != F_UNLCK;
}

} // namespace shmlink::detail
