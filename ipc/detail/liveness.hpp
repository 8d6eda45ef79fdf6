// Whether a participant of a ring (an MPSC producer, an MPMC handle) lives,
// told by the kernel rather than by a pid: each participant holds an
// open-file-description write lock on one byte of the segment file, through
// a file description of its own. The kernel drops the lock however the
// process ends; it means the same in every pid namespace, survives pid
// reuse, and follows the description across fork().
#pragma once

#include "core/segment.hpp"
#include "core/unique_fd.hpp"

#include <cstdint>
#include <system_error>

namespace shmlink::detail {

/// A file description of the segment's file of our own (dup() would share
/// the creator's when the fd was passed over a socket, and locks of one
/// description never conflict with each other). Needs /proc.
UniqueFd reopen_segment(const Segment& segment, std::error_code& ec) noexcept;

/// Takes the lock on byte `offset` without waiting: false when another description holds it.
bool lock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept;
void unlock_byte(const UniqueFd& fd, std::uint64_t offset) noexcept;

/// True while a description other than `probe`'s holds the lock on byte
/// `offset`; also when the test itself fails, so that an error never takes
/// a live participant for dead.
bool byte_locked(const UniqueFd& probe, std::uint64_t offset) noexcept;

} // namespace shmlink::detail
