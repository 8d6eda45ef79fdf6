// Tests of ipc/publisher.hpp and ipc/subscriber.hpp. The rules of one topic
// are checked in one process first; then the subscribers (or the publisher)
// are processes of their own (tests/helpers/topic_peer), as they are in use.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/detail/topic.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/samples.hpp"
#include "tests/support/topic.hpp"

#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::chunks_in_use;
using shmlink::test::field;
using shmlink::test::publish_sample;

namespace {

Child start_topic_peer(const std::vector<std::string>& args)
{
    return test::spawn_helper("SHMLINK_TOPIC_PEER", args);
}

std::uint64_t env_count(const char* name, std::uint64_t fallback)
{
    const char* value = std::getenv(name);
    return value != nullptr ? std::strtoull(value, nullptr, 10) : fallback;
}

std::string text(std::span<const std::byte> bytes)
{
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

TopicStatus publish_text(Publisher<>& publisher, const std::string& s)
{
    Loan<> loan = publisher.loan(s.size());
    REQUIRE(loan);
    std::memcpy(loan.bytes().data(), s.data(), s.size());
    return publisher.publish(std::move(loan));
}

} // namespace

TEST_CASE("topic: a slot's sleeper is woken once a sleep; a notify that finds it woken makes no wake-up")
{
    ipc::WaitWord word {};
    const SoleSleeper sleeper {word};
    notify_sole(word);
    CHECK(word.seq == 0); // nobody asleep: no wake-up
    sleeper(true);
    CHECK(sole_sleeper_asleep(word));
    notify_sole(word);
    CHECK(word.seq == 1);
    CHECK_FALSE(sole_sleeper_asleep(word)); // woken, though it has not run yet
    notify_sole(word);
    CHECK(word.seq == 1); // so the next notify leaves it alone
    sleeper(false);
    sleeper(true);
    notify_sole(word);
    CHECK(word.seq == 2); // asleep again: woken again
    // seq skips UINT32_MAX, whose "plus 1" would read as nobody asleep.
    word.seq = UINT32_MAX - 1;
    sleeper(true);
    notify_sole(word);
    CHECK(word.seq == 0);
    sleeper(true);
    CHECK(word.sleepers == 1);
    notify_sole(word);
    CHECK(word.seq == 1);

    // A thread asleep in wait_until() is woken by the one notify, not by its deadline.
    sleeper(false);
    std::atomic<bool> ready {false};
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    bool woken = false;
    std::thread waiter([&] {
        woken = wait_until(word.seq, SoleSleeper {word}, [&] { return ready.load(); },
                    WaitOptions {.mode = WaitMode::block}, deadline)
            && std::chrono::steady_clock::now() < deadline;
    });
    while (!sole_sleeper_asleep(word) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    ready = true;
    notify_sole(word);
    waiter.join();
    CHECK(woken);
}

TEST_CASE("topic: options out of range are refused with the rule they break")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    std::error_code ec;
    for (const TopicOptions& bad : {TopicOptions {.max_subscribers = 0}, TopicOptions {.max_subscribers = 65},
             TopicOptions {.queue_depth = 12}, TopicOptions {.queue_depth = 2048}, TopicOptions {.max_held = 0},
             TopicOptions {.queue_depth = 4, .history = 5}}) {
        CHECK_FALSE(Publisher<>::create(segment, "t", bad, ec).valid());
        CHECK(ec == Errc::invalid_argument);
    }
    try {
        Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 12});
        FAIL("no throw");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "create topic 't': queue_depth must be a power of two from 1 to 1024, not 12: invalid argument");
    }
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 8, .max_held = 4});
    Subscriber<>::open(segment, "t", SubscriberOptions {.queue_depth = 16}, ec);
    CHECK(ec == Errc::invalid_argument);
    Subscriber<>::open(segment, "t", SubscriberOptions {.max_held = 5}, ec);
    CHECK(ec == Errc::invalid_argument);
    Subscriber<>::open(segment, "none", {}, ec);
    CHECK(ec == Errc::not_found);

    Segment guest = Segment::attach(UniqueFd(::dup(segment.fd().get())));
    Publisher<>::create(guest, "u", {}, ec);
    CHECK(ec == Errc::not_owner); // only the creator can grow the pool
}

