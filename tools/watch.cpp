// shmlink watch PATH: every ring's and queue's fill level and rates,
// refreshed once an interval until interrupted. Read-only, like inspect:
// it attaches with PROT_READ, follows the segment's growth, and writes nothing.
#include <shmlink/core/error.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>

#include "tools/commands.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace shmlink::tool {
namespace {

constexpr char kUsage[] = R"(usage: shmlink watch PATH [--interval SECONDS] [--count N]

Prints each ring's and queue's fill level and the rates at which producers
write and consumers read it, refreshed every interval (default 1 s) until
interrupted (Ctrl-C) or N refreshes are done. On a terminal the screen is
redrawn in place; otherwise each refresh is a block of plain lines.
Byte rings count bytes (with each message's 8-byte record header); the
MPMC queue counts items. Like inspect, it attaches read-only and follows
the segment as it grows.

Exit status: 0 done or interrupted, 1 the segment could not be read, 2 bad usage.
)";

volatile sig_atomic_t g_interrupted = 0;

/// One ring's (or lane's, or queue's) positions, which only grow while it
/// keeps its producer: what the rates are differences of.
struct Positions {
    std::uint64_t written = 0; ///< bytes (or items) producers have published
    std::uint64_t read = 0;    ///< bytes (or items) consumers have released
};

struct Counters {
    std::vector<Positions> rings; ///< one per lane of an MPSC ring, else one
    double fill = 0;
    double capacity = 0;
    bool items = false; ///< an MPMC queue: counts are items
};

Counters counters_of(const ObjectState& o)
{
    Counters c;
    if (o.spsc) {
        c.rings.push_back({o.spsc->tail, o.spsc->head});
        c.fill = static_cast<double>(o.spsc->fill_bytes);
        c.capacity = static_cast<double>(o.spsc->capacity_bytes);
    } else if (o.mpsc) {
        for (const auto& lane : o.mpsc->lanes) {
            c.rings.push_back({lane.ring.tail, lane.ring.head});
            c.fill += static_cast<double>(lane.ring.fill_bytes);
            c.capacity += static_cast<double>(lane.ring.capacity_bytes);
        }
    } else if (o.mpmc) {
        c.rings.push_back({o.mpmc->enqueue_pos, o.mpmc->dequeue_pos});
        c.fill = static_cast<double>(o.mpmc->size);
        c.capacity = static_cast<double>(o.mpmc->capacity);
        c.items = true;
    }
    return c;
}

/// How far `now` moved on from `before`: a position that went back (a lane
/// freed and taken again starts from 0) counts from 0.
std::uint64_t moved(std::uint64_t now, std::uint64_t before)
{
    return now >= before ? now - before : now;
}

std::string amount(double value, bool items, const char* suffix)
{
    static constexpr const char* kByteUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    static constexpr const char* kItemUnits[] = {"", "k", "M", "G", "T"};
    const double step = items ? 1000 : 1024;
    std::size_t unit = 0;
    while (std::fabs(value) >= step && unit + 1 < std::size(kByteUnits)) {
        value /= step;
        ++unit;
    }
    char text[48];
    std::snprintf(text, sizeof(text), unit == 0 ? "%.0f %s%s" : "%.1f %s%s", value,
        items ? kItemUnits[unit] : kByteUnits[unit], items ? (unit == 0 ? "items" : " items") : "");
    return std::string(text) + suffix;
}

void on_interrupt(int) noexcept
{
    g_interrupted = 1;
}

} // namespace

