// Tests of transport/host.hpp and transport/guest.hpp. This process is the
// host (or, where the host must die, tests/helpers/endpoint is); every guest
// is tests/helpers/endpoint in a process of its own.
#include <shmlink/core/error.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/subscriber.hpp>
#include <shmlink/transport/fd_socket.hpp>
#include <shmlink/transport/guest.hpp>
#include <shmlink/transport/host.hpp>
#include <shmlink/transport/protocol.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/samples.hpp"
#include "tests/support/topic.hpp"

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;

namespace {

Child start_endpoint(const std::vector<std::string>& args) { return test::spawn_helper("SHMLINK_ENDPOINT", args); }

std::string socket_path(const std::string& tag)
{
    return "/tmp/shmlink-test-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

/// The host's side of the tests: echoes every message to the lane it came
/// from, and runs the io_context, until `done()` or the timeout.
void serve(boost::asio::io_context& io, Host& host, const std::function<bool()>& done,
    std::chrono::seconds timeout = 60s, const std::function<void(std::uint64_t)>& per_message = {})
{
    std::uint64_t served = 0;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
        io.poll();
        const std::size_t echoed = host.inbox().consume(
            [&](std::uint32_t lane, std::span<const std::byte> bytes) {
                host.outbox(lane).push(bytes, 1s);
                if (per_message)
                    per_message(++served);
            },
            256);
        if (echoed == 0)
            host.inbox().wait_readable(1ms);
    }
}

/// Every ring of the host's segment as inspect sees it: what a failed
/// exchange shows, so that a rare failure explains itself.
std::string describe_rings(Host& host)
{
    std::string out;
    std::error_code ec;
    for (const ObjectInfo& object : host.segment().objects(ec)) {
        const ObjectState state = inspect(host.segment(), object);
        out += "\n  " + object.name + " (" + state.kind + ")" + (state.error.empty() ? "" : ": " + state.error);
        const auto ring = [&](const SpscState& r) {
            out += " head=" + std::to_string(r.head) + " tail=" + std::to_string(r.tail)
                + " claim=" + std::to_string(r.claim_bytes) + (r.claim_open ? "(open)" : "")
                + " sleepers=" + std::to_string(r.readable_sleepers) + "/" + std::to_string(r.writable_sleepers)
                + (r.consistent ? "" : " INCONSISTENT");
        };
        if (state.spsc)
            ring(*state.spsc);
        if (state.mpsc) {
            out += " dead=" + std::to_string(state.mpsc->dead_producers) + " corrupt="
                + std::to_string(state.mpsc->corrupt_lanes);
            for (const LaneState& lane : state.mpsc->lanes) {
                out += "\n    lane " + std::to_string(lane.index) + " " + lane.state + " pid=" + std::to_string(lane.pid);
                ring(lane.ring);
            }
        }
    }
    return out;
}

/// An endpoint's answer line, read while the host keeps serving.
std::string answer_of(boost::asio::io_context& io, Host& host, Child& child, std::chrono::seconds timeout = 60s)
{
    std::string line;
    serve(io, host, [&] {
        if (line.empty())
            if (auto got = child.poll_line())
                line = *got;
        return !line.empty();
    }, timeout);
    return line;
}

/// A raw connection to the host's socket, for speaking the protocol badly.
struct RawPeer {
    explicit RawPeer(const std::string& path)
    {
        fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un address {};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
        REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    }
    void send(std::span<const std::byte> bytes, std::span<const BorrowedFd> fds = {})
    {
        REQUIRE_FALSE(static_cast<bool>(send_with_fds(fd, bytes, fds)));
    }
    /// True once the host has closed its end (reads EOF), pumping the host meanwhile.
    bool closed_by(boost::asio::io_context& io, Host& host)
    {
        bool closed = false;
        serve(io, host, [&] {
            std::byte b[4096];
            const ssize_t n = ::recv(fd.get(), b, sizeof(b), MSG_DONTWAIT);
            closed = n == 0 || (n < 0 && errno != EAGAIN);
            return closed;
        }, 10s);
        return closed;
    }
    UniqueFd fd;
};

template <typename T>
void poke(std::vector<std::byte>& bytes, std::size_t at, T value)
{
    std::memcpy(bytes.data() + at, &value, sizeof(value));
}

} // namespace

TEST_CASE("a host and three guests: two through the socket (fd passed), one by path; all exchange messages")
{
    const test::ResourceCount before;
    const test::ShmPath segment_file("host-three");
    const std::string sock = socket_path("three");
    {
        boost::asio::io_context io;
        Host host(io, {.socket_path = sock, .segment_path = segment_file.path});
        std::vector<std::string> joined;
        host.on_join = [&](const GuestInfo& g) { joined.push_back(g.name); };
        Child a = start_endpoint({"guest", sock, "a", "2000"});
        Child b = start_endpoint({"guest", sock, "b", "2000"});
        Child c = start_endpoint({"path-guest", segment_file.path, "2000"});
        for (Child* g : {&a, &b, &c}) {
            const std::string answer = answer_of(io, host, *g);
            INFO(answer);
            CHECK(answer.find("echoed=2000") != std::string::npos);
            CHECK(g->wait() == 0);
        }
        std::sort(joined.begin(), joined.end());
        CHECK(joined == std::vector<std::string> {"a", "b"}); // the path guest never used the socket
        serve(io, host, [&] { return host.guest_count() == 0; }, 10s);
        CHECK(host.guest_count() == 0);
    }
    CHECK_FALSE(std::filesystem::exists(sock));
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("the host grows the segment 10 times while guests send: nothing lost, every guest at the host's generation")
{
    const std::string sock = socket_path("grow");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .max_guests = 2});
    Child a = start_endpoint({"guest", sock, "a", "6000"});
    Child b = start_endpoint({"guest", sock, "b", "6000"});
    std::string answer_a;
    std::string answer_b;
    int grows = 0;
    serve(io, host, [&] {
        for (auto [child, answer] : {std::pair {&a, &answer_a}, std::pair {&b, &answer_b}})
            if (answer->empty())
                if (auto got = child->poll_line())
                    *answer = *got;
        return !answer_a.empty() && !answer_b.empty();
    }, 120s, [&](std::uint64_t served) {
        if (served % 500 == 0 && grows < 10) {
            host.grow(host.segment().size_bytes() + (64 << 10));
            ++grows;
        }
    });
    CHECK(grows == 10);
    const std::string expected = "generation=" + std::to_string(host.segment().generation())
        + " size=" + std::to_string(host.segment().size_bytes());
    const std::string rings = describe_rings(host);
    for (const auto& answer : {answer_a, answer_b}) {
        INFO(answer);
        INFO("the segment's rings:", rings);
        CHECK(answer.find("echoed=6000") != std::string::npos);
        CHECK(answer.find(expected) != std::string::npos);
    }
    CHECK(host.segment().generation() == 10);
}

