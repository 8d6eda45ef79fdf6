// The eventfd mode of ipc/wait.hpp: an Asio io_context, with no thread of
// its own for the ring, waits for a ring that a producer process fills.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>
#include <shmlink/transport/asio.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/samples.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <functional>
#include <optional>
#include <string>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::finish;

TEST_CASE("an io_context waits on a ring through its eventfd; a producer process wakes it")
{
    const test::ResourceCount before;
    const test::ShmPath file("eventfd");
    {
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
        SpscRing ring = SpscRing::create(segment, "ring", 4096);
        std::error_code ec;
        UniqueFd wake_fd = create_wake_fd(ec);
        REQUIRE_FALSE(ec);
        const std::uint64_t count = 300;
        Child producer = test::start_ring_peer({"produce-notify", file.path, "ring", std::to_string(count)},
            {{wake_fd.get(), test::kWakeFd}});

        boost::asio::io_context io;
        boost::asio::posix::stream_descriptor watched(io, ::dup(wake_fd.get()));
        std::uint64_t next = 0;
        int wake_ups = 0;
        bool failed = false;
        std::function<void()> drain_then_wait = [&] {
            for (;;) {
                ring.consume(
                    [&](std::span<const std::byte> m) {
                        std::uint64_t seq = 0;
                        if (m.size() != 8 || (std::memcpy(&seq, m.data(), 8), seq != next))
                            failed = true;
                        ++next;
                    },
                    SIZE_MAX);
                if (next == count || failed)
                    return;
                if (ring.arm_readable() == RingStatus::empty)
                    break; // armed: the producer's next commit signals the fd
            }
            watched.async_wait(boost::asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& error) {
                ring.disarm_readable();
                if (error) {
                    failed = true;
                    return;
                }
                ++wake_ups;
                drain_wake_fd(wake_fd);
                drain_then_wait();
            });
        };
        drain_then_wait();
        io.run_for(60s);
        CHECK_FALSE(failed);
        CHECK(next == count);
        // Once armed, the consumer reads again only when the fd wakes it: every
        // message arrived, so the wake-ups worked. How many messages each one
        // brought depends on the scheduler (a loaded machine batches them), so
        // only that there were some is asserted.
        CHECK(wake_ups >= 1);
        CHECK(wake_ups <= static_cast<int>(count));
        const auto [answer, exit_code] = finish(producer);
        INFO(answer);
        CHECK(exit_code == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("arming a ring that has a message, or an MPSC ring, answers at once")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 4096);
    CHECK(ring.arm_readable() == RingStatus::empty);
    ring.disarm_readable();
    REQUIRE(ring.try_push(std::as_bytes(std::span("x", 1))) == RingStatus::ok);
    CHECK(ring.arm_readable() == RingStatus::ok); // not armed: nothing to disarm
    ring.disarm_readable();                       // a stray disarm must not wrap the sleeper count
    const auto* control = reinterpret_cast<const ipc::SpscRingControl*>(segment.base() + segment.find("ring").offset);
    CHECK(control->readable.sleepers == 0);

    MpscRing mpsc = MpscRing::create(segment, "mpsc", 1024, 2);
    CHECK(mpsc.arm_readable() == RingStatus::empty);
    mpsc.disarm_readable();
    MpscProducer producer = MpscProducer::open(segment, "mpsc");
    REQUIRE(producer.try_push(std::as_bytes(std::span("y", 1))) == RingStatus::ok);
    CHECK(mpsc.arm_readable() == RingStatus::ok);
}

TEST_CASE("a lane freed while its consumer is armed counts the consumer once, whatever its producer wrote there")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    MpscRing mpsc = MpscRing::create(segment, "mpsc", 1024, 2);
    const auto sleepers = [&] {
        std::vector<std::uint32_t> counts;
        const ObjectState state = inspect(segment, segment.find("mpsc"));
        for (const LaneState& lane : state.mpsc->lanes)
            counts.push_back(lane.ring.readable_sleepers);
        return counts;
    };
    REQUIRE(mpsc.arm_readable() == RingStatus::empty);
    CHECK(sleepers() == std::vector<std::uint32_t> {1, 1});
    {
        MpscProducer producer = MpscProducer::open(segment, "mpsc");
        REQUIRE(producer.lane() == 0);
        // A producer's stray write into the count it only reads.
        auto* lanes = reinterpret_cast<ipc::MpscLane*>(segment.base() + segment.find("mpsc").offset + sizeof(ipc::MpscRingControl));
        std::atomic_ref(lanes[0].ring.readable.sleepers).store(7);
    } // gives its lane back
    CHECK(mpsc.reap() == 1);
    CHECK(sleepers() == std::vector<std::uint32_t> {1, 1});
    mpsc.disarm_readable();
    CHECK(sleepers() == std::vector<std::uint32_t> {0, 0});
}

