// Test helper that plays one side of a ring in its own process. It attaches
// to the segment by path, opens the ring by name, does one job, prints one
// line ("ok ..." or "error ...") and exits 0 on success:
//   ring_peer produce  PATH RING COUNT SEED MAXLEN
//   ring_peer consume  PATH RING COUNT SEED MAXLEN
//   ring_peer block-pop PATH RING TIMEOUT_MS      one blocking pop, with its thread's CPU time and sleeps
//   ring_peer scribble PATH NAME SEED ROUNDS      random bytes over any ring's or queue's control block and data,
//                                                 or the header (NAME @header), the directory's entries in
//                                                 use (@directory) or both by turns (@page), a round on each
//                                                 line of stdin
//   ring_peer produce-notify PATH RING COUNT      SPSC producer in eventfd mode: the wake fd is fd 3;
//                                                 a message every millisecond
//   ring_peer mpsc-produce PATH RING COUNT ID     MPSC producer ID: messages tagged (ID, seq)
//   ring_peer mpsc-claim PATH RING COMMITS        MPSC producer that commits COMMITS messages, then
//                                                 reserves one, prints "claimed" and waits to be killed
//   ring_peer mpsc-fork-produce PATH RING COUNT ID  MPSC producer that forks once its lane is
//                                                 taken; the first process exits at once, the
//                                                 child waits 300 ms, then produces
//   ring_peer mpmc-produce PATH QUEUE COUNT ID    MPMC producer of items (ID, seq, hash)
//   ring_peer mpmc-consume PATH QUEUE             MPMC consumer until a stop item; prints a fingerprint
//   ring_peer mpmc-die PATH QUEUE SIDE COUNT POINT  an MPMC handle that pushes (SIDE push) items
//                                                 (9, seq) or pops (SIDE pop) COUNT items, prints
//                                                 "dying", then dies at fault point POINT of the next
//   ring_peer die KIND PATH RING ID COMMITS POINT  a producer (KIND spsc or mpsc) that commits COMMITS
//                                                 tagged messages, prints "dying", then SIGKILLs itself
//                                                 at POINT of the next one: before-claim, after-claim,
//                                                 mid-copy (half its payload written) or after-commit
//   ring_peer wake-echo PATH IN OUT ROUNDS SEED   answers ROUNDS pings from ring IN on ring OUT, each
//                                                 pop sleeping (block mode): tests/support/wake_rounds.hpp
//   ring_peer lock-byte PATH OFFSET MS            holds a write lock on byte OFFSET of the file (as a
//                                                 producer trying a lane does), prints "locked",
//                                                 lets it go after MS milliseconds and exits
// Fault points (ipc/detail/fault_point.hpp): this helper can die at one, by name.
#include <fcntl.h>
#include <sys/resource.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>

namespace {
const char* g_die_at = nullptr; // the fault point to die at, once armed
void fault_point(const char* name) noexcept
{
    if (g_die_at != nullptr && std::strcmp(name, g_die_at) == 0)
        ::raise(SIGKILL);
}
} // namespace
#define SHMLINK_FAULT_POINTS(name) fault_point(name)

#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include "tests/support/messages.hpp"
#include "tests/support/wake_rounds.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;

