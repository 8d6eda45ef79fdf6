// Tests of the shmlink command-line tool (tools/shmlink.cpp), run as a
// separate process against segments this test makes.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include "tests/support/child.hpp"
#include "tests/support/hostile_files.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using shmlink::test::Child;

namespace {

/// The tool's whole stdout and its exit code; `answer` is typed at its prompt.
/// A tool still running after `timeout` fails the test (test::ChildTimeout).
std::pair<std::string, int> run_tool(const std::vector<std::string>& args, const std::string& answer = {},
    std::chrono::milliseconds timeout = std::chrono::seconds(300))
{
    Child child = test::spawn_helper("SHMLINK_TOOL", args);
    if (!answer.empty())
        child.send(answer);
    return test::read_all(child, timeout);
}

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

/// The lines of `listing` that name `path`.
std::string line_of(const std::string& listing, const std::string& path)
{
    const auto at = listing.find(path + " ");
    if (at == std::string::npos)
        return {};
    return listing.substr(at, listing.find('\n', at) - at);
}

/// The user name of `uid`, as ls should show it: the number without one.
std::string user_name(uid_t uid)
{
    const passwd* entry = ::getpwuid(uid);
    return entry != nullptr ? entry->pw_name : std::to_string(uid);
}

/// The end of ls's line for a segment: creator pid, lanes attached, and the liveness column.
std::string ls_tail(pid_t creator, int lanes, const std::string& alive)
{
    char text[64];
    std::snprintf(text, sizeof(text), " %8d %5d  ", static_cast<int>(creator), lanes);
    return text + alive;
}

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
    Publisher<> publisher = Publisher<>::create(segment, "frames", TopicOptions {.max_subscribers = 4, .queue_depth = 8});
    Subscriber<> subscriber = Subscriber<>::open(segment, "frames");
    for (int i = 0; i < 3; ++i) {
        Loan<> loan = publisher.loan(100);
        REQUIRE(loan);
        REQUIRE(publisher.publish(std::move(loan)) == TopicStatus::ok);
    }
    const std::vector<std::byte> before(segment.bytes().begin(), segment.bytes().end());

    const auto [json, exit_code] = run_tool({"inspect", file.path, "--json"});
    INFO(json);
    CHECK(exit_code == 0);
    CHECK(json.find("\"segment\": \"" + file.path + "\"") != std::string::npos);
    CHECK(json.find("\"creator_alive\": true") != std::string::npos);
    CHECK(json.find("\"size_bytes\": 1048576") != std::string::npos);
    CHECK(json.find("\"truncations\": 0") != std::string::npos);
    CHECK(json.find("{\"name\": \"events\", \"kind\": \"spsc ring\"") != std::string::npos);
    CHECK(json.find("\"fill_bytes\": 72") != std::string::npos);
    CHECK(json.find("{\"name\": \"requests\", \"kind\": \"mpsc ring\"") != std::string::npos);
    CHECK(json.find("\"lane_count\": 4") != std::string::npos);
    CHECK(json.find("{\"lane\": 0, \"state\": \"owned\", \"pid\": " + std::to_string(::getpid())) != std::string::npos);
    CHECK(json.find("{\"name\": \"jobs\", \"kind\": \"mpmc queue\"") != std::string::npos);
    CHECK(json.find("\"capacity\": 8, \"item_bytes\": 8, \"size\": 5") != std::string::npos);
    CHECK(json.find("{\"name\": \"frames\", \"kind\": \"topic\"") != std::string::npos);
    CHECK(json.find("\"slot_count\": 4, \"queue_depth\": 8, \"max_held\": 16, \"history\": 0, \"publisher\": \"open\", "
                    "\"publisher_pid\": " + std::to_string(::getpid()) + ", \"published\": 3, \"extents\": 1")
        != std::string::npos);
    CHECK(json.find("{\"slot\": 0, \"state\": \"joined\", \"pid\": " + std::to_string(::getpid())
              + ", \"depth\": 8, \"overflow\": \"drop oldest\", \"queued\": 3, \"missed\": 0")
        != std::string::npos);

    const std::vector<std::byte> after(segment.bytes().begin(), segment.bytes().end());
    CHECK(before == after); // read-only: not one byte changed

