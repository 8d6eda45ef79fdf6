// shmlink inspect: a segment's header, directory and the state of each ring
// and queue, as text or JSON. It attaches read-only and changes nothing.
#include <shmlink/core/error.hpp>
#include <shmlink/core/layout.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/inspect.hpp>

#include "bench/report.hpp"
#include "tools/commands.hpp"
#include "tools/directory.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmlink::tool {
namespace {

using bench::json_string;

constexpr char kUsage[] = R"(usage: shmlink inspect PATH [--json]
       shmlink inspect --fd N [--json]

Prints a segment's header (layout version, size, maximum, generation,
how often it was truncated and how often its creator rewrote its header
page after another process wrote over it, creator and whether it is alive, by the lock it holds on the file: "unknown"
(JSON null) when that cannot be decided), its directory, and for each ring or queue
its fill level, positions, message counts, sleepers and counters. For an
MPSC ring (a host's inbox) it prints each lane that is not free: owned by
a guest, with the guest's pid, whether the guest came through the host's
socket or attached by path; held for a guest on its way; draining after
its guest left. For the host's record of its socket (host.socket), the
path the host listens at. It attaches read-only and
changes nothing; a live segment may move while it is read, so the figures
are a snapshot of each field, not of the whole.

  --json  one JSON object instead of text, for scripts
  --fd N  an fd this process inherited instead of a path

Exit status: 0 done, 1 the file is not a readable shmlink segment (the
message says which file and why), 2 bad usage.
)";

/// What an ObjectState of a kind ipc/ does not know may still be: the
/// host's record of its socket (transport/layout.hpp). Its kind's name, and
/// the path when the record checks out ("" when it does not).
std::optional<std::pair<std::string, std::string>> transport_object(const Segment& segment, const ObjectState& o)
{
    if (o.object.kind != static_cast<std::uint16_t>(transport::ObjectKind::host_socket))
        return std::nullopt;
    transport::HostSocket record {};
    if (o.object.version == transport::kHostSocketVersion && o.object.length >= sizeof(record))
        std::memcpy(&record, segment.base() + o.object.offset, sizeof(record)); // a copy: a peer may rewrite it
    return std::make_pair(std::string("host socket"), socket_path_of(record));
}

std::string spsc_json(const SpscState& s)
{
    char text[512];
    std::snprintf(text, sizeof(text),
        "{\"capacity_bytes\": %llu, \"head\": %llu, \"tail\": %llu, \"fill_bytes\": %llu, "
        "\"committed_messages\": %llu, \"released_messages\": %llu, \"claim_open\": %s, "
        "\"claim_bytes\": %u, \"readable_sleepers\": %u, \"writable_sleepers\": %u, \"consistent\": %s}",
        static_cast<unsigned long long>(s.capacity_bytes), static_cast<unsigned long long>(s.head),
        static_cast<unsigned long long>(s.tail), static_cast<unsigned long long>(s.fill_bytes),
        static_cast<unsigned long long>(s.committed_messages), static_cast<unsigned long long>(s.released_messages),
        s.claim_open ? "true" : "false", s.claim_bytes, s.readable_sleepers, s.writable_sleepers,
        s.consistent ? "true" : "false");
    return text;
}

std::size_t owned_lanes(const MpscState& m)
{
    std::size_t owned = 0;
    for (const auto& lane : m.lanes)
        owned += lane.state == "owned" ? 1 : 0;
    return owned;
}

/// JSON's creator_alive: true, false, or null when it cannot be decided.
const char* alive_json(Liveness alive)
{
    return alive == Liveness::alive ? "true" : alive == Liveness::dead ? "false" : "null";
}

