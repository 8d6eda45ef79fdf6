// Tests of a topic whose subscribers keep their slots apart: the publisher's
// segment is sealed against its peers' writes (SegmentOptions::peers_read_only)
// and each subscriber's slot is a file of its own that only it and the
// publisher map (SubscriberOptions::own_slot, Publisher::admit()). The
// subscribers are processes (tests/helpers/topic_peer apart ...) that get the
// segment's fd and hand their slot file back over a socket, as they would
// through a host.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>
#include <shmlink/transport/fd_socket.hpp>

#include "tests/support/child.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/samples.hpp"
#include "tests/support/topic.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::chunks_in_use;
using shmlink::test::field;
using shmlink::test::publish_sample;

namespace {

Segment sealed_segment(std::size_t size_bytes = std::size_t {1} << 20)
{
    SegmentOptions options;
    options.max_size_bytes = std::size_t {256} << 20;
    options.peers_read_only = true;
    return Segment::create_anonymous(size_bytes, options);
}

/// A subscriber process apart: it gets the segment at fd 3 and the other end
/// of `socket` at fd 4, proves it cannot write the segment, and sends back
/// its slot file, which the publisher admits.
struct Apart {
    Child child;
    UniqueFd socket;
    std::uint32_t slot = Subscriber<>::kNoSlot;
};

Apart start_apart(Segment& segment, const std::vector<std::string>& mode)
{
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    Apart a;
    a.socket = UniqueFd(pair[0]);
    const UniqueFd theirs(pair[1]);
    std::vector<std::string> args {"apart", "t"};
    args.insert(args.end(), mode.begin(), mode.end());
    a.child = test::spawn_helper("SHMLINK_TOPIC_PEER", args,
        {{segment.fd().get(), test::kSegmentFd}, {theirs.get(), test::kSocketFd}});
    REQUIRE(a.child.read_line() == "sealed");
    return a;
}

/// The slot file the subscriber sent.
UniqueFd receive_slot_file(Apart& a)
{
    std::byte byte[1];
    ReceivedMessage received;
    REQUIRE(!recv_with_fds(a.socket, byte, received));
    REQUIRE(received.fds.size() == 1);
    return std::move(received.fds[0]);
}

void admit(Publisher<>& publisher, Apart& a)
{
    a.slot = publisher.admit(receive_slot_file(a));
    CHECK(a.child.read_line().rfind("joined slot=", 0) == 0);
}

std::error_code admit_error(Publisher<>& publisher, UniqueFd file)
{
    std::error_code ec;
    CHECK(publisher.admit(std::move(file), ec) == Subscriber<>::kNoSlot);
    return ec;
}

} // namespace

TEST_CASE("topic apart: a sealed segment is read-only to every process that gets it, and grows reach them")
{
    std::error_code ec;
    (void)Segment::create("/dev/shm/shmlink-apart-refused", 4096, SegmentOptions {.peers_read_only = true}, ec);
    CHECK(ec == Errc::invalid_argument); // a file at a path cannot be sealed

    Segment segment = sealed_segment(std::size_t {64} << 10);
    Segment writable = Segment::attach(UniqueFd(::dup(segment.fd().get())), {}, ec);
    CHECK(ec == std::errc::permission_denied);
    CHECK_THROWS_WITH_AS(Segment::attach(UniqueFd(::dup(segment.fd().get()))),
        doctest::Contains("sealed it against writes by its peers"), Error);
    Segment reader = Segment::attach(UniqueFd(::dup(segment.fd().get())), AttachOptions {.read_only = true});
    CHECK(!reader.is_writable());

    // The creator still writes and grows it, through the mapping it made first.
    segment.grow(std::size_t {4} << 20);
    std::byte* last = segment.base() + segment.size_bytes() - 1;
    *last = std::byte {42};
    CHECK(reader.refresh());
    CHECK(reader.base()[segment.size_bytes() - 1] == std::byte {42});
    CHECK(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, reader.fd().get(), 0) == MAP_FAILED);

    // A subscriber of a read-only segment must keep its slot apart.
    Publisher<> publisher = Publisher<>::create(segment, "t");
    (void)Subscriber<>::open(reader, "t", {}, ec);
    CHECK(ec == Errc::invalid_argument);
    CHECK_THROWS_WITH_AS(Subscriber<>::open(reader, "t"), doctest::Contains("own_slot"), Error);
    // Every end of a ring writes: refused on a read-only mapping, not a fault.
    (void)SpscRing::create(segment, "ring", 4096);
    (void)SpscRing::open(reader, "ring", ec);
    CHECK(ec == std::errc::permission_denied);
    MpscRing consumer = MpscRing::create(segment, "mpsc", 4096, 2);
    (void)MpscProducer::open(reader, "mpsc", ec);
    CHECK(ec == std::errc::permission_denied);
}