TEST_CASE("topic: a sample is written once and read in place by every subscriber; loans dropped go back")
{
    const test::ResourceCount before;
    {
        Segment segment = Segment::create_anonymous(4 << 20);
        Publisher<> publisher = Publisher<>::create(segment, "frames");
        struct Point {
            double x, y;
        };
        Publisher<Point> points = Publisher<Point>::create(segment, "points");
        Subscriber<Point> reader = Subscriber<Point>::open(segment, "points");
        Subscriber<> a = Subscriber<>::open(segment, "frames");
        Subscriber<> b = Subscriber<>::open(segment, "frames");
        CHECK(a.slot() != b.slot());
        CHECK(a.take().status() == TopicStatus::empty);

        {
            Loan<> dropped = publisher.loan(100);
            REQUIRE(dropped);
        }
        CHECK(chunks_in_use(publisher) == 0);

        REQUIRE(publish_text(publisher, "hello") == TopicStatus::ok);
        Sample<> from_a = a.take();
        Sample<> from_b = b.take();
        REQUIRE(from_a);
        REQUIRE(from_b);
        CHECK(text(from_a.bytes()) == "hello");
        CHECK(from_a.bytes().data() == from_b.bytes().data()); // one copy, read in place by both
        CHECK(from_a.sequence() == 0);
        CHECK(chunks_in_use(publisher) == 1);
        from_a.release();
        CHECK(a.take().status() == TopicStatus::empty);
        (void)publisher.loan(1); // reads the release rings when the class runs dry: here it does not
        from_b = Sample<>();
        Loan<> probe = publisher.loan(1 << 20); // a new class: reads every release ring first
        probe = Loan<>();
        CHECK(chunks_in_use(publisher) == 0);

        // 0 bytes is a sample too.
        REQUIRE(publish_text(publisher, "") == TopicStatus::ok);
        Sample<> empty = a.take();
        REQUIRE(empty);
        CHECK(empty.bytes().empty());
        CHECK(empty.sequence() == 1);

        // Typed ends.
        Loan<Point> p = points.loan();
        REQUIRE(p);
        p->x = 1.5;
        p->y = -2;
        REQUIRE(points.publish(std::move(p)) == TopicStatus::ok);
        Sample<Point> got = reader.take();
        REQUIRE(got);
        CHECK(got->x == 1.5);
        CHECK(got->y == -2);

        // Dropping the publisher closes the topic: what is queued is still read, then closed.
        REQUIRE(publish_text(publisher, "last") == TopicStatus::ok);
        publisher = Publisher<>();
        CHECK(b.take().sequence() == 1); // the 0-byte one
        Sample<> last = b.take();
        REQUIRE(last);
        CHECK(text(last.bytes()) == "last");
        CHECK(b.take().status() == TopicStatus::closed);
        CHECK(b.wait(1s) == TopicStatus::closed);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("topic: a full drop-oldest subscriber loses its oldest samples, counted; the others lose none")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 4});
    Subscriber<> slow = Subscriber<>::open(segment, "t");
    Subscriber<> fast = Subscriber<>::open(segment, "t");
    for (int i = 0; i < 10; ++i) {
        REQUIRE(publish_text(publisher, std::to_string(i)) == TopicStatus::ok);
        Sample<> s = fast.take();
        REQUIRE(s);
        CHECK(text(s.bytes()) == std::to_string(i));
    }
    CHECK(slow.stats().missed == 6);
    CHECK(slow.stats().queued == 4);
    for (int i = 6; i < 10; ++i) {
        Sample<> s = slow.take();
        REQUIRE(s);
        CHECK(text(s.bytes()) == std::to_string(i));
        CHECK(s.sequence() == static_cast<std::uint64_t>(i));
    }
    CHECK(fast.stats().missed == 0);
    publisher.reap(); // reads their releases
    CHECK(chunks_in_use(publisher) == 0);
}

