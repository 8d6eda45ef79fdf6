// The shmlink command-line tool:
//   shmlink inspect PATH [--json]     a segment's header, directory and rings
//   shmlink inspect --fd N [--json]   the same for an inherited fd
//   shmlink ls [DIR]                  the segments in DIR (default /dev/shm)
//   shmlink gc [DIR] [--yes]          removes the segments whose creator is gone
// inspect and ls attach read-only (ls reads only headers) and change nothing.
// Exit codes: 0 done, 1 a file could not be read or removed (the message
// says which file and why), 2 bad usage.
#include "core/error.hpp"
#include "core/layout.hpp"
#include "core/process.hpp"
#include "core/segment.hpp"
#include "core/unique_fd.hpp"
#include "ipc/inspect.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr char kUsage[] = R"(usage: shmlink inspect PATH [--json]
       shmlink inspect --fd N [--json]
       shmlink ls [DIR]
       shmlink gc [DIR] [--yes]

inspect   prints a segment's header (layout version, size, maximum,
          generation, creator and whether it is alive), its directory, and
          for each ring or queue its fill level, positions, sleepers and
          counters. It attaches read-only and changes nothing.
  --json  one JSON object instead of text, for scripts
  --fd N  an fd this process inherited instead of a path

ls        lists the shmlink segments in DIR (default /dev/shm): path, owner,
          size, creator pid and whether the creator is alive. It reads only
          each file's header; other files are not listed.
gc        removes the segments in DIR whose creator is gone, asking for each
          on stdin (y to remove) unless --yes.

Exit status: 0 done, 1 a file could not be read or removed, 2 bad usage.
)";

