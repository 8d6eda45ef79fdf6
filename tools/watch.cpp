// shmlink watch PATH: every ring's and queue's fill level and rates,
// refreshed once an interval until interrupted. Read-only, like inspect:
// it attaches with PROT_READ, follows the segment's growth, and writes nothing.
#include <shmlink/core/error.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>

#include "tools/commands.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
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

constexpr char kUsage[] = R"(usage: shmlink watch PATH [--interval SECONDS | --on-input] [--count N]

Prints each ring's and queue's fill level and the rates at which producers
write and consumers read it, in bytes and in messages per second, refreshed
every interval (default 1 s) until interrupted (Ctrl-C) or N refreshes are
done; an MPSC ring gets a line per lane that is not free (its guest's pid),
under the ring's line with the sums. On a terminal the screen is redrawn in
place; otherwise each refresh is a block of plain lines. The header line
says how long the rates were measured over.

  --interval SECONDS  time between refreshes, 0.01 to 3600 (default 1)
  --on-input          refresh on each line read from standard input instead
                      of every interval, and stop at its end: a script that
                      sends a line after each step sees in each refresh
                      exactly what that step did
  --count N           stop after N refreshes (default: until interrupted)

Byte rates count each message with its 8-byte record header (and padding);
an MPMC queue's bytes are its items times the item size. Message rates are
differences of counts the rings keep: an SPSC ring and each lane of an MPSC
ring count the messages their producer committed and their consumer
released (docs/layout.md: committed_messages, released_messages); an MPMC
queue's messages are its items. A ring whose producer or consumer does not
count (one written from the documented layout without the counts) shows "-".
Like inspect, it attaches read-only and follows the segment as it grows.

Exit status: 0 done or interrupted, 1 the segment could not be read, 2 bad usage.
)";

volatile sig_atomic_t g_interrupted = 0;

/// One ring's (or lane's, or queue's) positions, which only grow while it
/// keeps its producer: what the rates are differences of.
struct Positions {
    std::uint64_t written = 0;  ///< bytes producers have published
    std::uint64_t read = 0;     ///< bytes consumers have released
    std::uint64_t committed = 0; ///< messages producers have published
    std::uint64_t released = 0;  ///< messages consumers have released
    bool counts_committed = true; ///< false when bytes were published but no message counted
    bool counts_released = true;
};

struct Counters {
    std::vector<Positions> rings; ///< one per lane of an MPSC ring, else one
    double fill = 0;
    double capacity = 0;
    bool items = false; ///< an MPMC queue: fill and capacity are items
};

Positions positions_of(const SpscState& s)
{
    return {s.tail, s.head, s.committed_messages, s.released_messages, s.tail == 0 || s.committed_messages != 0,
        s.head == 0 || s.released_messages != 0};
}