TEST_CASE("a guest SIGKILLed mid-stream: the host notices, frees its lane, serves the others, lets a new guest in")
{
    const std::string sock = socket_path("kill-guest");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .max_guests = 2});
    std::vector<std::string> left;
    host.on_leave = [&](const GuestInfo& g) { left.push_back(g.name); };
    Child victim = start_endpoint({"guest", sock, "victim", "1000000"});
    std::uint64_t served = 0;
    serve(io, host, [&] { return served > 500; }, 60s, [&](std::uint64_t n) { served = n; });
    // Kill it mid-stream, with another guest joined and sending.
    Child other = start_endpoint({"guest", sock, "other", "3000"});
    serve(io, host, [&] { return host.inbox().stats().producers == 2; }, 60s);
    REQUIRE(host.inbox().stats().producers == 2);
    victim.kill(SIGKILL);
    CHECK(victim.wait() != 0);
    const std::string answer = answer_of(io, host, other);
    INFO(answer);
    CHECK(answer.find("echoed=3000") != std::string::npos);
    // The hang-up tells the host at once; the lane follows within the
    // inbox's reap interval (the dying process may close its lane's lock
    // after its socket).
    serve(io, host, [&] { return left.size() == 2 && host.inbox().stats().dead_producers == 1; }, 10s);
    CHECK(std::find(left.begin(), left.end(), "victim") != left.end());
    CHECK(host.inbox().stats().dead_producers == 1);
    // Both lanes are free again: two new guests fit.
    Child next = start_endpoint({"guest", sock, "next", "500"});
    Child last = start_endpoint({"guest", sock, "last", "500"});
    CHECK(answer_of(io, host, next).find("echoed=500") != std::string::npos);
    CHECK(answer_of(io, host, last).find("echoed=500") != std::string::npos);
}

TEST_CASE("a free lane's ring that another process wrote over is rebuilt before a guest is given it")
{
    const std::string sock = socket_path("scribbled-lane");
    const test::ShmPath file("scribbled-lane");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .segment_path = file.path, .max_guests = 1});
    // A process with write access to the file writes random bytes over the
    // ring of the free lane, its control block included, before anyone joins.
    Child scribbler = test::start_ring_peer({"scribble", file.path, "guest.0", "7", "8"});
    REQUIRE(scribbler.read_line() == "ready");
    for (int round = 1; round <= 8; ++round) {
        scribbler.send("go");
        CHECK(scribbler.read_line() == (round < 8 ? "round " + std::to_string(round) : "ok scribbled=8"));
    }
    CHECK(scribbler.wait() == 0);
    Child guest = start_endpoint({"guest", sock, "after", "50"});
    const std::string answer = answer_of(io, host, guest);
    INFO(answer);
    CHECK(answer.rfind("ok lane=0 echoed=50", 0) == 0);
    CHECK(guest.wait() == 0);
}

TEST_CASE("a header page another process wrote over: the guest joined follows a grow as told; the host rewrites the page before the next guest")
{
    std::string area;
    std::string field;
    SUBCASE("the header")
    {
        area = "@header";
        field = "magic";
    }
    SUBCASE("the directory")
    {
        area = "@directory";
        field = "directory entry 0 'host.inbox'";
    }
    const std::string sock = socket_path("scribbled-header");
    const test::ShmPath file("scribbled-header");
    boost::asio::io_context io;
    // No reap in this test: the damage stays until the host hands a lane out.
    Host host(io, {.socket_path = sock, .segment_path = file.path, .max_guests = 2, .reap_interval = 1h});
    std::vector<std::string> repaired;
    // (Bytes written over the counters other processes keep, truncations
    // and damaged_pages, are reported as what those counters count.)
    host.on_damage = [&](const std::error_code& ec, const std::string& what) {
        if (ec == Errc::corrupt_header)
            repaired.push_back(what);
    };
    Child joined = start_endpoint({"stepped-guest", sock});
    REQUIRE(answer_of(io, host, joined) == "ok lane=0");
    serve(io, host, [&] { return host.guest_count() == 1; }, 30s); // its joined frame read
    REQUIRE(host.guest_count() == 1);
    // Grown, then scribbled before the guest reads the grown frame (it
    // reads its socket only when it echoes): the header's size is garbage then.
    host.grow(host.segment().size_bytes() + (64 << 10));
    io.poll();
    CHECK(test::while_scribbled(file.path, area, 29, 4, [] {}) == "ok scribbled=4");
    // What the file says now keeps out a guest that reads it.
    Child reader = start_endpoint({"path-guest", file.path, "1"});
    const std::string refusal = answer_of(io, host, reader);
    INFO(refusal);
    CHECK(refusal.rfind("error ", 0) == 0);
    CHECK(reader.wait() != 0);
    CHECK(repaired.empty());

    // The joined guest maps the grow by the host's grown frame, not by the header.
    joined.send("echo 50");
    const std::string echoed = answer_of(io, host, joined);
    INFO(echoed);
    CHECK(echoed.rfind("ok lane=0 echoed=50 ", 0) == 0);
    CHECK(echoed.find(" size=" + std::to_string(host.segment().size_bytes())) != std::string::npos);

    // The host rewrites the page before it hands a lane out, and says what it found.
    Child next = start_endpoint({"guest", sock, "next", "50"});
    const std::string answer = answer_of(io, host, next);
    INFO(answer);
    CHECK(answer.rfind("ok lane=1 echoed=50", 0) == 0);
    CHECK(next.wait() == 0);
    REQUIRE(repaired.size() == 1);
    CHECK(repaired[0].find(field) != std::string::npos);
    CHECK(host.segment().header_repairs() == 1);
    CHECK(joined.wait() == 0);
}