std::string json_string(std::string_view s)
{
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string spsc_json(const shmlink::SpscState& s)
{
    char text[512];
    std::snprintf(text, sizeof(text),
        "{\"capacity_bytes\": %llu, \"head\": %llu, \"tail\": %llu, \"fill_bytes\": %llu, \"claim_open\": %s, "
        "\"claim_bytes\": %u, \"readable_sleepers\": %u, \"writable_sleepers\": %u, \"consistent\": %s}",
        static_cast<unsigned long long>(s.capacity_bytes), static_cast<unsigned long long>(s.head),
        static_cast<unsigned long long>(s.tail), static_cast<unsigned long long>(s.fill_bytes),
        s.claim_open ? "true" : "false", s.claim_bytes, s.readable_sleepers, s.writable_sleepers,
        s.consistent ? "true" : "false");
    return text;
}

void print_json(const std::string& source, const shmlink::Segment& segment, bool alive,
    const std::vector<shmlink::ObjectState>& objects)
{
    const shmlink::SegmentInfo info = segment.info();
    std::printf("{\n  \"segment\": %s,\n  \"layout_version\": %u,\n  \"size_bytes\": %llu,\n  \"max_size_bytes\": %llu,\n"
                "  \"generation\": %llu,\n  \"creator_pid\": %d,\n  \"creator_alive\": %s,\n  \"objects\": [",
        json_string(source).c_str(), info.layout_version, static_cast<unsigned long long>(info.size_bytes),
        static_cast<unsigned long long>(info.max_size_bytes), static_cast<unsigned long long>(info.generation),
        static_cast<int>(info.creator_pid), alive ? "true" : "false");
    const char* separator = "\n";
    for (const auto& o : objects) {
        std::printf("%s    {\"name\": %s, \"kind\": %s, \"kind_code\": %u, \"version\": %u, \"offset\": %llu, \"length\": %llu",
            separator, json_string(o.object.name).c_str(), json_string(o.kind).c_str(), o.object.kind, o.object.version,
            static_cast<unsigned long long>(o.object.offset), static_cast<unsigned long long>(o.object.length));
        if (!o.error.empty())
            std::printf(", \"error\": %s", json_string(o.error).c_str());
        if (o.spsc)
            std::printf(", \"spsc\": %s", spsc_json(*o.spsc).c_str());
        if (o.mpsc) {
            const auto& m = *o.mpsc;
            std::printf(", \"mpsc\": {\"lane_count\": %u, \"lane_capacity_bytes\": %llu, \"abandoned_claims\": %llu, "
                        "\"dead_producers\": %llu, \"corrupt_lanes\": %llu, \"lanes\": [",
                m.lane_count, static_cast<unsigned long long>(m.lane_capacity_bytes),
                static_cast<unsigned long long>(m.abandoned_claims), static_cast<unsigned long long>(m.dead_producers),
                static_cast<unsigned long long>(m.corrupt_lanes));
            for (std::size_t i = 0; i < m.lanes.size(); ++i)
                std::printf("%s{\"lane\": %u, \"state\": %s, \"pid\": %d, \"ring\": %s}", i == 0 ? "" : ", ",
                    m.lanes[i].index, json_string(m.lanes[i].state).c_str(), static_cast<int>(m.lanes[i].pid),
                    spsc_json(m.lanes[i].ring).c_str());
            std::printf("]}");
        }
        if (o.mpmc) {
            const auto& q = *o.mpmc;
            std::printf(", \"mpmc\": {\"capacity\": %llu, \"item_bytes\": %u, \"size\": %llu, \"enqueue_pos\": %llu, "
                        "\"dequeue_pos\": %llu, \"readable_sleepers\": %u, \"writable_sleepers\": %u, \"consistent\": %s}",
                static_cast<unsigned long long>(q.capacity), q.item_bytes, static_cast<unsigned long long>(q.size),
                static_cast<unsigned long long>(q.enqueue_pos), static_cast<unsigned long long>(q.dequeue_pos),
                q.readable_sleepers, q.writable_sleepers, q.consistent ? "true" : "false");
        }
        std::printf("}");
        separator = ",\n";
    }
    std::printf("\n  ]\n}\n");
}

void print_spsc_line(const shmlink::SpscState& s)
{
    std::printf("fill %llu of %llu bytes, head %llu, tail %llu%s%s, sleepers %u reading / %u writing\n",
        static_cast<unsigned long long>(s.fill_bytes), static_cast<unsigned long long>(s.capacity_bytes),
        static_cast<unsigned long long>(s.head), static_cast<unsigned long long>(s.tail),
        s.claim_open ? (", an open claim of " + std::to_string(s.claim_bytes) + " bytes").c_str() : "",
        s.consistent ? "" : ", POSITIONS INCONSISTENT", s.readable_sleepers, s.writable_sleepers);
}

void print_text(const std::string& source, const shmlink::Segment& segment, bool alive,
    const std::vector<shmlink::ObjectState>& objects)
{
    const shmlink::SegmentInfo info = segment.info();
    std::printf("segment %s\n", source.c_str());
    std::printf("  layout version %u, %llu of %llu bytes, generation %llu\n", info.layout_version,
        static_cast<unsigned long long>(info.size_bytes), static_cast<unsigned long long>(info.max_size_bytes),
        static_cast<unsigned long long>(info.generation));
    std::printf("  creator pid %d, %s\n", static_cast<int>(info.creator_pid), alive ? "alive" : "gone");
    std::printf("  %zu objects\n", objects.size());
    for (const auto& o : objects) {
        std::printf("  %-24s %-10s v%u  [%llu, +%llu)\n", o.object.name.c_str(), o.kind.c_str(), o.object.version,
            static_cast<unsigned long long>(o.object.offset), static_cast<unsigned long long>(o.object.length));
        if (!o.error.empty())
            std::printf("      CORRUPT: %s\n", o.error.c_str());
        if (o.spsc) {
            std::printf("      ");
            print_spsc_line(*o.spsc);
        }
        if (o.mpsc) {
            const auto& m = *o.mpsc;
            std::printf("      %u lanes of %llu bytes; abandoned claims %llu, dead producers %llu, corrupt lanes %llu\n",
                m.lane_count, static_cast<unsigned long long>(m.lane_capacity_bytes),
                static_cast<unsigned long long>(m.abandoned_claims), static_cast<unsigned long long>(m.dead_producers),
                static_cast<unsigned long long>(m.corrupt_lanes));
            for (const auto& lane : m.lanes) {
                if (lane.state == "free" && lane.ring.fill_bytes == 0)
                    continue;
                std::printf("      lane %u %s (pid %d): ", lane.index, lane.state.c_str(), static_cast<int>(lane.pid));
                print_spsc_line(lane.ring);
            }
        }
        if (o.mpmc) {
            const auto& q = *o.mpmc;
            std::printf("      %llu of %llu items of %u bytes%s, sleepers %u reading / %u writing\n",
                static_cast<unsigned long long>(q.size), static_cast<unsigned long long>(q.capacity), q.item_bytes,
                q.consistent ? "" : ", POSITIONS INCONSISTENT", q.readable_sleepers, q.writable_sleepers);
        }
    }
}

int inspect(int argc, char** argv)
{
    std::string path;
    int fd = -1;
    bool json = false;
    for (int i = 2; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--json")
            json = true;
        else if (arg == "--fd" && i + 1 < argc)
            fd = std::atoi(argv[++i]);
        else if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (path.empty() && !arg.starts_with("-"))
            path = arg;
        else {
            std::fputs(kUsage, stderr);
            return 2;
        }
    }
    if (path.empty() == (fd < 0)) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    const shmlink::AttachOptions read_only {.read_only = true};
    const std::string source = fd >= 0 ? "fd " + std::to_string(fd) : path;
    try {
        shmlink::Segment segment = fd >= 0 ? shmlink::Segment::attach(shmlink::UniqueFd(::dup(fd)), read_only)
                                           : shmlink::Segment::attach(path, read_only);
        std::error_code ec;
        std::vector<shmlink::ObjectState> objects;
        for (const auto& object : segment.objects(ec))
            objects.push_back(shmlink::inspect(segment, object));
        if (ec)
            throw shmlink::Error(ec, "inspect " + source, "directory");
        const bool alive = segment.creator_alive();
        if (json)
            print_json(source, segment, alive, objects);
        else
            print_text(source, segment, alive, objects);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return 1;
    }
}

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
        shmlink::UniqueFd fd(::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
        struct stat st {};
        if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        shmlink::layout::SegmentHeader header {};
        if (::pread(fd.get(), &header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)))
            continue;
        std::string detail;
        if (shmlink::layout::validate_header(header, static_cast<std::uint64_t>(st.st_size), detail))
            continue;
        found.push_back({entry.path().string(), st.st_uid, header.size_bytes, static_cast<pid_t>(header.creator_pid),
            shmlink::process_alive(static_cast<pid_t>(header.creator_pid), header.creator_start_time)});
    }
    if (ec)
        throw shmlink::Error(ec, "ls " + dir);
    std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.path < b.path; });
    return found;
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

