// Whether a participant of a ring (an MPSC producer, an MPMC handle) lives,
// told by the kernel rather than by a pid: each participant holds an
// open-file-description write lock on one byte of the segment file, through
// a file description of its own. The kernel drops the lock however the
// process ends; it means the same in every pid namespace, survives pid
// reuse, and follows the description across fork(). The locks themselves
// are core's (core/liveness.hpp), the same a segment's creator holds.
#pragma once

#include <shmlink/core/liveness.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <fcntl.h>

#include <cstdint>
#include <system_error>

namespace shmlink::detail {

/// A file description of the segment's file of our own (dup() would share
/// the creator's when the fd was passed over a socket, and locks of one
/// description never conflict with each other), writable for a write lock.
/// Needs /proc.
inline UniqueFd reopen_segment(const Segment& segment, std::error_code& ec) noexcept
{
    return reopen(segment.fd(), O_RDWR, ec);
}

/// Takes the lock on byte `offset` without waiting: false when another
/// description holds it, or on an error (the participant then does not take
/// what the byte stands for).
inline bool lock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept
{
    std::error_code ec;
    return lock_byte(fd, offset, ec);
}

/// True while a description other than `probe`'s holds the lock on byte
/// `offset`; also when the test itself fails, so that an error never takes
/// a live participant for dead.
inline bool byte_locked(const UniqueFd& probe, std::uint64_t offset) noexcept
{
    return byte_holder(probe, offset) != Liveness::dead;
}

} // namespace shmlink::detail
