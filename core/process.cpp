#include <shmlink/core/process.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

#include <shmlink/core/unique_fd.hpp>

namespace shmlink {

std::uint64_t process_start_time(pid_t pid) noexcept
{
    char path[32];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid)); // no allocation: noexcept
    UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd)
        return 0;
    char buffer[1024];
    const ssize_t got = ::read(fd.get(), buffer, sizeof(buffer) - 1);
    if (got <= 0)
        return 0;
    buffer[got] = '\0';
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start behind the last ')'. Start time is field 22.
    const char* p = std::strrchr(buffer, ')');
    if (p == nullptr)
        return 0;
    const char* end = buffer + got;
    for (int field = 2; field < 22 && p != nullptr; ++field)
        p = static_cast<const char*>(std::memchr(p + 1, ' ', static_cast<std::size_t>(end - p - 1)));
    if (p == nullptr)
        return 0;
    std::uint64_t start = 0;
    std::from_chars(p + 1, end, start);
    return start;
}

} // namespace shmlink