namespace {

/// What an io_context saw of a topic's subscriber in eventfd mode.
struct TopicLoop {
    std::uint64_t taken = 0;
    std::uint64_t gaps = 0;
    int wake_ups = 0;
    TopicStatus end = TopicStatus::invalid; // closed, or what went wrong
    std::string failure;
};

/// Runs an io_context with no thread of its own for the subscriber: it takes
/// and checks every sample queued, arms, and waits on the eventfd; with a
/// `rearm` period, a timer arms again meanwhile (what finds a killed
/// publisher). `on_taken` runs after each sample. Returns once the
/// subscriber reads closed, or fails.
TopicLoop run_topic_loop(Subscriber<>& subscriber, BorrowedFd wake_fd, std::optional<std::chrono::milliseconds> rearm,
    const std::function<void(std::uint64_t taken)>& on_taken = {})
{
    TopicLoop seen;
    boost::asio::io_context io;
    boost::asio::posix::stream_descriptor watched(io, ::dup(wake_fd.get()));
    boost::asio::steady_timer timer(io);
    std::int64_t last = -1;
    bool done = false;
    const auto finish_with = [&](TopicStatus end, std::string failure) {
        seen.end = end;
        seen.failure = std::move(failure);
        done = true;
        watched.cancel();
        timer.cancel();
    };
    // Takes all that is queued, then arms; true when armed (wait for the fd).
    const auto drain_and_arm = [&] {
        for (;;) {
            Sample<> sample = subscriber.take();
            if (sample) {
                const auto seq = static_cast<std::int64_t>(sample.sequence());
                if (seq <= last || !test::check_sample(sample.bytes(), sample.sequence())) {
                    finish_with(TopicStatus::corrupt, "bad sample " + std::to_string(seq) + " after " + std::to_string(last));
                    return false;
                }
                seen.gaps += static_cast<std::uint64_t>(seq - last - 1);
                last = seq;
                ++seen.taken;
                if (on_taken)
                    on_taken(seen.taken);
                continue;
            }
            if (sample.status() != TopicStatus::empty) {
                finish_with(sample.status(), sample.status() == TopicStatus::closed ? "" : "take said so");
                return false;
            }
            const TopicStatus armed = subscriber.arm_readable();
            if (armed == TopicStatus::empty)
                return true;
            if (armed != TopicStatus::ok) {
                finish_with(armed, armed == TopicStatus::closed ? "" : "arm said so");
                return false;
            }
        }
    };
    std::function<void()> wait_for_fd = [&] {
        watched.async_wait(boost::asio::posix::stream_descriptor::wait_read, [&](const boost::system::error_code& error) {
            if (done)
                return;
            subscriber.disarm_readable();
            if (error) {
                finish_with(TopicStatus::invalid, error.message());
                return;
            }
            ++seen.wake_ups;
            drain_wake_fd(wake_fd);
            if (drain_and_arm())
                wait_for_fd();
        });
    };
    std::function<void()> tick = [&] {
        timer.expires_after(*rearm);
        timer.async_wait([&](const boost::system::error_code& error) {
            if (done || error)
                return;
            subscriber.disarm_readable();
            if (drain_and_arm())
                tick(); // the fd's wait is still pending
        });
    };
    if (drain_and_arm()) {
        wait_for_fd();
        if (rearm)
            tick();
    }
    io.run_for(std::chrono::seconds(60));
    if (!done)
        seen.failure = "no end within 60 s";
    return seen;
}

} // namespace

