// Whether a segment's creator lives, as the kernel tells it, and the one safe
// way to remove the file of a creator that is gone. The creator holds an
// open-file-description write lock on layout::kCreatorLockByte through a
// description of its own; the kernel drops it however the process ends, it
// means the same in every pid namespace and survives pid reuse
// (docs/layout.md, "The creator's lock").
#pragma once

#include <shmlink/core/file_type.hpp> // file_type_name, for what a path holds
#include <shmlink/core/layout.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace shmlink {

/// What a lock probe says of a segment's creator. `unknown` (a segment
/// without the lock flag, or a probe that failed) is never to be taken
/// for `dead`.
enum class Liveness {
    alive,
    dead,
    unknown,
};

/// "alive", "dead" or "unknown".
const char* to_string(Liveness liveness) noexcept;

/// A file opened without blocking and judged by its header alone (pread;
/// nothing is mapped).
struct SegmentFile {
    UniqueFd fd {};                   ///< a description of our own, which holds no lock
    struct stat st {};             ///< of fd
    layout::SegmentHeader header {}; ///< validated against st.st_size
    Liveness creator = Liveness::unknown;
    std::string why_unknown {}; ///< when creator is unknown: why it cannot be decided
    [[nodiscard]] bool checkpoint() const noexcept { return (header.flags & layout::kCheckpoint) != 0; }
};

/// Opens the file at `path` (a symbolic link is not followed) and judges
/// it. Anything but a regular file is refused by lstat before it is
/// opened, so a FIFO, a socket or a device never blocks the caller.
/// Errors: Errc::not_a_segment with `detail` naming what the file is
/// ("is a FIFO"), header errors (Errc::bad_magic, ...) with their detail, errno.
std::error_code open_segment_file(const std::filesystem::path& path, bool writable, SegmentFile& out,
    std::string& detail) noexcept;

/// The creator's liveness by a probe (F_OFD_GETLK) through `probe`, a
/// description that does not hold the lock, for a header whose flags are
/// `flags`. When unknown, `why` says why.
Liveness probe_creator(const UniqueFd& probe, std::uint32_t flags, std::string& why) noexcept;

/// Removes the file at `path` only while it is a shmlink segment whose
/// creator is provably gone: takes the creator's lock byte itself (without
/// waiting), then checks again that the path names the same file (and, when
/// `judged` is given, the file the caller judged: device and inode), that it
/// is still a segment with the lock flag and not a checkpoint, unlinks it and
/// lets the lock go. Two parties that remove or replace dead segments this
/// way never both act on one file.
/// Errors: Errc::in_use (its creator lives, or another party is acting on
/// it), EEXIST (not a segment, a checkpoint, liveness unknown, or the path
/// names another file than the one judged), ENOENT, and the errno of a
/// failed unlink; `detail` says which, and what the file is.
std::error_code remove_dead_segment(const std::filesystem::path& path, const struct stat* judged,
    std::string& detail) noexcept;

namespace detail {

/// Opens the file of `fd` once more: a new description (/proc/self/fd/N),
/// so that its locks are its own. Needs /proc.
UniqueFd reopen(const UniqueFd& fd, int flags, std::error_code& ec) noexcept;

/// Open-file-description write locks on one byte of a file: the liveness of
/// a creator (layout::kCreatorLockByte) and of ring participants (bytes at
/// their objects' offsets). Takes the lock on byte `offset` through `fd`
/// (open for writing) without waiting: false when another description holds
/// it (ec clear) or on an error (ec set).
bool lock_byte(const UniqueFd& fd, std::uint64_t offset, std::error_code& ec) noexcept;
void unlock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept;
/// Who holds byte `offset`, asked through `probe`, a description that does
/// not hold it: alive (some other description), dead (nobody), unknown (the
/// probe failed; errno says why).
Liveness byte_holder(const UniqueFd& probe, std::uint64_t offset) noexcept;
/// lock_byte() on the creator's byte.
bool take_creator_lock(const UniqueFd& fd, std::error_code& ec) noexcept;

} // namespace detail
} // namespace shmlink
