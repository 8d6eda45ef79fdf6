#include <shmlink/core/snapshot.hpp>

#include <shmlink/core/bounds.hpp>
#include <shmlink/core/layout.hpp>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace shmlink {
namespace {

bool not_supported(int err) noexcept
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == EXDEV || err == EINVAL || err == ENOSYS || err == ENOTTY
        || err == EBADF || err == EISDIR;
}

/// Fills `to` (empty, at offset 0) with `bytes`, the mapping of `from`:
/// a reflink where the file system has them, else copy_file_range in the
/// kernel, else a plain write from the mapping.
std::error_code copy_contents(const UniqueFd& from, std::span<const std::byte> bytes, const UniqueFd& to) noexcept
{
    const auto size = static_cast<off_t>(bytes.size());
    if (::ioctl(to.get(), FICLONE, from.get()) == 0) {
        // The source file may be longer than its mapped extent (a grow in flight).
        return ::ftruncate(to.get(), size) == 0 ? std::error_code{} : errno_code();
    }
    off_t done = 0;
    while (done < size) {
        off_t in = done;
        off_t out = done;
        const ssize_t n = ::copy_file_range(from.get(), &in, to.get(), &out, static_cast<std::size_t>(size - done), 0);
        if (n > 0) {
            done += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            return Errc::truncated; // the file is shorter than its mapping: copying from memory would SIGBUS
        if (!not_supported(errno))
            return errno_code();
        break; // not supported between these files: copy from the mapping
    }
    while (done < size) {
        const ssize_t n = ::pwrite(to.get(), bytes.data() + done, static_cast<std::size_t>(size - done), done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? errno_code() : std::make_error_code(std::errc::io_error);
        done += n;
    }
    return {};
}

/// An unnamed, writable file in `directory` (O_TMPFILE), or a memfd when `directory` is empty.
UniqueFd unnamed_file(const std::filesystem::path& directory, mode_t mode, std::error_code& ec) noexcept
{
    if (directory.empty()) {
        UniqueFd fd(::memfd_create("shmlink-snapshot", MFD_CLOEXEC)); // a literal: no allocation in noexcept
        ec = fd ? std::error_code{} : errno_code();
        return fd;
    }
    UniqueFd fd(::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode));
    ec = fd ? std::error_code{} : errno_code();
    return fd;
}

/// Marks the copy in `out` as a checkpoint when it is a segment: a file of
/// value whose creator is expected to be gone, which garbage collection
/// keeps. Its creator holds no lock on this file, so that flag goes.
std::error_code mark_checkpoint(const UniqueFd& out, std::span<const std::byte> bytes) noexcept
{
    layout::SegmentHeader header {};
    if (bytes.size() < sizeof(header))
        return {};
    std::memcpy(&header, bytes.data(), sizeof(header));
    if (header.magic != layout::kMagic)
        return {};
    std::uint32_t flags = (header.flags | layout::kCheckpoint) & ~std::uint32_t {layout::kCreatorLocked};
    const auto at = static_cast<off_t>(offsetof(layout::SegmentHeader, flags));
    if (::pwrite(out.get(), &flags, sizeof(flags), at) != static_cast<ssize_t>(sizeof(flags)))
        return errno_code();
    return {};
}

std::string random_suffix()
{
    std::uint64_t r = 0;
    if (::getrandom(&r, sizeof(r), 0) != static_cast<ssize_t>(sizeof(r)))
        r = static_cast<std::uint64_t>(::getpid()) ^ static_cast<std::uint64_t>(::time(nullptr));
    return std::to_string(::getpid()) + "-" + std::to_string(r);
}

} // namespace

Snapshot Snapshot::copy_of(const UniqueFd& source, std::span<const std::byte> bytes, const SnapshotOptions& options,
    std::error_code& ec) noexcept
{
    Snapshot snap;
    snap.fd_ = unnamed_file(options.directory, 0600, ec);
    if (ec)
        return {};
    if ((ec = copy_contents(source, bytes, snap.fd_)))
        return {};
    snap.map_ = map(bytes.size(), Prot::read, Map::shared, snap.fd_, 0, ec);
    if (ec)
        return {};
    return snap;
}

std::error_code Snapshot::read_into(std::size_t offset, std::span<std::byte> out) const noexcept
{
    return copy_out(bytes(), offset, out);
}

void Snapshot::commit(const std::filesystem::path& target, mode_t mode) const
{
    std::error_code ec;
    commit(target, mode, ec);
    if (ec)
        throw Error(ec, "commit snapshot to " + target.string());
}

void Snapshot::commit(const std::filesystem::path& target, mode_t mode, std::error_code& ec) const noexcept
{
    ec.clear();
    if (!fd_) {
        ec = Errc::invalid_argument;
        return;
    }
    try {
        const std::filesystem::path directory = target.has_parent_path() ? target.parent_path() : ".";
        const std::filesystem::path staging = directory / ("." + target.filename().string() + ".shmlink-" + random_suffix());
        // Prefer an unnamed file (nothing half-written is ever visible under any
        // name); fall back to a hidden staging name where O_TMPFILE is missing.
        UniqueFd out = unnamed_file(directory, mode, ec);
        const bool named = ec && not_supported(ec.value());
        if (named)
            out.reset(::open(staging.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode));
        if (!out) {
            ec = errno_code();
            return;
        }
        ec.clear();
        if (::fchmod(out.get(), mode) != 0 || (ec = copy_contents(fd_, bytes(), out)) || (ec = mark_checkpoint(out, bytes()))
            || ::fsync(out.get()) != 0) {
            if (!ec)
                ec = errno_code();
            if (named)
                ::unlink(staging.c_str());
            return;
        }
        if (!named) {
            const std::string proc = "/proc/self/fd/" + std::to_string(out.get());
            if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, staging.c_str(), AT_SYMLINK_FOLLOW) != 0) {
                ec = errno_code();
                return;
            }
        }
        if (::rename(staging.c_str(), target.c_str()) != 0) {
            ec = errno_code();
            ::unlink(staging.c_str());
            return;
        }
        // The rename is durable once the directory is.
        UniqueFd dir(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!dir || ::fsync(dir.get()) != 0)
            ec = errno_code(); // in place, but not known to be durable
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
    }
}

} // namespace shmlink