TEST_CASE("topic: a full blocking subscriber makes publish wait, then miss it, counted")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 2});
    Subscriber<> blocking = Subscriber<>::open(segment, "t", SubscriberOptions {.overflow = Overflow::block_publisher});
    Subscriber<> other = Subscriber<>::open(segment, "t");
    REQUIRE(publish_text(publisher, "a") == TopicStatus::ok);
    REQUIRE(publish_text(publisher, "b") == TopicStatus::ok);
    Loan<> loan = publisher.loan(1);
    REQUIRE(loan);
    CHECK(publisher.publish(std::move(loan), 10ms) == TopicStatus::timed_out);
    CHECK(blocking.stats().missed == 1);
    CHECK(other.stats().missed == 1); // drop oldest: it lost "a" to "c"
    Sample<> a = blocking.take();
    REQUIRE(a);
    CHECK(text(a.bytes()) == "a");
    REQUIRE(publish_text(publisher, "d") == TopicStatus::ok); // room again: no wait
    CHECK(text(blocking.take().bytes()) == "b");
    CHECK(text(blocking.take().bytes()) == "d");
}

TEST_CASE("topic: a subscriber holds up to max_held samples, releases them in any order, and they return")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 8, .max_held = 3});
    Subscriber<> sub = Subscriber<>::open(segment, "t");
    for (int i = 0; i < 5; ++i)
        REQUIRE(publish_text(publisher, std::to_string(i)) == TopicStatus::ok);
    std::vector<Sample<>> held;
    for (int i = 0; i < 3; ++i)
        held.push_back(sub.take());
    CHECK(sub.take().status() == TopicStatus::hold_limit);
    CHECK(sub.stats().held == 3);
    held[1].release();
    Sample<> fourth = sub.take();
    REQUIRE(fourth);
    CHECK(text(fourth.bytes()) == "3");
    held.clear();
    fourth = Sample<>();
    Sample<> fifth = sub.take();
    fifth = Sample<>();
    (void)publisher.loan(1 << 16); // a new class: the pool reads every release ring first
    CHECK(chunks_in_use(publisher) == 0);
    CHECK(publisher.stats().bogus_releases == 0);
    CHECK(sub.stats().reclaimed == 0);
}

TEST_CASE("topic: a subscriber that joins late gets the newest samples the topic keeps")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 4, .history = 2});
    for (int i = 0; i < 5; ++i)
        REQUIRE(publish_text(publisher, std::to_string(i)) == TopicStatus::ok);
    CHECK(chunks_in_use(publisher) == 2);
    Subscriber<> late = Subscriber<>::open(segment, "t");
    REQUIRE(publish_text(publisher, "5") == TopicStatus::ok); // the publisher sees the join at its next call
    for (const char* expected : {"3", "4", "5"}) {
        Sample<> s = late.take();
        REQUIRE(s);
        CHECK(text(s.bytes()) == expected);
    }
}

TEST_CASE("topic: the pool grows with the segment, the base never moves, and freed chunks are reused")
{
    SegmentOptions options;
    options.max_size_bytes = 64 << 20;
    Segment segment = Segment::create_anonymous(1 << 16, options);
    std::byte* const base = segment.base();
    Publisher<> publisher = Publisher<>::create(segment, "t");
    Subscriber<> sub = Subscriber<>::open(segment, "t");
    for (std::uint64_t seq : {997ULL, 101ULL, 5ULL}) {
        REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok);
        Sample<> s = sub.take();
        REQUIRE(s);
        CHECK(test::check_sample(s.bytes(), seq));
    }
    const PublisherStats grown = publisher.stats();
    CHECK(grown.extents == 3);
    CHECK(segment.size_bytes() > std::size_t {4} << 20);
    CHECK(segment.base() == base);
    for (int i = 0; i < 20; ++i) {
        REQUIRE(publish_sample(publisher, 997) == TopicStatus::ok);
        Sample<> s = sub.take();
        REQUIRE(s);
    }
    CHECK(publisher.stats().extents == grown.extents); // released 4 MiB chunks were taken again

    Loan<> huge = publisher.loan(std::size_t {128} << 20);
    CHECK(huge.status() == TopicStatus::too_large);
    Loan<> beyond = publisher.loan(std::size_t {48} << 20);
    CHECK(beyond.status() == TopicStatus::no_space);
}