TEST_CASE("topic apart: a subscriber with a slot of its own is admitted, gets history, and leaves")
{
    Segment segment = sealed_segment();
    Segment reader = Segment::attach(UniqueFd(::dup(segment.fd().get())), AttachOptions {.read_only = true});
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.max_subscribers = 2, .history = 2});
    for (std::uint64_t seq = 0; seq < 3; ++seq)
        REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok);

    Subscriber<> subscriber = Subscriber<>::open(reader, "t", SubscriberOptions {.own_slot = true});
    CHECK(subscriber.slot() == Subscriber<>::kNoSlot);
    CHECK(!subscriber.take()); // nothing before it is admitted
    const std::uint32_t slot = publisher.admit(subscriber.share_slot());
    CHECK(subscriber.slot() == slot);
    CHECK(publisher.stats().subscribers == 1);
    for (std::uint64_t seq = 1; seq < 3; ++seq) { // the two kept
        Sample<> sample = subscriber.take();
        REQUIRE(sample);
        CHECK(sample.sequence() == seq);
        CHECK(test::check_sample(sample.bytes(), seq));
    }
    REQUIRE(publish_sample(publisher, 3) == TopicStatus::ok);
    Sample<> held = subscriber.take(1s);
    REQUIRE(held);
    CHECK(held.sequence() == 3);
    held.release();

    // Its slot file went to the publisher once; a second admission is refused.
    CHECK(admit_error(publisher, subscriber.share_slot()) == Errc::invalid_argument);
    CHECK(publisher.stats().subscribers == 1);

    subscriber = Subscriber<>();
    CHECK(publisher.reap() == 1);
    const PublisherStats stats = publisher.stats();
    CHECK(stats.subscribers == 0);
    CHECK(stats.dead_subscribers == 0); // it left: not found dead
    CHECK(chunks_in_use(publisher) == 2); // the history alone
}

TEST_CASE("topic apart: admit refuses what is not a live slot file of the topic, with the reason")
{
    Segment segment = sealed_segment();
    Publisher<> publisher = Publisher<>::create(segment, "t");
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    const UniqueFd write_end(pipe_fds[1]);
    CHECK(admit_error(publisher, UniqueFd(pipe_fds[0])) == Errc::not_a_segment);
    CHECK(admit_error(publisher, UniqueFd()) == std::errc::bad_file_descriptor);

    const auto memfd = [](std::size_t bytes, int seals) {
        UniqueFd fd(::memfd_create("not-a-slot", MFD_CLOEXEC | MFD_ALLOW_SEALING));
        REQUIRE(fd);
        REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(bytes)) == 0);
        if (seals != 0)
            REQUIRE(::fcntl(fd.get(), F_ADD_SEALS, seals) == 0);
        return fd;
    };
    // A slot file of the right size, unsealed: it could shrink under the publisher.
    Segment reader = Segment::attach(UniqueFd(::dup(segment.fd().get())), AttachOptions {.read_only = true});
    Subscriber<> probe = Subscriber<>::open(reader, "t", SubscriberOptions {.own_slot = true});
    struct stat st {};
    REQUIRE(::fstat(probe.share_slot().get(), &st) == 0);
    const auto slot_bytes = static_cast<std::size_t>(st.st_size);
    CHECK(admit_error(publisher, memfd(slot_bytes, 0)) == Errc::invalid_argument);
    CHECK(admit_error(publisher, memfd(slot_bytes + 4096, F_SEAL_SHRINK)) == Errc::invalid_argument);
    // Sealed and sized, but never joined (all zero).
    CHECK(admit_error(publisher, memfd(slot_bytes, F_SEAL_SHRINK)) == Errc::invalid_argument);
    CHECK_THROWS_WITH_AS(publisher.admit(memfd(slot_bytes, F_SEAL_SHRINK)), doctest::Contains("does not say joined"),
        Error);
    CHECK(publisher.stats().subscribers == 0);

    // A subscriber process killed before it was admitted.
    Apart dead = start_apart(segment, {"hold", "1"});
    UniqueFd file = receive_slot_file(dead);
    dead.child.kill(SIGKILL);
    (void)dead.child.wait();
    CHECK(admit_error(publisher, std::move(file)) == Errc::peer_closed);

    // Every slot taken.
    Publisher<> small;
    {
        Segment other = sealed_segment();
        Segment other_reader = Segment::attach(UniqueFd(::dup(other.fd().get())), AttachOptions {.read_only = true});
        small = Publisher<>::create(other, "t", TopicOptions {.max_subscribers = 1});
        Subscriber<> first = Subscriber<>::open(other_reader, "t", SubscriberOptions {.own_slot = true});
        Subscriber<> second = Subscriber<>::open(other_reader, "t", SubscriberOptions {.own_slot = true});
        CHECK(small.admit(first.share_slot()) == 0);
        CHECK(admit_error(small, second.share_slot()) == Errc::no_free_lane);
        small = Publisher<>();
    }
}

