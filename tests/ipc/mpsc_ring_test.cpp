// Tests of ipc/mpsc_ring.hpp. Producers are separate processes
// (tests/helpers/ring_peer mpsc-produce / mpsc-claim); the consumer is this one.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/tally.hpp"

#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::finish;
using shmlink::test::Tally;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

} // namespace

TEST_CASE("producers take lanes of their own, give them back, and are refused when none is free")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 2);
    CHECK(ring.lane_count() == 2);
    CHECK(ring.max_message_bytes() == 504);

    std::error_code ec;
    MpscRing::create(segment, "bad", 1000, 2, {}, ec);
    CHECK(ec == Errc::invalid_argument);
    MpscRing::create(segment, "bad", 1024, 0, {}, ec);
    CHECK(ec == Errc::invalid_argument);
    MpscRing::create(segment, "bad", 1024, 65, {}, ec);
    CHECK(ec == Errc::invalid_argument);
    SpscRing::create(segment, "spsc", 1024);
    MpscProducer::open(segment, "spsc", ec);
    CHECK(ec == Errc::wrong_kind);

    {
        MpscProducer moved = MpscProducer::open(segment, "mpsc");
        MpscProducer a = std::move(moved);
        CHECK_FALSE(moved.valid()); // NOLINT(bugprone-use-after-move): a moved-from producer writes nothing
        CHECK(moved.try_push(bytes_of("x")) == RingStatus::corrupt);
        MpscProducer b = MpscProducer::open(segment, "mpsc");
        CHECK(a.lane() != b.lane());
        MpscProducer::open(segment, "mpsc", ec);
        CHECK(ec == Errc::no_free_lane);
        CHECK_THROWS_AS(MpscProducer::open(segment, "mpsc"), Error);
        CHECK(ring.stats().producers == 2);
        REQUIRE(a.try_push(bytes_of("from a")) == RingStatus::ok);
        REQUIRE(b.try_push(bytes_of("from b")) == RingStatus::ok);
    }
    // Both left with a message each in their lanes: delivered first, then freed.
    CHECK(ring.reap() == 0);
    std::vector<std::string> got;
    ring.consume([&](std::span<const std::byte> m) { got.emplace_back(reinterpret_cast<const char*>(m.data()), m.size()); }, 10);
    CHECK(got.size() == 2);
    CHECK(ring.reap() == 2);
    CHECK(ring.stats().producers == 0);
    CHECK(ring.stats().abandoned_claims == 0);
    CHECK(ring.stats().dead_producers == 0);
    MpscProducer again = MpscProducer::open(segment, "mpsc");
    REQUIRE(again.try_push(bytes_of("again")) == RingStatus::ok);
    std::byte buffer[64];
    std::size_t length = 0;
    REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
    CHECK(std::string(reinterpret_cast<const char*>(buffer), length) == "again");
    CHECK(ring.try_pop(buffer, length) == RingStatus::empty);
}

TEST_CASE("the consumer takes from every lane in turn")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 4096, 3);
    std::vector<MpscProducer> producers;
    for (int p = 0; p < 3; ++p)
        producers.push_back(MpscProducer::open(segment, "mpsc"));
    for (int i = 0; i < 10; ++i)
        for (int p = 0; p < 3; ++p)
            REQUIRE(producers[static_cast<std::size_t>(p)].try_push(bytes_of(std::to_string(p))) == RingStatus::ok);
    // One message at a time: no lane waits for another to drain.
    std::string order;
    std::byte buffer[8];
    std::size_t length = 0;
    for (int i = 0; i < 6; ++i) {
        REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
        order += static_cast<char>(buffer[0]);
    }
    CHECK(order == "012012");
}

