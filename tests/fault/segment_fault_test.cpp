// Fault injection around the segment itself: a host SIGKILLed while it
// grows, a file system that fills up under a grow, a creator pid that now
// belongs to someone else, and peers that truncate the file or punch holes
// in it, also on a full file system. Hosts and guests are processes of their
// own (tests/helpers/endpoint) wherever the fault is in another process.
#include <shmlink/core/error.hpp>
#include <shmlink/core/layout.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/transport/guest.hpp>
#include <shmlink/transport/host.hpp>

#include "tests/support/child.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;

namespace {

Child start_endpoint(const std::vector<std::string>& args) { return test::spawn_helper("SHMLINK_ENDPOINT", args); }

/// One round of an echo host: control frames, then every message back to its lane.
void echo_once(boost::asio::io_context& io, Host& host)
{
    io.poll();
    host.inbox().consume([&](std::uint32_t lane, std::span<const std::byte> bytes) { host.outbox(lane).push(bytes, 10ms); },
        64);
}

std::uintmax_t file_size(const std::string& path)
{
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return static_cast<std::uintmax_t>(st.st_size);
}

/// A fresh directory under /tmp, removed with all in it however the test ends.
struct TempDir {
    explicit TempDir(const std::string& tag)
        : path("/tmp/shmlink-test-" + std::to_string(::getpid()) + "-" + tag)
    {
        std::filesystem::create_directory(path);
    }
    ~TempDir()
    {
        std::error_code ignored; // a destructor: nothing to tell
        std::filesystem::remove_all(path, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string path;
};

/// A small tmpfs mounted on `dir` in a mount namespace of this process's own
/// (so that no other process sees it, and it goes when this process dies,
/// whatever kills it), unmounted when this goes out of scope. `why` says why
/// mounting is not permitted here (not root, or EPERM in a container).
struct TmpfsMount {
    TmpfsMount(const std::string& dir, const std::string& size)
        : dir(dir)
    {
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0
            || ::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, ("size=" + size).c_str()) != 0)
            why = std::string(std::strerror(errno)) + (::geteuid() != 0 ? " (not root)" : "");
    }
    ~TmpfsMount()
    {
        if (why.empty() && ::umount(dir.c_str()) != 0)
            ::umount2(dir.c_str(), MNT_DETACH); // something still open in it: let it go when that closes
    }
    TmpfsMount(const TmpfsMount&) = delete;
    TmpfsMount& operator=(const TmpfsMount&) = delete;
    std::string dir;
    std::string why; ///< empty when mounted
};

/// Runs `body` in a forked child (a host whose death by SIGBUS must not take
/// the test down with it) and answers the line it returned and the child's
/// exit code (test::exit_code): 0 for a line that starts with "ok" or "skip".
template <typename Body>
std::pair<std::string, int> in_host_process(Body&& body)
{
    int report[2];
    REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(report[0]);
        std::string said;
        try {
            said = body();
        } catch (const std::exception& e) {
            said = std::string("exception: ") + e.what();
        }
        (void)!::write(report[1], said.data(), said.size());
        ::_exit(said.rfind("ok", 0) == 0 || said.rfind("skip", 0) == 0 ? 0 : 3);
    }
    ::close(report[1]);
    std::string said;
    std::array<char, 512> chunk {};
    for (ssize_t got; (got = ::read(report[0], chunk.data(), chunk.size())) != 0;) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        said.append(chunk.data(), static_cast<std::size_t>(got));
    }
    ::close(report[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    return {said, test::exit_code(status)};
}

/// Reads and then writes the byte at `offset` of `segment` through the
/// mapping, and reads it back: what a host does with a page of a ring.
/// "" when all went as on an intact page, else what did not.
std::string read_and_write(Segment& segment, std::size_t offset)
{
    auto* const byte = reinterpret_cast<volatile std::uint8_t*>(segment.base() + offset);
    const std::uint8_t before = *byte; // the first touch: SIGBUS, unless guarded
    *byte = 0x5a;
    if (*byte != 0x5a)
        return "the byte written did not read back";
    return before == 0 ? "" : "the lost page read " + std::to_string(before) + ", not 0";
}

/// What a host process that survived a page the file cannot hold again
/// says of it: "ok ...", or what is wrong.
std::string damage_report(Segment& segment, std::size_t offset)
{
    if (const std::string wrong = read_and_write(segment, offset); !wrong.empty())
        return wrong;
    const std::error_code backing = segment.check_backing();
    if (backing != Errc::damaged)
        return "check_backing: " + (backing ? backing.message() : std::string("no error"));
    if (segment.private_pages() != 1 || segment.damaged_pages() != 1)
        return "private pages " + std::to_string(segment.private_pages()) + ", damaged pages "
            + std::to_string(segment.damaged_pages()) + ", not 1 and 1";
    return "ok repairs=" + std::to_string(segment.repairs()) + " " + backing.message();
}

constexpr std::size_t kVictim = std::size_t {512} << 10; // a page in the middle of a 1 MiB segment

} // namespace