TEST_CASE("a header page another process wrote over is rewritten within a reap interval: a guest by path joins again")
{
    const std::string sock = socket_path("repaired-header");
    const test::ShmPath file("repaired-header");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .segment_path = file.path, .max_guests = 1});
    std::vector<std::string> repaired;
    // (Bytes written over the counters other processes keep, truncations
    // and damaged_pages, are reported as what those counters count.)
    host.on_damage = [&](const std::error_code& ec, const std::string& what) {
        if (ec == Errc::corrupt_header)
            repaired.push_back(what);
    };
    CHECK(test::while_scribbled(file.path, "@header", 31, 1, [] {}) == "ok scribbled=1");
    serve(io, host, [&] { return !repaired.empty(); }, 30s);
    REQUIRE(repaired.size() == 1);
    CHECK(repaired[0].find("magic") != std::string::npos);
    Child by_path = start_endpoint({"path-guest", file.path, "50"});
    const std::string answer = answer_of(io, host, by_path);
    INFO(answer);
    CHECK(answer.rfind("ok lane=0 echoed=50", 0) == 0);
    CHECK(by_path.wait() == 0);
    // And whoever looks at the segment sees that it happened.
    Child inspect = test::spawn_helper("SHMLINK_TOOL", {"inspect", file.path});
    const auto [text, status] = test::read_all(inspect);
    INFO(text);
    CHECK(status == 0);
    CHECK(text.find("HEADER REWRITTEN 1 times") != std::string::npos);
}

/// Asks the endpoint host `host` until it counts `count` joined guests.
void wait_for_guests(Child& host, int count)
{
    const std::string want = "ok guests=" + std::to_string(count);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (host.request("guests") != want) {
        REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "the host never counted " << count << " guests");
        std::this_thread::sleep_for(1ms);
    }
}

TEST_CASE("the host SIGKILLed: a waiting guest returns an error within its watch interval, not at its timeout")
{
    const std::string sock = socket_path("kill-host");
    Child host = start_endpoint({"host", sock, "-"});
    REQUIRE(host.read_line() == "ready");
    Child waiter = start_endpoint({"wait-host", sock});
    REQUIRE(waiter.read_line().rfind("joined", 0) == 0);
    // Killed once it has read the guest's frames: a host that dies with bytes
    // unread resets the connection, where this test means the hang-up.
    wait_for_guests(host, 1);
    host.kill(SIGKILL);
    CHECK(host.wait() != 0);
    const std::string answer = waiter.read_line(30s);
    INFO(answer);
    CHECK(answer.find("host=peer closed the connection") != std::string::npos);
    const auto waited = std::stoll(answer.substr(answer.find("waited_ms=") + 10));
    CHECK(waited < 10'000); // it waits for 60 s when the host lives
    CHECK(waiter.wait() == 0);
    ::unlink(sock.c_str());
}

TEST_CASE("bad peers are dropped with a reason, leak no fd, and leave the host serving")
{
    const std::string sock = socket_path("bad");
    boost::asio::io_context io;
    // A handshake timeout far beyond closed_by()'s wait: a close it sees is
    // the host's answer to the bad frame, not to the silence after it.
    Host host(io, {.socket_path = sock, .handshake_timeout = 60s});
    const int fds_before = test::count_open_fds();
    const auto hello = protocol::encode(protocol::Hello {1, "bad"});

    SUBCASE("garbage")
    {
        RawPeer peer(sock);
        const std::string junk(64, 'j');
        peer.send(std::as_bytes(std::span(junk)));
        CHECK(peer.closed_by(io, host));
    }
    SUBCASE("a truncated frame, then a hang-up")
    {
        RawPeer peer(sock);
        peer.send(std::span(hello).first(hello.size() - 3));
        peer.fd.reset();
    }
    SUBCASE("an oversized length")
    {
        RawPeer peer(sock);
        auto bytes = hello;
        poke<std::uint32_t>(bytes, 8, 1 << 20);
        peer.send(bytes);
        CHECK(peer.closed_by(io, host));
    }
    SUBCASE("a wrong protocol version")
    {
        RawPeer peer(sock);
        auto bytes = hello;
        poke<std::uint16_t>(bytes, 4, 9);
        peer.send(bytes);
        CHECK(peer.closed_by(io, host));
    }
    SUBCASE("a hello with fds it should not carry")
    {
        RawPeer peer(sock);
        UniqueFd extra(::dup(STDERR_FILENO));
        UniqueFd another(::dup(STDERR_FILENO));
        const BorrowedFd fds[] = {extra, another};
        peer.send(hello, fds);
        CHECK(peer.closed_by(io, host));
    }
    SUBCASE("a disconnect in the middle of the handshake")
    {
        RawPeer peer(sock);
        peer.fd.reset();
    }
    SUBCASE("a hello, then a hang-up before the welcome could be sent")
    {
        RawPeer peer(sock);
        peer.send(hello);
        peer.fd.reset();
    }
    SUBCASE("a frame with an fd on a type that carries none")
    {
        RawPeer peer(sock);
        UniqueFd extra(::dup(STDERR_FILENO));
        const BorrowedFd fds[] = {extra};
        peer.send(hello, fds);
        CHECK(peer.closed_by(io, host));
    }
    // Whatever happened, the host lets the next guest in and serves it.
    {
        Child good = start_endpoint({"guest", sock, "good", "200"});
        const std::string answer = answer_of(io, host, good);
        INFO(answer);
        CHECK(answer.find("echoed=200") != std::string::npos);
        CHECK(good.wait() == 0);
    }
    serve(io, host, [&] { return test::count_open_fds() == fds_before; }, 10s);
    CHECK_MESSAGE(test::count_open_fds() == fds_before, "fd leak in the host");
}

TEST_CASE("a guest running as another uid is refused by the default policy")
{
    if (::geteuid() != 0) {
        MESSAGE("skipped: needs root to run a guest as another uid");
        return;
    }
    const std::string sock = socket_path("uid");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock});
    std::filesystem::permissions(sock, std::filesystem::perms::all); // let the other uid reach the socket at all
    const pid_t child = ::fork();
    if (child == 0) {
        if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0)
            ::_exit(3);
        try {
            Guest::connect(sock, {.name = "nobody"});
            ::_exit(1); // let in: wrong
        } catch (const Error& e) {
            ::_exit(e.code() == Errc::refused ? 0 : 2);
        }
    }
    int status = -1; // not an exit status: a child that never exits fails the checks below
    serve(io, host, [&] { return ::waitpid(child, &status, WNOHANG) == child; }, 30s);
    REQUIRE(status != -1);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(host.guest_count() == 0);
}

