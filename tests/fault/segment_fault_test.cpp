// Fault injection around the segment itself: a host SIGKILLed while it
// grows, a file system that fills up under a grow, and a creator pid that
// now belongs to someone else. Hosts and guests are processes of their own
// (tests/helpers/endpoint) wherever the fault is in another process.
#include "core/error.hpp"
#include "core/layout.hpp"
#include "core/segment.hpp"
#include "tests/support/child.hpp"
#include "transport/guest.hpp"
#include "transport/host.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
            try {
                answer = guest.read_line(0ms);
            } catch (const std::runtime_error&) {
            }
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
        const std::string dir = "/tmp/shmlink-test-full-" + std::to_string(::getpid());
        std::filesystem::create_directory(dir);
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
            std::filesystem::remove_all(dir);
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
        std::string cut;
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        // Serving the streamer touches its lane, cut away: SIGBUS, unless guarded.
        while (damage.empty() && std::chrono::steady_clock::now() < deadline) {
            echo_once(io, host);
            if (cut.empty()) {
                try {
                    cut = cutter.read_line(0ms);
                } catch (const std::runtime_error&) {
                }
            }
        }
        CHECK(cut == "ok truncated");
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
            try {
                answer = cutter.read_line(0ms);
            } catch (const std::runtime_error&) {
            }
        }
        CHECK(answer == "error " + std::string(std::strerror(EPERM))); // F_SEAL_SHRINK
        CHECK(cutter.wait() == 0);
        CHECK(host.segment().check_backing() == std::error_code {});
    }
}