namespace {

/// This thread's own CPU time: not the process's, which a sanitizer's
/// runtime threads add to.
double thread_cpu_ms()
{
    timespec t {};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

/// How many times this thread gave the CPU up of its own accord (went to
/// sleep): a count, the same on a fast machine and a slow one.
long thread_sleeps()
{
    rusage usage {};
    ::getrusage(RUSAGE_THREAD, &usage);
    return usage.ru_nvcsw;
}

int produce(SpscRing& ring, std::uint64_t count, std::uint64_t seed, std::size_t max_length)
{
    std::vector<std::byte> message(max_length);
    std::uint64_t full_waits = 0;
    std::uint64_t ring_bytes = 0;
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const auto length = test::message_length(seed, seq, max_length);
        auto slot = ring.reserve(length);
        while (slot.status == RingStatus::full) {
            ++full_waits;
            if (const auto waited = ring.wait_writable(length, 10s); waited != RingStatus::ok) {
                std::printf("error waiting to write %llu: %s\n", static_cast<unsigned long long>(seq), to_string(waited));
                return 1;
            }
            slot = ring.reserve(length);
        }
        if (!slot) {
            std::printf("error reserve %llu: %s\n", static_cast<unsigned long long>(seq), to_string(slot.status));
            return 1;
        }
        test::make_message(seed, seq, slot.bytes); // zero-copy: built in place
        ring.commit();
        ring_bytes += 8 + length;
    }
    std::printf("ok produced=%llu full_waits=%llu bytes=%llu\n", static_cast<unsigned long long>(count),
        static_cast<unsigned long long>(full_waits), static_cast<unsigned long long>(ring_bytes));
    return 0;
}

int consume(SpscRing& ring, std::uint64_t count, std::uint64_t seed, std::size_t max_length)
{
    std::vector<std::byte> scratch(max_length);
    std::uint64_t seq = 0;
    bool bad = false;
    while (seq < count && !bad) {
        RingStatus status = RingStatus::ok;
        ring.consume(
            [&](std::span<const std::byte> message) {
                if (!bad && !test::check_message(seed, seq, max_length, message, scratch)) {
                    std::printf("error message %llu is wrong (length %zu)\n", static_cast<unsigned long long>(seq), message.size());
                    bad = true;
                }
                ++seq;
            },
            count - seq, &status);
        if (status == RingStatus::corrupt) {
            std::printf("error ring corrupt at %llu\n", static_cast<unsigned long long>(seq));
            return 1;
        }
        if (status == RingStatus::empty && seq < count) {
            const auto waited = ring.wait_readable(10s);
            if (waited != RingStatus::ok) {
                std::printf("error waiting at %llu: %s\n", static_cast<unsigned long long>(seq), to_string(waited));
                return 1;
            }
        }
    }
    if (bad)
        return 1;
    std::size_t length = 0;
    std::byte extra[1];
    const auto after = ring.try_pop(extra, length);
    if (after != RingStatus::empty) {
        std::printf("error a message beyond the last: %s\n", to_string(after));
        return 1;
    }
    std::printf("ok consumed=%llu\n", static_cast<unsigned long long>(seq));
    return 0;
}

int block_pop(SpscRing& ring, long timeout_ms)
{
    std::byte buffer[4096];
    std::size_t length = 0;
    // The spin budget is measured once per process, on first use; measured
    // here, it is not charged to the wait.
    (void)detail::spin_budget();
    const double cpu_before = thread_cpu_ms();
    const long sleeps_before = thread_sleeps();
    const auto start = std::chrono::steady_clock::now();
    const RingStatus status = ring.pop(buffer, length, std::chrono::milliseconds(timeout_ms));
    const auto waited = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const double cpu = thread_cpu_ms() - cpu_before;
    const long sleeps = thread_sleeps() - sleeps_before;
    std::printf("ok status=%s length=%zu waited_ms=%.0f cpu_ms=%.3f sleeps=%ld\n", to_string(status), length, waited,
        cpu, sleeps);
    return 0;
}

/// The bytes `name` names in round `round`: an object, or "@header" (the
/// segment header), "@directory" (the directory entries in use), or "@page"
/// (the one in even rounds, the other in odd ones).
std::span<std::byte> scribble_area(Segment& segment, const std::string& name, int round)
{
    if (name == "@page")
        return scribble_area(segment, round % 2 == 0 ? "@header" : "@directory", round);
    if (name == "@header")
        return segment.subspan(0, sizeof(layout::SegmentHeader));
    if (name == "@directory")
        return segment.subspan(layout::kDirectoryOffset, segment.info().directory_count * sizeof(layout::DirectoryEntry));
    const auto object = segment.find(name);
    return segment.subspan(object.offset, object.length);
}

int scribble(Segment& segment, const std::string& name, std::uint64_t seed, int rounds)
{
    const bool first_page = name.front() == '@';
    std::vector<std::span<std::byte>> areas; // found before any damage: the directory is among them
    std::vector<std::vector<std::byte>> before; // each area as it was: every round changes each of its words
    for (int round = 0; round < 2; ++round) {
        areas.push_back(scribble_area(segment, name, round));
        before.emplace_back(areas.back().begin(), areas.back().end());
    }
    std::uint64_t state = seed;
    std::printf("ready\n");
    std::fflush(stdout);
    // A round on each line from the test, answered once its bytes are
    // written: the test's calls run while it writes and after it has.
    char line[64];
    for (int round = 0; round < rounds; ++round) {
        if (std::fgets(line, sizeof(line), stdin) == nullptr) {
            std::printf("error no word for round %d\n", round);
            return 1;
        }
        // Half the rounds hit the first 384 bytes (every object's control
        // block, or the most of it), half the rest: records, lanes or cells.
        // Over the header page: anywhere in it, and the first byte of each
        // of its 8-byte words (every field) always made another than it was.
        const std::size_t control = 384;
        const auto area = areas[static_cast<std::size_t>(round % 2)];
        for (int i = 0; i < 64; ++i) {
            state = test::mix(state);
            const std::size_t at = first_page ? state % area.size()
                : (round % 2 == 0)            ? state % control
                                              : control + state % (area.size() - control);
            area[at] = static_cast<std::byte>(state >> 56);
        }
        if (first_page)
            for (std::size_t at = 0; at < area.size(); at += 8)
                area[at] = before[static_cast<std::size_t>(round % 2)][at] ^ std::byte {0xff};
        std::printf(round + 1 < rounds ? "round %d\n" : "ok scribbled=%d\n", round + 1);
        std::fflush(stdout);
    }
    return 0;
}

int produce_notify(SpscRing& ring, std::uint64_t count)
{
    const UniqueFd wake_fd(test::kWakeFd); // inherited from the test
    ring.set_wake_fd(wake_fd);
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        std::this_thread::sleep_for(1ms); // slower than the consumer: it sleeps between messages
        if (const auto status = ring.push(std::as_bytes(std::span(&seq, 1)), 10s); status != RingStatus::ok) {
            std::printf("error push %llu: %s\n", static_cast<unsigned long long>(seq), to_string(status));
            return 1;
        }
    }
    std::printf("ok produced=%llu\n", static_cast<unsigned long long>(count));
    return 0;
}