TEST_CASE("topic: a topic larger than the free space grows the segment once; past its maximum it is refused")
{
    SegmentOptions options;
    options.max_size_bytes = 4 << 20;
    Segment segment = Segment::create_anonymous(1 << 16, options);
    std::byte* const base = segment.base();
    const TopicOptions deep {.max_subscribers = 16, .queue_depth = 1024};
    Publisher<> publisher = Publisher<>::create(segment, "deep", deep);
    REQUIRE(publisher.valid());
    const ObjectInfo object = segment.find("deep");
    CHECK(segment.size_bytes() >= object.offset + object.length);
    CHECK(segment.size_bytes() < object.offset + object.length + 4096); // just what it needed
    CHECK(segment.base() == base);
    Subscriber<> sub = Subscriber<>::open(segment, "deep");
    REQUIRE(publish_sample(publisher, 64) == TopicStatus::ok);
    CHECK(sub.take());

    std::error_code ec;
    const std::size_t before = segment.size_bytes();
    const TopicOptions huge {.max_subscribers = 64, .queue_depth = 1024, .max_held = 1024};
    Publisher<> refused = Publisher<>::create(segment, "huge", huge, ec);
    CHECK(ec == Errc::no_space);
    CHECK_FALSE(refused.valid());
    CHECK(segment.size_bytes() == before); // no grow that could not hold it
    CHECK_FALSE(segment.find("huge", ec).has_value());
}

TEST_CASE("topic: a lying subscriber loses its own samples; the publisher and the others go on")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 4, .max_held = 2});
    Subscriber<> liar = Subscriber<>::open(segment, "t");
    Subscriber<> honest = Subscriber<>::open(segment, "t");
    std::error_code ec;
    const detail::TopicView view = detail::open_topic(segment, "t", ec);
    REQUIRE_FALSE(ec);
    ipc::TopicSlot& slot = view.slot(liar.slot());

    SUBCASE("releases of positions it never took are ignored")
    {
        REQUIRE(publish_text(publisher, "x") == TopicStatus::ok);
        Sample<> kept = honest.take();
        for (std::uint64_t r = 0; r < 3; ++r)
            view.releases(liar.slot())[r] = 0; // "position 0", three times, taken by nobody
        detail::shared(slot.release_tail).store(3);
        REQUIRE(publish_text(publisher, "y") == TopicStatus::ok);
        CHECK(publisher.stats().bogus_releases == 0); // read a queue's worth of deliveries apart, or at a reap
        publisher.reap();
        CHECK(publisher.stats().bogus_releases == 3);
        CHECK(text(kept.bytes()) == "x"); // still the honest one's: its chunk was not freed
        CHECK(chunks_in_use(publisher) >= 1);
    }
    SUBCASE("a head beyond the tail quarantines only its slot")
    {
        REQUIRE(publish_text(publisher, "x") == TopicStatus::ok);
        detail::shared(slot.head).store(1000);
        publisher.reap();
        REQUIRE(publish_text(publisher, "y") == TopicStatus::ok);
        CHECK(publisher.stats().corrupt_slots == 1);
        CHECK(liar.take().status() == TopicStatus::corrupt);
        CHECK(text(honest.take().bytes()) == "x");
        CHECK(text(honest.take().bytes()) == "y");
    }
    SUBCASE("taking beyond its hold limit costs it its oldest samples")
    {
        // Takes four at a time without the library's limit of 2, and never releases.
        for (int round = 1; round <= 3; ++round) {
            for (int i = 0; i < 4; ++i)
                REQUIRE(publish_text(publisher, std::to_string(4 * (round - 1) + i)) == TopicStatus::ok);
            detail::shared(slot.head).store(4 * round);
            publisher.reap();
            // An honest one may show max_held + 2 * depth (2 + 8) for a moment:
            // what it held, its queue, and a queue delivered since.
            CHECK(liar.stats().reclaimed == (round < 3 ? 0 : 2)); // 12 held: 2 beyond
        }
        for (int i = 8; i < 12; ++i) { // depth 4: the honest one lost its oldest, as drop-oldest does
            Sample<> s = honest.take();
            REQUIRE(s);
            CHECK(text(s.bytes()) == std::to_string(i));
        }
        CHECK(honest.stats().missed == 8);
        CHECK(honest.stats().reclaimed == 0);
    }
    SUBCASE("a release ring position out of range quarantines it")
    {
        detail::shared(slot.release_tail).store(1ULL << 40);
        publisher.reap();
        REQUIRE(publish_text(publisher, "x") == TopicStatus::ok);
        CHECK(publisher.stats().corrupt_slots == 1);
        CHECK(text(honest.take().bytes()) == "x");
    }
}