TEST_CASE("an io_context waits on a topic's subscriber through its eventfd; the publisher's deliveries and leaving wake it")
{
    const test::ResourceCount before;
    const test::ShmPath path("eventfd-topic");
    {
        std::error_code ec;
        UniqueFd wake_fd = create_wake_fd(ec);
        REQUIRE_FALSE(ec);
        const std::uint64_t count = 300;
        Child publisher = test::spawn_helper("SHMLINK_TOPIC_PEER",
            {"publish", path.path, "t", std::to_string(count), "wake"}, {{wake_fd.get(), test::kWakeFd}});
        REQUIRE(publisher.read_line() == "ready");
        Segment segment = Segment::attach(path.path);
        Subscriber<> subscriber = Subscriber<>::open(segment, "t", {.overflow = Overflow::block_publisher});
        REQUIRE(subscriber.slot() == 0); // the slot whose eventfd the publisher holds
        publisher.send("go");
        // No timer: the closed at the end, too, comes through the fd.
        const TopicLoop seen = run_topic_loop(subscriber, wake_fd, std::nullopt);
        INFO(seen.failure);
        CHECK(seen.end == TopicStatus::closed);
        // Only a publish that timed out on a starved subscriber can miss one;
        // what is missed is counted, and is exactly the gaps.
        CHECK(seen.taken + subscriber.stats().missed == count);
        CHECK(seen.gaps == subscriber.stats().missed);
        // Armed, the loop reads only when the fd wakes it; how many samples
        // a wake-up brings depends on the scheduler.
        CHECK(seen.wake_ups >= 1);
        CHECK(publisher.read_line() == "published " + std::to_string(count));
        CHECK(publisher.wait() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a topic's subscriber in eventfd mode learns from its timer's arm that a killed publisher is gone")
{
    const test::ResourceCount before;
    const test::ShmPath path("eventfd-topic-kill");
    {
        std::error_code ec;
        UniqueFd wake_fd = create_wake_fd(ec);
        REQUIRE_FALSE(ec);
        Child publisher = test::spawn_helper("SHMLINK_TOPIC_PEER", {"publish", path.path, "t", "100000000", "wake"},
            {{wake_fd.get(), test::kWakeFd}});
        REQUIRE(publisher.read_line() == "ready");
        Segment segment = Segment::attach(path.path);
        Subscriber<> subscriber = Subscriber<>::open(segment, "t", {.liveness_interval = std::chrono::milliseconds(20)});
        REQUIRE(subscriber.slot() == 0);
        publisher.send("go");
        // Killed while the loop runs: from then on nothing signals the fd,
        // and only an arm (the timer's, or one after the samples still
        // queued) can find the publisher gone.
        const TopicLoop seen = run_topic_loop(subscriber, wake_fd, std::chrono::milliseconds(20),
            [&](std::uint64_t taken) {
                if (taken == 100)
                    publisher.kill(SIGKILL);
            });
        INFO(seen.failure);
        CHECK(seen.end == TopicStatus::closed);
        CHECK(seen.taken >= 100);
        CHECK(seen.gaps == subscriber.stats().missed);
        (void)publisher.wait();
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a topic subscriber's arm answers at once when a sample is queued, and a wake fd of a slot out of range is refused")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", {.max_subscribers = 2});
    Subscriber<> subscriber = Subscriber<>::open(segment, "t");
    std::error_code ec;
    UniqueFd wake_fd = create_wake_fd(ec);
    REQUIRE_FALSE(ec);
    CHECK_FALSE(publisher.set_wake_fd(2, UniqueFd(::dup(wake_fd.get()))));
    REQUIRE(publisher.set_wake_fd(subscriber.slot(), UniqueFd(::dup(wake_fd.get()))));
    CHECK(subscriber.arm_readable() == TopicStatus::empty);
    CHECK(subscriber.arm_readable() == TopicStatus::empty); // arming twice registers once
    Loan<> loan = publisher.loan(8);
    REQUIRE(publisher.publish(std::move(loan)) == TopicStatus::ok);
    std::uint64_t signals = 0;
    CHECK(::read(wake_fd.get(), &signals, sizeof signals) == sizeof signals);
    CHECK(signals == 1);
    subscriber.disarm_readable();
    CHECK(subscriber.arm_readable() == TopicStatus::ok); // queued: nothing armed
    CHECK(subscriber.take());
    CHECK(subscriber.arm_readable() == TopicStatus::empty);
    subscriber.disarm_readable();
    REQUIRE(publisher.publish(publisher.loan(8)) == TopicStatus::ok);
    CHECK(::read(wake_fd.get(), &signals, sizeof signals) == -1); // disarmed: no signal
    subscriber.disarm_readable(); // a stray disarm changes nothing
    CHECK(subscriber.arm_readable() == TopicStatus::ok);
}
