// Fault injection: producers SIGKILLed at every point of a message's life,
// and at random times, for each ring kind. The producer is always another
// process (tests/helpers/ring_peer); this process consumes and checks that
// no committed message is lost, no uncommitted one is delivered, and no
// call waits past its timeout.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include "tests/support/child.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/tally.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::Item;
using shmlink::test::Tally;

namespace {

constexpr const char* kPoints[] = {"before-claim", "after-claim", "mid-copy", "after-commit"};

/// How many messages a producer that died at `point` after `commits` had committed.
std::uint64_t committed(const std::string& point, std::uint64_t commits)
{
    return point == "after-commit" ? commits + 1 : commits;
}

bool claim_abandoned(const std::string& point)
{
    return point == "after-claim" || point == "mid-copy";
}

/// Starts a producer that commits `commits` messages and then kills itself at `point`.
Child start_dying(const char* kind, const std::string& path, std::uint64_t id, std::uint64_t commits,
    const std::string& point)
{
    Child child = test::start_ring_peer({"die", kind, path, "ring", std::to_string(id), std::to_string(commits), point});
    const std::string line = child.read_line(60s);
    REQUIRE_MESSAGE(line == "dying", line);
    const int status = child.wait(60s);
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    return child;
}

/// Faults injected and messages checked over the whole suite, for docs/reliability.md.
struct Counts {
    std::uint64_t faults = 0;
    std::uint64_t messages = 0;
    ~Counts() // after doctest's own reporting: plain stdout
    {
        std::printf("ring faults injected: %llu, messages checked: %llu\n", static_cast<unsigned long long>(faults),
            static_cast<unsigned long long>(messages));
    }
} g_counts;

} // namespace

TEST_CASE("SPSC: a producer killed at each point of a message: what it committed arrives, nothing else, no hang")
{
    const test::ShmPath file("fault-spsc");
    for (const std::string point : kPoints) {
        for (const std::uint64_t commits : {0, 1, 37, 150}) {
            CAPTURE(point);
            CAPTURE(commits);
            Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
            SpscRing ring = SpscRing::create(segment, "ring", 256 << 10); // holds 150 messages of up to 520 bytes
            start_dying("spsc", file.path, 7, commits, point);
            ++g_counts.faults;

            Tally tally;
            CHECK(tally.drain(ring, committed(point, commits), 10s));
            CHECK_FALSE(tally.bad);
            CHECK(tally.next[7] == committed(point, commits));
            g_counts.messages += tally.total;
            // Nothing more: a blocking pop returns at its timeout.
            std::byte buffer[1024];
            std::size_t length = 0;
            const auto start = std::chrono::steady_clock::now();
            CHECK(ring.pop(buffer, length, 50ms) == RingStatus::timed_out);
            CHECK(std::chrono::steady_clock::now() - start < 5s);

            // The abandoned claim is visible to inspection, and the ring takes a new producer.
            const ObjectState state = inspect(segment, segment.find("ring"));
            CHECK(state.spsc->claim_open == claim_abandoned(point));
            SpscRing producer = SpscRing::open(segment, "ring");
            REQUIRE(producer.try_push(std::as_bytes(std::span("next", 4))) == RingStatus::ok);
            REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
            CHECK(length == 4);
        }
    }
}

TEST_CASE("MPSC: a producer killed at each point: its committed messages arrive, its claim is counted, its lane is freed")
{
    const test::ShmPath file("fault-mpsc");
    for (const std::string point : kPoints) {
        for (const std::uint64_t commits : {0, 1, 150}) {
            CAPTURE(point);
            CAPTURE(commits);
            Segment segment = Segment::create(file.path, 4 << 20, {.cleanup = Cleanup::unlink_on_close});
            MpscRing ring = MpscRing::create(segment, "ring", 128 << 10, 2, {.reap_interval = 20ms});
            // A live producer streams on the other lane the whole time.
            Child live = test::start_ring_peer({"mpsc-produce", file.path, "ring", "3000", "1"});
            start_dying("mpsc", file.path, 9, commits, point);
            ++g_counts.faults;

            Tally tally;
            CHECK(tally.drain(ring, 3000 + committed(point, commits), 30s));
            CHECK_FALSE(tally.bad);
            CHECK(tally.next[1] == 3000);
            CHECK(tally.next[9] == committed(point, commits));
            CHECK(test::finish(live).second == 0);
            g_counts.messages += tally.total;

            // The consumer reaps the dead lane while it polls; then both lanes are free.
            std::byte buffer[1024];
            std::size_t length = 0;
            const auto until = std::chrono::steady_clock::now() + 10s;
            while ((ring.stats().draining != 0 || ring.stats().producers != 0) && std::chrono::steady_clock::now() < until)
                REQUIRE(ring.try_pop(buffer, length) == RingStatus::empty);
            const MpscStats stats = ring.stats();
            CHECK(stats.dead_producers == 1);
            CHECK(stats.abandoned_claims == (claim_abandoned(point) ? 1 : 0));
            CHECK(stats.producers == 0);
            MpscProducer first = MpscProducer::open(segment, "ring");
            MpscProducer second = MpscProducer::open(segment, "ring");
            CHECK(first.lane() != second.lane());
        }
    }
}