TEST_CASE("a host SIGKILLed while it grows: guests get an error or the new size, never a crash; the segment reopens")
{
    std::mt19937_64 random(42);
    std::string generations; // how far each host got: of 256 grows
    for (int round = 0; round < 8; ++round) {
        CAPTURE(round);
        const test::ShmPath file("fault-grow-" + std::to_string(round));
        const std::string sock = "/tmp/shmlink-test-" + std::to_string(::getpid()) + "-grow.sock";
        Child host = start_endpoint({"host", sock, file.path});
        REQUIRE(host.read_line() == "ready");
        Child streamer = start_endpoint({"guest", sock, "streamer", "100000000"});
        Child toucher = start_endpoint({"toucher", file.path});
        REQUIRE(toucher.read_line() == "attached");

        const auto joined_by = std::chrono::steady_clock::now() + 10s;
        while (host.request("guests") != "ok guests=1" && std::chrono::steady_clock::now() < joined_by)
            std::this_thread::sleep_for(1ms);

        // 256 grows of 64 KiB back to back, and a SIGKILL somewhere in them.
        host.send("grow-loop 65536 256");
        std::this_thread::sleep_for(std::chrono::microseconds(random() % 6000));
        host.kill(SIGKILL);
        host.wait();

        // The streaming guest noticed the host's death: an error line, a clean exit.
        const auto [streamed, stream_exit] = test::finish(streamer, 30s);
        INFO(streamed);
        CHECK(stream_exit < 128); // exited, not killed
        CHECK(streamed.rfind("error echo", 0) == 0);
        // The guest that read every mapped page never touched a page the file lacks.
        const auto [touched, touch_exit] = test::finish(toucher, 30s);
        INFO(touched);
        CHECK(touch_exit == 0); // not 128 + SIGBUS
        CHECK(touched.rfind("ok size=", 0) == 0);

        // The segment the dead host left: valid, every object in it, no larger than its file.
        Segment left = Segment::attach(file.path);
        CHECK(left.creator_liveness() == Liveness::dead);
        CHECK(left.size_bytes() <= file_size(file.path));
        CHECK(left.find("host.inbox").length > 0);
        generations += std::to_string(left.generation()) + " ";
        left = Segment();

        // A new host takes the same socket and segment paths over, and serves.
        boost::asio::io_context io;
        Host next(io, {.socket_path = sock, .segment_path = file.path});
        Child guest = start_endpoint({"guest", sock, "next", "200"});
        std::string answer;
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (answer.empty() && std::chrono::steady_clock::now() < deadline) {
            echo_once(io, next);
            if (auto got = guest.poll_line())
                answer = *got;
        }
        CHECK(answer.rfind("ok lane=0 echoed=200", 0) == 0);
        CHECK(guest.wait() == 0);
    }
    MESSAGE("hosts killed after these many of their 256 grows: " << generations);
}