/// Pushes the tagged messages 0 .. count - 1 of producer `id` through
/// `producer` (an SpscRing or an MpscProducer); false, with an error line,
/// when one cannot be pushed.
template <typename Producer>
bool push_tagged(Producer& producer, std::uint64_t id, std::uint64_t count)
{
    std::vector<std::byte> message(8 + 512);
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const auto length = test::make_tagged_message(id, seq, 512, message);
        if (const auto status = producer.push(std::span(message).first(length), 10s); status != RingStatus::ok) {
            std::printf("error push %llu: %s\n", static_cast<unsigned long long>(seq), to_string(status));
            return false;
        }
    }
    return true;
}

int mpsc_produce(Segment& segment, const char* name, std::uint64_t count, std::uint64_t id)
{
    MpscProducer producer = MpscProducer::open(segment, name);
    if (!push_tagged(producer, id, count))
        return 1;
    std::printf("ok produced=%llu lane=%u\n", static_cast<unsigned long long>(count), producer.lane());
    return 0;
}

int mpsc_fork_produce(Segment& segment, const char* name, std::uint64_t count, std::uint64_t id)
{
    MpscProducer producer = MpscProducer::open(segment, name);
    std::printf("forked lane=%u\n", producer.lane());
    std::fflush(stdout);
    const pid_t child = ::fork();
    if (child < 0)
        return 1;
    if (child > 0)
        ::_exit(0); // the process that took the lane is gone; its child holds the lane now
    ::close(STDOUT_FILENO); // the test reads the first process's line only; EOF on exit
    std::this_thread::sleep_for(300ms); // longer than the consumer's reap interval
    std::vector<std::byte> message(8 + 512);
    for (std::uint64_t seq = 0; seq < count; ++seq)
        if (producer.push(std::span(message).first(test::make_tagged_message(id, seq, 512, message)), 10s)
            != RingStatus::ok)
            return 1;
    return 0;
}

int mpsc_claim(Segment& segment, const char* name, std::uint64_t commits)
{
    MpscProducer producer = MpscProducer::open(segment, name);
    const std::uint64_t id = 99;
    std::vector<std::byte> message(8 + 512);
    for (std::uint64_t seq = 0; seq < commits; ++seq)
        if (producer.try_push(std::span(message).first(test::make_tagged_message(id, seq, 512, message))) != RingStatus::ok)
            return 1;
    auto slot = producer.reserve(100);
    if (!slot)
        return 1;
    std::memset(slot.bytes.data(), 0x5a, 50); // half written when the kill comes
    std::printf("claimed lane=%u\n", producer.lane());
    std::fflush(stdout);
    std::this_thread::sleep_for(600s);
    return 1;
}

