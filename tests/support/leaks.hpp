// Test support: counts this process's open fds and shared-memory mappings,
// so that a test can show it leaves neither behind. Only mappings of shared
// files count (/dev/shm, memfd, unlinked files): those are what shmlink
// makes, and the heap's own mappings (malloc arenas, sanitizer allocators)
// come and go on their own.
#pragma once

#include <dirent.h>

#include <fstream>
#include <string>

namespace shmlink::test {

inline int count_open_fds()
{
    int count = 0;
    if (DIR* dir = ::opendir("/proc/self/fd")) {
        while (const dirent* e = ::readdir(dir))
            count += e->d_name[0] != '.';
        ::closedir(dir);
        --count; // the directory stream's own fd
    }
    return count;
}

inline int count_mappings()
{
    std::ifstream maps("/proc/self/maps");
    int count = 0;
    for (std::string line; std::getline(maps, line);)
        count += line.find("/dev/shm/") != std::string::npos || line.find("/memfd:") != std::string::npos
            || line.find("(deleted)") != std::string::npos;
    return count;
}

/// Resources at construction; `fds_now()`/`maps_now()` compare later.
struct ResourceCount {
    int fds = count_open_fds();
    int maps = count_mappings();
};

} // namespace shmlink::test

/// Checks at the end of a test that it left no fd and no mapping behind.
#define SHMLINK_CHECK_NO_LEAKS(before)                                        \
    do {                                                                      \
        CHECK_MESSAGE(shmlink::test::count_open_fds() == (before).fds, "fd leak");      \
        CHECK_MESSAGE(shmlink::test::count_mappings() == (before).maps, "mapping leak"); \
    } while (0)