TEST_CASE("a silent peer is dropped after the handshake timeout; a policy that refuses is told to the guest")
{
    const std::string sock = socket_path("policy");
    boost::asio::io_context io;
    bool refuse = false;
    Host host(io, {.socket_path = sock, .handshake_timeout = 300ms,
        .allow = [&](const PeerCredentials&) { return !refuse; }});
    {
        RawPeer silent(sock);
        const auto started = std::chrono::steady_clock::now();
        CHECK(silent.closed_by(io, host));
        CHECK(std::chrono::steady_clock::now() - started >= 300ms);
    }
    refuse = true;
    Child guest = start_endpoint({"guest", sock, "unwanted", "10"});
    const std::string answer = answer_of(io, host, guest);
    INFO(answer);
    CHECK(answer.find("error guest " + sock + ": refused") == 0);
    CHECK(guest.wait() != 0);
    CHECK(host.guest_count() == 0);
}

TEST_CASE("a host destroyed from its own callback, and an io_context run after the host is gone")
{
    const std::string sock = socket_path("lifetime");
    boost::asio::io_context io;
    auto host = std::make_unique<Host>(io, HostOptions {.socket_path = sock});
    host->on_join = [&](const GuestInfo&) { host.reset(); }; // the first guest ends the host
    Child guest = start_endpoint({"wait-host", sock});
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (host && std::chrono::steady_clock::now() < until)
        io.run_for(10ms);
    CHECK_FALSE(host);
    io.run_for(100ms); // handlers of the dead host must find nothing to touch (ASan would say)
    const std::string joined = guest.read_line();
    const std::string answer = guest.read_line();
    INFO(joined);
    INFO(answer);
    CHECK(answer.find("host=peer closed the connection") != std::string::npos);
    CHECK(guest.wait() == 0);
    CHECK_FALSE(std::filesystem::exists(sock));
}

TEST_CASE("joining a host that is not there: a clear error, thrown or returned")
{
    const std::string sock = socket_path("absent");
    std::error_code ec;
    Guest guest = Guest::connect(sock, {}, ec);
    CHECK(ec == std::errc::no_such_file_or_directory);
    CHECK_FALSE(guest.valid());
    try {
        Guest::connect(sock);
        FAIL("connected to nothing");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("guest " + sock + ": connect") == 0);
    }
    Guest::attach("/dev/shm/shmlink-test-no-such-segment", ec);
    CHECK(ec == std::errc::no_such_file_or_directory);
}

TEST_CASE("wait_for_host: a guest started before its host joins when the host comes, and gives up at its timeout")
{
    const std::string sock = socket_path("early");
    Child early = start_endpoint({"early-guest", sock, "early", "500"});
    std::this_thread::sleep_for(300ms); // the guest is retrying a socket that is not there
    {
        boost::asio::io_context io;
        Host host(io, {.socket_path = sock});
        const std::string answer = answer_of(io, host, early);
        INFO(answer);
        CHECK(answer.find("ok lane=0 echoed=500") == 0);
        CHECK(early.wait() == 0);
    }
    std::error_code ec;
    const auto start = std::chrono::steady_clock::now();
    Guest guest = Guest::connect(sock, {.timeout = 200ms, .wait_for_host = true}, ec);
    CHECK(ec == Errc::timed_out);
    CHECK(std::chrono::steady_clock::now() - start >= 200ms);
    CHECK_FALSE(guest.valid());
}