TEST_CASE("topic: inspect shows the publisher, the pool and each subscriber's queue")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 4});
    Subscriber<> sub = Subscriber<>::open(segment, "t");
    REQUIRE(publish_text(publisher, "a") == TopicStatus::ok);
    REQUIRE(publish_text(publisher, "b") == TopicStatus::ok);
    const ObjectState state = inspect(segment, segment.find("t"));
    REQUIRE(state.topic);
    CHECK(state.kind == "topic");
    CHECK(state.topic->publisher == "open");
    CHECK(state.topic->publisher_pid == ::getpid());
    CHECK(state.topic->published == 2);
    CHECK(state.topic->extents == 1);
    REQUIRE(state.topic->slots.size() == 1);
    CHECK(state.topic->slots[0].state == "joined");
    CHECK(state.topic->slots[0].queued == 2);
    CHECK(state.topic->slots[0].overflow == "drop oldest");
}

// ---- across processes ----

TEST_CASE("topic: 8 subscriber processes see every sample of 0 B to 4 MiB once, in order, checked in place")
{
    const std::uint64_t count = env_count("SHMLINK_TEST_TOPIC_SAMPLES", 1000000);
    test::ShmPath path("topic-fanout");
    SegmentOptions options;
    options.max_size_bytes = std::size_t {512} << 20;
    Segment segment = Segment::create(path.path, std::size_t {1} << 20, options);
    std::byte* const base = segment.base();
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 64});
    std::vector<Child> subscribers;
    for (int i = 0; i < 8; ++i) {
        subscribers.push_back(start_topic_peer({"subscribe", path.path, "t", "block", "64"}));
        CHECK(subscribers.back().read_line().rfind("joined slot=", 0) == 0);
    }
    const std::uint64_t extents_before = publisher.stats().extents;
    for (std::uint64_t seq = 0; seq < count; ++seq)
        REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok); // a blocked publish is an error here
    const PublisherStats stats = publisher.stats();
    CHECK(stats.subscribers == 8);
    CHECK(stats.extents > extents_before);
    CHECK(segment.base() == base);
    publisher = Publisher<>(); // closed: they drain, then end
    for (Child& child : subscribers) {
        const auto [answer, code] = test::finish(child);
        INFO(answer);
        CHECK(code == 0);
        CHECK(field(answer, "taken") == static_cast<double>(count));
        CHECK(field(answer, "gaps") == 0);
        CHECK(field(answer, "missed") == 0);
        CHECK(field(answer, "base_moved") == 0);
    }
}

TEST_CASE("topic: a slow drop-oldest subscriber misses exactly what it did not see; the others miss nothing")
{
    const std::uint64_t count = 20000;
    test::ShmPath path("topic-slow");
    Segment segment = Segment::create(path.path, std::size_t {8} << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 8});
    Child slow = start_topic_peer({"subscribe", path.path, "t", "drop", "8", "200"});
    Child steady = start_topic_peer({"subscribe", path.path, "t", "block", "8"});
    CHECK(slow.read_line().rfind("joined", 0) == 0);
    CHECK(steady.read_line().rfind("joined", 0) == 0);
    for (std::uint64_t seq = 0; seq < count; ++seq)
        REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok);
    publisher = Publisher<>();
    const auto [slow_answer, slow_code] = test::finish(slow);
    INFO(slow_answer);
    CHECK(slow_code == 0);
    CHECK(field(slow_answer, "missed") > 0);
    CHECK(field(slow_answer, "gaps") == field(slow_answer, "missed"));
    CHECK(field(slow_answer, "taken") + field(slow_answer, "missed") == static_cast<double>(count));
    CHECK(field(slow_answer, "last") == static_cast<double>(count - 1));
    const auto [steady_answer, steady_code] = test::finish(steady);
    INFO(steady_answer);
    CHECK(steady_code == 0);
    CHECK(field(steady_answer, "taken") == static_cast<double>(count));
}