using shmlink::test::Item;

int mpmc_produce(Segment& segment, const char* name, std::uint64_t count, std::uint64_t id)
{
    auto queue = MpmcQueue<Item>::open(segment, name);
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const Item item {id, seq, test::item_hash(id, seq)};
        if (const auto status = queue.push(item, 10s); status != RingStatus::ok) {
            std::printf("error push %llu: %s\n", static_cast<unsigned long long>(seq), to_string(status));
            return 1;
        }
    }
    std::printf("ok produced=%llu\n", static_cast<unsigned long long>(count));
    return 0;
}

int mpmc_consume(Segment& segment, const char* name)
{
    auto queue = MpmcQueue<Item>::open(segment, name);
    std::uint64_t count = 0;
    std::uint64_t sum = 0; // of each item's hash: with the count, a fingerprint of the multiset
    std::map<std::uint64_t, std::uint64_t> next; // per producer: every later item has a higher seq
    for (;;) {
        Item item {};
        if (const auto status = queue.pop(item, 20s); status != RingStatus::ok) {
            std::printf("error pop after %llu: %s\n", static_cast<unsigned long long>(count), to_string(status));
            return 1;
        }
        if (item.producer == ~std::uint64_t {0})
            break;
        if (item.hash != test::item_hash(item.producer, item.seq)) {
            std::printf("error item %llu/%llu is damaged\n", static_cast<unsigned long long>(item.producer),
                static_cast<unsigned long long>(item.seq));
            return 1;
        }
        auto [at, fresh] = next.try_emplace(item.producer, 0);
        if (item.seq < at->second) {
            std::printf("error item %llu/%llu after %llu: out of order\n", static_cast<unsigned long long>(item.producer),
                static_cast<unsigned long long>(item.seq), static_cast<unsigned long long>(at->second));
            return 1;
        }
        at->second = item.seq + 1;
        ++count;
        sum += item.hash;
    }
    std::printf("ok count=%llu sum=%llu\n", static_cast<unsigned long long>(count), static_cast<unsigned long long>(sum));
    return 0;
}

/// An MPMC handle that does `count` pushes or pops, then dies at `point` of the next.
int mpmc_die(Segment& segment, const char* name, const std::string& side, std::uint64_t count, const char* point)
{
    auto queue = MpmcQueue<Item>::open(segment, name);
    Item item {};
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const RingStatus status = side == "push" ? queue.push(test::make_item(9, seq), 10s)
                                                 : queue.pop(item, 10s);
        if (status != RingStatus::ok) {
            std::printf("error %s %llu: %s\n", side.c_str(), static_cast<unsigned long long>(seq), to_string(status));
            return 1;
        }
    }
    std::printf("dying\n");
    std::fflush(stdout);
    g_die_at = point;
    // The other side may not have made room (or pushed an item) yet: a full
    // (or empty) answer claims nothing, so try until an attempt claims and
    // dies at the point, as long as the other side's pops (pushes) take.
    const auto until = std::chrono::steady_clock::now() + 10s;
    RingStatus status = RingStatus::full;
    while ((status == RingStatus::full || status == RingStatus::empty) && std::chrono::steady_clock::now() < until) {
        status = side == "push" ? queue.try_push(test::make_item(9, count)) : queue.try_pop(item);
        if (status == RingStatus::full || status == RingStatus::empty)
            std::this_thread::sleep_for(1ms);
    }
    std::printf("error fault point %s not reached (%s)\n", point, to_string(status));
    return 1;
}

/// Commits `commits` tagged messages through `producer` (an SpscRing or an
/// MpscProducer), then dies at `point` of the next one.
template <typename Producer>
int die(Producer& producer, std::uint64_t id, std::uint64_t commits, const std::string& point)
{
    if (!push_tagged(producer, id, commits))
        return 1;
    std::vector<std::byte> message(8 + 512);
    const auto length = test::make_tagged_message(id, commits, 512, message);
    std::printf("dying\n");
    std::fflush(stdout);
    if (point == "before-claim")
        ::raise(SIGKILL);
    auto slot = producer.reserve(length);
    if (!slot) {
        std::printf("error reserve: %s\n", to_string(slot.status));
        return 1;
    }
    if (point == "after-claim")
        ::raise(SIGKILL);
    std::memcpy(slot.bytes.data(), message.data(), length / 2);
    if (point == "mid-copy")
        ::raise(SIGKILL);
    std::memcpy(slot.bytes.data() + length / 2, message.data() + length / 2, length - length / 2);
    producer.commit();
    if (point == "after-commit")
        ::raise(SIGKILL);
    std::printf("error no such point %s\n", point.c_str());
    return 1;
}

} // namespace

