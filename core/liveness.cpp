#include <shmlink/core/liveness.hpp>

#include <shmlink/core/error.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

namespace shmlink {
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

bool same_file(const struct stat& a, const struct stat& b) noexcept
{
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/// A copy of the header of `fd` (of `file_bytes` bytes), validated.
std::error_code read_header(const UniqueFd& fd, std::uint64_t file_bytes, layout::SegmentHeader& header,
    std::string& detail)
{
    header = {};
    if (file_bytes >= sizeof(header)) {
        const ssize_t got = ::pread(fd.get(), &header, sizeof(header), 0);
        if (got < 0)
            return errno_code();
        if (static_cast<std::size_t>(got) != sizeof(header)) {
            detail = "file shrank while being read";
            return Errc::truncated;
        }
        // The size after the header, as Segment::attach takes it: a growing
        // segment's header never announces more than the file had before.
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0)
            return errno_code();
        file_bytes = static_cast<std::uint64_t>(st.st_size);
    }
    return layout::validate_header(header, file_bytes, detail);
}

} // namespace

const char* to_string(Liveness liveness) noexcept
{
    switch (liveness) {
    case Liveness::alive: return "alive";
    case Liveness::dead: return "dead";
    case Liveness::unknown: return "unknown";
    }
    return "unknown";
}

namespace detail {

UniqueFd reopen(const UniqueFd& fd, int flags, std::error_code& ec) noexcept
{
    char path[48];
    std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd.get()); // no allocation: noexcept
    UniqueFd own(::open(path, flags | O_CLOEXEC | O_NOCTTY));
    ec = own ? std::error_code {} : errno_code();
    return own;
}

bool lock_byte(const UniqueFd& fd, std::uint64_t offset, std::error_code& ec) noexcept
{
    ec.clear();
    flock lock = byte_lock(F_WRLCK, offset);
    if (::fcntl(fd.get(), F_OFD_SETLK, &lock) == 0)
        return true;
    if (errno != EAGAIN && errno != EACCES) // those two: another description holds it
        ec = errno_code();
    return false;
}

void unlock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept
{
    flock lock = byte_lock(F_UNLCK, offset);
    ::fcntl(fd.get(), F_OFD_SETLK, &lock);
}

Liveness byte_holder(const UniqueFd& probe, std::uint64_t offset) noexcept
{
    flock lock = byte_lock(F_WRLCK, offset);
    if (::fcntl(probe.get(), F_OFD_GETLK, &lock) != 0)
        return Liveness::unknown;
    return lock.l_type == F_UNLCK ? Liveness::dead : Liveness::alive;
}

bool take_creator_lock(const UniqueFd& fd, std::error_code& ec) noexcept
{
    return lock_byte(fd, layout::kCreatorLockByte, ec);
}

} // namespace detail

Liveness probe_creator(const UniqueFd& probe, std::uint32_t flags, std::string& why) noexcept
{
    try {
        if ((flags & layout::kCreatorLocked) == 0) {
            why = "its creator holds no lock (a segment of an older shmlink, or a file system without OFD locks)";
            return Liveness::unknown;
        }
        const Liveness holder = detail::byte_holder(probe, layout::kCreatorLockByte);
        if (holder == Liveness::unknown)
            why = std::string("the lock probe failed: ") + std::strerror(errno);
        return holder;
    } catch (const std::bad_alloc&) {
        return Liveness::unknown;
    }
}

std::error_code open_segment_file(const std::filesystem::path& path, bool writable, SegmentFile& out,
    std::string& detail) noexcept
{
    try {
        // lstat first: opening a FIFO may block, a socket gives a bare ENXIO,
        // and a symbolic link would make us judge (and unlink) the wrong thing.
        struct stat named {};
        if (::lstat(path.c_str(), &named) != 0)
            return errno_code();
        if (!S_ISREG(named.st_mode)) {
            detail = std::string("is ") + file_type_name(named.st_mode) + ", not a shmlink segment";
            return Errc::not_a_segment;
        }
        out.fd.reset(::open(path.c_str(),
            (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC));
        if (!out.fd)
            return errno_code();
        if (::fstat(out.fd.get(), &out.st) != 0)
            return errno_code();
        if (!S_ISREG(out.st.st_mode)) { // swapped between lstat and open
            detail = std::string("is ") + file_type_name(out.st.st_mode) + ", not a shmlink segment";
            return Errc::not_a_segment;
        }
        if (auto ec = read_header(out.fd, static_cast<std::uint64_t>(out.st.st_size), out.header, detail))
            return ec;
        out.creator = probe_creator(out.fd, out.header.flags, out.why_unknown);
        return {};
    } catch (const std::bad_alloc&) {
        return std::make_error_code(std::errc::not_enough_memory);
    }
}

std::error_code remove_dead_segment(const std::filesystem::path& path, const struct stat* judged,
    std::string& detail) noexcept
{
    try {
        const auto exists = std::make_error_code(std::errc::file_exists);
        SegmentFile file;
        if (auto ec = open_segment_file(path, true, file, detail)) {
            if (ec == Errc::not_a_segment) {
                detail = "it " + detail; // "it is a FIFO, not a shmlink segment"
                return exists;
            }
            if (ec.category() == error_category()) { // the header's verdict
                detail = "it is not a valid shmlink segment: " + (detail.empty() ? ec.message() : detail);
                return exists;
            }
            detail = "open: " + ec.message();
            return ec;
        }
        if (judged != nullptr && !same_file(*judged, file.st)) {
            detail = "the path names another file than the one judged dead";
            return exists;
        }
        const auto judge = [&]() -> std::error_code {
            if (file.checkpoint()) {
                detail = "it is a checkpoint (written by Snapshot::commit), kept on purpose";
                return exists;
            }
            if ((file.header.flags & layout::kCreatorLocked) == 0) {
                detail = "whether its creator lives cannot be decided: its creator holds no lock (a segment of an "
                         "older shmlink, or a file system without OFD locks)";
                return exists;
            }
            return {};
        };
        if (auto ec = judge())
            return ec;
        std::error_code ec;
        if (!detail::take_creator_lock(file.fd, ec)) {
            if (ec) {
                detail = "whether its creator lives cannot be decided: taking its lock failed: " + ec.message();
                return exists;
            }
            detail = "another process owns it (its creator, or a process removing it, holds its lock)";
            return Errc::in_use;
        }
        // Ours now: nobody who follows this protocol can act on the file until
        // we let go. Check again that the path still names it, and what it is.
        struct stat named {};
        if (::lstat(path.c_str(), &named) != 0)
            return errno_code();
        if (!same_file(named, file.st)) {
            detail = "the path names another file than the one judged dead";
            return exists;
        }
        if ((ec = read_header(file.fd, static_cast<std::uint64_t>(file.st.st_size), file.header, detail))) {
            detail = "it is no longer a shmlink segment: " + (detail.empty() ? ec.message() : detail);
            return exists;
        }
        if ((ec = judge()))
            return ec;
        if (::unlink(path.c_str()) != 0) {
            ec = errno_code();
            detail = "unlink: " + ec.message();
            return ec;
        }
        return {}; // the lock goes with file.fd, after the unlink
    } catch (const std::bad_alloc&) {
        return std::make_error_code(std::errc::not_enough_memory);
    }
}

} // namespace shmlink