TEST_CASE("the consumer looks only at lanes with a producer, and sees a lane taken since its last look at once")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 64);
    std::byte buffer[16];
    std::size_t length = 0;
    REQUIRE(ring.try_pop(buffer, length) == RingStatus::empty); // looked while every lane was free
    std::vector<MpscProducer> producers;
    for (int i = 0; i < 64; ++i) {
        producers.push_back(MpscProducer::open(segment, "mpsc"));
        REQUIRE(producers.back().try_push(bytes_of(std::to_string(producers.back().lane()))) == RingStatus::ok);
    }
    std::vector<int> seen(64, 0);
    for (int i = 0; i < 64; ++i) {
        REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
        ++seen.at(std::stoul(std::string(reinterpret_cast<const char*>(buffer), length)));
    }
    CHECK(std::count(seen.begin(), seen.end(), 1) == 64);
    CHECK(ring.try_pop(buffer, length) == RingStatus::empty);
    // A lane given back, freed by a reap, and taken again: seen at the next call, with no reap between.
    const std::uint32_t lane = producers[17].lane();
    producers[17] = MpscProducer();
    CHECK(ring.reap() == 1);
    producers[17] = MpscProducer::open(segment, "mpsc");
    REQUIRE(producers[17].lane() == lane);
    REQUIRE(producers[17].try_push(bytes_of("again")) == RingStatus::ok);
    REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
    CHECK(std::string(reinterpret_cast<const char*>(buffer), length) == "again");
    // The blocking zero-copy calls, on both ends.
    CHECK(ring.peek(20ms).status == RingStatus::timed_out);
    auto slot = producers[3].reserve(4, 1s);
    REQUIRE(slot);
    std::memcpy(slot.bytes.data(), "four", 4);
    producers[3].commit();
    const auto message = ring.peek(1s);
    REQUIRE(message);
    CHECK(std::string(reinterpret_cast<const char*>(message.bytes.data()), message.bytes.size()) == "four");
    ring.release();
}

TEST_CASE("a lane a producer scribbles on is quarantined; the other lanes go on")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 2);
    MpscProducer good = MpscProducer::open(segment, "mpsc");
    MpscProducer bad = MpscProducer::open(segment, "mpsc");
    REQUIRE(bad.try_push(bytes_of("soon garbage")) == RingStatus::ok);
    // The bad producer's record header, rewritten to a length past the largest message.
    const auto object = segment.find("mpsc");
    std::byte* lane = segment.base() + object.offset + sizeof(ipc::MpscRingControl)
        + bad.lane() * (sizeof(ipc::MpscLane) + 1024);
    const ipc::RecordHeader garbage {1000, static_cast<std::uint32_t>(ipc::RecordType::message)};
    std::memcpy(lane + sizeof(ipc::MpscLane), &garbage, sizeof(garbage));
    REQUIRE(good.try_push(bytes_of("fine")) == RingStatus::ok);

    std::byte buffer[1024];
    std::size_t length = 0;
    std::vector<RingStatus> seen;
    for (int i = 0; i < 4; ++i)
        seen.push_back(ring.try_pop(buffer, length));
    CHECK(std::count(seen.begin(), seen.end(), RingStatus::corrupt) == 1);
    CHECK(std::count(seen.begin(), seen.end(), RingStatus::ok) == 1);
    CHECK(ring.stats().corrupt_lanes == 1);
    REQUIRE(good.try_push(bytes_of("still fine")) == RingStatus::ok);
    CHECK(ring.try_pop(buffer, length) == RingStatus::ok);
    // Once the bad producer leaves, its lane is reset and usable again.
    bad = MpscProducer();
    CHECK(ring.reap() == 1);
    MpscProducer next = MpscProducer::open(segment, "mpsc");
    REQUIRE(next.try_push(bytes_of("new")) == RingStatus::ok);
    CHECK(ring.try_pop(buffer, length) == RingStatus::ok);
    CHECK(std::string(reinterpret_cast<const char*>(buffer), length) == "new");
}

