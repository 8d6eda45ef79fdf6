// Surviving a peer that truncates a segment's file. Any process that can
// open a path-backed segment for writing can ftruncate() it; every other
// process then dies of SIGBUS at its next touch of the cut extent. A segment
// mapped with MapOptions::guard_truncation is registered here, and a SIGBUS
// inside it that is a truncation (BUS_ADRERR, at an offset the file no
// longer reaches) is repaired instead of fatal: the file is extended back to
// what this process maps (fallocate of its last byte, which never shrinks a
// file, so racing repairs cannot undo each other) and the access is retried.
// The cut pages come back as zeros: their data is lost, which the rings
// report as corruption, but no process dies. A read-only mapping cannot
// repair the file; it gets a private zero page in place of the lost one.
// Every other SIGBUS (a memory or I/O error, a repair that fails because the
// file system is full, a fault outside every guarded segment) goes to the
// handler installed before, or kills the process as it would have.
//
// memfd segments need none of this: they are sealed against shrinking
// (F_SEAL_SHRINK), so a guest holding their fd cannot truncate them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>

namespace shmlink::detail {

/// Registers the mapping of `fd` at `base`, `mapped` bytes long, and installs the SIGBUS handler on first use. Answers a slot for the
/// calls below, or -1 with `ec` set (64 guarded segments at most).
int guard_truncation(const void* base, int fd, std::size_t mapped, bool writable,
    std::error_code& ec) noexcept;
/// After grow() or refresh(): the slot's segment now maps `mapped` bytes.
void guard_resize(int slot, std::size_t mapped) noexcept;
/// Before the mapping goes away.
void guard_forget(int slot) noexcept;
/// Adds one to the `truncations` count in the header of the segment mapped
/// at `base`, which must be writable and whole again.
void count_truncation(void* base) noexcept;
/// How many faults the slot's segment survived.
std::uint64_t guard_repairs(int slot) noexcept;

} // namespace shmlink::detail