TEST_CASE("SPSC and MPSC: producers killed at random moments mid-stream: every message delivered is whole and in order")
{
    const test::ShmPath file("fault-random");
    std::mt19937_64 random(20261125);
    for (int round = 0; round < 12; ++round) {
        const bool mpsc = round % 2 == 1;
        CAPTURE(round);
        Segment segment = Segment::create(file.path, 4 << 20, {.cleanup = Cleanup::unlink_on_close});
        // Small rings: the producer blocks on a full ring and wraps often.
        std::optional<SpscRing> spsc;
        std::optional<MpscRing> lanes;
        if (mpsc)
            lanes = MpscRing::create(segment, "ring", 8 << 10, 2, {.reap_interval = 20ms});
        else
            spsc = SpscRing::create(segment, "ring", 8 << 10);
        Child producer = mpsc ? test::start_ring_peer({"mpsc-produce", file.path, "ring", "100000000", "5"})
                              : test::start_ring_peer({"die", "spsc", file.path, "ring", "5", "100000000", "after-commit"});
        Tally tally;
        const auto consume = [&] { return mpsc ? lanes->consume(tally, 256) : spsc->consume(tally, 256); };
        // Once it streams (a slow start under a sanitizer must not end the
        // round early), consume for a random 5..60 ms, then kill the producer
        // wherever it is.
        for (const auto started = std::chrono::steady_clock::now() + 30s;
             tally.total == 0 && std::chrono::steady_clock::now() < started;)
            consume();
        const auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(5 + random() % 56);
        while (std::chrono::steady_clock::now() < kill_at && !tally.bad)
            consume();
        producer.kill(SIGKILL);
        producer.wait();
        ++g_counts.faults;
        // Drain what was committed before the kill: a stream prefix, each message checked whole.
        for (auto quiet = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - quiet < 100ms;)
            if (consume() > 0)
                quiet = std::chrono::steady_clock::now();
        CHECK_FALSE(tally.bad);
        CHECK(tally.total > 0);
        g_counts.messages += tally.total;
        if (mpsc) {
            const auto until = std::chrono::steady_clock::now() + 10s;
            while (lanes->stats().dead_producers == 0 && std::chrono::steady_clock::now() < until)
                lanes->consume(tally, 256);
            CHECK(lanes->stats().dead_producers == 1);
            CHECK(lanes->stats().abandoned_claims <= 1);
        }
    }
}

TEST_CASE("MPMC: a producer killed holding its claim: recovery skips the cell, nothing committed is lost")
{
    const test::ShmPath file("fault-mpmc-producer");
    for (const std::string point : {"mpmc push claimed", "mpmc push written"}) {
        for (const std::uint64_t commits : {0, 5, 40}) {
            CAPTURE(point);
            CAPTURE(commits);
            Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
            auto queue = MpmcQueue<Item>::create(segment, "queue", 16);
            // The dying producer pushes `commits` items while this process pops them.
            Child dying = test::start_ring_peer({"mpmc-die", file.path, "queue", "push", std::to_string(commits), point});
            std::uint64_t next = 0;
            Item item {};
            while (next < commits && queue.pop(item, 10s) == RingStatus::ok) {
                CHECK((item.producer == 9 && item.seq == next && item.hash == test::item_hash(9, next)));
                ++next;
            }
            REQUIRE(dying.read_line(30s) == "dying");
            const int status = dying.wait();
            REQUIRE(WIFSIGNALED(status));
            ++g_counts.faults;
            // Its claimed cell is at the consumers' head now. A live producer goes on behind it.
            auto live = MpmcQueue<Item>::open(segment, "queue");
            for (std::uint64_t seq = 0; seq < 10; ++seq)
                REQUIRE(live.push(test::make_item(4, seq), 5s) == RingStatus::ok);
            // pop() waits, finds the dead claim, skips it, and delivers the live producer's items;
            // short waits (10 ms, below the recovery interval) recover too, across calls.
            for (std::uint64_t seq = 0; seq < 10; ++seq) {
                RingStatus popped = RingStatus::timed_out;
                for (const auto until = std::chrono::steady_clock::now() + 5s;
                     popped == RingStatus::timed_out && std::chrono::steady_clock::now() < until;)
                    popped = queue.pop(item, 10ms);
                REQUIRE(popped == RingStatus::ok);
                CHECK(item.producer == 4); // never the dead producer's unpublished item
                CHECK(item.seq == seq);
            }
            CHECK(queue.pop(item, 10ms) == RingStatus::timed_out);
            CHECK(queue.abandoned_claims() == 1);
            CHECK(next == commits);
            g_counts.messages += next + 10;
        }
    }
}