TEST_CASE("a guest's lane is free for the next guest as soon as the host's consumer calls in after the hang-up")
{
    // One lane, and a consumer that never waits and calls in far fewer than
    // the 1024 times between its clock checks: only the hang-up's request
    // to reap can free the lane in time for the second guest.
    const std::string sock = socket_path("one-lane");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .max_guests = 1, .reap_interval = std::chrono::hours(1)});
    for (const char* name : {"first", "second"}) {
        Child guest = start_endpoint({"guest", sock, name, "50"});
        std::string answer;
        const auto until = std::chrono::steady_clock::now() + 30s;
        while (answer.empty() && std::chrono::steady_clock::now() < until) {
            io.run_for(1ms);
            host.inbox().consume(
                [&](std::uint32_t lane, std::span<const std::byte> bytes) { host.outbox(lane).push(bytes, 1s); }, 64);
            if (auto got = guest.poll_line())
                answer = *got;
        }
        INFO(answer);
        CHECK(answer.find("echoed=50") != std::string::npos);
        CHECK(guest.wait() == 0);
    }
}

TEST_CASE("silent connections do not count against max_guests: beyond the pending bound the oldest gives way")
{
    const std::string sock = socket_path("silent");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .max_guests = 2, .handshake_timeout = 60s, .max_pending_handshakes = 4});
    int joins = 0;
    host.on_join = [&](const GuestInfo&) { ++joins; };
    // More silent peers than guests and than the pending bound, each accepted before the next.
    std::vector<std::unique_ptr<RawPeer>> silent;
    for (int i = 0; i < 8; ++i) {
        silent.push_back(std::make_unique<RawPeer>(sock));
        io.run_for(5ms);
    }
    // Long enough silent to give way (250 ms): waiting longer only makes them older.
    io.run_for(300ms);
    for (const char* name : {"first", "second"}) {
        Child guest = start_endpoint({"guest", sock, name, "200"});
        const std::string answer = answer_of(io, host, guest);
        INFO(answer);
        CHECK(answer.find("echoed=200") != std::string::npos);
        CHECK(guest.wait() == 0);
    }
    CHECK(joins == 2);
    // Beyond the bound of 4, the 4 newcomers were refused while the others
    // were young, and the oldest gave way to the first guest (the second
    // found room: the first had joined), each told why, then closed.
    int refused = 0; // the host sends a silent peer nothing but its refusal
    for (const auto& peer : silent) {
        std::byte b[4096];
        refused += ::recv(peer->fd.get(), b, sizeof(b), MSG_DONTWAIT) > 0;
    }
    CHECK(refused == 5);
}

TEST_CASE("a guest that scribbles on its rings' fixed fields costs the next guests nothing: a freed lane is rebuilt")
{
    const std::string sock = socket_path("scribble");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .max_guests = 1});
    int joins = 0;
    int leaves = 0;
    host.on_join = [&](const GuestInfo&) { ++joins; };
    host.on_leave = [&](const GuestInfo&) { ++leaves; };
    Child vandal = start_endpoint({"scribble", sock});
    CHECK(answer_of(io, host, vandal) == "ok lane=0");
    CHECK(vandal.wait() == 0);
    for (const char* name : {"next", "after"}) {
        Child guest = start_endpoint({"guest", sock, name, "100"}); // on the vandal's lane: the only one
        const std::string answer = answer_of(io, host, guest);
        INFO(answer);
        CHECK(answer.find("ok lane=0 echoed=100") == 0);
        CHECK(guest.wait() == 0);
    }
    serve(io, host, [&] { return leaves == 3; }, 10s);
    CHECK(joins == 3);
    CHECK(leaves == 3);
}

TEST_CASE("the guide's echo host: a guest that stops reading costs only its own echoes; others and newcomers are served")
{
    const std::string examples = test::helper_path("SHMLINK_EXAMPLES_DIR");
    const std::string sock = socket_path("stuck");
    const test::ShmPath segment_file("echo-stuck");
    Child host = Child::spawn({examples + "/echo_host", sock, segment_file.path, "5"});
    // The stuck guest fills its ring of echoes many times over, and never reads one.
    Child stuck = start_endpoint({"stuck-guest", sock, "20000"});
    REQUIRE(stuck.read_line() == "ok sent");
    std::vector<Child> good;
    for (int i = 0; i < 3; ++i)
        good.push_back(Child::spawn({examples + "/echo_guest", sock, "good-" + std::to_string(i), "300"}));
    for (Child& guest : good) {
        const auto [output, code] = test::read_all(guest);
        CHECK(code == 0);
        CHECK(std::count(output.begin(), output.end(), '\n') == 300);
    }
    // A newcomer joins within its 2 s timeout, on a lane a good guest left.
    Child late = Child::spawn({examples + "/echo_guest", sock, "late", "3"});
    const auto [late_output, late_code] = test::read_all(late);
    INFO(late_output);
    CHECK(late_code == 0);
    stuck.kill(SIGKILL);
    CHECK(stuck.wait() != 0);
    const auto [output, code] = test::read_all(host);
    INFO(output);
    CHECK(code == 0);
    CHECK(output.find("host: served 5 of 5 guests") != std::string::npos);
    CHECK(output.find("host: stuck left (") != std::string::npos);
    CHECK(output.find("host: stuck left (0 echoes dropped)") == std::string::npos);
}

