// Test helper: one end of a topic (ipc/publisher.hpp, ipc/subscriber.hpp) in
// a process of its own, so that tests can kill it, slow it or let it lie.
//
//   topic_peer subscribe PATH TOPIC drop|block DEPTH [SLOW_US]
//       joins, prints "joined slot=N", takes and checks every sample
//       (tests/support/samples.hpp) until the publisher is gone, then prints
//       "ok taken=T gaps=G missed=M reclaimed=R last=S base_moved=0|1"
//   topic_peer hold PATH TOPIC K
//       joins, prints "joined slot=N", takes K samples, prints "holding K"
//       and keeps them until it is killed or its stdin closes
//   topic_peer scribble PATH TOPIC ROUNDS
//       joins, prints "joined slot=N", then writes garbage over every byte
//       of its own slot, ROUNDS times, taking samples in between; prints "done"
//   topic_peer publish PATH TOPIC COUNT [wake]
//       creates the segment and the topic, prints "ready", and on the line
//       "go" publishes COUNT samples, printing "published N" every 1000; then
//       waits for its stdin to close. With "wake": the eventfd it got as fd 3
//       is slot 0's (Publisher::set_wake_fd), it pauses a millisecond every
//       10 samples, so that its subscriber sleeps in between, and its
//       publisher leaves once the last is published
// A wrong sample prints "bad ..." and exits 1.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/detail/topic.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include "tests/support/messages.hpp"
#include "tests/support/samples.hpp"
#include "tests/support/take_all.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;

namespace {

void say(const std::string& line)
{
    // One write() a line: lines of several processes never interleave within one.
    const std::string out = line + "\n";
    (void)!::write(STDOUT_FILENO, out.data(), out.size());
}

int subscribe(Segment& segment, const std::string& topic, const std::string& policy, std::uint32_t depth,
    long slow_us)
{
    SubscriberOptions options;
    options.queue_depth = depth;
    options.overflow = policy == "block" ? Overflow::block_publisher : Overflow::drop_oldest;
    Subscriber<> subscriber = Subscriber<>::open(segment, topic, options);
    say("joined slot=" + std::to_string(subscriber.slot()));
    const test::TakeAll seen = test::take_all(subscriber, segment, slow_us);
    say(seen.line);
    return seen.ok ? 0 : 1;
}

int hold(Segment& segment, const std::string& topic, int count)
{
    Subscriber<> subscriber = Subscriber<>::open(segment, topic);
    say("joined slot=" + std::to_string(subscriber.slot()));
    std::vector<Sample<>> held;
    while (static_cast<int>(held.size()) < count) {
        Sample<> sample = subscriber.take(60s);
        if (!sample) {
            say(std::string("bad status ") + to_string(sample.status()));
            return 1;
        }
        held.push_back(std::move(sample));
    }
    say("holding " + std::to_string(held.size()));
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    return 0;
}

int scribble(Segment& segment, const std::string& topic, int rounds)
{
    Subscriber<> subscriber = Subscriber<>::open(segment, topic);
    say("joined slot=" + std::to_string(subscriber.slot()));
    std::error_code ec;
    const detail::TopicView view = detail::open_topic(segment, topic, ec);
    if (ec) {
        say("bad open " + ec.message());
        return 1;
    }
    auto* slot = reinterpret_cast<std::byte*>(&view.slot(subscriber.slot()));
    std::mt19937_64 random(static_cast<std::uint64_t>(::getpid()));
    for (int round = 0; round < rounds; ++round) {
        for (std::uint32_t at = 0; at < view.geometry.slot_bytes; at += 8) {
            const std::uint64_t garbage = random();
            std::atomic_ref(*reinterpret_cast<std::uint64_t*>(slot + at)).store(garbage, std::memory_order_relaxed);
        }
        for (int i = 0; i < 4; ++i)
            (void)subscriber.take(); // whatever it says; it may hand out garbage to us only
        std::this_thread::sleep_for(1ms);
    }
    say("done");
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    return 0;
}

int publish(const std::string& path, const std::string& topic, std::uint64_t count, bool wake)
{
    SegmentOptions options;
    options.max_size_bytes = std::size_t {256} << 20;
    options.cleanup = Cleanup::unlink_on_close;
    Segment segment = Segment::create(path, std::size_t {1} << 20, options);
    Publisher<> publisher = Publisher<>::create(segment, topic);
    say("ready");
    std::string line;
    if (!std::getline(std::cin, line) || line != "go")
        return 2;
    if (wake && !publisher.set_wake_fd(0, UniqueFd(test::kWakeFd)))
        return 2;
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        if (wake && seq % 10 == 0)
            std::this_thread::sleep_for(1ms);
        Loan<> loan = publisher.loan(test::sample_size(seq));
        if (!loan) {
            say(std::string("bad loan ") + to_string(loan.status()));
            return 1;
        }
        test::fill_sample(loan.bytes(), seq);
        (void)publisher.publish(std::move(loan));
        if ((seq + 1) % 1000 == 0)
            say("published " + std::to_string(seq + 1));
    }
    if (wake)
        publisher = Publisher<>(); // says closed, and signals the eventfd
    say("published " + std::to_string(count));
    while (std::getline(std::cin, line)) {
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    const std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (args.size() >= 4 && args[0] == "publish")
            return publish(args[1], args[2], std::stoull(args[3]), args.size() >= 5 && args[4] == "wake");
        if (args.size() < 3) {
            std::fprintf(stderr, "usage: topic_peer subscribe|hold|scribble|publish PATH TOPIC ...\n");
            return 2;
        }
        Segment segment = Segment::attach(args[1]);
        if (args[0] == "subscribe" && args.size() >= 5)
            return subscribe(segment, args[2], args[3], static_cast<std::uint32_t>(std::stoul(args[4])),
                args.size() >= 6 ? std::stol(args[5]) : 0);
        if (args[0] == "hold" && args.size() >= 4)
            return hold(segment, args[2], std::stoi(args[3]));
        if (args[0] == "scribble" && args.size() >= 4)
            return scribble(segment, args[2], std::stoi(args[3]));
    } catch (const std::exception& e) {
        say(std::string("bad exception ") + e.what());
        return 1;
    }
    std::fprintf(stderr, "topic_peer: bad arguments\n");
    return 2;
}