TEST_CASE("topic apart: subscriber processes read every sample in place and can write nothing another reads")
{
    const std::uint64_t count = 20000;
    Segment segment = sealed_segment();
    std::byte* const base = segment.base();
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 16});
    std::vector<Apart> subscribers;
    for (int i = 0; i < 3; ++i) {
        subscribers.push_back(start_apart(segment, {"subscribe", i == 0 ? "drop" : "block", "16"}));
        admit(publisher, subscribers.back());
    }
    CHECK(publisher.stats().subscribers == 3);
    const std::uint64_t extents_before = publisher.stats().extents;
    for (std::uint64_t seq = 0; seq < count; ++seq)
        REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok);
    CHECK(publisher.stats().extents > extents_before); // the pool grew the sealed segment
    CHECK(segment.base() == base);
    publisher = Publisher<>();
    for (std::size_t i = 0; i < subscribers.size(); ++i) {
        const auto [answer, code] = test::finish(subscribers[i].child);
        INFO(answer);
        CHECK(code == 0);
        CHECK(field(answer, "base_moved") == 0);
        CHECK(field(answer, "gaps") == field(answer, "missed"));
        if (i != 0)
            CHECK(field(answer, "taken") == static_cast<double>(count));
    }
}

TEST_CASE("topic apart: a subscriber that writes garbage over all it can write: the publisher and the others go on")
{
    const std::uint64_t count = 20000;
    Segment segment = sealed_segment(std::size_t {8} << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 16});
    Apart scribbler = start_apart(segment, {"scribble", "200"});
    admit(publisher, scribbler);
    std::vector<Apart> honest;
    for (int i = 0; i < 2; ++i) {
        honest.push_back(start_apart(segment, {"subscribe", "block", "16"}));
        admit(publisher, honest.back());
    }
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const TopicStatus status = publish_sample(publisher, seq);
        // The scribbler's slot may claim to block: its publish then times out, nobody else's.
        REQUIRE((status == TopicStatus::ok || status == TopicStatus::timed_out));
    }
    CHECK(scribbler.child.read_line(120s) == "done");
    CHECK(test::exit_code(scribbler.child.wait()) == 0);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (publisher.reap(), chunks_in_use(publisher) != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    CHECK(chunks_in_use(publisher) == 0);
    CHECK(publisher.stats().subscribers == 2);
    publisher = Publisher<>();
    for (Apart& a : honest) {
        const auto [answer, code] = test::finish(a.child);
        INFO(answer);
        CHECK(code == 0);
        CHECK(field(answer, "taken") == static_cast<double>(count));
        CHECK(field(answer, "missed") == 0);
    }
}

TEST_CASE("topic apart: subscribers killed while they hold samples give every chunk back within a reap")
{
    Segment segment = sealed_segment(std::size_t {4} << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 8, .max_held = 4});
    std::mt19937 random(20261208);
    std::uint64_t seq = 1; // never 0 or a multiple of 997: small samples keep the segment small
    for (int kill = 0; kill < 10; ++kill) {
        const int holds = 1 + static_cast<int>(random() % 4);
        Apart holder = start_apart(segment, {"hold", std::to_string(holds)});
        admit(publisher, holder);
        const std::string held = [&] {
            for (;;) {
                REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok);
                seq += seq % 997 == 996 ? 2 : 1;
                if (auto line = holder.child.poll_line())
                    return *line;
                std::this_thread::sleep_for(1ms);
            }
        }();
        CHECK(held == "holding " + std::to_string(holds));
        holder.child.kill(SIGKILL);
        (void)holder.child.wait();
        CHECK(publisher.reap() == 1);
        CHECK(publisher.stats().dead_subscribers == static_cast<std::uint64_t>(kill + 1));
    }
    CHECK(publisher.stats().subscribers == 0);
    CHECK(chunks_in_use(publisher) == 0);
}

TEST_CASE("topic apart: a subscriber apart learns that a killed publisher is gone")
{
    // The publisher is a forked child; killed, it never says closed: the
    // subscriber must find out from the publisher's lock, which it probes
    // through the segment's fd.
    Segment segment = sealed_segment();
    Segment reader = Segment::attach(UniqueFd(::dup(segment.fd().get())), AttachOptions {.read_only = true});
    int ready[2];
    REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
    const UniqueFd ready_read(ready[0]);
    UniqueFd ready_write(ready[1]);
    const pid_t publisher = ::fork();
    REQUIRE(publisher >= 0);
    if (publisher == 0) {
        Publisher<> p = Publisher<>::create(segment, "t");
        const char byte = 'r';
        (void)!::write(ready_write.get(), &byte, 1); // created, and its lock taken
        for (;;)
            ::pause();
    }
    ready_write.reset();
    char byte = 0;
    REQUIRE(::read(ready_read.get(), &byte, 1) == 1);
    Subscriber<> subscriber = Subscriber<>::open(reader, "t", SubscriberOptions {.liveness_interval = 10ms, .own_slot = true});
    CHECK(subscriber.take(50ms).status() == TopicStatus::timed_out); // it lives: not closed
    REQUIRE(::kill(publisher, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(publisher, &status, 0) == publisher);
    CHECK(subscriber.take(5s).status() == TopicStatus::closed);
}
