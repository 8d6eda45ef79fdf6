// A process's start time (clock ticks since boot, /proc/<pid>/stat field 22),
// which the segment header records for people to read. It is not a test of
// liveness: a pid names another process in another pid namespace. Liveness
// is the kernel's answer to a lock probe (core/liveness.hpp).
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmlink {

/// The start time of `pid`, or 0 when there is no such process.
std::uint64_t process_start_time(pid_t pid) noexcept;

} // namespace shmlink
