// Tests of the shmlink command-line tool (tools/shmlink.cpp), run as a
// separate process against segments this test makes.
#include "core/segment.hpp"
#include "ipc/mpmc_queue.hpp"
#include "ipc/mpsc_ring.hpp"
#include "ipc/spsc_ring.hpp"
#include "tests/support/child.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace shmlink;
using shmlink::test::Child;

namespace {

/// The tool's whole stdout and its exit code; `answer` is typed at its prompt.
std::pair<std::string, int> run_tool(const std::vector<std::string>& args, const std::string& answer = {})
{
    Child child = test::spawn_helper("SHMLINK_TOOL", args);
    if (!answer.empty())
        child.send(answer);
    std::string out;
    try {
        for (;;)
            out += child.read_line() + "\n";
    } catch (const std::runtime_error&) { // EOF: the tool is done
    }
    const int status = child.wait();
    return {out, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)};
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

} // namespace

TEST_CASE("inspect --json reports what the test made, and disturbs nothing")
{
    const test::ShmPath file("tool-inspect");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing spsc = SpscRing::create(segment, "events", 4096);
    for (int i = 0; i < 3; ++i)
        REQUIRE(spsc.try_push(bytes_of("sixteen bytes!!!")) == RingStatus::ok); // 24-byte records
    MpscRing mpsc = MpscRing::create(segment, "requests", 1024, 4);
    MpscProducer producer = MpscProducer::open(segment, "requests");
    REQUIRE(producer.try_push(bytes_of("x")) == RingStatus::ok);
    auto queue = MpmcQueue<std::uint64_t>::create(segment, "jobs", 8);
    for (std::uint64_t i = 0; i < 5; ++i)
        REQUIRE(queue.try_push(i) == RingStatus::ok);
    const std::vector<std::byte> before(segment.bytes().begin(), segment.bytes().end());

    const auto [json, exit_code] = run_tool({"inspect", file.path, "--json"});
    INFO(json);
    CHECK(exit_code == 0);
    CHECK(json.find("\"segment\": \"" + file.path + "\"") != std::string::npos);
    CHECK(json.find("\"creator_alive\": true") != std::string::npos);
    CHECK(json.find("\"size_bytes\": 1048576") != std::string::npos);
    CHECK(json.find("{\"name\": \"events\", \"kind\": \"spsc ring\"") != std::string::npos);
    CHECK(json.find("\"fill_bytes\": 72") != std::string::npos);
    CHECK(json.find("{\"name\": \"requests\", \"kind\": \"mpsc ring\"") != std::string::npos);
    CHECK(json.find("\"lane_count\": 4") != std::string::npos);
    CHECK(json.find("{\"lane\": 0, \"state\": \"owned\", \"pid\": " + std::to_string(::getpid())) != std::string::npos);
    CHECK(json.find("{\"name\": \"jobs\", \"kind\": \"mpmc queue\"") != std::string::npos);
    CHECK(json.find("\"capacity\": 8, \"item_bytes\": 8, \"size\": 5") != std::string::npos);

    const std::vector<std::byte> after(segment.bytes().begin(), segment.bytes().end());
    CHECK(before == after); // read-only: not one byte changed

    const auto [text, text_exit] = run_tool({"inspect", file.path});
    INFO(text);
    CHECK(text_exit == 0);
    CHECK(text.find("fill 72 of 4096 bytes") != std::string::npos);
    CHECK(text.find("5 of 8 items of 8 bytes") != std::string::npos);
}

TEST_CASE("inspect of a foreign or missing file: the file and the reason, and exit 1; bad usage: exit 2")
{
    const test::ShmPath file("tool-foreign");
    {
        std::ofstream out(file.path);
        out << std::string(8192, 'z');
    }
    const auto [foreign, foreign_exit] = run_tool({"inspect", file.path});
    CHECK(foreign_exit == 1);
    const auto [missing, missing_exit] = run_tool({"inspect", "/dev/shm/shmlink-test-there-is-none"});
    CHECK(missing_exit == 1);
    const auto [usage, usage_exit] = run_tool({"inspect"});
    CHECK(usage_exit == 2);
    const auto [help, help_exit] = run_tool({"inspect", "--help"});
    CHECK(help_exit == 0);
    CHECK(help.find("usage: shmlink inspect PATH") != std::string::npos);
}

TEST_CASE("ls finds exactly the segments in a directory; gc removes only those whose creator is gone")
{
    const std::string dir = "/dev/shm/shmlink-test-tool-" + std::to_string(::getpid());
    std::filesystem::create_directory(dir);
    const std::string live = dir + "/live";
    const std::string dead = dir + "/dead";
    const std::string other = dir + "/not-a-segment";
    Segment mine = Segment::create(live, 1 << 16, {.cleanup = Cleanup::unlink_on_close});
    // A creator that made its segment and died (keeping the file).
    const pid_t creator = ::fork();
    if (creator == 0) {
        std::error_code ec;
        Segment::create(dead, 1 << 16, {.cleanup = Cleanup::keep}, ec);
        ::_exit(ec ? 1 : 0);
    }
    int status = -1;
    REQUIRE(::waitpid(creator, &status, 0) == creator);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    {
        std::ofstream out(other);
        out << std::string(8192, 'q');
    }

    const auto [listing, ls_exit] = run_tool({"ls", dir});
    INFO(listing);
    CHECK(ls_exit == 0);
    CHECK(listing.find(live) != std::string::npos);
    CHECK(listing.find(dead) != std::string::npos);
    CHECK(listing.find(other) == std::string::npos);
    CHECK(listing.find(std::to_string(::getpid()) + "  yes") != std::string::npos);
    CHECK(listing.find(std::to_string(creator) + "  no") != std::string::npos);

    // Asked, and answered "no": nothing goes.
    const auto [asked, asked_exit] = run_tool({"gc", dir}, "n");
    CHECK(asked_exit == 0);
    CHECK(asked.find("remove " + dead) != std::string::npos);
    CHECK(asked.find("kept " + dead) != std::string::npos);
    CHECK(std::filesystem::exists(dead));

    const auto [collected, gc_exit] = run_tool({"gc", dir, "--yes"});
    INFO(collected);
    CHECK(gc_exit == 0);
    CHECK(collected.find("removed " + dead) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dead));
    CHECK(std::filesystem::exists(live));
    CHECK(std::filesystem::exists(other));

    mine = Segment();
    std::filesystem::remove_all(dir);
}