int ls(int argc, char** argv)
{
    std::string dir;
    bool unused = false;
    if (!parse_dir(argc, argv, nullptr, dir, unused)) {
        std::fputs(kUsage, stderr);
        return 2;
    }
    try {
        const auto found = find_segments(dir);
        std::printf("%-48s %8s %14s %8s  %s\n", "segment", "owner", "bytes", "creator", "creator alive");
        for (const auto& f : found)
            std::printf("%-48s %8u %14llu %8d  %s\n", f.path.c_str(), f.owner, static_cast<unsigned long long>(f.size_bytes),
                static_cast<int>(f.creator), f.alive ? "yes" : "no");
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return 1;
    }
}

int gc(int argc, char** argv)
{
    std::string dir;
    bool yes = false;
    if (!parse_dir(argc, argv, "--yes", dir, yes)) {
        std::fputs(kUsage, stderr);
        return 2;
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
        return failed == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return 1;
    }
}

} // namespace

int main(int argc, char** argv)
{
    const std::string_view command = argc > 1 ? argv[1] : "";
    if (command == "inspect")
        return inspect(argc, argv);
    if (command == "ls")
        return ls(argc, argv);
    if (command == "gc")
        return gc(argc, argv);
    if (command == "--help" || command == "-h" || command == "help") {
        std::fputs(kUsage, stdout);
        return 0;
    }
    std::fputs(kUsage, stderr);
    return 2;
}