TEST_CASE("a full file system under a grow: a clear error, the old extent intact, the segment still usable")
{
    // In a child of its own: a 2 MiB tmpfs in a private mount namespace where
    // that is allowed (ENOSPC, as a full /dev/shm gives), else a 2 MiB file
    // size limit (EFBIG): the same path through grow() either way.
    // The directory belongs to this process, so that it goes however the child ends.
    const TempDir temp("full");
    int report[2];
    REQUIRE(::pipe(report) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(report[0]);
        const auto say = [&](const std::string& text, int code) {
            (void)!::write(report[1], text.data(), text.size());
            ::_exit(code);
        };
        const std::string& dir = temp.path;
        std::string how = "tmpfs";
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0
            || ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=2m") != 0) {
            how = "rlimit";
            ::signal(SIGXFSZ, SIG_IGN);
            const rlimit limit {2 << 20, 2 << 20};
            if (::setrlimit(RLIMIT_FSIZE, &limit) != 0)
                say("setrlimit failed", 2);
        }
        const std::string path = dir + "/segment";
        std::error_code ec;
        Segment segment = Segment::create(path, 1 << 20, {.max_size_bytes = 64 << 20, .cleanup = Cleanup::unlink_on_close}, ec);
        if (ec)
            say("create: " + ec.message(), 3);
        const auto object = segment.allocate("data", 1, 1, 512 << 10);
        std::vector<std::byte> pattern(512 << 10);
        for (std::size_t i = 0; i < pattern.size(); ++i)
            pattern[i] = static_cast<std::byte>(i * 7);
        if (segment.write_at(object.offset, pattern))
            say("write", 4);
        try {
            segment.grow(32 << 20);
            say(how + ": grow to 32 MiB succeeded", 5);
        } catch (const Error& e) {
            const bool full = e.code() == std::errc::no_space_on_device || e.code() == std::errc::file_too_large;
            const std::string message = e.what();
            if (!full || message.find("grow " + path) != 0)
                say(how + ": unexpected error: " + message, 6);
            std::vector<std::byte> back(pattern.size());
            if (segment.size_bytes() != (1u << 20) || segment.generation() != 0 || segment.read_into(object.offset, back)
                || back != pattern)
                say(how + ": the old extent changed", 7);
            std::error_code grown;
            segment.grow(3 << 19, grown); // 1.5 MiB fits
            if (grown || segment.size_bytes() != (3u << 19))
                say(how + ": a grow that fits failed after the full one: " + grown.message(), 8);
            segment = Segment();
            if (how == "tmpfs")
                ::umount(dir.c_str());
            say(how + ": " + message, 0);
        }
    }
    ::close(report[1]);
    char text[512] = {};
    const ssize_t got = ::read(report[0], text, sizeof(text) - 1);
    ::close(report[0]);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    const std::string said(text, got > 0 ? static_cast<std::size_t>(got) : 0);
    MESSAGE("full file system by " << said);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("pid reuse: a segment whose creator's pid now belongs to another process is not taken for alive")
{
    // In a directory of its own, so that gc below sees only this segment.
    const std::string dir = "/dev/shm/shmlink-test-pid-reuse-" + std::to_string(::getpid());
    std::filesystem::create_directory(dir);
    struct {
        std::string path;
    } file {dir + "/segment"};
    // A creator that made its segment and exited.
    const pid_t creator = ::fork();
    REQUIRE(creator >= 0);
    if (creator == 0) {
        std::error_code ec;
        Segment::create(file.path, 1 << 16, {.cleanup = Cleanup::keep}, ec);
        ::_exit(ec ? 1 : 0);
    }
    int status = 0;
    REQUIRE(::waitpid(creator, &status, 0) == creator);
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK(Segment::attach(file.path).creator_liveness() == Liveness::dead);

    // Its pid is reused by a live process (this one): the pid alone would say alive.
    const int fd = ::open(file.path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const std::uint32_t live_pid = static_cast<std::uint32_t>(::getpid());
    REQUIRE(::pwrite(fd, &live_pid, sizeof(live_pid), offsetof(layout::SegmentHeader, creator_pid)) == sizeof(live_pid));
    ::close(fd);
    Segment reused = Segment::attach(file.path);
    CHECK(reused.info().creator_pid == ::getpid());
    CHECK(reused.creator_liveness() == Liveness::dead); // the pid is not what tells: the free lock does
    reused = Segment();

    // shmlink gc agrees, and removes it.
    Child gc = test::spawn_helper("SHMLINK_TOOL", {"gc", dir, "--yes"});
    const auto [out, gc_exit] = test::read_all(gc);
    CHECK(gc_exit == 0);
    CHECK(out.find("removed " + file.path) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(file.path));
    std::filesystem::remove_all(dir);
}

TEST_CASE("a guest truncates a path-backed segment: the host survives and is told; a memfd cannot be truncated")
{
    const test::ShmPath file("fault-truncate");
    const std::string sock = "/tmp/shmlink-test-" + std::to_string(::getpid()) + "-truncate.sock";
    {
        boost::asio::io_context io;
        Host host(io, {.socket_path = sock, .segment_path = file.path, .reap_interval = 20ms});
        std::vector<std::string> damage;
        host.on_damage = [&](const std::error_code& ec, const std::string& what) {
            CHECK(ec == Errc::truncated);
            damage.push_back(what);
        };
        Child streamer = start_endpoint({"guest", sock, "streamer", "100000000"});
        Child cutter = start_endpoint({"truncate", sock, "4096"}); // header and directory only
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        // Serving the streamer touches its lane, cut away: SIGBUS, unless guarded.
        while (damage.empty() && std::chrono::steady_clock::now() < deadline)
            echo_once(io, host);
        // The cutter answers after its cut, and its guard may first have to
        // survive its own touch of the cut lane as it leaves: the host can
        // hear of the damage before the answer is written, so wait for it.
        const auto [cut, cutter_exit] = test::finish(cutter, 30s);
        CHECK(cut == "ok truncated");
        CHECK(cutter_exit == 0); // its guard survived the cut lane too
        REQUIRE_FALSE(damage.empty()); // once, or again if two processes both repaired
        CHECK(host.segment().truncations() >= 1);
        CHECK(damage.front().find("the segment file " + file.path + " was truncated by another process") == 0);
        CHECK(file_size(file.path) >= host.segment().size_bytes()); // extended back
        MESSAGE("SIGBUS faults the host survived: " << host.segment().repairs());
        // The streamer's data was in the cut extent: it ends with an error, not a crash.
        streamer.kill(SIGTERM);
        const auto [streamed, streamer_exit] = test::finish(streamer, 30s);
        CHECK(streamer_exit != 128 + SIGBUS);
    }
    {
        boost::asio::io_context io;
        Host host(io, {.socket_path = sock}); // memfd
        Child cutter = start_endpoint({"truncate", sock, "4096"});
        std::string answer;
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (answer.empty() && std::chrono::steady_clock::now() < deadline) {
            io.run_for(10ms);
            if (auto got = cutter.poll_line())
                answer = *got;
        }
        CHECK(answer == "error " + std::string(std::strerror(EPERM))); // F_SEAL_SHRINK
        CHECK(cutter.wait() == 0);
        CHECK(host.segment().check_backing() == std::error_code {});
    }
}

TEST_CASE("a peer punches a hole in a guarded segment and fills the tmpfs: the host survives on a private page and is told")
{
    const TempDir dir("punch-full");
    const auto [said, code] = in_host_process([&]() -> std::string {
        const TmpfsMount mount(dir.path, "2m");
        if (!mount.why.empty())
            return "skip: cannot mount a tmpfs here: " + mount.why;
        boost::asio::io_context io;
        Host host(io, {.socket_path = dir.path + "/host.sock", .segment_path = dir.path + "/segment",
                          .segment_bytes = 1 << 20, .max_segment_bytes = 1 << 20, .max_guests = 1,
                          .ring_bytes = 16 << 10, .reap_interval = 10ms});
        std::vector<std::string> damage;
        host.on_damage = [&](const std::error_code& ec, const std::string& what) {
            damage.push_back(ec.message() + ": " + what);
        };
        Segment& segment = host.segment();
        if (const std::string wrong = read_and_write(segment, kVictim); !wrong.empty()) // leaves 0x5a, which the punch loses
            return "before the punch: " + wrong;
        Child vandal = test::spawn_helper("SHMLINK_ENDPOINT",
            {"spoil", dir.path + "/segment", "punch", std::to_string(kVictim), dir.path + "/filler"});
        if (const std::string done = vandal.read_line(); done.rfind("ok filled=", 0) != 0)
            return "spoil: " + done;
        std::string report = damage_report(segment, kVictim);
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (damage.empty() && std::chrono::steady_clock::now() < deadline)
            io.run_for(10ms);
        if (damage.empty())
            return "on_damage was not called; " + report;
        if (damage.front().find(make_error_code(Errc::damaged).message()) != 0)
            return "on_damage: " + damage.front();
        return report + "; on_damage: " + damage.front();
    });
    if (said.rfind("skip", 0) == 0)
        MESSAGE(said);
    INFO(said);
    CHECK(code == 0); // not 128 + SIGBUS: the host lived
    CHECK((said.rfind("ok", 0) == 0 || said.rfind("skip", 0) == 0));
}

TEST_CASE("a peer truncates a guarded segment and fills the tmpfs: the host survives on a private page and is told")
{
    const TempDir dir("cut-full");
    const auto [said, code] = in_host_process([&]() -> std::string {
        const TmpfsMount mount(dir.path, "2m");
        if (!mount.why.empty())
            return "skip: cannot mount a tmpfs here: " + mount.why;
        const std::string path = dir.path + "/segment";
        Segment segment = Segment::create(path, 1 << 20, {.cleanup = Cleanup::unlink_on_close, .map = {.guard_truncation = true}});
        Child vandal = test::spawn_helper("SHMLINK_ENDPOINT", {"spoil", path, "truncate", "4096", dir.path + "/filler"});
        if (const std::string done = vandal.read_line(); done.rfind("ok filled=", 0) != 0)
            return "spoil: " + done;
        const std::string report = damage_report(segment, kVictim);
        if (segment.truncations() != 0)
            return "a repair was counted, yet the file system is full; " + report;
        return report;
    });
    if (said.rfind("skip", 0) == 0)
        MESSAGE(said);
    INFO(said);
    CHECK(code == 0); // not 128 + SIGBUS: the host lived
    CHECK((said.rfind("ok", 0) == 0 || said.rfind("skip", 0) == 0));
}

TEST_CASE("a peer truncates a guarded segment past the host's file size limit: the host survives on a private page")
{
    // RLIMIT_FSIZE stands in for a full file system where mounting is not
    // permitted: the repair's fallocate fails (EFBIG) the same way.
    const test::ShmPath file("cut-rlimit");
    const auto [said, code] = in_host_process([&]() -> std::string {
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close, .map = {.guard_truncation = true}});
        ::signal(SIGXFSZ, SIG_IGN); // a write past the limit fails with EFBIG instead of killing
        const rlimit limit {64 << 10, 64 << 10};
        if (::setrlimit(RLIMIT_FSIZE, &limit) != 0)
            return std::string("setrlimit: ") + std::strerror(errno);
        Child vandal = test::spawn_helper("SHMLINK_ENDPOINT", {"spoil", file.path, "truncate", "4096", "-"});
        if (const std::string done = vandal.read_line(); done.rfind("ok filled=", 0) != 0)
            return "spoil: " + done;
        return damage_report(segment, kVictim);
    });
    INFO(said);
    CHECK(code == 0); // not 128 + SIGBUS: the host lived
    CHECK(said.rfind("ok", 0) == 0);
}