Counters counters_of(const ObjectState& o)
{
    Counters c;
    if (o.spsc) {
        c.rings.push_back(positions_of(*o.spsc));
        c.fill = static_cast<double>(o.spsc->fill_bytes);
        c.capacity = static_cast<double>(o.spsc->capacity_bytes);
    } else if (o.mpsc) {
        for (const auto& lane : o.mpsc->lanes) {
            c.rings.push_back(positions_of(lane.ring));
            c.fill += static_cast<double>(lane.ring.fill_bytes);
            c.capacity += static_cast<double>(lane.ring.capacity_bytes);
        }
    } else if (o.mpmc) {
        const auto& q = *o.mpmc;
        c.rings.push_back({q.enqueue_pos * q.item_bytes, q.dequeue_pos * q.item_bytes, q.enqueue_pos, q.dequeue_pos});
        c.fill = static_cast<double>(q.size);
        c.capacity = static_cast<double>(q.capacity);
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

enum class Unit { bytes, items, messages };

std::string amount(double value, Unit unit, const char* suffix)
{
    static constexpr const char* kByteUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    static constexpr const char* kCountUnits[] = {"", "k", "M", "G", "T"};
    const double step = unit == Unit::bytes ? 1024 : 1000;
    std::size_t scale = 0;
    while (std::fabs(value) >= step && scale + 1 < std::size(kByteUnits)) {
        value /= step;
        ++scale;
    }
    char text[48];
    if (unit == Unit::bytes)
        std::snprintf(text, sizeof(text), scale == 0 ? "%.0f %s" : "%.1f %s", value, kByteUnits[scale]);
    else // messages to a tenth, so that a count over a short interval stays exact
        std::snprintf(text, sizeof(text), unit == Unit::messages || scale != 0 ? "%.1f %s%s%s" : "%.0f %s%s%s", value,
            kCountUnits[scale], scale == 0 ? "" : " ", unit == Unit::items ? "items" : "msg");
    return std::string(text) + suffix;
}

/// The rates of `now` against `before` over `elapsed` seconds: bytes written
/// and read, messages committed and released ("-" where not counted, or
/// without an earlier refresh to compare with).
struct Rates {
    std::string written = "-";
    std::string read = "-";
    std::string committed = "-";
    std::string released = "-";
};

Rates rates_of(const std::vector<Positions>& now, const std::vector<Positions>* before, double elapsed)
{
    Rates r;
    if (before == nullptr || before->size() != now.size() || !(elapsed > 0))
        return r;
    double written = 0;
    double read = 0;
    double committed = 0;
    double released = 0;
    bool counts_committed = true;
    bool counts_released = true;
    for (std::size_t i = 0; i < now.size(); ++i) {
        const Positions& a = (*before)[i];
        const Positions& b = now[i];
        written += static_cast<double>(moved(b.written, a.written));
        read += static_cast<double>(moved(b.read, a.read));
        committed += static_cast<double>(moved(b.committed, a.committed));
        released += static_cast<double>(moved(b.released, a.released));
        counts_committed = counts_committed && b.counts_committed;
        counts_released = counts_released && b.counts_released;
    }
    r.written = amount(written / elapsed, Unit::bytes, "/s");
    r.read = amount(read / elapsed, Unit::bytes, "/s");
    if (counts_committed)
        r.committed = amount(committed / elapsed, Unit::messages, "/s");
    if (counts_released)
        r.released = amount(released / elapsed, Unit::messages, "/s");
    return r;
}

void print_line(const std::string& name, const std::string& kind, const std::string& fill, const Rates& r)
{
    std::printf("  %-24s %-10s %26s %14s %14s %14s %14s\n", name.c_str(), kind.c_str(), fill.c_str(), r.written.c_str(),
        r.read.c_str(), r.committed.c_str(), r.released.c_str());
}

std::string fill_of(double fill, double capacity, bool items)
{
    const Unit unit = items ? Unit::items : Unit::bytes;
    char percent[16];
    std::snprintf(percent, sizeof(percent), " (%.0f%%)", capacity > 0 ? 100 * fill / capacity : 0.0);
    return amount(fill, unit, "") + " / " + amount(capacity, unit, "") + percent;
}

void on_interrupt(int) noexcept
{
    g_interrupted = 1;
}

/// Waits for a line on standard input, in steps of 50 ms so that Ctrl-C
/// ends it at once; false at the end of input or on an interrupt.
bool wait_for_line()
{
    for (;;) {
        if (g_interrupted)
            return false;
        pollfd in {STDIN_FILENO, POLLIN, 0};
        const int ready = ::poll(&in, 1, 50);
        if (ready < 0 && errno != EINTR)
            return false;
        if (ready <= 0)
            continue;
        char c = 0;
        const ssize_t n = ::read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        if (c == '\n')
            return true;
    }
}

} // namespace

int watch(int argc, char** argv)
{
    std::string path;
    double interval_s = 1.0;
    long count = -1;
    bool on_input = false;
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
        } else if (arg == "--on-input") {
            on_input = true;
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
            if (frame > 0 && on_input) {
                if (!wait_for_line())
                    break;
            } else if (frame > 0) {
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
            char over[48] = "";
            if (frame > 0)
                std::snprintf(over, sizeof(over), ", rates over %.3f s", elapsed);
            std::printf("%s%s  %s  generation %llu, %s of %s, creator %d %s%s\n", terminal ? "\033[H\033[J" : (frame > 0 ? "\n" : ""),
                path.c_str(), clock, static_cast<unsigned long long>(info.generation),
                amount(static_cast<double>(info.size_bytes), Unit::bytes, "").c_str(),
                amount(static_cast<double>(info.max_size_bytes), Unit::bytes, "").c_str(), static_cast<int>(info.creator_pid),
                creator == Liveness::alive ? "alive" : creator == Liveness::dead ? "gone" : "liveness unknown", over);
            std::printf("  %-24s %-10s %26s %14s %14s %14s %14s\n", "object", "kind", "fill", "written/s", "read/s",
                "msgs in/s", "msgs out/s");
            std::map<std::string, Counters> current;
            for (const auto& object : objects) {
                const ObjectState state = inspect(segment, object);
                if (state.topic) {
                    // A topic's own line: its samples, and how far the furthest subscriber lags.
                    std::uint64_t lag = 0, missed = 0;
                    for (const auto& sub : state.topic->slots) {
                        lag = std::max(lag, sub.queued);
                        missed += sub.missed;
                    }
                    std::printf("  %-24s %-10s %llu published, %zu subscribers, lag up to %llu, %llu missed, pool %s\n",
                        object.name.c_str(), state.kind.c_str(), static_cast<unsigned long long>(state.topic->published),
                        state.topic->slots.size(), static_cast<unsigned long long>(lag),
                        static_cast<unsigned long long>(missed),
                        amount(static_cast<double>(state.topic->pool_bytes), Unit::bytes, "").c_str());
                    continue;
                }
                if (!state.spsc && !state.mpsc && !state.mpmc) {
                    std::printf("  %-24s %-10s %s\n", object.name.c_str(), state.kind.c_str(),
                        state.error.empty() ? "" : ("CORRUPT: " + state.error).c_str());
                    continue;
                }
                const Counters c = counters_of(state);
                current[object.name] = c;
                const auto before = previous.find(object.name);
                const std::vector<Positions>* earlier = before == previous.end() ? nullptr : &before->second.rings;
                print_line(object.name, state.kind, fill_of(c.fill, c.capacity, c.items), rates_of(c.rings, earlier, elapsed));
                if (!state.mpsc)
                    continue;
                // Each lane that has a producer, or had one since the last refresh.
                for (std::size_t i = 0; i < state.mpsc->lanes.size(); ++i) {
                    const LaneState& lane = state.mpsc->lanes[i];
                    const bool moved_since = earlier != nullptr && earlier->size() == c.rings.size()
                        && (c.rings[i].written != (*earlier)[i].written || c.rings[i].read != (*earlier)[i].read);
                    if (lane.state == "free" && !moved_since)
                        continue;
                    const std::vector<Positions> one {c.rings[i]};
                    std::vector<Positions> one_before;
                    if (earlier != nullptr && earlier->size() == c.rings.size())
                        one_before.push_back((*earlier)[i]);
                    const std::string name = "  lane " + std::to_string(lane.index)
                        + (lane.pid != 0 ? " pid " + std::to_string(lane.pid) : "");
                    print_line(name, lane.state, fill_of(static_cast<double>(lane.ring.fill_bytes),
                        static_cast<double>(lane.ring.capacity_bytes), false),
                        rates_of(one, one_before.empty() ? nullptr : &one_before, elapsed));
                }
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