TEST_CASE("a guest's lane still locked when its hang-up is heard: the next guest waits for it and joins")
{
    // One lane and no periodic reap: only the host's requests while the next
    // guest waits can free the lane once the leaver's lock is gone.
    const std::string sock = socket_path("linger");
    boost::asio::io_context io;
    // Timeouts far beyond the lock's 1 s: a slow machine only makes the wait shorter.
    Host host(io, {.socket_path = sock, .max_guests = 1, .handshake_timeout = 30s,
        .reap_interval = std::chrono::hours(1)});
    int joins = 0;
    host.on_join = [&](const GuestInfo&) { ++joins; };
    Child leaver = start_endpoint({"linger-guest", sock, "1000"});
    CHECK(answer_of(io, host, leaver) == "joined lane=0");
    CHECK(leaver.wait() == 0);
    Child next = start_endpoint({"early-guest", sock, "next", "50"}); // a 10 s timeout
    const std::string answer = answer_of(io, host, next);
    INFO(answer);
    CHECK(answer.find("ok lane=0 echoed=50") == 0);
    CHECK(next.wait() == 0);
    CHECK(joins == 2);
}

TEST_CASE("a guest that only sends learns that its host died within its watch interval, not at its timeout")
{
    const std::string sock = socket_path("send-host");
    Child host = start_endpoint({"host", sock, "-"});
    REQUIRE(host.read_line() == "ready");
    Child sender = start_endpoint({"send-host", sock});
    REQUIRE(sender.read_line().rfind("joined", 0) == 0);
    host.kill(SIGKILL);
    CHECK(host.wait() != 0);
    const std::string answer = sender.read_line(30s); // its send timeout is 60 s
    INFO(answer);
    // A hang-up or a reset (the host died with our bytes unread): either way not "alive".
    CHECK(answer.find("ok status=timed out host=") == 0);
    CHECK(answer.find("host=alive") == std::string::npos);
    CHECK(sender.wait() == 0);
    ::unlink(sock.c_str());
}

TEST_CASE("a Guest that is not joined throws or answers ENOTCONN; a lane out of range is an Error, not a crash")
{
    const std::string sock = socket_path("invalid");
    std::error_code ec;
    Guest failed = Guest::connect(sock, {}, ec);
    REQUIRE(ec);
    const test::ShmPath segment_file("invalid");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .segment_path = segment_file.path, .max_guests = 2});
    CHECK_THROWS_WITH_AS((void)host.outbox(7), ("host " + sock + ": outbox(7): the host has lanes 0 to 1").c_str(), Error);
    CHECK(host.send(7, {}) == RingStatus::corrupt);
    Guest moved = Guest::attach(segment_file.path);
    const Guest taker = std::move(moved);
    CHECK(taker.valid());
    for (Guest* guest : {&failed, &moved}) {
        CHECK_FALSE(guest->valid());
        CHECK_THROWS_AS((void)guest->lane(), Error);
        CHECK_THROWS_AS((void)guest->outbox(), Error);
        CHECK_THROWS_AS((void)guest->inbox(), Error);
        CHECK_THROWS_AS((void)guest->segment(), Error);
        CHECK(guest->poll() == std::errc::not_connected);
        std::byte buffer[16];
        std::size_t length = 0;
        std::error_code host_error;
        CHECK(guest->receive(buffer, length, 1ms, host_error) == RingStatus::corrupt);
        CHECK(host_error == std::errc::not_connected);
        CHECK(guest->send(buffer, 1ms, host_error) == RingStatus::corrupt);
        try {
            (void)guest->lane();
        } catch (const Error& e) {
            CHECK(e.code() == std::errc::not_connected);
            CHECK(std::string(e.what()).find("not joined") != std::string::npos);
        }
    }
}

TEST_CASE("socket paths no guest could reach are refused with the path; errors keep their cause")
{
    boost::asio::io_context io;
    SUBCASE("empty")
    {
        CHECK_THROWS_WITH_AS(Host(io, {.socket_path = ""}), "host : the socket path is empty (no guest could reach an unnamed socket)",
            Error);
    }
    SUBCASE("longer than a Unix socket's path")
    {
        const std::string long_path = "/tmp/" + std::string(200, 'x') + ".sock";
        try {
            Host host(io, {.socket_path = long_path});
            FAIL("a host on a path no guest can reach");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::invalid_argument);
            CHECK(std::string(e.what()) == "host " + long_path + ": the socket path is 210 bytes; a Unix socket's path holds at most 107");
        }
        CHECK_THROWS_AS(Guest::connect(long_path), Error);
    }
    SUBCASE("connect at a regular file says what is there")
    {
        const std::string file = socket_path("regular");
        std::fclose(std::fopen(file.c_str(), "w"));
        try {
            Guest::connect(file);
            FAIL("connected to a regular file");
        } catch (const Error& e) {
            CHECK(std::string(e.what()) == "guest " + file + ": connect: " + file + " is a regular file, not a socket: Connection refused");
        }
        ::unlink(file.c_str());
    }
    SUBCASE("a guest by path with every lane taken, or no inbox at all, says which")
    {
        const test::ShmPath segment_file("no-lane");
        const std::string sock = socket_path("no-lane");
        Host host(io, {.socket_path = sock, .segment_path = segment_file.path, .max_guests = 1});
        Guest first = Guest::attach(segment_file.path);
        try {
            Guest::attach(segment_file.path);
            FAIL("two guests on one lane");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::no_free_lane);
            CHECK(std::string(e.what()) == "guest " + segment_file.path + ": take a lane of host.inbox: every producer lane is taken");
        }
        const test::ShmPath bare("bare");
        Segment plain = Segment::create(bare.path, 1 << 16);
        try {
            Guest::attach(bare.path);
            FAIL("joined a segment without an inbox");
        } catch (const Error& e) {
            CHECK(std::string(e.what()) == "guest " + bare.path + ": take a lane of host.inbox: no such object in the directory");
        }
    }
    SUBCASE("a guest at its open-file limit is told that the kernel dropped the segment's fd")
    {
        const std::string sock = socket_path("nofile");
        Host host(io, {.socket_path = sock});
        Child guest = start_endpoint({"nofile-guest", sock});
        const std::string answer = answer_of(io, host, guest);
        INFO(answer);
        CHECK(answer.find("ok guest " + sock + ": welcome: the kernel dropped the fd the peer passed: this process is at its open-file limit (RLIMIT_NOFILE ") == 0);
        CHECK(guest.wait() == 0);
    }
}