TEST_CASE("MPMC: a consumer killed holding its claim: recovery frees the cell, producers go on")
{
    const test::ShmPath file("fault-mpmc-consumer");
    for (const std::uint64_t pops : {0, 3, 12}) {
        CAPTURE(pops);
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
        auto queue = MpmcQueue<Item>::create(segment, "queue", 16);
        for (std::uint64_t seq = 0; seq < 16; ++seq) // full
            REQUIRE(queue.try_push(test::make_item(1, seq)) == RingStatus::ok);
        Child dying = test::start_ring_peer({"mpmc-die", file.path, "queue", "pop", std::to_string(pops), "mpmc pop claimed"});
        REQUIRE(dying.read_line(30s) == "dying");
        REQUIRE(WIFSIGNALED(dying.wait()));
        ++g_counts.faults;
        // The dead consumer took `pops` items and claimed one more; the rest are here, in order.
        Item item {};
        for (std::uint64_t seq = pops + 1; seq < 16; ++seq) {
            REQUIRE(queue.try_pop(item) == RingStatus::ok);
            CHECK(item.seq == seq);
        }
        // Producers fill the queue again, lapping the dead consumer's cell: push() waits, recovers it, goes on.
        for (std::uint64_t seq = 16; seq < 48; ++seq) {
            REQUIRE(queue.push(test::make_item(1, seq), 5s) == RingStatus::ok);
            REQUIRE(queue.try_pop(item) == RingStatus::ok);
            CHECK(item.seq == seq);
        }
        CHECK(queue.abandoned_claims() == 1);
        g_counts.messages += 48 - pops - 1;
    }
}

TEST_CASE("MPMC: a consumer killed on a dead producer's skipped cell: the cell is freed all the same")
{
    const test::ShmPath file("fault-mpmc-both");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    auto queue = MpmcQueue<Item>::create(segment, "queue", 8);
    Child producer = test::start_ring_peer({"mpmc-die", file.path, "queue", "push", "0", "mpmc push claimed"});
    REQUIRE(producer.read_line(30s) == "dying");
    REQUIRE(WIFSIGNALED(producer.wait()));
    REQUIRE(queue.recover() == 1); // position 0: skipped
    Child consumer = test::start_ring_peer({"mpmc-die", file.path, "queue", "pop", "0", "mpmc pop claimed"});
    REQUIRE(consumer.read_line(30s) == "dying");
    REQUIRE(WIFSIGNALED(consumer.wait()));
    g_counts.faults += 2;
    // Position 0's cell holds the skip mark, claimed and never freed; producers lap onto it.
    for (std::uint64_t seq = 0; seq < 7; ++seq)
        REQUIRE(queue.try_push(test::make_item(1, seq)) == RingStatus::ok);
    REQUIRE(queue.push(test::make_item(1, 7), 5s) == RingStatus::ok);
    Item item {};
    for (std::uint64_t seq = 0; seq < 8; ++seq) {
        REQUIRE(queue.try_pop(item) == RingStatus::ok);
        CHECK(item.seq == seq);
    }
    CHECK(queue.abandoned_claims() == 2);
}

TEST_CASE("MPMC: producers killed at random moments: every item whole, once, in order; the queue never stops")
{
    const test::ShmPath file("fault-mpmc");
    std::mt19937_64 random(7);
    std::uint64_t released = 0;
    for (int round = 0; round < 8; ++round) {
        CAPTURE(round);
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
        auto queue = MpmcQueue<Item>::create(segment, "queue", 64);
        Child producer = test::start_ring_peer({"mpmc-produce", file.path, "queue", "100000000", "3"});
        std::uint64_t next = 0;
        bool bad = false;
        Item item {};
        const auto check = [&] {
            bad = item.producer != 3 || item.seq != next || item.hash != test::item_hash(3, item.seq);
            ++next;
        };
        for (const auto started = std::chrono::steady_clock::now() + 30s;
             next == 0 && !bad && std::chrono::steady_clock::now() < started;)
            if (queue.try_pop(item) == RingStatus::ok)
                check();
        const auto kill_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(5 + random() % 56);
        while (std::chrono::steady_clock::now() < kill_at && !bad)
            if (queue.try_pop(item) == RingStatus::ok)
                check();
        producer.kill(SIGKILL);
        producer.wait();
        ++g_counts.faults;
        RingStatus status = RingStatus::ok;
        const auto start = std::chrono::steady_clock::now();
        while (!bad && (status = queue.pop(item, 50ms)) == RingStatus::ok)
            check();
        CHECK_FALSE(bad);
        CHECK(status == RingStatus::timed_out);
        CHECK(std::chrono::steady_clock::now() - start < 10s);
        g_counts.messages += next;
        // Wherever the kill landed, a new producer's item gets through.
        auto again = MpmcQueue<Item>::open(segment, "queue");
        REQUIRE(again.push(test::make_item(4, 0), 5s) == RingStatus::ok);
        REQUIRE(queue.pop(item, 5s) == RingStatus::ok);
        CHECK(item.producer == 4);
        released += queue.abandoned_claims();
    }
    MESSAGE("MPMC claims of killed producers released by recovery: " << released << " in 8 kills");
}
