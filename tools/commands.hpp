// The subcommands of the shmlink tool, one per file; each takes main's
// arguments (argv[1] is its own name) and answers the exit status.
#pragma once

namespace shmlink::tool {

int inspect(int argc, char** argv);
int ls(int argc, char** argv);
int gc(int argc, char** argv);
int watch(int argc, char** argv);
int bench(int argc, char** argv);

/// Exit statuses, the same for every subcommand.
inline constexpr int kDone = 0;
inline constexpr int kFailed = 1;   ///< a file could not be read or written, or a benchmark failed
inline constexpr int kBadUsage = 2;

} // namespace shmlink::tool
