// shmlink ls and gc: the segments in a directory, found by their headers
// alone (pread; nothing is mapped), and removal of those whose creator is gone.
#include <shmlink/core/error.hpp>
#include <shmlink/core/liveness.hpp>

#include "tools/commands.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace shmlink::tool {
namespace {

constexpr char kLsUsage[] = R"(usage: shmlink ls [DIR]

Lists the shmlink segments in DIR (default /dev/shm): path, owner, size,
creator pid and whether the creator is alive: yes or no by the lock the
creator holds on its file (whatever pid namespace it runs in), "unknown"
when that cannot be decided (a segment of an older shmlink), "checkpoint"
for a copy written by Snapshot::commit. It reads only each file's header;
files that are not shmlink segments (FIFOs, sockets, directories and
other files) are not listed, and nothing that could block is opened.

Exit status: 0 done, 1 DIR could not be read, 2 bad usage.
)";

constexpr char kGcUsage[] = R"(usage: shmlink gc [DIR] [--yes]

Removes the shmlink segments in DIR (default /dev/shm) whose creator is
gone, asking for each on stdin (y to remove) unless --yes. A creator is
alive while it holds its lock on the file, whatever pid namespace it runs
in. Kept, and said why: a segment whose creator's liveness cannot be
decided, and checkpoints. Right before each removal gc takes the dead
creator's lock itself and checks again that the path still names the file
it judged and that it is still dead: a host that came back at that path
in the meantime keeps its segment.

Exit status: 0 done, 1 DIR could not be read or a file not removed, 2 bad usage.
)";

/// A segment found by ls and gc: its header says shmlink, and checks out.
struct Found {
    std::string path;
    struct stat st {}; ///< of the file judged: gc removes only that one
    std::uint64_t size_bytes = 0;
    pid_t creator = 0;
    Liveness liveness = Liveness::unknown;
    std::string why_unknown;
    bool checkpoint = false;
};

const char* alive_column(const Found& f)
{
    if (f.checkpoint)
        return "checkpoint";
    switch (f.liveness) {
    case Liveness::alive: return "yes";
    case Liveness::dead: return "no";
    case Liveness::unknown: break;
    }
    return "unknown";
}

/// The segments in `dir`, by their headers alone (pread: nothing is mapped).
/// FIFOs, sockets, devices and directories are skipped by their type before
/// anything is opened (open_segment_file), so none of them can block us.
std::vector<Found> find_segments(const std::string& dir)
{
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
        throw Error(std::make_error_code(std::errc::not_a_directory), dir,
            std::string("is ") + file_type_name(st.st_mode) + ", not a directory");
    std::vector<Found> found;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        SegmentFile file;
        std::string detail;
        if (open_segment_file(entry.path(), false, file, detail))
            continue;
        found.push_back({entry.path().string(), file.st, file.header.size_bytes,
            static_cast<pid_t>(file.header.creator_pid), file.creator, file.why_unknown, file.checkpoint()});
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
            std::printf("%-48s %8u %14llu %8d  %s\n", f.path.c_str(), f.st.st_uid,
                static_cast<unsigned long long>(f.size_bytes), static_cast<int>(f.creator), alive_column(f));
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
            if (f.checkpoint || f.liveness == Liveness::alive)
                continue;
            if (f.liveness == Liveness::unknown) {
                std::printf("kept %s: whether its creator lives cannot be decided: %s\n", f.path.c_str(),
                    f.why_unknown.c_str());
                continue;
            }
            if (!yes) {
                std::printf("remove %s (creator %d is gone)? [y/N] ", f.path.c_str(), static_cast<int>(f.creator));
                std::fflush(stdout);
                char answer[16] = {};
                if (std::fgets(answer, sizeof(answer), stdin) == nullptr || (answer[0] != 'y' && answer[0] != 'Y')) {
                    std::printf("%skept %s\n", answer[0] == '\0' ? "\n" : "", f.path.c_str());
                    continue;
                }
            }
            // Judged a while ago (the prompt may have waited): remove only under
            // the dead creator's lock, and only the same file, still dead.
            std::string detail;
            const std::error_code ec = remove_dead_segment(f.path, &f.st, detail);
            if (ec == Errc::in_use || ec == std::errc::file_exists || ec == std::errc::no_such_file_or_directory) {
                std::printf("kept %s: %s\n", f.path.c_str(),
                    ec == std::errc::no_such_file_or_directory ? "it is gone already" : detail.c_str());
                continue;
            }
            if (ec) {
                std::fprintf(stderr, "shmlink: gc %s: %s\n", f.path.c_str(), detail.empty() ? ec.message().c_str() : detail.c_str());
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
