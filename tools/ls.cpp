// shmlink ls and gc: the segments in a directory, found by their headers
// (pread; nothing is mapped), and removal of those whose creator is gone,
// with the socket their host left behind.
#include <shmlink/core/error.hpp>
#include <shmlink/core/liveness.hpp>

#include "tools/commands.hpp"
#include "tools/directory.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace shmlink::tool {
namespace {

constexpr char kLsUsage[] = R"usage(usage: shmlink ls [DIR]

Lists the shmlink segments in DIR (default /dev/shm), one a line:

  segment        the file's path
  owner          the file owner's user name (its uid when it has none)
  bytes          the segment's size
  creator        the creator's pid, as the creator saw it
  lanes          guests attached now: owned lanes of the segment's MPSC
                 rings whose producer holds its lock, whether the guest
                 came through the host's socket or attached by path
  creator alive  and why: "yes (its lock is held)" or "no (its lock is
                 free)", by the lock the creator holds on its file whatever
                 pid namespace it runs in; "unknown: " and why it cannot
                 be decided (a segment of an older shmlink, a failed
                 probe); "checkpoint" for a copy written by Snapshot::commit

It reads each file's header and directory with pread and maps nothing;
files that are not shmlink segments (FIFOs, sockets, directories and
other files) are not listed, and nothing that could block is opened.

Exit status: 0 done, 1 DIR could not be read, 2 bad usage.
)usage";

constexpr char kGcUsage[] = R"usage(usage: shmlink gc [DIR] [--yes]

Removes the shmlink segments in DIR (default /dev/shm) whose creator is
gone, asking for each on stdin (y to remove) unless --yes, and with each
the Unix socket its host left behind. Says "nothing to remove" when no
segment's creator is gone.

A creator is alive while it holds its lock on the file, whatever pid
namespace it runs in. Kept, and said why: a segment whose creator's
liveness cannot be decided, and checkpoints. Right before each removal gc
takes the dead creator's lock itself and checks again that the path still
names the file it judged and that it is still dead: a host that came back
at that path in the meantime keeps its segment.

The socket: a Host records the absolute path it listens on in its segment
(the object host.socket). Once the segment is removed, gc removes the file
at that path only if it is a socket (lstat: a symbolic link is never
followed, another kind of file never removed), connecting to it is refused
(nobody listens), and it is still the same file right before the unlink.
A socket a host listens on again, and anything else, is kept and said why.

  --yes  remove without asking

Exit status: 0 done, 1 DIR could not be read or a file not removed, 2 bad usage.
)usage";

/// A segment found by ls and gc: its header says shmlink, and checks out.
struct Found {
    std::string path;
    struct stat st {}; ///< of the file judged: gc removes only that one
    std::uint64_t size_bytes = 0;
    pid_t creator = 0;
    Liveness liveness = Liveness::unknown;
    std::string why_unknown;
    bool checkpoint = false;
    std::uint32_t lanes = 0;   ///< guests attached now (attached_lanes)
    std::string socket_path {}; ///< as its host recorded it, or ""
};

/// The creator's liveness and the reason for it.
std::string alive_column(const Found& f)
{
    if (f.checkpoint)
        return "checkpoint";
    switch (f.liveness) {
    case Liveness::alive: return "yes (its lock is held)";
    case Liveness::dead: return "no (its lock is free)";
    case Liveness::unknown: break;
    }
    return "unknown: " + f.why_unknown;
}

/// The user name of `uid`, or the number when the user database has none.
std::string user_name(uid_t uid)
{
    long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buffer(size > 0 ? static_cast<std::size_t>(size) : 1024);
    passwd entry {};
    passwd* found = nullptr;
    int error = 0;
    while ((error = ::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found)) == ERANGE && buffer.size() < (1u << 20))
        buffer.resize(buffer.size() * 2);
    if (error == 0 && found != nullptr && found->pw_name != nullptr && found->pw_name[0] != '\0')
        return found->pw_name;
    return std::to_string(uid);
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
        const auto entries = read_directory(file);
        found.push_back({entry.path().string(), file.st, file.header.size_bytes,
            static_cast<pid_t>(file.header.creator_pid), file.creator, file.why_unknown, file.checkpoint(),
            attached_lanes(file, entries), recorded_socket(file, entries)});
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

/// After the segment at `segment` was removed, its creator proved dead:
/// removes the socket its host recorded at `path` when nobody listens
/// there, and says what it did. False when an unlink failed.
bool remove_stale_socket(const std::string& segment, const std::string& path)
{
    struct stat judged {};
    std::string detail;
    switch (judge_socket(path, judged, detail)) {
    case SocketState::missing:
        return true; // its host removed it, or somebody else did
    case SocketState::listening:
    case SocketState::not_socket:
    case SocketState::unknown:
        std::printf("kept %s (the socket %s's host recorded): %s\n", path.c_str(), segment.c_str(), detail.c_str());
        return true;
    case SocketState::stale:
        break;
    }
    // A host that starts at this path now removes the stale socket itself
    // and binds a new one: unlink only the file judged.
    struct stat named {};
    if (::lstat(path.c_str(), &named) != 0 || named.st_dev != judged.st_dev || named.st_ino != judged.st_ino) {
        std::printf("kept %s (the socket %s's host recorded): it was replaced while being judged\n", path.c_str(),
            segment.c_str());
        return true;
    }
    if (::unlink(path.c_str()) != 0) {
        std::fprintf(stderr, "shmlink: gc %s: unlink: %s\n", path.c_str(), errno_code().message().c_str());
        return false;
    }
    std::printf("removed %s (the socket %s's host left: nobody listens)\n", path.c_str(), segment.c_str());
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
        std::printf("%-48s %-12s %14s %8s %5s  %s\n", "segment", "owner", "bytes", "creator", "lanes", "creator alive");
        std::map<uid_t, std::string> names; // one look-up per owner
        for (const auto& f : found) {
            auto name = names.find(f.st.st_uid);
            if (name == names.end())
                name = names.emplace(f.st.st_uid, user_name(f.st.st_uid)).first;
            std::printf("%-48s %-12s %14llu %8d %5u  %s\n", f.path.c_str(), name->second.c_str(),
                static_cast<unsigned long long>(f.size_bytes), static_cast<int>(f.creator), f.lanes,
                alive_column(f).c_str());
        }
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
        int dead = 0;
        for (const auto& f : find_segments(dir)) {
            if (f.checkpoint || f.liveness == Liveness::alive)
                continue;
            if (f.liveness == Liveness::unknown) {
                std::printf("kept %s: whether its creator lives cannot be decided: %s\n", f.path.c_str(),
                    f.why_unknown.c_str());
                continue;
            }
            ++dead;
            if (!yes) {
                struct stat unused {};
                std::string unused_detail;
                const bool stale = !f.socket_path.empty()
                    && judge_socket(f.socket_path, unused, unused_detail) == SocketState::stale;
                std::printf("remove %s (creator %d is gone)%s%s? [y/N] ", f.path.c_str(), static_cast<int>(f.creator),
                    stale ? " and its host's stale socket " : "", stale ? f.socket_path.c_str() : "");
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
            if (!f.socket_path.empty() && !remove_stale_socket(f.path, f.socket_path))
                ++failed;
        }
        if (dead == 0)
            std::printf("nothing to remove\n");
        return failed == 0 ? kDone : kFailed;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return kFailed;
    }
}

} // namespace shmlink::tool