int watch(int argc, char** argv)
{
    std::string path;
    double interval_s = 1.0;
    long count = -1;
    for (int i = 2; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return kDone;
        }
        char* end = nullptr;
        if (arg == "--interval" && i + 1 < argc) {
            interval_s = std::strtod(argv[++i], &end);
            if (*end != '\0' || !(interval_s >= 0.01 && interval_s <= 3600))
                return std::fputs("shmlink watch: --interval takes seconds, 0.01 to 3600\n", stderr), kBadUsage;
        } else if (arg == "--count" && i + 1 < argc) {
            count = std::strtol(argv[++i], &end, 10);
            if (*end != '\0' || count < 1)
                return std::fputs("shmlink watch: --count takes a positive number\n", stderr), kBadUsage;
        } else if (path.empty() && !arg.starts_with("-")) {
            path = arg;
        } else {
            std::fputs(kUsage, stderr);
            return kBadUsage;
        }
    }
    if (path.empty()) {
        std::fputs(kUsage, stderr);
        return kBadUsage;
    }

    struct sigaction interrupt {};
    interrupt.sa_handler = on_interrupt;
    ::sigaction(SIGINT, &interrupt, nullptr);
    ::sigaction(SIGTERM, &interrupt, nullptr);
    const bool terminal = ::isatty(STDOUT_FILENO) == 1;
    try {
        // Guarded: a peer that truncates the file must not kill a watcher (it reads zeros instead).
        Segment segment = Segment::attach(path, {.read_only = true, .map = {.guard_truncation = true}});
        std::map<std::string, Counters> previous;
        auto previous_time = std::chrono::steady_clock::now();
        for (long frame = 0; !g_interrupted && (count < 0 || frame < count); ++frame) {
            if (frame > 0) {
                // In steps of at most 50 ms, so that Ctrl-C ends it at once.
                const auto wake = previous_time
                    + std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(interval_s));
                for (auto now = std::chrono::steady_clock::now(); !g_interrupted && now < wake;
                     now = std::chrono::steady_clock::now())
                    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(wake - now, std::chrono::milliseconds(50)));
                if (g_interrupted)
                    break;
            }
            // An object allocated in an extent the host grew after our refresh
            // looks out of bounds: refresh again, a few times, before calling it corrupt.
            std::error_code ec;
            std::vector<ObjectInfo> objects;
            for (int attempt = 0; attempt < 3; ++attempt) {
                segment.refresh(ec);
                if (ec)
                    throw Error(ec, "watch " + path, "refresh");
                objects = segment.objects(ec);
                if (ec != Errc::corrupt_directory)
                    break;
            }
            if (ec)
                throw Error(ec, "watch " + path, "directory");
            const auto now = std::chrono::steady_clock::now();
            const double elapsed = std::chrono::duration<double>(now - previous_time).count();
            previous_time = now;

            const SegmentInfo info = segment.info();
            const Liveness creator = segment.creator_liveness();
            const std::time_t wall = std::time(nullptr);
            char clock[16];
            std::strftime(clock, sizeof(clock), "%H:%M:%S", std::localtime(&wall));
            std::printf("%s%s  %s  generation %llu, %s of %s, creator %d %s\n", terminal ? "\033[H\033[J" : (frame > 0 ? "\n" : ""),
                path.c_str(), clock, static_cast<unsigned long long>(info.generation),
                amount(static_cast<double>(info.size_bytes), false, "").c_str(),
                amount(static_cast<double>(info.max_size_bytes), false, "").c_str(), static_cast<int>(info.creator_pid),
                creator == Liveness::alive ? "alive" : creator == Liveness::dead ? "gone" : "liveness unknown");
            std::printf("  %-24s %-10s %26s %16s %16s\n", "object", "kind", "fill", "written/s", "read/s");
            std::map<std::string, Counters> current;
            for (const auto& object : objects) {
                const ObjectState state = inspect(segment, object);
                if (!state.spsc && !state.mpsc && !state.mpmc) {
                    std::printf("  %-24s %-10s %s\n", object.name.c_str(), state.kind.c_str(),
                        state.error.empty() ? "" : ("CORRUPT: " + state.error).c_str());
                    continue;
                }
                const Counters c = counters_of(state);
                current[object.name] = c;
                std::string fill = amount(c.fill, c.items, "") + " / " + amount(c.capacity, c.items, "");
                char percent[16];
                std::snprintf(percent, sizeof(percent), " (%.0f%%)", c.capacity > 0 ? 100 * c.fill / c.capacity : 0.0);
                fill += percent;
                std::string written = "-";
                std::string read = "-";
                const auto before = previous.find(object.name);
                if (before != previous.end() && elapsed > 0 && before->second.rings.size() == c.rings.size()) {
                    double written_since = 0;
                    double read_since = 0;
                    for (std::size_t i = 0; i < c.rings.size(); ++i) {
                        written_since += static_cast<double>(moved(c.rings[i].written, before->second.rings[i].written));
                        read_since += static_cast<double>(moved(c.rings[i].read, before->second.rings[i].read));
                    }
                    written = amount(written_since / elapsed, c.items, "/s");
                    read = amount(read_since / elapsed, c.items, "/s");
                }
                std::printf("  %-24s %-10s %26s %16s %16s\n", object.name.c_str(), state.kind.c_str(), fill.c_str(),
                    written.c_str(), read.c_str());
            }
            std::fflush(stdout);
            previous = std::move(current);
        }
        return kDone;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shmlink: %s\n", e.what());
        return kFailed;
    }
}

} // namespace shmlink::tool
