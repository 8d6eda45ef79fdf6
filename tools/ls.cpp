// shmlink ls and gc: the segments in a directory, found by their headers
// alone (pread; nothing is mapped), and removal of those whose creator is gone.
#include "core/error.hpp"
#include "core/layout.hpp"
#include "core/process.hpp"
#include "core/unique_fd.hpp"
#include "tools/commands.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace shmlink::tool {
namespace {

constexpr char kLsUsage[] = R"(usage: shmlink ls [DIR]

Lists the shmlink segments in DIR (default /dev/shm): path, owner, size,
creator pid and whether the creator is alive. It reads only each file's
header; files that are not shmlink segments are not listed.

Exit status: 0 done, 1 DIR could not be read, 2 bad usage.
)";

constexpr char kGcUsage[] = R"(usage: shmlink gc [DIR] [--yes]

Removes the shmlink segments in DIR (default /dev/shm) whose creator is
gone, asking for each on stdin (y to remove) unless --yes. A creator is
alive when its pid runs with the start time the header recorded, so a
reused pid does not keep a segment.

Exit status: 0 done, 1 DIR could not be read or a file not removed, 2 bad usage.
)";

/// A segment found by ls and gc: its header says shmlink, and checks out.
struct Found {
    std::string path;
    uid_t owner = 0;
    std::uint64_t size_bytes = 0;
    pid_t creator = 0;
    bool alive = false;
};

/// The segments in `dir`, by their headers alone (pread: nothing is mapped).
std::vector<Found> find_segments(const std::string& dir)
{
    std::vector<Found> found;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        UniqueFd fd(::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        layout::SegmentHeader header {};
        if (::pread(fd.get(), &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)))
            continue;
        std::string detail;
        if (layout::validate_header(header, static_cast<std::uint64_t>(st.st_size), detail))
            continue;
        found.push_back({entry.path().string(), st.st_uid, header.size_bytes, static_cast<pid_t>(header.creator_pid),
            process_alive(static_cast<pid_t>(header.creator_pid), header.creator_start_time)});
    }
    if (ec)
        throw Error(ec, "ls " + dir);
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.path < b.path; });
    return found;
}

bool wants_help(int argc, char** argv)
{
    for (int i = 2; i < argc; ++i)
        if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h")
            return true;
    return false;
}

/// Parses "[DIR] [flag]"; false on bad usage.
bool parse_dir(int argc, char** argv, const char* flag, std::string& dir, bool& flag_set)
{
    dir = "/dev/shm";
    bool have_dir = false;
    for (int i = 2; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (flag != nullptr && arg == flag)
            flag_set = true;
        else if (!have_dir && !arg.starts_with("-")) {
            dir = arg;
            have_dir = true;
        } else
            return false;
    }
    return true;
}

} // namespace

int ls(int argc, char** argv)
{
    std::string dir;
    bool unused = false;
    if (wants_help(argc, argv)) {
        std::fputs(kLsUsage, stdout);
        return kDone;
    }
    if (!parse_dir(argc, argv, nullptr, dir, unused)) {
        std::fputs(kLsUsage, stderr);
        return kBadUsage;
    }
    try {
        const auto found = find_segments(dir);
        std::printf("%-48s %8s %14s %8s  %s\n", "segment", "owner", "bytes", "creator", "creator alive");
        for (const auto& f : found)
            std::printf("%-48s %8u %14llu %8d  %s\n", f.path.c_str(), f.owner, static_cast<unsigned long long>(f.size_bytes),
                static_cast<int>(f.creator), f.alive ? "yes" : "no");
        return kDone;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return kFailed;
    }
}

int gc(int argc, char** argv)
{
    std::string dir;
    bool yes = false;
    if (wants_help(argc, argv)) {
        std::fputs(kGcUsage, stdout);
        return kDone;
    }
    if (!parse_dir(argc, argv, "--yes", dir, yes)) {
        std::fputs(kGcUsage, stderr);
        return kBadUsage;
    }
    try {
        int failed = 0;
        for (const auto& f : find_segments(dir)) {
            if (f.alive)
                continue;
            if (!yes) {
                std::printf("remove %s (creator %d is gone)? [y/N] ", f.path.c_str(), static_cast<int>(f.creator));
                std::fflush(stdout);
                char answer[16] = {};
                if (std::fgets(answer, sizeof(answer), stdin) == nullptr || (answer[0] != 'y' && answer[0] != 'Y')) {
                    std::printf("%skept %s\n", answer[0] == '\0' ? "\n" : "", f.path.c_str());
                    continue;
                }
            }
            if (::unlink(f.path.c_str()) != 0) {
                std::fprintf(stderr, "shmlink: gc %s: %s\n", f.path.c_str(), std::strerror(errno));
                ++failed;
                continue;
            }
            std::printf("removed %s\n", f.path.c_str());
        }
        return failed == 0 ? kDone : kFailed;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return kFailed;
    }
}

} // namespace shmlink::tool
