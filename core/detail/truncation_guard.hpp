// Surviving a peer that truncates a segment's file or punches holes in it.
// Any process that can open a path-backed segment for writing can ftruncate()
// it or fallocate(FALLOC_FL_PUNCH_HOLE) a page of it; every other process
// then dies of SIGBUS at its next touch of a page the file lacks, and on a
// full tmpfs even of a hole, which tmpfs cannot fill. A segment mapped with
// MapOptions::guard_truncation is registered here, and a SIGBUS inside it
// that is a missing page (BUS_ADRERR) is repaired instead of fatal:
//  - a file cut shorter than this mapping is extended back to it (fallocate
//    of its last byte, which never shrinks a file, so racing repairs cannot
//    undo each other), and the header's `truncations` counts it;
//  - the faulting page is then allocated in the file (fallocate of that page,
//    which fills a hole) and the access is retried: the page comes back as
//    zeros, its data lost, which the rings report as corruption;
//  - a page the file cannot hold again (a full file system, a file size
//    limit, or a read-only mapping that may not write the file) is replaced
//    in this process by a private zero page with the mapping's protection,
//    and counted: per mapping (guard_private_pages) and, where this process
//    may write the header, in the header's `damaged_pages`. That page is no
//    longer shared: peers do not see what this process writes there, which
//    Segment::check_backing() reports as Errc::damaged.
// A fault on a page the file holds by the time the handler looks (another
// process repaired it between the fault and the look) is simply retried; a
// page that keeps faulting so however often it is retried gets a private
// page too. A fault where the file cannot be read (an I/O error), outside
// every guarded segment, or not BUS_ADRERR (a memory error) goes to the
// handler installed before, or kills the process as it would have.
//
// memfd segments need none of this: they are sealed against shrinking
// (F_SEAL_SHRINK), so a guest holding their fd cannot truncate them, and the
// kernel's internal tmpfs behind them has no size limit, so a hole punched
// in one refills on the next touch (its data lost) instead of faulting.
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
/// How many pages of the slot's mapping are private zero pages now, in place
/// of pages the file could not hold again.
std::uint64_t guard_private_pages(int slot) noexcept;

} // namespace shmlink::detail