TEST_CASE("a host's segment path: a live host's segment and any other file are never replaced; a dead host's is taken over")
{
    const test::ShmPath segment_file("host-owned");
    const std::string sock = socket_path("owner");
    const std::string other_sock = socket_path("usurper");
    boost::asio::io_context io;
    SUBCASE("an ordinary file is left as it is")
    {
        {
            std::FILE* notes = std::fopen(segment_file.path.c_str(), "w");
            std::fputs("my notes\n", notes);
            std::fclose(notes);
        }
        try {
            Host host(io, {.socket_path = other_sock, .segment_path = segment_file.path});
            FAIL("a host replaced an ordinary file");
        } catch (const Error& e) {
            CHECK(e.code() == std::errc::file_exists);
            CHECK(std::string(e.what()).find(segment_file.path) != std::string::npos);
        }
        std::ifstream notes(segment_file.path);
        std::string line;
        std::getline(notes, line);
        CHECK(line == "my notes");
        CHECK_FALSE(std::filesystem::exists(other_sock));
    }
    SUBCASE("a live host's segment, in another process, is refused and keeps serving")
    {
        Child owner = start_endpoint({"host", sock, segment_file.path});
        REQUIRE(owner.read_line() == "ready");
        struct stat before {};
        REQUIRE(::stat(segment_file.path.c_str(), &before) == 0);
        try {
            Host host(io, {.socket_path = other_sock, .segment_path = segment_file.path});
            FAIL("a second host replaced a live host's segment");
        } catch (const Error& e) {
            CHECK(e.code() == Errc::in_use);
        }
        struct stat after {};
        REQUIRE(::stat(segment_file.path.c_str(), &after) == 0);
        CHECK(after.st_ino == before.st_ino);
        CHECK_FALSE(std::filesystem::exists(other_sock));
        Child guest = start_endpoint({"path-guest", segment_file.path, "100"}); // the owner still serves its path
        CHECK(guest.read_line().find("echoed=100") != std::string::npos);
        CHECK(guest.wait() == 0);
        owner.send("quit");
        CHECK(owner.wait() == 0);
    }
    SUBCASE("a dead host's segment is taken over")
    {
        Child owner = start_endpoint({"host", sock, segment_file.path});
        REQUIRE(owner.read_line() == "ready");
        owner.kill(SIGKILL);
        CHECK(owner.wait() != 0);
        REQUIRE(std::filesystem::exists(segment_file.path)); // a SIGKILLed host removes nothing
        Host host(io, {.socket_path = sock, .segment_path = segment_file.path});
        Child guest = start_endpoint({"guest", sock, "after", "100"});
        CHECK(answer_of(io, host, guest).find("echoed=100") != std::string::npos);
        CHECK(guest.wait() == 0);
    }
}

TEST_CASE("a peer that says joined without taking its lane is dropped, and the lane goes to the next guest")
{
    const std::string sock = socket_path("false-join");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock, .max_guests = 1});
    int joins = 0;
    host.on_join = [&](const GuestInfo&) { ++joins; };
    {
        RawPeer liar(sock);
        liar.send(protocol::encode(protocol::Hello {1, "liar"}));
        // The welcome: its body starts with the lane (docs/protocol.md); the
        // segment's fd that rides with it is closed by a plain recv.
        std::vector<std::byte> welcome(protocol::kMaxFrameBytes);
        ssize_t got = 0;
        serve(io, host, [&] {
            got = ::recv(liar.fd.get(), welcome.data(), welcome.size(), MSG_DONTWAIT);
            return got > 0;
        }, 10s);
        REQUIRE(got >= static_cast<ssize_t>(protocol::kHeaderBytes + 4));
        std::uint32_t lane = 0;
        std::memcpy(&lane, welcome.data() + protocol::kHeaderBytes, sizeof(lane));
        liar.send(protocol::encode(protocol::Joined {lane}));
        CHECK(liar.closed_by(io, host));
    }
    CHECK(joins == 0);
    Child guest = start_endpoint({"guest", sock, "honest", "50"});
    const std::string answer = answer_of(io, host, guest);
    INFO(answer);
    CHECK(answer.find("ok lane=0 echoed=50") == 0);
    CHECK(guest.wait() == 0);
    CHECK(joins == 1);
}