int main(int argc, char** argv)
try {
    if (argc < 4) {
        std::fprintf(stderr, "usage: ring_peer JOB PATH RING ...\n");
        return 2;
    }
    const std::string job = argv[1];
    if (job == "lock-byte" && argc == 5) {
        const UniqueFd fd(::open(argv[2], O_RDWR | O_CLOEXEC));
        flock lock {};
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;
        lock.l_start = static_cast<off_t>(std::strtoull(argv[3], nullptr, 10));
        lock.l_len = 1;
        if (!fd || ::fcntl(fd.get(), F_OFD_SETLK, &lock) != 0) {
            std::printf("error lock: %s\n", std::strerror(errno));
            return 1;
        }
        std::printf("locked\n");
        std::fflush(stdout);
        ::usleep(static_cast<useconds_t>(std::atoi(argv[4])) * 1000);
        return 0;
    }
    if (job == "mpmc-die" && argc == 7) {
        Segment segment = Segment::attach(argv[2]);
        return mpmc_die(segment, argv[3], argv[4], std::strtoull(argv[5], nullptr, 10), argv[6]);
    }
    if (job == "die" && argc == 8) {
        Segment segment = Segment::attach(argv[3]);
        const std::string kind = argv[2];
        const auto id = std::strtoull(argv[5], nullptr, 10);
        const auto commits = std::strtoull(argv[6], nullptr, 10);
        if (kind == "spsc") {
            SpscRing ring = SpscRing::open(segment, argv[4]);
            return die(ring, id, commits, argv[7]);
        }
        MpscProducer producer = MpscProducer::open(segment, argv[4]);
        return die(producer, id, commits, argv[7]);
    }
    Segment segment = Segment::attach(argv[2]);
    if (job == "scribble" && argc == 6)
        return scribble(segment, argv[3], std::strtoull(argv[4], nullptr, 10), std::atoi(argv[5]));
    if (job == "mpsc-produce" && argc == 6)
        return mpsc_produce(segment, argv[3], std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10));
    if (job == "mpsc-fork-produce" && argc == 6)
        return mpsc_fork_produce(segment, argv[3], std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10));
    if (job == "mpsc-claim" && argc == 5)
        return mpsc_claim(segment, argv[3], std::strtoull(argv[4], nullptr, 10));
    if (job == "mpmc-produce" && argc == 6)
        return mpmc_produce(segment, argv[3], std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10));
    if (job == "mpmc-consume" && argc == 4)
        return mpmc_consume(segment, argv[3]);
    if (job == "wake-echo" && argc == 7) {
        SpscRing in = SpscRing::open(segment, argv[3]);
        SpscRing out = SpscRing::open(segment, argv[4]);
        const auto rounds = std::strtoull(argv[5], nullptr, 10);
        const std::string error = test::wake_rounds(out, in, rounds, false, std::strtoull(argv[6], nullptr, 10));
        if (!error.empty()) {
            std::printf("error %s\n", error.c_str());
            return 1;
        }
        std::printf("ok rounds=%llu\n", static_cast<unsigned long long>(rounds));
        return 0;
    }
    SpscRing ring = SpscRing::open(segment, argv[3]);
    if (job == "produce" && argc == 7)
        return produce(ring, std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10), std::strtoull(argv[6], nullptr, 10));
    if (job == "consume" && argc == 7)
        return consume(ring, std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10), std::strtoull(argv[6], nullptr, 10));
    if (job == "block-pop" && argc == 5)
        return block_pop(ring, std::atol(argv[4]));
    if (job == "produce-notify" && argc == 5)
        return produce_notify(ring, std::strtoull(argv[4], nullptr, 10));
    std::fprintf(stderr, "ring_peer: bad arguments for %s\n", job.c_str());
    return 2;
} catch (const std::exception& e) {
    std::printf("error %s\n", e.what());
    return 1;
}