/// The text form: "alive", "gone", "liveness unknown", and what a checkpoint is.
std::string alive_text(const SegmentInfo& info, Liveness alive)
{
    std::string text = alive == Liveness::alive ? "alive" : alive == Liveness::dead ? "gone" : "liveness unknown";
    if ((info.flags & layout::kCheckpoint) != 0)
        text += " (a checkpoint written by Snapshot::commit)";
    else if ((info.flags & layout::kCreatorLocked) == 0)
        text += " (its creator holds no lock: a segment of an older shmlink)";
    return text;
}

void print_json(const std::string& source, const Segment& segment, Liveness alive,
    const std::vector<ObjectState>& objects)
{
    const SegmentInfo info = segment.info();
    std::printf("{\n  \"segment\": %s,\n  \"layout_version\": %u,\n  \"size_bytes\": %llu,\n  \"max_size_bytes\": %llu,\n"
                "  \"generation\": %llu,\n  \"truncations\": %llu,\n  \"header_repairs\": %llu,\n  \"creator_pid\": %d,\n  \"creator_alive\": %s,\n"
                "  \"checkpoint\": %s,\n  \"objects\": [",
        json_string(source).c_str(), info.layout_version, static_cast<unsigned long long>(info.size_bytes),
        static_cast<unsigned long long>(info.max_size_bytes), static_cast<unsigned long long>(info.generation),
        static_cast<unsigned long long>(segment.truncations()),
        static_cast<unsigned long long>(segment.header_repairs()), static_cast<int>(info.creator_pid), alive_json(alive),
        (info.flags & layout::kCheckpoint) != 0 ? "true" : "false");
    const char* separator = "\n";
    for (const auto& o : objects) {
        const auto transport = transport_object(segment, o);
        std::printf("%s    {\"name\": %s, \"kind\": %s, \"kind_code\": %u, \"version\": %u, \"offset\": %llu, \"length\": %llu",
            separator, json_string(o.object.name).c_str(), json_string(transport ? transport->first : o.kind).c_str(),
            o.object.kind, o.object.version, static_cast<unsigned long long>(o.object.offset),
            static_cast<unsigned long long>(o.object.length));
        if (transport)
            std::printf(", \"host_socket\": %s", transport->second.empty() ? "null" : json_string(transport->second).c_str());
        if (!o.error.empty())
            std::printf(", \"error\": %s", json_string(o.error).c_str());
        if (o.spsc)
            std::printf(", \"spsc\": %s", spsc_json(*o.spsc).c_str());
        if (o.mpsc) {
            const auto& m = *o.mpsc;
            std::printf(", \"mpsc\": {\"lane_count\": %u, \"owned_lanes\": %zu, \"lane_capacity_bytes\": %llu, "
                        "\"abandoned_claims\": %llu, \"dead_producers\": %llu, \"corrupt_lanes\": %llu, \"lanes\": [",
                m.lane_count, owned_lanes(m), static_cast<unsigned long long>(m.lane_capacity_bytes),
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
                        "\"dequeue_pos\": %llu, \"readable_sleepers\": %u, \"writable_sleepers\": %u, \"handles\": %u, "
                        "\"abandoned_claims\": %llu, \"consistent\": %s}",
                static_cast<unsigned long long>(q.capacity), q.item_bytes, static_cast<unsigned long long>(q.size),
                static_cast<unsigned long long>(q.enqueue_pos), static_cast<unsigned long long>(q.dequeue_pos),
                q.readable_sleepers, q.writable_sleepers, q.handles, static_cast<unsigned long long>(q.abandoned_claims),
                q.consistent ? "true" : "false");
        }
        if (o.topic) {
            const auto& t = *o.topic;
            std::printf(", \"topic\": {\"slot_count\": %u, \"queue_depth\": %u, \"max_held\": %u, \"history\": %u, "
                        "\"publisher\": %s, \"publisher_pid\": %d, \"published\": %llu, \"extents\": %llu, "
                        "\"pool_bytes\": %llu, \"subscribers\": [",
                t.slot_count, t.queue_depth, t.max_held, t.history, json_string(t.publisher).c_str(),
                static_cast<int>(t.publisher_pid), static_cast<unsigned long long>(t.published),
                static_cast<unsigned long long>(t.extents), static_cast<unsigned long long>(t.pool_bytes));
            for (std::size_t i = 0; i < t.slots.size(); ++i) {
                const auto& sub = t.slots[i];
                std::printf("%s{\"slot\": %u, \"state\": %s, \"pid\": %d, \"depth\": %u, \"overflow\": %s, "
                            "\"queued\": %llu, \"missed\": %llu, \"reclaimed\": %llu, \"quarantined\": %s, "
                            "\"consistent\": %s}",
                    i == 0 ? "" : ", ", sub.index, json_string(sub.state).c_str(), static_cast<int>(sub.pid), sub.depth,
                    json_string(sub.overflow).c_str(), static_cast<unsigned long long>(sub.queued),
                    static_cast<unsigned long long>(sub.missed), static_cast<unsigned long long>(sub.reclaimed),
                    sub.quarantined ? "true" : "false", sub.consistent ? "true" : "false");
            }
            std::printf("]}");
        }
        std::printf("}");
        separator = ",\n";
    }
    std::printf("\n  ]\n}\n");
}