TEST_CASE("topic: subscribers killed while they hold samples give every chunk back within a reap")
{
    test::ShmPath path("topic-kill");
    Segment segment = Segment::create(path.path, std::size_t {4} << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 8, .max_held = 4});
    std::mt19937 random(20261207);
    std::uint64_t seq = 1; // never 0 or a multiple of 997: small samples keep the segment small
    for (int kill = 0; kill < 20; ++kill) {
        const int holds = 1 + static_cast<int>(random() % 4);
        Child holder = start_topic_peer({"hold", path.path, "t", std::to_string(holds)});
        CHECK(holder.read_line().rfind("joined", 0) == 0);
        const std::string held = [&] {
            for (;;) { // publish until it holds what it was told to, whatever it took meanwhile
                REQUIRE(publish_sample(publisher, seq) == TopicStatus::ok);
                seq += seq % 997 == 996 ? 2 : 1;
                if (auto line = holder.poll_line())
                    return *line;
                std::this_thread::sleep_for(1ms);
            }
        }();
        CHECK(held == "holding " + std::to_string(holds));
        if (random() % 2 == 0)
            REQUIRE(publish_sample(publisher, seq++) == TopicStatus::ok); // one queued, not taken, as well
        holder.kill(SIGKILL);
        (void)holder.wait();
        // Dead and reaped by us: its lock is gone. The slot is free for the
        // next subscriber only once the publisher has looked.
        publisher.reap();
        CHECK(publisher.stats().dead_subscribers == static_cast<std::uint64_t>(kill + 1));
    }
    const PublisherStats stats = publisher.stats();
    CHECK(stats.dead_subscribers == 20);
    CHECK(stats.subscribers == 0);
    CHECK(chunks_in_use(publisher) == 0);
    const ObjectState state = inspect(segment, segment.find("t"));
    REQUIRE(state.topic);
    CHECK(state.topic->slots.empty()); // every slot free again
}

TEST_CASE("topic: a publisher killed mid-publish: subscribers keep what was published, then learn it is gone")
{
    test::ShmPath path("topic-publisher-kill");
    Child publisher = start_topic_peer({"publish", path.path, "t", "100000000"});
    REQUIRE(publisher.read_line() == "ready");
    std::vector<Child> subscribers;
    for (int i = 0; i < 3; ++i) {
        subscribers.push_back(start_topic_peer({"subscribe", path.path, "t", i == 0 ? "drop" : "block", "16"}));
        CHECK(subscribers.back().read_line().rfind("joined", 0) == 0);
    }
    publisher.send("go");
    CHECK(publisher.read_line() == "published 1000");
    CHECK(publisher.read_line() == "published 2000");
    publisher.kill(SIGKILL);
    (void)publisher.wait();
    for (Child& child : subscribers) {
        const auto [answer, code] = test::finish(child); // each took until closed, every sample checked
        INFO(answer);
        CHECK(code == 0);
        CHECK(field(answer, "taken") >= 1);
    }
}

TEST_CASE("topic: a subscriber that writes garbage over its own slot: the publisher and the others go on")
{
    const std::uint64_t count = 20000;
    test::ShmPath path("topic-scribble");
    Segment segment = Segment::create(path.path, std::size_t {8} << 20);
    Publisher<> publisher = Publisher<>::create(segment, "t", TopicOptions {.queue_depth = 16});
    Child scribbler = start_topic_peer({"scribble", path.path, "t", "200"});
    CHECK(scribbler.read_line().rfind("joined", 0) == 0);
    std::vector<Child> honest;
    for (int i = 0; i < 2; ++i) {
        honest.push_back(start_topic_peer({"subscribe", path.path, "t", "block", "16"}));
        CHECK(honest.back().read_line().rfind("joined", 0) == 0);
    }
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        const TopicStatus status = publish_sample(publisher, seq);
        // The scribbler's slot may claim to block: its publish then times out, nobody else's.
        REQUIRE((status == TopicStatus::ok || status == TopicStatus::timed_out));
    }
    CHECK(scribbler.read_line(120s) == "done");
    CHECK(test::exit_code(scribbler.wait()) == 0);
    // Once the honest ones have taken and dropped everything, and the liar
    // is gone, every chunk is back: whatever it wrote, it kept none of theirs.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (publisher.reap(), chunks_in_use(publisher) != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    CHECK(chunks_in_use(publisher) == 0);
    CHECK(publisher.stats().subscribers == 2);
    publisher = Publisher<>();
    for (Child& child : honest) {
        const auto [answer, code] = test::finish(child);
        INFO(answer);
        CHECK(code == 0);
        CHECK(field(answer, "taken") == static_cast<double>(count));
        CHECK(field(answer, "missed") == 0);
    }
}
