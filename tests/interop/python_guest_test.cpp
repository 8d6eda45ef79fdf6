// docs/protocol.md and docs/layout.md are enough to join a host from another
// language: a Python 3 guest (tests/interop/python_guest.py, standard library
// only, written from the docs) joins this process's Host through its socket,
// gets every echo back while the host grows the segment twice, and leaves so
// that its lane is freed for the next guest.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/transport/host.hpp>

#include "tests/support/child.hpp"
#include "tests/support/ring_peer.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;

namespace {

constexpr std::size_t kRingBytes = 4096;               // small: the rings wrap, with padding, many times
constexpr std::size_t kSegmentBytes = std::size_t {64} << 10;

std::string socket_path(const std::string& tag)
{
    return "/tmp/shmlink-test-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

Child start_guest(const std::string& socket, std::uint64_t count, const std::string& mode = "echo")
{
    return Child::spawn({test::helper_path("SHMLINK_PYTHON"), test::helper_path("SHMLINK_PYTHON_GUEST"), socket,
        std::to_string(count), mode});
}

/// What the test writes into the last 8 bytes of the segment after grow number `generation`.
std::uint64_t marker(std::uint64_t generation) { return 0x4752'4f57'0000'0000ULL | generation; }

std::string hex(std::uint64_t value)
{
    char text[24];
    std::snprintf(text, sizeof(text), "%#llx", static_cast<unsigned long long>(value));
    return text;
}

/// A Host with one lane (so a second guest is let in only once the first
/// one's lane is freed) that echoes every message with Host::send, which
/// never waits: an echo that does not fit is counted as dropped.
struct EchoHost {
    explicit EchoHost(const std::string& socket)
        : host(io, {.socket_path = socket, .segment_bytes = kSegmentBytes, .max_segment_bytes = std::size_t {1} << 20,
                       .max_guests = 1, .ring_bytes = kRingBytes, .handshake_timeout = 10s})
    {
        host.on_join = [this](const GuestInfo&) { ++joins; };
        host.on_leave = [this](const GuestInfo&) { ++leaves; };
    }

    void serve_once()
    {
        io.poll();
        const std::size_t handled = host.inbox().consume(
            [this](std::uint32_t lane, std::span<const std::byte> bytes) {
                if (host.send(lane, bytes) != RingStatus::ok)
                    ++dropped;
                ++echoed;
                echoed_bytes += bytes.size();
            },
            64);
        if (after_serve)
            after_serve();
        // Long: a guest whose futex wake-up does not reach the host waits a
        // reap interval (100 ms) for every echo, and runs out of time.
        if (handled == 0)
            host.inbox().wait_readable(250ms);
    }

    /// Serves until `done()` or the timeout; returns done().
    bool serve_until(const std::function<bool()>& done, std::chrono::seconds timeout = 30s)
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done() && std::chrono::steady_clock::now() < deadline)
            serve_once();
        return done();
    }

    /// The guest's one answer line, read while serving, and its exit code.
    std::pair<std::string, int> answer_of(Child& guest)
    {
        std::string line;
        serve_until([&] {
            if (line.empty())
                if (auto got = guest.poll_line())
                    line = *got;
            return !line.empty();
        }, 90s);
        return {line, test::exit_code(guest.wait(10s))};
    }

    /// True once the guest has gone and its lane is free again.
    bool lane_freed()
    {
        return serve_until([&] {
            const MpscStats stats = host.inbox().stats();
            return host.guest_count() == 0 && stats.producers == 0 && stats.draining == 0;
        }, 10s);
    }

    boost::asio::io_context io;
    Host host;
    int joins = 0;
    int leaves = 0;
    std::uint64_t echoed = 0;
    std::uint64_t echoed_bytes = 0;
    std::uint64_t dropped = 0;
    std::function<void()> after_serve;
};

/// Starts a guest of `count` echoes that must get lane 0, the host's only
/// one (so only if the lane was freed before), and be let go; its answer.
std::string next_guest_takes_the_lane(EchoHost& h, const std::string& socket, std::uint64_t count)
{
    Child next = start_guest(socket, count);
    const auto [answer, exit_code] = h.answer_of(next);
    INFO(answer);
    CHECK(exit_code == 0);
    CHECK(test::field(answer, "lane") == 0);
    CHECK(test::field(answer, "echoes") == count);
    REQUIRE(h.lane_freed());
    return answer;
}

} // namespace

