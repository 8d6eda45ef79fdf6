// Identifying a process across pid reuse: a pid plus its start time (clock
// ticks since boot, /proc/<pid>/stat field 22) names one process for good.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace shmlink {

/// The start time of `pid`, or 0 when there is no such process.
std::uint64_t process_start_time(pid_t pid) noexcept;

/// True when `pid` runs and, if `start_time` is not 0, started at that time.
bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;

} // namespace shmlink