    const auto [text, text_exit] = run_tool({"inspect", file.path});
    INFO(text);
    CHECK(text_exit == 0);
    CHECK(text.find("fill 72 of 4096 bytes") != std::string::npos);
    CHECK(text.find("5 of 8 items of 8 bytes") != std::string::npos);
    CHECK(text.find("publisher open (pid " + std::to_string(::getpid()) + "), 3 published") != std::string::npos);
    CHECK(text.find("subscriber 0 joined (pid " + std::to_string(::getpid()) + "): 3 of 8 queued (drop oldest), 0 missed")
        != std::string::npos);
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
    CHECK(line_of(listing, live).ends_with(ls_tail(::getpid(), 0, "yes (its lock is held)")));
    CHECK(line_of(listing, dead).ends_with(ls_tail(creator, 0, "no (its lock is free)")));
    // The owner by name, in the column after the path.
    CHECK(line_of(listing, live).find(" " + user_name(::geteuid()) + " ") != std::string::npos);

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

namespace {

/// The tool's stdout and stderr together and its exit code, or a
/// test::ChildTimeout when it has not finished within `timeout`: a tool that
/// blocks (on a FIFO, a lock) fails the test instead of hanging it. The bound
/// is only for a hang: it is far above what any of these commands takes.
std::pair<std::string, int> run_tool_within(const std::vector<std::string>& args,
    std::chrono::milliseconds timeout = std::chrono::seconds(60))
{
    std::vector<std::string> argv {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>&1", test::helper_path("SHMLINK_TOOL")};
    argv.insert(argv.end(), args.begin(), args.end());
    Child child = Child::spawn(argv);
    return test::read_all(child, timeout);
}

/// A creator that made a segment at `path` (Cleanup::keep) and exited.
void leave_dead_segment(const std::string& path)
{
    const pid_t creator = ::fork();
    if (creator == 0) {
        std::error_code ec;
        Segment::create(path, 1 << 16, {.cleanup = Cleanup::keep}, ec);
        ::_exit(ec ? 1 : 0);
    }
    int status = -1;
    REQUIRE(::waitpid(creator, &status, 0) == creator);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
}

/// A fresh directory under /dev/shm, removed with all it holds when it goes.
struct ShmDir {
    explicit ShmDir(const std::string& tag) : path("/dev/shm/shmlink-test-tool-" + tag + "-" + std::to_string(::getpid()))
    {
        std::filesystem::create_directory(path);
    }
    ~ShmDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    ShmDir(const ShmDir&) = delete;
    ShmDir& operator=(const ShmDir&) = delete;
    std::string path;
};

bool same_inode(const std::string& path, const Segment& segment)
{
    struct stat named {};
    struct stat ours {};
    return ::stat(path.c_str(), &named) == 0 && ::fstat(segment.fd().get(), &ours) == 0 && named.st_ino == ours.st_ino
        && named.st_dev == ours.st_dev;
}

} // namespace

TEST_CASE("gc keeps a segment whose creator runs in another pid namespace, and ls calls it alive")
{
    std::string unshare;
    for (const std::string candidate : {"/usr/bin/unshare", "/bin/unshare"})
        if (unshare.empty() && ::access(candidate.c_str(), X_OK) == 0
            && std::system((candidate + " --pid --fork --kill-child true >/dev/null 2>&1").c_str()) == 0)
            unshare = candidate;
    if (unshare.empty()) {
        MESSAGE("skipped: this process may not make a pid namespace (unshare --pid --fork failed)");
        return;
    }
    const ShmDir dir("pid-namespace");
    const std::string path = dir.path + "/contained";
    Child creator = Child::spawn({unshare, "--pid", "--fork", "--kill-child", test::helper_path("SHMLINK_CREATOR"), path});
    REQUIRE(creator.read_line() == "ok pid=1"); // pid 1 in its namespace: here, another process

    const auto [listing, ls_exit] = run_tool_within({"ls", dir.path});
    INFO(listing);
    CHECK(ls_exit == 0);
    CHECK(line_of(listing, path).ends_with(ls_tail(1, 0, "yes (its lock is held)")));
    const auto [collected, gc_exit] = run_tool_within({"gc", dir.path, "--yes"});
    INFO(collected);
    CHECK(gc_exit == 0);
    CHECK(collected.find("removed") == std::string::npos);
    CHECK(std::filesystem::exists(path));

    CHECK(creator.wait() == 0); // now it is gone, and gc may take its segment
    const auto [later, later_exit] = run_tool_within({"gc", dir.path, "--yes"});
    INFO(later);
    CHECK(later_exit == 0);
    CHECK(later.find("removed " + path) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("gc judged a segment dead, and a host came back at its path before the answer: the live segment stays")
{
    const ShmDir dir("gc-race");
    const std::string path = dir.path + "/segment";
    leave_dead_segment(path);

    Child gc = test::spawn_helper("SHMLINK_TOOL", {"gc", dir.path});
    const std::string prompt = gc.read_through("[y/N] ", std::chrono::seconds(10));
    REQUIRE(prompt.find("remove " + path) != std::string::npos);
    // While gc waits at its prompt, a restarted host takes the dead segment over.
    Segment host = Segment::create(path, 1 << 16, {.cleanup = Cleanup::unlink_on_close, .take_over_dead = true});
    gc.send("y");
    const auto [answer, gc_exit] = test::read_all(gc);
    INFO(answer);
    CHECK(gc_exit == 0);
    CHECK(answer.find("kept " + path + ": the path names another file than the one judged dead") != std::string::npos);
    CHECK(same_inode(path, host));

    // The same with --yes against a file whose lock another remover holds right now.
    host = Segment();
    leave_dead_segment(path);
    UniqueFd busy(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = 0;
    lock.l_len = 1;
    REQUIRE(::fcntl(busy.get(), F_OFD_SETLK, &lock) == 0);
    const auto [held, held_exit] = run_tool_within({"gc", dir.path, "--yes"});
    INFO(held);
    CHECK(held_exit == 0);
    CHECK(held.find("removed") == std::string::npos);
    CHECK(std::filesystem::exists(path));
}

TEST_CASE("gc keeps a checkpoint after its creator exited, and ls shows it as one")
{
    const ShmDir dir("checkpoint");
    const std::string checkpoint = dir.path + "/checkpoint";
    const std::string segment_path = dir.path + "/segment";
    // A creator that commits a checkpoint of its segment and exits, its pid in both headers.
    const pid_t creator = ::fork();
    if (creator == 0) {
        try {
            Segment segment = Segment::create(segment_path, 1 << 16, {.cleanup = Cleanup::unlink_on_close});
            segment.snapshot().commit(checkpoint);
        } catch (...) {
            ::_exit(1);
        }
        ::_exit(0);
    }
    int status = -1;
    REQUIRE(::waitpid(creator, &status, 0) == creator);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    REQUIRE(std::filesystem::exists(checkpoint));

    const auto [listing, ls_exit] = run_tool_within({"ls", dir.path});
    INFO(listing);
    CHECK(ls_exit == 0);
    CHECK(line_of(listing, checkpoint).ends_with(ls_tail(creator, 0, "checkpoint")));
    const auto [collected, gc_exit] = run_tool_within({"gc", dir.path, "--yes"});
    INFO(collected);
    CHECK(gc_exit == 0);
    CHECK(collected.find("removed") == std::string::npos);
    CHECK(std::filesystem::exists(checkpoint));
    CHECK(Segment::attach(checkpoint).valid()); // still a segment one can open
}

TEST_CASE("gc keeps a segment whose creator's liveness cannot be decided, and says why")
{
    const ShmDir dir("unknown");
    const std::string path = dir.path + "/older";
    leave_dead_segment(path);
    {
        // As an older shmlink wrote it: no lock flag.
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        const std::uint32_t no_flags = 0;
        REQUIRE(::pwrite(fd.get(), &no_flags, sizeof(no_flags), 104) == sizeof(no_flags));
    }
    const auto [listing, ls_exit] = run_tool_within({"ls", dir.path});
    INFO(listing);
    CHECK(line_of(listing, path).ends_with("  unknown: its creator holds no lock (a segment of an older shmlink, "
                                          "or a file system without OFD locks)"));
    const auto [collected, gc_exit] = run_tool_within({"gc", dir.path, "--yes"});
    INFO(collected);
    CHECK(gc_exit == 0);
    CHECK(collected.find("kept " + path + ": whether its creator lives cannot be decided") != std::string::npos);
    CHECK(std::filesystem::exists(path));
}

TEST_CASE("a FIFO, a socket, a directory or a device: every subcommand answers at once with what the file is")
{
    const test::HostileFiles files("tool-hostile");
    const std::pair<std::string, std::string> hostile[] = {
        {files.fifo, "is a FIFO"},
        {files.socket, "is a socket"},
        {files.directory, "is a directory"},
        {"/dev/null", "is a character device"},
    };
    for (const auto& [path, what] : hostile) {
        CAPTURE(path);
        const auto [inspected, inspect_exit] = run_tool_within({"inspect", path});
        CHECK(inspect_exit == 1);
        CHECK(inspected.find(path + ": " + what) != std::string::npos);
        const auto [watched, watch_exit] = run_tool_within({"watch", path, "--count", "1"});
        CHECK(watch_exit == 1);
        CHECK(watched.find(path + ": " + what) != std::string::npos);
    }
    // In a directory, ls and gc pass them by without opening them.
    const auto [listing, ls_exit] = run_tool_within({"ls", files.dir});
    INFO(listing);
    CHECK(ls_exit == 0);
    CHECK(listing.find(files.fifo) == std::string::npos);
    CHECK(listing.find(files.socket) == std::string::npos);
    const auto [collected, gc_exit] = run_tool_within({"gc", files.dir, "--yes"});
    INFO(collected);
    CHECK(gc_exit == 0);
    CHECK(collected.find("removed") == std::string::npos);
    CHECK(std::filesystem::exists(files.fifo));
    // Given as the directory to list, each is named for what it is.
    const auto [not_dir, not_dir_exit] = run_tool_within({"ls", files.fifo});
    CHECK(not_dir_exit == 1);
    CHECK(not_dir.find(files.fifo + ": is a FIFO, not a directory") != std::string::npos);
    const auto [gc_not_dir, gc_not_dir_exit] = run_tool_within({"gc", files.socket, "--yes"});
    CHECK(gc_not_dir_exit == 1);
    CHECK(gc_not_dir.find(files.socket + ": is a socket, not a directory") != std::string::npos);
}

namespace {

/// Lines from `child` up to and including the first that contains `marker`.
std::string read_until(Child& child, const std::string& marker)
{
    std::string lines;
    for (;;) {
        const std::string line = child.read_line(std::chrono::seconds(60));
        lines += line + "\n";
        if (line.find(marker) != std::string::npos)
            return lines;
    }
}

/// The four rate columns (written/s, read/s, msgs in/s, msgs out/s) of the
/// first line in a frame of watch's output that starts with `name`.
std::vector<std::string> rates_of(const std::string& frame, const std::string& name)
{
    const auto start = frame.find("  " + name + " ");
    if (start == std::string::npos)
        return {};
    const std::string line = frame.substr(start, frame.find('\n', start) - start);
    // Columns are right-aligned and at least two spaces apart; a value has one space at most.
    std::vector<std::string> columns;
    for (std::size_t at = line.find("%)") + 2; at < line.size();) {
        at = line.find_first_not_of(' ', at);
        if (at == std::string::npos)
            break;
        const auto end = line.find("  ", at);
        columns.push_back(line.substr(at, end == std::string::npos ? std::string::npos : end - at));
        at = end;
    }
    return columns;
}

/// Runs `script` with python3 (a meson dependency, so always present) on `args`.
std::pair<std::string, int> run_python(const std::string& script, const std::vector<std::string>& args)
{
    std::vector<std::string> argv {test::helper_path("SHMLINK_PYTHON"), "-c", script};
    argv.insert(argv.end(), args.begin(), args.end());
    Child child = Child::spawn(argv);
    return test::read_all(child);
}

} // namespace

TEST_CASE("watch shows fill levels and the rates between refreshes, and ends on Ctrl-C")
{
    const test::ShmPath file("tool-watch");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing ring = SpscRing::create(segment, "events", 4096);
    auto queue = MpmcQueue<std::uint64_t>::create(segment, "jobs", 8);

    // Refreshed on the test's word (a line on its stdin), so that each frame
    // shows exactly the step before it, however slow the machine.
    Child watch = test::spawn_helper("SHMLINK_TOOL", {"watch", file.path, "--on-input", "--count", "3"});
    const std::string first = read_until(watch, "jobs");
    INFO(first);
    CHECK(first.find("generation 0") != std::string::npos);
    CHECK(first.find("0 B / 4.0 KiB (0%)") != std::string::npos); // events, empty
    CHECK(first.find("0 items / 8 items (0%)") != std::string::npos);

    // Between the first and second refresh: 1000 bytes through the ring (40
    // records of 25 bytes, each 40 with its header), and 3 items queued.
    for (int i = 0; i < 40; ++i) {
        REQUIRE(ring.try_push(bytes_of(std::string(25, 'm'))) == RingStatus::ok);
        std::byte buffer[64];
        std::size_t length = 0;
        REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
    }
    REQUIRE(ring.try_push(bytes_of(std::string(24, 'k'))) == RingStatus::ok); // stays: 32 bytes filled
    for (std::uint64_t i = 0; i < 3; ++i)
        REQUIRE(queue.try_push(i) == RingStatus::ok);
    watch.send("");
    const std::string second = read_until(watch, "jobs");
    INFO(second);
    CHECK(second.find("32 B / 4.0 KiB (1%)") != std::string::npos);
    CHECK(second.find("3 items / 8 items (38%)") != std::string::npos);
    // 1632 bytes written and 1600 read since the first: rates, not zero.
    const auto moved = rates_of(second, "events");
    REQUIRE(moved.size() == 4);
    for (int i : {0, 1}) {
        CHECK(moved[i].ends_with("B/s"));
        CHECK(moved[i] != "0 B/s");
    }
    // 3 items of 8 bytes queued, none taken.
    const auto queued = rates_of(second, "jobs");
    REQUIRE(queued.size() == 4);
    CHECK(queued[0] != "0 B/s");
    CHECK(queued[1] == "0 B/s");
    CHECK(queued[2].ends_with(" msg/s"));
    CHECK(queued[2] != "0.0 msg/s");
    CHECK(queued[3] == "0.0 msg/s");

    // Nothing moves before the third: every rate is zero.
    watch.send("");
    const std::string third = read_until(watch, "jobs");
    INFO(third);
    CHECK(rates_of(third, "events") == std::vector<std::string> {"0 B/s", "0 B/s", "0.0 msg/s", "0.0 msg/s"});
    CHECK(watch.wait() == 0);

    // --on-input without --count stops at the end of its input.
    Child stepped = test::spawn_helper("SHMLINK_TOOL", {"watch", file.path, "--on-input"});
    read_until(stepped, "jobs");
    CHECK(stepped.wait() == 0); // closes its stdin

    // Without --count it runs until interrupted, and then exits 0.
    Child endless = test::spawn_helper("SHMLINK_TOOL", {"watch", file.path});
    read_until(endless, "jobs");
    endless.kill(SIGINT);
    const int status = endless.wait();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    const auto [missing, missing_exit] = run_tool({"watch", "/dev/shm/shmlink-test-there-is-none", "--count", "1"});
    CHECK(missing_exit == 1);
    const auto [usage, usage_exit] = run_tool({"watch", file.path, "--interval", "0"});
    CHECK(usage_exit == 2);
}

TEST_CASE("watch counts an MPSC ring's rate per lane, also across a lane freed and taken again")
{
    const test::ShmPath file("tool-watch-mpsc");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    MpscRing ring = MpscRing::create(segment, "requests", 64 << 10, 2, {.reap_interval = std::chrono::milliseconds(0)});
    std::byte buffer[1024];
    std::size_t length = 0;
    const auto move_bytes = [&](MpscProducer& producer, int messages) {
        for (int i = 0; i < messages; ++i) {
            REQUIRE(producer.try_push(bytes_of(std::string(120, 'p'))) == RingStatus::ok); // 128-byte records
            REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
        }
    };
    // Refreshed on the test's word, after each step below.
    Child watch = test::spawn_helper("SHMLINK_TOOL", {"watch", file.path, "--on-input", "--count", "3"});
    read_until(watch, "requests");
    auto first = std::make_optional(MpscProducer::open(segment, "requests"));
    move_bytes(*first, 200); // 25,600 bytes on lane 0, which the second refresh sees
    watch.send("");
    read_until(watch, "requests");
    first.reset();
    // The consumer's next calls reap: lane 0 is freed, and its positions start again from 0.
    for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
         (ring.stats().draining != 0 || ring.stats().producers != 0) && std::chrono::steady_clock::now() < until;)
        ring.try_pop(buffer, length);
    MpscProducer second = MpscProducer::open(segment, "requests");
    REQUIRE(second.lane() == 0);
    move_bytes(second, 10); // 1,280 bytes, on lane 0 again, below where it stood
    watch.send("");
    const std::string third = read_until(watch, "requests");
    INFO(third);
    const auto rates = rates_of(third, "requests");
    REQUIRE(rates.size() == 4);
    for (const auto& rate : rates) {
        CHECK(rate != "-"); // a summed position would have gone back: no rate
        CHECK(rate != "0 B/s");
        CHECK(rate != "0.0 msg/s");
    }
    CHECK(watch.wait() == 0);
}

namespace {

/// The owner column of `path`'s line in ls's listing.
std::string owner_of(const std::string& listing, const std::string& path)
{
    std::istringstream line(line_of(listing, path));
    std::string name;
    std::string owner;
    line >> name >> owner;
    return owner;
}

bool is_socket(const std::string& path)
{
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

/// An echo host of tests/helpers/endpoint at `socket` and `segment`, killed
/// with SIGKILL once it is ready: what it leaves behind is its segment
/// and its socket file.
void leave_dead_host(const std::string& socket, const std::string& segment)
{
    Child host = test::spawn_helper("SHMLINK_ENDPOINT", {"host", socket, segment});
    REQUIRE(host.read_line() == "ready");
    host.kill(SIGKILL);
    const int status = host.wait();
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(std::filesystem::exists(segment));
    REQUIRE(is_socket(socket));
}

} // namespace

TEST_CASE("ls shows the owner's user name, and the uid of an owner the user database does not know")
{
    const ShmDir dir("owner");
    const std::string mine = dir.path + "/mine";
    const std::string nameless = dir.path + "/nameless";
    leave_dead_segment(mine);
    leave_dead_segment(nameless);
    constexpr uid_t kNoSuchUser = 54321;
    const bool can_chown = ::geteuid() == 0 && ::getpwuid(kNoSuchUser) == nullptr;
    if (can_chown)
        REQUIRE(::chown(nameless.c_str(), kNoSuchUser, static_cast<gid_t>(-1)) == 0);
    const auto [listing, ls_exit] = run_tool_within({"ls", dir.path});
    INFO(listing);
    CHECK(ls_exit == 0);
    CHECK(owner_of(listing, mine) == user_name(::geteuid()));
    if (::getpwuid(::geteuid()) != nullptr)
        CHECK(owner_of(listing, mine) != std::to_string(::geteuid())); // a name, not the number
    if (can_chown)
        CHECK(owner_of(listing, nameless) == std::to_string(kNoSuchUser));
    else
        MESSAGE("the uid fallback is not checked: only root can give a file to a uid without a name");
}

TEST_CASE("gc says \"nothing to remove\" when no segment's creator is gone")
{
    const ShmDir dir("gc-nothing");
    const auto [empty, empty_exit] = run_tool_within({"gc", dir.path, "--yes"});
    CHECK(empty_exit == 0);
    CHECK(empty == "nothing to remove\n");
    Segment live = Segment::create(dir.path + "/live", 1 << 16, {.cleanup = Cleanup::unlink_on_close});
    const auto [asked, asked_exit] = run_tool_within({"gc", dir.path}); // nothing to ask either
    CHECK(asked_exit == 0);
    CHECK(asked == "nothing to remove\n");
    leave_dead_segment(dir.path + "/dead");
    const auto [collected, gc_exit] = run_tool_within({"gc", dir.path, "--yes"});
    CHECK(gc_exit == 0);
    CHECK(collected == "removed " + dir.path + "/dead\n");
}

TEST_CASE("gc removes a killed host's segment and its stale socket; a live host's socket, a file and a link stay")
{
    const ShmDir dir("gc-host");
    const ShmDir sockets("gc-sockets"); // apart: gc finds the sockets by the segments' records alone
    const std::string stale = sockets.path + "/stale.sock";
    const std::string relisted = sockets.path + "/relisted.sock";
    const std::string file = sockets.path + "/file.sock";
    const std::string link = sockets.path + "/link.sock";
    for (const auto& socket : {stale, relisted, file, link})
        leave_dead_host(socket, dir.path + "/" + std::filesystem::path(socket).stem().string());
    // Another host listens at relisted.sock now (it replaced the stale socket itself).
    Child live = test::spawn_helper("SHMLINK_ENDPOINT", {"host", relisted, "-"});
    REQUIRE(live.read_line() == "ready");
    // Somebody else's regular file where file.sock was, and a symbolic link
    // to a stale socket where link.sock was.
    std::filesystem::remove(file);
    std::ofstream(file) << "not a socket";
    std::filesystem::rename(link, link + ".target");
    std::filesystem::create_symlink(link + ".target", link);

    const auto [listing, ls_exit] = run_tool_within({"ls", dir.path});
    INFO(listing);
    CHECK(line_of(listing, dir.path + "/stale").ends_with("  no (its lock is free)"));

    // Asked, and told which socket goes with the segment; "n" to each: all stays.
    const auto [asked, asked_exit] = run_tool({"gc", dir.path}, "n\nn\nn\nn");
    INFO(asked);
    CHECK(asked_exit == 0);
    CHECK(asked.find("remove " + dir.path + "/stale (creator ") != std::string::npos);
    CHECK(asked.find(" and its host's stale socket " + stale + "? [y/N] ") != std::string::npos);
    CHECK(asked.find("stale socket " + relisted) == std::string::npos);
    CHECK(is_socket(stale));

    const auto [collected, gc_exit] = run_tool_within({"gc", dir.path, "--yes"});
    INFO(collected);
    CHECK(gc_exit == 0);
    for (const char* name : {"stale", "relisted", "file", "link"}) {
        CAPTURE(name);
        CHECK(collected.find("removed " + dir.path + "/" + name + "\n") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(dir.path + "/" + name));
    }
    const auto kept = [&](const std::string& path, const std::string& segment, const std::string& why) {
        return collected.find("kept " + path + " (the socket " + dir.path + "/" + segment + "'s host recorded): " + why)
            != std::string::npos;
    };
    CHECK(collected.find("removed " + stale + " (the socket " + dir.path + "/stale's host left: nobody listens)")
        != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(stale));
    CHECK(kept(relisted, "relisted", "a host listens there"));
    CHECK(is_socket(relisted));
    CHECK(live.request("guests") == "ok guests=0"); // and it still serves
    CHECK(kept(file, "file", "it is a regular file, not a socket"));
    std::ifstream in(file);
    std::string content;
    std::getline(in, content);
    CHECK(content == "not a socket");
    CHECK(kept(link, "link", "it is a symbolic link, not a socket"));
    CHECK(std::filesystem::is_symlink(link));
    CHECK(is_socket(link + ".target"));

    const auto [again, again_exit] = run_tool_within({"gc", dir.path, "--yes"});
    CHECK(again == "nothing to remove\n");
}

TEST_CASE("the top-level --help names every subcommand and every option of each one's --help")
{
    const auto [top, top_exit] = run_tool({"--help"});
    INFO(top);
    CHECK(top_exit == 0);
    // The subcommands, as the top-level help lists them: one a line, indented by two.
    std::set<std::string> listed;
    const std::regex command_line("^  ([a-z]+) ");
    std::istringstream lines(top);
    for (std::string line; std::getline(lines, line);)
        if (std::smatch m; std::regex_search(line, m, command_line))
            listed.insert(m[1]);
    CHECK(listed == std::set<std::string> {"inspect", "ls", "gc", "watch", "bench"});
    const std::regex option("--[a-z][a-z-]*");
    std::size_t checked = 0;
    for (const auto& command : listed) {
        const auto [help, help_exit] = run_tool({command, "--help"});
        CAPTURE(command);
        INFO(help);
        CHECK(help_exit == 0);
        CHECK(help.find("usage: shmlink " + command) == 0);
        for (auto it = std::sregex_iterator(help.begin(), help.end(), option); it != std::sregex_iterator(); ++it) {
            const std::string name = it->str();
            CAPTURE(name);
            // As a word of its own: --json must not pass for --jsonl.
            CHECK(std::regex_search(top, std::regex("(^|[^a-z-])" + name + "([^a-z-]|$)")));
            ++checked;
        }
    }
    CHECK(checked >= 9); // --json --fd --yes --interval --count --quick --plot --only, and more
    const auto [version, version_exit] = run_tool({"--version"});
    CHECK(version_exit == 0);
    CHECK(version.rfind("shmlink ", 0) == 0);
}

namespace {

/// A rate column of watch ("80.0 msg/s", "1.2 k msg/s") as a number per second.
double per_second(const std::string& rate)
{
    char* end = nullptr;
    double value = std::strtod(rate.c_str(), &end);
    const std::string unit(end);
    if (unit.rfind(" k ", 0) == 0)
        value *= 1000;
    else if (unit.rfind(" M ", 0) == 0)
        value *= 1e6;
    return value;
}

/// The seconds a frame of watch says its rates were measured over.
double rates_over(const std::string& frame)
{
    const auto at = frame.find("rates over ");
    return at == std::string::npos ? 0 : std::strtod(frame.c_str() + at + 11, nullptr);
}

} // namespace

TEST_CASE("watch shows messages/s beside bytes/s, per ring and per lane, from the counts the rings keep")
{
    const test::ShmPath file("tool-watch-messages");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing events = SpscRing::create(segment, "events", 4096);
    MpscRing requests = MpscRing::create(segment, "requests", 4096, 2);
    // A ring whose producer and consumer do not count messages (a peer that
    // follows the layout without the counts): bytes moved, no message counted.
    SpscRing::create(segment, "uncounted", 256);
    auto& uncounted = *reinterpret_cast<ipc::SpscRingControl*>(segment.base() + segment.find("uncounted").offset);
    std::atomic_ref(uncounted.tail).store(64);
    std::atomic_ref(uncounted.head).store(64);
    SpscRing::create(segment, "zz-last", 256); // the last line of each frame

    Child watch = test::spawn_helper("SHMLINK_TOOL", {"watch", file.path, "--on-input", "--count", "2"});
    read_until(watch, "zz-last");
    // Between the two refreshes: 40 messages into events, 25 of them read
    // one by one; 30 through a lane of requests, all read in one consume().
    for (int i = 0; i < 40; ++i)
        REQUIRE(events.try_push(bytes_of("sixteen bytes!!!")) == RingStatus::ok);
    std::byte buffer[64];
    std::size_t length = 0;
    for (int i = 0; i < 25; ++i)
        REQUIRE(events.try_pop(buffer, length) == RingStatus::ok);
    MpscProducer producer = MpscProducer::open(segment, "requests");
    for (int i = 0; i < 30; ++i)
        REQUIRE(producer.try_push(bytes_of("request")) == RingStatus::ok);
    REQUIRE(requests.consume([](std::span<const std::byte>) {}, 64) == 30); // counted as a batch
    // At least half a second between the refreshes (a lower bound, which no
    // load can break): tens of messages a second, printed to a tenth, give
    // the counts back exactly. The second refresh comes on the test's word.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    watch.send("");
    const std::string second = read_until(watch, "zz-last");
    INFO(second);
    CHECK(watch.wait() == 0);
    const double seconds = rates_over(second);
    REQUIRE(seconds >= 0.5);
    // The rates times the interval give back the counts (to a tenth of a message per second).
    const auto count = [&](const std::string& rate) { return std::lround(per_second(rate) * seconds); };
    const auto ring = rates_of(second, "events");
    REQUIRE(ring.size() == 4);
    CHECK(count(ring[2]) == 40);
    CHECK(count(ring[3]) == 25);
    CHECK(ring[0].ends_with("B/s")); // 40 records of 24 bytes in, 25 out
    CHECK(ring[0] != "0 B/s");
    const auto summed = rates_of(second, "requests");
    REQUIRE(summed.size() == 4);
    CHECK(count(summed[2]) == 30);
    CHECK(count(summed[3]) == 30);
    const auto lane = rates_of(second, "  lane " + std::to_string(producer.lane()) + " pid " + std::to_string(::getpid()));
    REQUIRE(lane.size() == 4);
    CHECK(count(lane[2]) == 30);
    CHECK(count(lane[3]) == 30);
    const auto not_counted = rates_of(second, "uncounted");
    CHECK(not_counted == std::vector<std::string> {"0 B/s", "0 B/s", "-", "-"});
}

TEST_CASE("inspect and ls show the guests of a live host, through its socket and by path, with their pids")
{
    const ShmDir dir("guests");
    const std::string socket = dir.path + "/host.sock";
    const std::string segment = dir.path + "/segment";
    Child host = test::spawn_helper("SHMLINK_ENDPOINT", {"host", socket, segment});
    REQUIRE(host.read_line() == "ready");
    Child by_socket = test::spawn_helper("SHMLINK_ENDPOINT", {"idle-guest", socket});
    const std::string socket_lane = by_socket.read_line();
    Child by_path = test::spawn_helper("SHMLINK_ENDPOINT", {"idle-guest", "--path", segment});
    const std::string path_lane = by_path.read_line();
    REQUIRE(socket_lane.rfind("ok lane=", 0) == 0);
    REQUIRE(path_lane.rfind("ok lane=", 0) == 0);
    const std::string lane_of_socket_guest = socket_lane.substr(8);
    const std::string lane_of_path_guest = path_lane.substr(8);
    CHECK(lane_of_socket_guest != lane_of_path_guest);

    const auto [text, text_exit] = run_tool_within({"inspect", segment});
    INFO(text);
    CHECK(text_exit == 0);
    CHECK(text.find("8 lanes of 65536 bytes, 2 owned;") != std::string::npos);
    CHECK(text.find("lane " + lane_of_socket_guest + " owned (pid " + std::to_string(by_socket.pid()) + "): ")
        != std::string::npos);
    CHECK(text.find("lane " + lane_of_path_guest + " owned (pid " + std::to_string(by_path.pid()) + "): ")
        != std::string::npos);
    CHECK(text.find("host.socket              host socket") != std::string::npos);
    CHECK(text.find("the host listens at " + socket) != std::string::npos);
    const auto [json, json_exit] = run_tool_within({"inspect", segment, "--json"});
    INFO(json);
    CHECK(json.find("{\"lane\": " + lane_of_socket_guest + ", \"state\": \"owned\", \"pid\": "
        + std::to_string(by_socket.pid())) != std::string::npos);
    CHECK(json.find("{\"lane\": " + lane_of_path_guest + ", \"state\": \"owned\", \"pid\": "
        + std::to_string(by_path.pid())) != std::string::npos);
    CHECK(json.find("\"host_socket\": \"" + socket + "\"") != std::string::npos);

    const auto [listing, ls_exit] = run_tool_within({"ls", dir.path});
    INFO(listing);
    CHECK(ls_exit == 0);
    CHECK(line_of(listing, segment).ends_with(ls_tail(host.pid(), 2, "yes (its lock is held)")));
    // The path guest leaves: one lane is attached.
    by_path.send("bye");
    CHECK(by_path.wait() == 0);
    const auto [later, later_exit] = run_tool_within({"ls", dir.path});
    INFO(later);
    CHECK(line_of(later, segment).ends_with(ls_tail(host.pid(), 1, "yes (its lock is held)")));
    by_socket.send("bye");
    CHECK(by_socket.wait() == 0);
    host.send("quit");
    CHECK(host.wait() == 0);
}

namespace {

/// COMPREPLY, one a line, after the completion of `words` (the last is the
/// word being completed) by tools/shmlink.bash-completion in bash.
std::string complete(const std::vector<std::string>& words)
{
    std::vector<std::string> argv {"/bin/bash", "-c",
        R"(source "$0" && COMP_WORDS=("$@") && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && _shmlink && for word in "${COMPREPLY[@]}"; do echo "$word"; done)",
        test::helper_path("SHMLINK_COMPLETION")};
    argv.insert(argv.end(), words.begin(), words.end());
    Child bash = Child::spawn(argv);
    const auto [out, exit_code] = test::read_all(bash);
    CHECK(exit_code == 0);
    return out;
}

} // namespace

TEST_CASE("bash completes subcommands, their options and segment paths")
{
    if (::access("/bin/bash", X_OK) != 0) {
        MESSAGE("skipped: no /bin/bash");
        return;
    }
    CHECK(complete({"shmlink", "ins"}) == "inspect\n");
    CHECK(complete({"shmlink", "w"}) == "watch\n");
    const std::string commands = complete({"shmlink", ""});
    for (const char* command : {"inspect\n", "ls\n", "gc\n", "watch\n", "bench\n", "--version\n"})
        CHECK(commands.find(command) != std::string::npos);
    const std::string watch_options = complete({"shmlink", "watch", "/dev/shm/x", "--"});
    CHECK(watch_options.find("--count\n") != std::string::npos);
    CHECK(watch_options.find("--interval\n") != std::string::npos);
    CHECK(complete({"shmlink", "gc", "--y"}) == "--yes\n");
    CHECK(complete({"shmlink", "inspect", "--j"}) == "--json\n");
    CHECK(complete({"shmlink", "watch", "/dev/shm/x", "--count", ""}).empty()); // a number: nothing to offer

    const test::ShmPath file("tool-complete");
    Segment segment = Segment::create(file.path, 1 << 16, {.cleanup = Cleanup::unlink_on_close});
    const std::string prefix = file.path.substr(0, file.path.size() - 3);
    CHECK(complete({"shmlink", "inspect", prefix}) == file.path + "\n");
    CHECK(complete({"shmlink", "watch", prefix}) == file.path + "\n");
    CHECK(complete({"shmlink", "gc", ""}).rfind("/dev/shm\n", 0) == 0);
}

TEST_CASE("ring_bench runs the rounds --rounds asks for, and refuses a count that is not one")
{
    const char* dir = std::getenv("SHMLINK_BENCH_DIR");
    REQUIRE(dir != nullptr);
    const std::string program = std::string(dir) + "/ring_bench";
    for (const char* bad : {"0", "-1", "two", "3x", "1001"}) {
        CAPTURE(bad);
        Child child = Child::spawn({program, "--rounds", bad});
        CHECK(test::read_all(child).second == 2);
    }
    Child help = Child::spawn({program, "--help"});
    const auto [usage, help_exit] = test::read_all(help);
    CHECK(help_exit == 0);
    CHECK(usage.find("--rounds N") != std::string::npos);

    // One cheap peer in 2 rounds of 8 trials: each trial's median is kept, and ratios without both peers are n/a.
    const std::string json = "/tmp/shmlink-test-" + std::to_string(::getpid()) + "-rounds.json";
    Child bench = Child::spawn({program, "--rounds", "2", "--only", "cache-line", "--json", json});
    const auto [out, exit_code] = test::read_all(bench);
    INFO(out);
    CHECK(exit_code == 0);
    CHECK(out.find("16 trials (2 rounds of 8)") != std::string::npos);
    CHECK(out.find("n/a") != std::string::npos);
    const auto [check, check_exit] = run_python(R"py(
import json, sys
rings = json.load(open(sys.argv[1]))
assert rings["rounds"] == 2 and rings["trials_per_round"] == 8 and rings["throughput"] == []
[latency] = rings["latency"]
assert latency["peer"] == "cache-line ping-pong (floor)" and len(latency["trials"]) == 16, latency
assert all(r["value"] is None and r["trials"] == [] for r in rings["ratios"])
print("ok")
)py", {json});
    std::filesystem::remove(json);
    INFO(check);
    CHECK(check_exit == 0);
}

TEST_CASE("bench --quick runs every benchmark, writes valid JSON and an SVG plot of every peer")
{
    const std::string dir = "/tmp/shmlink-test-" + std::to_string(::getpid()) + "-bench";
    std::filesystem::create_directory(dir);
    const struct RemoveDir {
        std::string path;
        ~RemoveDir() { std::filesystem::remove_all(path); }
    } remove_dir {dir};
    const std::string json = dir + "/report.json";
    const std::string svg = dir + "/plot.svg";
    // Bounded by work, not time: --quick counts and one round of the ring
    // peers. Beside busy processes the pinned pairs take many times as long
    // as on a quiet machine (a quiet run takes about 30 s), so the bound is
    // only for a hang, which each benchmark's own watchdog ends first.
    const auto [out, exit_code]
        = run_tool({"bench", "--quick", "--rounds", "1", "--json", json, "--plot", svg}, {}, std::chrono::minutes(12));
    INFO(out);
    CHECK(exit_code == 0);
    CHECK(out.find("ratios against the project's targets") != std::string::npos);
    CHECK(out.find("MPMC queue throughput") != std::string::npos);
    CHECK(out.find("segment lifecycle") != std::string::npos);
    CHECK(out.find("publish/subscribe (topic) beside the SPSC ring") != std::string::npos);
    CHECK(out.find("8 producer processes sharing CPU 0") != std::string::npos);
    // A ratio without a target is context: it can be neither met nor missed.
    std::istringstream lines(out);
    std::size_t context = 0;
    for (std::string line; std::getline(lines, line);) {
        if (line.find("(context)") == std::string::npos)
            continue;
        ++context;
        CAPTURE(line);
        CHECK(line.find("MISSED") == std::string::npos);
        CHECK(line.find("met") == std::string::npos);
    }
    CHECK(context == 3);

    // Parsed by a real JSON and XML parser; every peer measured is in both.
    const auto [check, check_exit] = run_python(R"py(
import json, sys, xml.etree.ElementTree as ET
report = json.load(open(sys.argv[1]))
rings, segments = report["rings"], report["segments"]
assert report["machine"]["cpus"] >= 1
peers = {r["peer"] for r in rings["throughput"]} | {r["peer"] for r in rings["latency"]}
assert rings["rounds"] == 1, rings["rounds"]  # --rounds 1
trials = rings["rounds"] * rings["trials_per_round"]
assert all(r["bytes_per_second"] > 0 for r in rings["throughput"]), "a throughput is missing"
for r in rings["throughput"]:
    values = sorted(r["trials_messages_per_second"])
    assert len(values) == trials, r
    assert values[0] == r["min_messages_per_second"] and values[-1] == r["max_messages_per_second"], r
    assert r["min_messages_per_second"] <= r["p10_messages_per_second"] <= r["messages_per_second"], r
    assert r["messages_per_second"] <= r["p90_messages_per_second"] <= r["max_messages_per_second"], r
    middle = (values[trials // 2 - 1] + values[trials // 2]) / 2  # 6 digits in the JSON
    assert abs(middle - r["messages_per_second"]) <= 1e-5 * middle, r
for r in rings["latency"]:
    assert r["median_ns"] <= r["p90_ns"] <= r["p99_ns"] <= r["p999_ns"], r
    assert len(r["trials"]) == trials, r
    assert r["min_median_ns"] <= r["p10_median_ns"] <= r["median_ns"] <= r["p90_median_ns"] <= r["max_median_ns"], r
sizes = {(r["peer"], r["message_bytes"]) for r in rings["throughput"]}
for peer in ["shmlink reserve/commit", "shmlink MPSC 1 lane", "shmlink MPSC 8 lanes", "shmlink MPSC 64 lanes"]:
    assert (peer, 8) in sizes and (peer, 64) in sizes, peer
assert ("shmlink MPSC 8 producers", 64) in sizes
targets = [(r["name"], r["comparison"], r["target"]) for r in rings["ratios"] if not r["context"]]
assert targets == [
    ("SPSC 8B try_push/consume / reference ring", ">=", 0.9),
    ("SPSC 64B try_push/consume / reference ring", ">=", 0.9),
    ("SPSC 8B reserve/commit / reference ring", ">=", 0.9),
    ("SPSC 64B reserve/commit / reference ring", ">=", 0.9),
    ("spin round trip / cache-line ping-pong", "<=", 1.3),
    ("MPSC spin round trip / cache-line ping-pong", "<=", 1.3),
    ("block round trip / futex ping-pong", "<=", 1.05),
    ("spin_then_block round trip / cache-line ping-pong", "<=", 1.5),
    ("MPSC 64 lanes / MPSC 1 lane (64B)", ">=", 0.9),
    ("MPSC 8 producers / MPSC 1 lane (64B)", ">=", 0.9),
], targets
context = [r for r in rings["ratios"] if r["context"]]
assert [r["name"] for r in context] == ["SPSC 64B / pipe", "SPSC 64B / Boost message_queue",
    "64 KiB reserve/commit / memcpy"], context
assert all(r["target"] is None and r["met"] is None for r in context)
for r in rings["ratios"]:
    assert len(r["trials"]) == trials and r["median"] == r["value"] > 0, r
    assert r["min"] <= r["p10"] <= r["median"] <= r["p90"] <= r["max"], r
assert [s["size_bytes"] for s in segments["sizes"]] == [1 << 20, 16 << 20]
mpmc = report["mpmc"]
assert len(mpmc["throughput"]) == 16 and all(r["items_per_second"] > 0 for r in mpmc["throughput"])
assert len(mpmc["ratios"]) == 8 and all(r["value"] > 0 for r in mpmc["ratios"])
topics = report["topics"]
assert topics["trials"] == 3, topics["trials"]  # --quick
names = {f["name"] for f in topics["figures"]}
for size in ["64 B", "4 KiB", "64 KiB", "1 MiB", "4 MiB"]:
    for payload in ["untouched", "written+read"]:
        for peer in ["topic", "SPSC ring"]:
            assert "round trip %s, %s: %s" % (size, payload, peer) in names, (size, payload, peer)
for f in topics["figures"]:
    assert len(f["trials"]) == 3 and all(v > 0 for v in f["trials"]), f
    assert min(f["trials"]) <= f["p10"] <= f["median"] <= f["p90"] <= max(f["trials"]), f
assert len(topics["ratios"]) == 9 and all(r["median"] > 0 and r["met"] in (True, False) for r in topics["ratios"])
svg = ET.parse(sys.argv[2]).getroot()
titles = " ".join(t.text for t in svg.iter("{http://www.w3.org/2000/svg}title"))
missing = [p for p in peers if p not in titles]
assert not missing, missing
lines = list(svg.iter("{http://www.w3.org/2000/svg}polyline"))
assert len(lines) == len({r["peer"] for r in rings["throughput"]})
print("ok peers=%d" % len(peers))
)py", {json, svg});
    INFO(check);
    CHECK(check_exit == 0);
    CHECK(check.find("ok peers=") != std::string::npos);

    const auto [bad, bad_exit] = run_tool({"bench", "--plot", dir + "/plot.gif"});
    CHECK(bad_exit == 2);
    for (const char* rounds : {"0", "1001", "two"}) {
        CAPTURE(rounds);
        CHECK(run_tool({"bench", "--rounds", rounds}).second == 2);
    }
    // --rounds reaches ring_bench: one round of one cheap peer.
    const std::string one_round = dir + "/one-round.json";
    const auto [round_out, round_exit] = run_tool({"bench", "--rounds", "1", "--only", "cache-line", "--json", one_round});
    INFO(round_out);
    CHECK(round_exit == 0);
    CHECK(round_out.find("8 trials (1 round of 8)") != std::string::npos);

    // PNG goes through rsvg-convert when it is installed, and is a clear error when not.
    const std::string png = dir + "/plot.png";
    const bool converter = std::system("command -v rsvg-convert >/dev/null 2>&1") == 0;
    const auto [png_out, png_exit] = run_tool({"bench", "--quick", "--only", "pipe", "--plot", png});
    if (converter) {
        CHECK(png_exit == 0);
        std::ifstream in(png, std::ios::binary);
        char signature[8] = {};
        in.read(signature, sizeof(signature));
        CHECK(std::string(signature, 8) == "\x89PNG\r\n\x1a\n");
    } else {
        CHECK(png_exit == 1);
        CHECK_FALSE(std::filesystem::exists(png));
    }
    std::filesystem::remove_all(dir);
}