#if defined(__x86_64__) // the guest's plain loads and stores rely on x86-64's ordering
TEST_CASE("a Python guest written from the docs joins a host, gets every echo back across two grows, and leaves")
{
    constexpr std::uint64_t kMessages = 3000;
    const std::string socket = socket_path("python-guest");
    EchoHost h(socket);
    // Two grows while the guest is attached, each marked in the new extent's
    // last 8 bytes, which the guest reads at the end through its own mapping.
    int grows = 0;
    h.after_serve = [&] {
        if (grows < 2 && h.echoed >= (grows + 1) * kMessages / 3) {
            h.host.grow(kSegmentBytes << (grows + 1));
            ++grows;
            const std::uint64_t mark = marker(h.host.segment().generation());
            REQUIRE_FALSE(h.host.segment().write_at(h.host.segment().size_bytes() - 8, std::as_bytes(std::span(&mark, 1))));
        }
    };

    Child guest = start_guest(socket, kMessages);
    const auto [answer, exit_code] = h.answer_of(guest);
    INFO(answer);
    REQUIRE(exit_code == 0);
    REQUIRE(answer.rfind("ok ", 0) == 0);
    CHECK(test::field(answer, "lane") == 0);
    CHECK(test::field(answer, "echoes") == kMessages);
    CHECK(test::field(answer, "bytes") == static_cast<double>(h.echoed_bytes));
    CHECK(test::field(answer, "largest") == kRingBytes / 2 - 8);
    CHECK(h.echoed == kMessages);
    CHECK(h.dropped == 0); // it never had more echoes outstanding than its ring holds

    // It followed both grows: its mapping reaches the host's size, and the
    // new extent it mapped is the host's (the marker written after the grow).
    CHECK(grows == 2);
    CHECK(test::field(answer, "grown") == 2);
    CHECK(test::field(answer, "generation") == 2);
    CHECK(test::field(answer, "mapped") == static_cast<double>(h.host.segment().size_bytes()));
    CHECK(answer.find(" marker=" + hex(marker(2)) + " ") != std::string::npos);
    // It slept on its ring's futex, and the host's wake-up (through the sleeper count) woke it.
    CHECK(test::field(answer, "woken") > 0);

    // It left as the docs say: the host saw a guest leave, not a producer die,
    // and its lane is free again.
    CHECK(h.joins == 1);
    REQUIRE(h.lane_freed());
    CHECK(h.leaves == 1);
    const MpscStats stats = h.host.inbox().stats();
    CHECK(stats.dead_producers == 0);
    CHECK(stats.abandoned_claims == 0);
    CHECK(stats.corrupt_lanes == 0);

    // The host has one lane: the next guest gets in only because it was freed.
    const std::string next_answer = next_guest_takes_the_lane(h, socket, 20);
    INFO(next_answer);
    CHECK(test::field(next_answer, "generation") == 2); // the welcome's: it attached after the grows
    CHECK(h.joins == 2);
    CHECK(h.leaves == 2);
    CHECK(h.host.inbox().stats().dead_producers == 0);
}

TEST_CASE("a guest that says joined without having taken its held lane (a wrong token) is dropped; the next gets the lane")
{
    const std::string socket = socket_path("python-token");
    EchoHost h(socket);

    Child liar = start_guest(socket, 1, "wrong-token");
    const auto [answer, exit_code] = h.answer_of(liar);
    INFO(answer);
    CHECK(exit_code == 0);
    CHECK(answer == "ok dropped=1"); // the host hung up on its joined
    CHECK(h.joins == 0);
    CHECK(h.host.guest_count() == 0);
    REQUIRE(h.lane_freed());

    // The lane held for it went back: the host's one lane takes the next guest.
    next_guest_takes_the_lane(h, socket, 10);
    CHECK(h.joins == 1);
    CHECK(h.leaves == 1);
    CHECK(h.host.inbox().stats().dead_producers == 0);
}
#endif