TEST_CASE("guarded processes that fault on one cut extent at once all survive, whichever repairs first")
{
    // Each touches every page, over and over, while the file is cut again and
    // again: most faults find the file already extended back by another.
    const test::ShmPath file("guard-race");
    Segment host = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    std::vector<Child> touchers;
    for (int i = 0; i < 3; ++i) {
        touchers.push_back(start_endpoint({"guarded-toucher", file.path}));
        REQUIRE(touchers.back().read_line() == "attached");
    }
    for (int round = 0; round < 200; ++round) {
        REQUIRE(::truncate(file.path.c_str(), 4096) == 0);
        std::this_thread::sleep_for(1ms);
    }
    // A toucher that died has closed its stdin: a write to it fails with EPIPE
    // (and would raise SIGPIPE), and its status says how it died.
    struct sigaction ignore {};
    struct sigaction before {};
    ignore.sa_handler = SIG_IGN;
    REQUIRE(::sigaction(SIGPIPE, &ignore, &before) == 0);
    for (Child& toucher : touchers) {
        try {
            toucher.send("stop");
        } catch (const std::runtime_error&) {
        }
        const auto [said, code] = test::finish(toucher, 30s);
        INFO(said);
        CHECK(code == 0); // not 128 + SIGBUS, nor a sanitizer's 1 for a fault passed on
        CHECK(said.rfind("ok passes=", 0) == 0);
        CHECK(said.find(" private=0 ") != std::string::npos); // the file could always be repaired
    }
    ::sigaction(SIGPIPE, &before, nullptr);
}
