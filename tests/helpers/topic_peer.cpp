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
//   topic_peer apart TOPIC subscribe|scribble|hold ...
//       the segment is fd 3, sealed against its peers' writes: attaches it
//       read-only, checks that no way of writing it works (prints "sealed",
//       or "bad writable ..."), joins with a slot of its own and sends the
//       slot file over the socket at fd 4, then acts as the mode above does
//       with the same arguments after TOPIC (scribble: over its slot file)
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
#include <shmlink/transport/fd_socket.hpp>

#include "tests/support/messages.hpp"
#include "tests/support/samples.hpp"
#include "tests/support/take_all.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

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

/// A subscriber apart (topic_peer apart) joins with a slot of its own and
/// hands the slot file to the test, which admits it.
bool apart = false;

Subscriber<> join(Segment& segment, const std::string& topic, SubscriberOptions options = {})
{
    options.own_slot = apart;
    Subscriber<> subscriber = Subscriber<>::open(segment, topic, options);
    if (apart) {
        const UniqueFd file = subscriber.share_slot();
        const BorrowedFd fds[] = {file};
        const std::byte one[1] = {std::byte {1}};
        if (const std::error_code ec = send_with_fds(BorrowedFd::of(test::kSocketFd), one, fds))
            throw Error(ec, "send the slot file");
        // Admitted once the publisher wrote our index: only then is "joined" true.
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (subscriber.slot() == Subscriber<>::kNoSlot && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(1ms);
    }
    say("joined slot=" + std::to_string(subscriber.slot()));
    return subscriber;
}

/// Every way a process that got the segment's fd could write it must fail.
bool cannot_write(Segment& segment)
{
    const int fd = segment.fd().get();
    void* writable = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (writable != MAP_FAILED) {
        say("bad writable mmap");
        return false;
    }
    const UniqueFd reopened(::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC));
    const char byte = 'x';
    if (reopened && ::pwrite(reopened.get(), &byte, 1, 64) >= 0) {
        say("bad writable pwrite");
        return false;
    }
    struct stat st {};
    if (reopened && (::fstat(reopened.get(), &st) != 0 || ::ftruncate(reopened.get(), st.st_size + 4096) == 0
            || ::ftruncate(reopened.get(), 4096) == 0)) {
        say("bad resizable");
        return false;
    }
    if (::mprotect(segment.base(), 4096, PROT_READ | PROT_WRITE) == 0) {
        say("bad writable mprotect");
        return false;
    }
    std::error_code ec;
    Segment again = Segment::attach(UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 5)), {}, ec);
    if (!ec) {
        say("bad writable attach");
        return false;
    }
    say("sealed");
    return true;
}

int subscribe(Segment& segment, const std::string& topic, const std::string& policy, std::uint32_t depth,
    long slow_us)
{
    SubscriberOptions options;
    options.queue_depth = depth;
    options.overflow = policy == "block" ? Overflow::block_publisher : Overflow::drop_oldest;
    Subscriber<> subscriber = join(segment, topic, options);
    const test::TakeAll seen = test::take_all(subscriber, segment, slow_us);
    say(seen.line);
    return seen.ok ? 0 : 1;
}

int hold(Segment& segment, const std::string& topic, int count)
{
    Subscriber<> subscriber = join(segment, topic);
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
    Subscriber<> subscriber = join(segment, topic);
    std::error_code ec;
    const detail::TopicView view = detail::open_topic(segment, topic, ec);
    if (ec) {
        say("bad open " + ec.message());
        return 1;
    }
    // Apart, all it can write is its slot file: a mapping of its own of it.
    std::byte* slot = nullptr;
    if (apart) {
        slot = static_cast<std::byte*>(::mmap(nullptr, view.geometry.slot_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
            subscriber.share_slot().get(), 0));
        if (slot == MAP_FAILED) {
            say("bad mmap of the slot file");
            return 1;
        }
    } else {
        slot = reinterpret_cast<std::byte*>(&view.slot(subscriber.slot()));
    }
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
        // apart TOPIC MODE ARGS... is MODE - TOPIC ARGS... on the segment at fd 3.
        apart = args[0] == "apart";
        const std::vector<std::string> mode = apart
            ? [&] {
                  std::vector<std::string> m {args[2], "-", args[1]};
                  m.insert(m.end(), args.begin() + 3, args.end());
                  return m;
              }()
            : args;
        Segment segment = apart ? Segment::attach(UniqueFd(test::kSegmentFd), AttachOptions {.read_only = true})
                                : Segment::attach(args[1]);
        if (apart && !cannot_write(segment))
            return 1;
        if (mode[0] == "subscribe" && mode.size() >= 5)
            return subscribe(segment, mode[2], mode[3], static_cast<std::uint32_t>(std::stoul(mode[4])),
                mode.size() >= 6 ? std::stol(mode[5]) : 0);
        if (mode[0] == "hold" && mode.size() >= 4)
            return hold(segment, mode[2], std::stoi(mode[3]));
        if (mode[0] == "scribble" && mode.size() >= 4)
            return scribble(segment, mode[2], std::stoi(mode[3]));
    } catch (const std::exception& e) {
        say(std::string("bad exception ") + e.what());
        return 1;
    }
    std::fprintf(stderr, "topic_peer: bad arguments\n");
    return 2;
}