TEST_CASE("a guest subscribes by name to a topic another guest publishes in a segment of its own; the host passes its fd")
{
    // Apart: the publisher's segment is sealed for its peers, and each
    // subscriber's slot file goes to the publisher through the host.
    bool apart = false;
    SUBCASE("slots in the topic's table") {}
    SUBCASE("slots apart") { apart = true; }
    CAPTURE(apart);
    const test::ResourceCount before;
    const std::string sock = socket_path("topic");
    {
        boost::asio::io_context io;
        Host host(io, {.socket_path = sock});
        // Samples of 0 B to 4 MiB: the publisher's pool grows its own segment
        // while the subscribers are attached to it.
        const std::uint64_t count = 3000;
        std::vector<std::string> publishing {"topic-publisher", sock, "frames", std::to_string(count)};
        if (apart)
            publishing.insert(publishing.end(), {"apart", "2"});
        Child publisher = start_endpoint(publishing);
        REQUIRE(answer_of(io, host, publisher) == "ok offered");
        std::vector<Child> subscribers;
        for (int i = 0; i < 2; ++i) {
            std::vector<std::string> subscribing {"topic-subscriber", sock, "frames"};
            if (apart)
                subscribing.emplace_back("apart");
            subscribers.push_back(start_endpoint(subscribing));
            const std::string joined = answer_of(io, host, subscribers.back());
            INFO(joined);
            REQUIRE(joined.rfind("ok joined", 0) == 0);
            CHECK(test::field(joined, "read_only") == (apart ? 1 : 0));
        }
        publisher.send("go");
        const std::string published = answer_of(io, host, publisher);
        INFO(published);
        CHECK(published.rfind("ok published=" + std::to_string(count), 0) == 0);
        CHECK(test::field(published, "extents") >= 3); // at least one per size class used, and a 4 MiB one
        CHECK(publisher.wait() == 0);                  // its publisher says closed, its offer goes with it
        for (Child& subscriber : subscribers) {
            const std::string seen = answer_of(io, host, subscriber);
            INFO(seen);
            REQUIRE(seen.rfind("ok taken=", 0) == 0);
            // Blocking subscribers miss a sample only when starved past the
            // publisher's block timeout; what they miss is counted, and is
            // exactly the gaps in what they saw.
            CHECK(test::field(seen, "taken") + test::field(seen, "missed") == static_cast<double>(count));
            CHECK(test::field(seen, "gaps") == test::field(seen, "missed"));
            CHECK(test::field(seen, "base_moved") == 0);
            CHECK(subscriber.wait() == 0);
        }
        // The offer ended with the guest that made it.
        serve(io, host, [&] { return host.guest_count() == 0; }, 10s);
        Child late = start_endpoint({"topic-subscriber", sock, "frames"});
        const std::string refused = answer_of(io, host, late);
        INFO(refused);
        CHECK(refused.find("nobody offers topic 'frames'") != std::string::npos);
        CHECK(test::exit_code(late.wait()) == 3);
        serve(io, host, [&] { return host.guest_count() == 0; }, 10s);
    }
    CHECK_FALSE(std::filesystem::exists(sock));
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("the host offers a topic of its own; offers it must refuse are refused with the reason, and it goes on")
{
    const std::string sock = socket_path("offers");
    boost::asio::io_context io;
    Host host(io, {.socket_path = sock});
    const int fds_before = test::count_open_fds();
    {
        Child offers = start_endpoint({"topic-offers", sock});
        const std::string answer = answer_of(io, host, offers);
        CHECK(answer == "ok twice=" + std::to_string(static_cast<int>(Errc::name_taken)) + " missing="
                + std::to_string(static_cast<int>(Errc::not_found)) + " pipe="
                + std::to_string(static_cast<int>(Errc::not_a_segment)));
        CHECK(offers.wait() == 0);
    }
    {
        Publisher<> publisher = Publisher<>::create(host.segment(), "status");
        host.offer_topic(host.segment(), "status");
        CHECK_THROWS_WITH_AS(host.offer_topic(host.segment(), "status"), doctest::Contains("offered already, by the host"),
            Error);
        CHECK_THROWS_AS(host.offer_topic(host.segment(), ""), Error);
        CHECK_THROWS_AS(host.offer_topic(host.segment(), std::string(40, 'n')), Error);
        Child subscriber = start_endpoint({"topic-subscriber", sock, "status"});
        const std::string joined = answer_of(io, host, subscriber);
        INFO(joined);
        REQUIRE(joined.rfind("ok joined", 0) == 0);
        // The host publishes once the subscriber has joined, then leaves: the
        // subscriber drains, and reads closed.
        for (std::uint64_t seq = 0; seq < 100; ++seq) {
            REQUIRE(test::publish_sample(publisher, seq) == TopicStatus::ok);
            io.poll();
        }
        publisher = Publisher<>();
        const std::string seen = answer_of(io, host, subscriber);
        INFO(seen);
        CHECK(seen.rfind("ok taken=100 gaps=0 missed=0", 0) == 0);
        CHECK(subscriber.wait() == 0);
    }
    {
        // A subscriber apart sends its slot file: refused while the host has
        // no on_topic_join, admitted by the host's publisher once it has one.
        Publisher<> publisher = Publisher<>::create(host.segment(), "apart");
        host.offer_topic(host.segment(), "apart");
        Child refused = start_endpoint({"topic-subscriber", sock, "apart", "apart"});
        const std::string no = answer_of(io, host, refused);
        INFO(no);
        CHECK(no.find("admits no subscriber apart") != std::string::npos);
        CHECK(test::exit_code(refused.wait()) == 3);
        std::uint32_t admitted = Subscriber<>::kNoSlot;
        host.on_topic_join = [&](const std::string& topic, UniqueFd file) {
            std::error_code ec;
            if (topic == "apart")
                admitted = publisher.admit(std::move(file), ec);
        };
        Child subscriber = start_endpoint({"topic-subscriber", sock, "apart", "apart"});
        const std::string joined = answer_of(io, host, subscriber);
        INFO(joined);
        REQUIRE(joined.rfind("ok joined slot=" + std::to_string(admitted) + " read_only=0", 0) == 0);
        for (std::uint64_t seq = 0; seq < 100; ++seq) {
            REQUIRE(test::publish_sample(publisher, seq) == TopicStatus::ok);
            io.poll();
        }
        publisher = Publisher<>();
        host.on_topic_join = nullptr;
        const std::string seen = answer_of(io, host, subscriber);
        INFO(seen);
        CHECK(seen.rfind("ok taken=100 gaps=0 missed=0", 0) == 0);
        CHECK(subscriber.wait() == 0);
    }
    serve(io, host, [&] { return host.guest_count() == 0 && test::count_open_fds() == fds_before + 2; }, 10s);
    CHECK_MESSAGE(test::count_open_fds() == fds_before + 2, "fd leak in the host (the two more: its own offers')");
}
