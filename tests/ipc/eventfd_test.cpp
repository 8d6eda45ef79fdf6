// The eventfd mode of ipc/wait.hpp: an Asio io_context, with no thread of
// its own for the ring, waits for a ring that a producer process fills.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/transport/asio.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <functional>
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