void print_spsc_line(const SpscState& s)
{
    std::printf("fill %llu of %llu bytes, head %llu, tail %llu, messages %llu committed / %llu released%s%s, "
                "sleepers %u reading / %u writing\n",
        static_cast<unsigned long long>(s.fill_bytes), static_cast<unsigned long long>(s.capacity_bytes),
        static_cast<unsigned long long>(s.head), static_cast<unsigned long long>(s.tail),
        static_cast<unsigned long long>(s.committed_messages), static_cast<unsigned long long>(s.released_messages),
        s.claim_open ? (", an open claim of " + std::to_string(s.claim_bytes) + " bytes").c_str() : "",
        s.consistent ? "" : ", POSITIONS INCONSISTENT", s.readable_sleepers, s.writable_sleepers);
}

void print_text(const std::string& source, const Segment& segment, Liveness alive,
    const std::vector<ObjectState>& objects)
{
    const SegmentInfo info = segment.info();
    std::printf("segment %s\n", source.c_str());
    std::printf("  layout version %u, %llu of %llu bytes, generation %llu\n", info.layout_version,
        static_cast<unsigned long long>(info.size_bytes), static_cast<unsigned long long>(info.max_size_bytes),
        static_cast<unsigned long long>(info.generation));
    std::printf("  creator pid %d, %s\n", static_cast<int>(info.creator_pid), alive_text(info, alive).c_str());
    if (segment.truncations() != 0)
        std::printf("  TRUNCATED %llu times by a process with write access (extended back; the cut data was lost)\n",
            static_cast<unsigned long long>(segment.truncations()));
    if (segment.header_repairs() != 0)
        std::printf("  HEADER REWRITTEN %llu times by its creator (another process wrote over the header or the directory)\n",
            static_cast<unsigned long long>(segment.header_repairs()));
    std::printf("  %zu objects\n", objects.size());
    for (const auto& o : objects) {
        const auto transport = transport_object(segment, o);
        std::printf("  %-24s %-10s v%u  [%llu, +%llu)\n", o.object.name.c_str(),
            (transport ? transport->first : o.kind).c_str(), o.object.version,
            static_cast<unsigned long long>(o.object.offset), static_cast<unsigned long long>(o.object.length));
        if (transport)
            std::printf("      %s%s\n", transport->second.empty() ? "NOT A VALID RECORD of " : "the host listens at ",
                transport->second.empty() ? "the host's socket path" : transport->second.c_str());
        if (!o.error.empty())
            std::printf("      CORRUPT: %s\n", o.error.c_str());
        if (o.spsc) {
            std::printf("      ");
            print_spsc_line(*o.spsc);
        }
        if (o.mpsc) {
            const auto& m = *o.mpsc;
            std::printf("      %u lanes of %llu bytes, %zu owned; abandoned claims %llu, dead producers %llu, corrupt lanes %llu\n",
                m.lane_count, static_cast<unsigned long long>(m.lane_capacity_bytes), owned_lanes(m),
                static_cast<unsigned long long>(m.abandoned_claims), static_cast<unsigned long long>(m.dead_producers),
                static_cast<unsigned long long>(m.corrupt_lanes));
            for (const auto& lane : m.lanes) {
                if (lane.state == "free" && lane.ring.fill_bytes == 0)
                    continue;
                if (lane.state == "held")
                    std::printf("      lane %u held (for a guest joining through the socket): ", lane.index);
                else
                    std::printf("      lane %u %s (pid %d): ", lane.index, lane.state.c_str(), static_cast<int>(lane.pid));
                print_spsc_line(lane.ring);
            }
        }
        if (o.mpmc) {
            const auto& q = *o.mpmc;
            std::printf("      %llu of %llu items of %u bytes%s, sleepers %u reading / %u writing, %u handles, "
                        "abandoned claims %llu\n",
                static_cast<unsigned long long>(q.size), static_cast<unsigned long long>(q.capacity), q.item_bytes,
                q.consistent ? "" : ", POSITIONS INCONSISTENT", q.readable_sleepers, q.writable_sleepers, q.handles,
                static_cast<unsigned long long>(q.abandoned_claims));
        }
        if (o.topic) {
            const auto& t = *o.topic;
            std::printf("      publisher %s (pid %d), %llu published; pool of %llu bytes in %llu extents; "
                        "%zu of %u subscriber slots taken, queues of up to %u, %u held each\n",
                t.publisher.c_str(), static_cast<int>(t.publisher_pid), static_cast<unsigned long long>(t.published),
                static_cast<unsigned long long>(t.pool_bytes), static_cast<unsigned long long>(t.extents), t.slots.size(),
                t.slot_count, t.queue_depth, t.max_held);
            for (const auto& sub : t.slots)
                std::printf("      subscriber %u %s (pid %d): %llu of %u queued (%s), %llu missed, %llu reclaimed%s%s\n",
                    sub.index, sub.state.c_str(), static_cast<int>(sub.pid), static_cast<unsigned long long>(sub.queued),
                    sub.depth, sub.overflow.c_str(), static_cast<unsigned long long>(sub.missed),
                    static_cast<unsigned long long>(sub.reclaimed), sub.quarantined ? ", QUARANTINED" : "",
                    sub.consistent ? "" : ", POSITIONS INCONSISTENT");
        }
    }
}

} // namespace

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
            return kDone;
        } else if (path.empty() && !arg.starts_with("-"))
            path = arg;
        else {
            std::fputs(kUsage, stderr);
            return kBadUsage;
        }
    }
    if (path.empty() == (fd < 0)) {
        std::fputs(kUsage, stderr);
        return kBadUsage;
    }
    // Guarded: a file a peer truncates under us reads as zeros instead of killing us.
    const AttachOptions read_only {.read_only = true, .map = {.guard_truncation = true}};
    const std::string source = fd >= 0 ? "fd " + std::to_string(fd) : path;
    try {
        Segment segment = fd >= 0 ? Segment::attach(UniqueFd(::dup(fd)), read_only)
                                           : Segment::attach(path, read_only);
        std::error_code ec;
        std::vector<ObjectState> objects;
        for (const auto& object : segment.objects(ec))
            objects.push_back(shmlink::inspect(segment, object)); // the ipc/ reader, not this command
        if (ec)
            throw Error(ec, "inspect " + source, "directory");
        const Liveness alive = segment.creator_liveness();
        if (json)
            print_json(source, segment, alive, objects);
        else
            print_text(source, segment, alive, objects);
        return kDone;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return kFailed;
    }
}

} // namespace shmlink::tool