TEST_CASE("MPSC across processes: 4 producers, every message once, in order per producer")
{
    const test::ResourceCount before;
    const test::ShmPath file("mpsc-stream");
    {
        Segment segment = Segment::create(file.path, 8 << 20, {.cleanup = Cleanup::unlink_on_close});
        MpscRing ring = MpscRing::create(segment, "mpsc", 64 << 10, 4);
        const std::uint64_t count = 200'000;
        std::vector<Child> producers;
        for (int id = 1; id <= 4; ++id)
            producers.push_back(test::start_ring_peer({"mpsc-produce", file.path, "mpsc", std::to_string(count), std::to_string(id)}));
        Tally tally;
        CHECK(tally.drain(ring, 4 * count, 120s));
        CHECK_FALSE(tally.bad);
        CHECK(tally.total == 4 * count);
        for (auto& producer : producers) {
            const auto [answer, exit_code] = finish(producer);
            INFO(answer);
            CHECK(exit_code == 0);
        }
        for (std::uint64_t id = 1; id <= 4; ++id)
            CHECK(tally.next[id] == count);
        std::byte extra[8];
        std::size_t length = 0;
        CHECK(ring.try_pop(extra, length) == RingStatus::empty);
        ring.reap();
        CHECK(ring.stats().producers == 0);
        CHECK(ring.stats().abandoned_claims == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a producer SIGKILLed holding a claim: the others go on, its claim is reported, its lane is reused")
{
    const test::ShmPath file("mpsc-kill");
    Segment segment = Segment::create(file.path, 8 << 20, {.cleanup = Cleanup::unlink_on_close});
    MpscRing ring = MpscRing::create(segment, "mpsc", 64 << 10, 3, {.reap_interval = 50ms});

    Child claimer = test::start_ring_peer({"mpsc-claim", file.path, "mpsc", "5"});
    REQUIRE(claimer.read_line().rfind("claimed", 0) == 0);
    const std::uint64_t count = 20'000;
    Child other = test::start_ring_peer({"mpsc-produce", file.path, "mpsc", std::to_string(count), "1"});
    claimer.kill(SIGKILL);
    CHECK(claimer.wait() != 0);

    // This consumer only polls: it never waits and never calls reap(), so
    // whatever is reaped here, the ring reaps by itself while busy.
    Tally tally;
    CHECK(tally.drain(ring, count + 5, 60s, std::nullopt));
    CHECK_FALSE(tally.bad);
    CHECK(tally.next[1] == count);
    CHECK(tally.next[99] == 5); // what the killed producer committed is delivered; its claim is not
    CHECK(finish(other).second == 0);
    std::byte buffer[1024];
    std::size_t length = 0;
    const auto polling_until = std::chrono::steady_clock::now() + 10s;
    while ((ring.stats().draining != 0 || ring.stats().producers != 0)
        && std::chrono::steady_clock::now() < polling_until)
        REQUIRE(ring.try_pop(buffer, length) == RingStatus::empty);
    const MpscStats stats = ring.stats();
    CHECK(stats.abandoned_claims == 1);
    CHECK(stats.dead_producers == 1);
    CHECK(stats.producers == 0);
    CHECK(stats.draining == 0);

    // Every lane can be taken again.
    std::vector<MpscProducer> fresh;
    for (int i = 0; i < 3; ++i)
        fresh.push_back(MpscProducer::open(segment, "mpsc"));
    REQUIRE(fresh[2].try_push(bytes_of("after")) == RingStatus::ok);
    REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
    CHECK(std::string(reinterpret_cast<const char*>(buffer), length) == "after");
}

TEST_CASE("a peer process scribbling random bytes over an MPSC ring: errors, no crash, no hang")
{
    const test::ShmPath file("mpsc-scribble");
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close, .take_over_dead = true});
        MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 2, {.reap_interval = 1ms});
        MpscProducer producer = MpscProducer::open(segment, "mpsc");
        std::byte buffer[1024];
        std::uint64_t corrupt = 0;
        const std::string answer = test::while_scribbled(file.path, "mpsc", seed, 50, [&] {
            const auto pushed = producer.try_push(bytes_of("message"));
            CHECK((pushed == RingStatus::ok || pushed == RingStatus::full || pushed == RingStatus::corrupt));
            std::size_t length = 0;
            const auto popped = ring.pop(buffer, length, 2ms);
            CHECK((popped == RingStatus::ok || popped == RingStatus::timed_out || popped == RingStatus::corrupt
                || popped == RingStatus::too_large));
            corrupt += popped == RingStatus::corrupt || pushed == RingStatus::corrupt;
            ring.reap();
        });
        CHECK(answer == "ok scribbled=50");
        CHECK(corrupt > 0); // random positions and record headers are caught
    }
}

