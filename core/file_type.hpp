// What kind of file a mode names, in words for error messages: "attach
// /dev/shm/x: it is a FIFO, not a segment", "connect: /tmp/y is a regular
// file, not a socket".
#pragma once

#include <sys/stat.h>

namespace shmlink {

/// "a regular file", "a directory", "a FIFO", "a socket", ... for `st_mode`.
constexpr const char* file_type_name(mode_t mode) noexcept
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFLNK: return "a symbolic link";
    default: return "a file of an unknown type";
    }
}

} // namespace shmlink