TEST_CASE("producer threads, so that ThreadSanitizer checks the lanes and the shared wake-up")
{
    // The cross-process test above proves delivery across address spaces;
    // this one runs the same protocol where the sanitizer can see it.
    Segment segment = Segment::create_anonymous(4 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 4096, 3);
    constexpr std::uint64_t kCount = 20'000;
    std::vector<std::thread> producers;
    for (std::uint64_t id = 1; id <= 3; ++id)
        producers.emplace_back([&segment, id] {
            MpscProducer producer = MpscProducer::open(segment, "mpsc");
            std::vector<std::byte> message(8 + 512);
            for (std::uint64_t seq = 0; seq < kCount; ++seq)
                if (producer.push(std::span(message).first(test::make_tagged_message(id, seq, 512, message)), 10s)
                    != RingStatus::ok)
                    return; // the consumer's count tells
        });
    Tally tally;
    CHECK(tally.drain(ring, 3 * kCount, 60s, WaitOptions {.mode = WaitMode::block}));
    for (auto& producer : producers)
        producer.join();
    CHECK_FALSE(tally.bad);
    CHECK(tally.total == 3 * kCount);
}

TEST_CASE("a message longer than the consumer's buffer does not hold up the other lanes")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 2);
    MpscProducer big = MpscProducer::open(segment, "mpsc");
    MpscProducer small = MpscProducer::open(segment, "mpsc");
    REQUIRE(big.try_push(bytes_of(std::string(400, 'B'))) == RingStatus::ok);
    for (int i = 0; i < 3; ++i)
        REQUIRE(small.try_push(bytes_of("s" + std::to_string(i))) == RingStatus::ok);
    std::byte buffer[16];
    std::size_t length = 0;
    std::vector<std::string> got;
    int too_large = 0;
    for (int i = 0; i < 8; ++i) {
        const auto status = ring.try_pop(buffer, length);
        too_large += status == RingStatus::too_large;
        if (status == RingStatus::ok)
            got.emplace_back(reinterpret_cast<const char*>(buffer), length);
    }
    CHECK(got == std::vector<std::string> {"s0", "s1", "s2"});
    CHECK(too_large >= 1);
    std::byte large[512];
    REQUIRE(ring.try_pop(large, length) == RingStatus::ok); // still there for a big enough buffer
    CHECK(length == 400);
}

TEST_CASE("a producer whose process forked and exited lives on in its child: its lane is not reaped")
{
    // The lane's lock belongs to the open file description, which the child
    // shares: the pid in the owner word is dead, the producer is not.
    const test::ShmPath file("mpsc-fork");
    Segment segment = Segment::create(file.path, 8 << 20, {.cleanup = Cleanup::unlink_on_close});
    MpscRing ring = MpscRing::create(segment, "mpsc", 64 << 10, 2, {.reap_interval = 20ms});
    Child first = test::start_ring_peer({"mpsc-fork-produce", file.path, "mpsc", "2000", "7"});
    REQUIRE(first.read_line().rfind("forked", 0) == 0);
    CHECK(first.wait() == 0); // the process that took the lane is gone
    Tally tally;
    CHECK(tally.drain(ring, 2000, 30s));
    CHECK_FALSE(tally.bad);
    CHECK(tally.next[7] == 2000);
    CHECK(ring.stats().dead_producers == 0);
    // The child left cleanly when it was done: the lane is freed, no death counted.
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (ring.stats().producers != 0 && std::chrono::steady_clock::now() < until)
        ring.wait_readable(20ms);
    CHECK(ring.stats().producers == 0);
    CHECK(ring.stats().dead_producers == 0);
}

TEST_CASE("a held lane: only its producer takes it, also while another producer's try holds its lock a moment")
{
    const test::ShmPath file("held-lane");
    Segment segment = Segment::create(file.path, 1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 2);
    const int lane = ring.hold_lane(7);
    REQUIRE(lane == 0);
    std::error_code ec;
    // Nobody else takes a held lane: a plain producer gets the other one.
    MpscProducer other = MpscProducer::open(segment, "mpsc", ec);
    REQUIRE(other.valid());
    CHECK(other.lane() == 1);
    CHECK_FALSE(ring.taken_held(0, 7));
    MpscProducer::open_held(segment, "mpsc", 0, 8, ec); // the wrong token
    CHECK(ec == Errc::no_free_lane);
    // A producer in another process trying the lane holds its lock for a moment.
    const std::uint64_t lock_byte = segment.find("mpsc").offset + 0;
    Child locker = test::spawn_helper("SHMLINK_RING_PEER", {"lock-byte", file.path, std::to_string(lock_byte), "200"});
    REQUIRE(locker.read_line() == "locked");
    MpscProducer producer = MpscProducer::open_held(segment, "mpsc", 0, 7, ec);
    CHECK_FALSE(ec);
    REQUIRE(producer.valid());
    CHECK(producer.lane() == 0);
    CHECK(ring.taken_held(0, 7));
    CHECK(locker.wait() == 0);
    CHECK(producer.try_push(bytes_of("mine")) == RingStatus::ok);
    // A lane given back before its producer came is free again after a reap.
    other = MpscProducer();
    ring.reap();
    const int again = ring.hold_lane(9);
    REQUIRE(again == 1);
    CHECK(ring.unhold_lane(1, 9));
    CHECK_FALSE(MpscProducer::open(segment, "mpsc", ec).valid()); // not free until the consumer frees it
    ring.reap();
    CHECK(MpscProducer::open(segment, "mpsc", ec).valid());
}

TEST_CASE("a held owner word the consumer did not write is a peer's scribble, and the lane is freed")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 1);
    auto* owner = reinterpret_cast<std::uint64_t*>(segment.base() + segment.find("mpsc").offset + sizeof(ipc::MpscRingControl));
    *owner = (std::uint64_t {1234} << 32) | static_cast<std::uint32_t>(ipc::LaneState::held);
    std::error_code ec;
    CHECK_FALSE(MpscProducer::open(segment, "mpsc", ec).valid());
    CHECK(ring.reap() == 1);
    CHECK(MpscProducer::open(segment, "mpsc", ec).valid());
}

TEST_CASE("rings and queues that are not valid (default or moved from) answer corrupt, never crash")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing ring = MpscRing::create(segment, "mpsc", 1024, 1);
    MpscRing taker = std::move(ring);
    MpscRing fresh;
    std::byte buffer[64];
    std::size_t length = 0;
    for (MpscRing* r : {&ring, &fresh}) {
        CHECK_FALSE(r->valid());
        CHECK(r->peek().status != RingStatus::ok);
        CHECK(r->try_pop(buffer, length) != RingStatus::ok);
        CHECK(r->pop(buffer, length, 1ms) == RingStatus::corrupt);
        CHECK(r->wait_readable(1ms) == RingStatus::corrupt);
        CHECK(r->arm_readable() == RingStatus::corrupt);
        CHECK(r->consume([](std::span<const std::byte>) {}, 8) == 0);
        CHECK(r->reap() == 0);
        CHECK(r->hold_lane(1) == -1);
        CHECK_FALSE(r->unhold_lane(0, 1));
        CHECK_FALSE(r->taken_held(0, 1));
        r->request_reap();
        r->disarm_readable();
        r->release();
        CHECK(r->stats().producers == 0);
    }
    MpscProducer producer;
    CHECK(producer.try_push(bytes_of("x")) == RingStatus::corrupt);
    CHECK(producer.push(bytes_of("x"), 1ms) == RingStatus::corrupt);
    CHECK_FALSE(producer.reserve(8));
    SpscRing spsc;
    CHECK(spsc.try_push(bytes_of("x")) == RingStatus::corrupt);
    CHECK(spsc.pop(buffer, length, 1ms) == RingStatus::corrupt);
    CHECK(spsc.wait_writable(8, 1ms) == RingStatus::corrupt);
    spsc.reinitialize();
    CHECK_FALSE(spsc.valid());
}
