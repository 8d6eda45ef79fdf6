// The main demo: a host and three guest processes exchanging messages
// through rings in a shared segment. The host listens on a Unix socket; each
// guest (examples/queue_guest) connects, receives the segment's fd in the
// welcome (SCM_RIGHTS), and sends its messages into the host's inbox, an
// MPSC ring with a lane per guest. The host consumes them with a blocking
// wait (it sleeps on a futex when the inbox is empty), checks each guest's
// order, thanks each guest through its own ring, and prints what flowed.
// Then it measures a pipe doing the same job, in the same run: three guests
// (queue_guest --pipe) each write the same 64-byte messages into a pipe of
// its own, and the host waits in poll() and reads them; it prints their rate
// and how many times that the rings did.
//
//   queue_host [MESSAGES_PER_GUEST]     (through the pipes, a quarter of that each)
#include <shmlink/transport/host.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace {

constexpr int kGuests = 3;
constexpr std::size_t kMessageBytes = 64;
constexpr std::uint64_t kPipeShare = 4; // through the pipes, each guest sends 1/kPipeShare of its count

/// A guest process (examples/queue_guest, beside this program), reaped
/// exactly once: finish() waits for it until a deadline and kills it past
/// that; one still running when its owner goes (an error on the way) is
/// killed and reaped then.
class GuestProcess {
public:
    /// Starts a guest with `args`; `pass_fd`, unless -1, stays open in it at
    /// the same number (every fd of ours is close-on-exec, and this one alone
    /// is dup2'ed onto itself, which clears that in the guest only).
    explicit GuestProcess(const std::vector<std::string>& args, int pass_fd = -1)
    {
        const auto program = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "queue_guest";
        std::vector<std::string> words {program.string()};
        words.insert(words.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& w : words)
            argv.push_back(w.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        if (const int rc = ::posix_spawn_file_actions_init(&actions); rc != 0)
            throw std::system_error(rc, std::system_category(), "posix_spawn_file_actions_init");
        int rc = pass_fd < 0 ? 0 : ::posix_spawn_file_actions_adddup2(&actions, pass_fd, pass_fd);
        if (rc == 0)
            rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
        ::posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::system_error(rc, std::system_category(), "spawn " + words[0]);
    }
    GuestProcess(GuestProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
    GuestProcess& operator=(GuestProcess&&) = delete;
    ~GuestProcess()
    {
        if (pid_ > 0)
            kill_and_reap();
    }

    /// Whether the guest exited with status 0 by `deadline`. While it runs,
    /// calls `idle` (which should return within milliseconds) between looks.
    template <typename Idle>
    bool finish(std::chrono::steady_clock::time_point deadline, Idle&& idle)
    {
        for (;;) {
            int status = 0;
            const pid_t done = ::waitpid(pid_, &status, WNOHANG);
            if (done < 0 && errno == EINTR)
                continue;
            if (done < 0)
                throw std::system_error(errno, std::system_category(), "waitpid " + std::to_string(pid_));
            if (done == pid_) {
                const pid_t pid = std::exchange(pid_, -1);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                    return true;
                std::fprintf(stderr, "host: guest (pid %d) %s %d\n", pid,
                    WIFEXITED(status) ? "exited with" : "was killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                return false;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                std::fprintf(stderr, "host: guest (pid %d) still running at its deadline; killed\n", pid_);
                kill_and_reap();
                return false;
            }
            idle();
        }
    }

private:
    void kill_and_reap() noexcept
    {
        // Neither can fail for a child not reaped yet: its pid is still ours.
        ::kill(pid_, SIGKILL);
        while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
        }
        pid_ = -1;
    }

    pid_t pid_ = -1;
};

/// What the pipes carried, whether every guest's messages came whole and in
/// order, and how many guests did not exit cleanly.
struct PipeRun {
    std::uint64_t messages = 0;
    double seconds = 0;
    bool in_order = true;
    int failed = 0;
};

/// The rings' job done with pipes: kGuests guests (queue_guest --pipe) each
/// write `per_guest` messages into a pipe of its own, one write() per
/// message; the host sleeps in poll() and reads whatever each pipe holds.
/// Throws when a call fails or the messages have not all come in 60 s.
PipeRun run_over_pipes(std::uint64_t per_guest)
{
    using namespace std::chrono_literals;
    std::vector<shmlink::UniqueFd> read_ends;
    std::vector<GuestProcess> guests;
    for (int i = 0; i < kGuests; ++i) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::system_category(), "pipe2");
        shmlink::UniqueFd read_end(fds[0]);
        // Our copy closes once the guest has its own: its exit is then the pipe's end of file.
        const shmlink::UniqueFd write_end(fds[1]);
        guests.emplace_back(std::vector<std::string> {"--pipe", std::to_string(fds[1]), std::to_string(per_guest)},
            write_end.get());
        read_ends.push_back(std::move(read_end));
    }

    // Per guest: a pipe's worth of bytes read, the start of a message that a
    // read() cut (kept for the next one), and the sequence number expected next.
    struct Stream {
        std::vector<std::byte> bytes = std::vector<std::byte>(65536);
        std::size_t held = 0;
        std::uint64_t next = 0;
    };
    std::vector<Stream> streams(kGuests);
    std::vector<pollfd> polled;
    for (const shmlink::UniqueFd& fd : read_ends)
        polled.push_back({.fd = fd.get(), .events = POLLIN, .revents = 0});
    PipeRun run;
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + 60s;
    for (int open = kGuests; open > 0;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left <= 0ms)
            throw std::runtime_error("pipes: " + std::to_string(run.messages) + " of " +
                std::to_string(kGuests * per_guest) + " messages in 60 s");
        const int ready = ::poll(polled.data(), polled.size(), static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            throw std::system_error(errno, std::system_category(), "poll the guests' pipes");
        for (std::size_t i = 0; i < polled.size(); ++i) {
            if (polled[i].revents == 0)
                continue;
            Stream& stream = streams[i];
            const ssize_t n = ::read(polled[i].fd, stream.bytes.data() + stream.held, stream.bytes.size() - stream.held);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                throw std::system_error(errno, std::system_category(), "read guest " + std::to_string(i + 1) + "'s pipe");
            if (n == 0) { // the guest closed its end: no part of a message may be left over
                run.in_order = run.in_order && stream.held == 0;
                read_ends[i].reset();
                polled[i].fd = -1; // poll() skips it from now on
                --open;
                continue;
            }
            const std::size_t bytes = stream.held + static_cast<std::size_t>(n);
            std::size_t at = 0;
            for (; bytes - at >= kMessageBytes; at += kMessageBytes) {
                std::uint64_t seq = 0;
                std::memcpy(&seq, stream.bytes.data() + at, sizeof(seq));
                run.in_order = run.in_order && seq == stream.next++;
            }
            run.messages += at / kMessageBytes;
            stream.held = bytes - at;
            std::memmove(stream.bytes.data(), stream.bytes.data() + at, stream.held);
        }
    }
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto until = std::chrono::steady_clock::now() + 30s;
    for (GuestProcess& guest : guests)
        run.failed += !guest.finish(until, [] { std::this_thread::sleep_for(10ms); });
    return run;
}

} // namespace

int main(int argc, char** argv)
try {
    using namespace std::chrono_literals;
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // lines in order with the guests' even into a pipe
    const std::uint64_t per_guest = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1'000'000;
    const std::string socket = "/tmp/shmlink-demo-" + std::to_string(::getpid()) + ".sock";

    boost::asio::io_context io;
    shmlink::Host host(io, {.socket_path = socket, .max_guests = kGuests});
    std::printf("host: segment of %zu bytes (memfd), listening on %s\n", host.segment().size_bytes(), socket.c_str());
    host.on_join = [](const shmlink::GuestInfo& g) {
        std::printf("host: guest '%s' (pid %d) joined; its fd came in the welcome\n", g.name.c_str(), g.peer.pid);
    };

    std::vector<GuestProcess> guests;
    for (int i = 0; i < kGuests; ++i)
        guests.emplace_back(std::vector<std::string> {socket, "guest-" + std::to_string(i + 1), std::to_string(per_guest)});

    // Per lane: the next sequence number each guest's messages must carry.
    std::map<std::uint32_t, std::uint64_t> next;
    std::uint64_t total = 0;
    bool in_order = true;
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + 120s;
    while (total < kGuests * per_guest && in_order && std::chrono::steady_clock::now() < deadline) {
        io.poll(); // joins and leaves
        shmlink::RingStatus status = shmlink::RingStatus::ok;
        total += host.inbox().consume(
            [&](std::uint32_t lane, std::span<const std::byte> message) {
                std::uint64_t seq = 0;
                std::memcpy(&seq, message.data(), sizeof(seq));
                in_order = in_order && message.size() == kMessageBytes && seq == next[lane]++;
            },
            4096, &status);
        if (status == shmlink::RingStatus::empty)
            host.inbox().wait_readable(10ms); // spins briefly, then sleeps on the futex
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rings_rate = static_cast<double>(total) / seconds;

    for (const auto& [lane, count] : next) {
        const std::string thanks = "thanks for " + std::to_string(count) + " messages";
        host.send(lane, std::as_bytes(std::span(thanks))); // its ring is empty: it fits
    }
    int failed = 0;
    const auto until = std::chrono::steady_clock::now() + 30s;
    for (GuestProcess& guest : guests)
        failed += !guest.finish(until, [&] { io.run_for(10ms); }); // the host serves their goodbyes meanwhile

    std::printf("host: %llu messages of %zu bytes from %d guests in %.3f s: %.2f M messages/s, %.0f MB/s, %s\n",
        static_cast<unsigned long long>(total), kMessageBytes, kGuests, seconds, rings_rate / 1e6,
        static_cast<double>(total * kMessageBytes) / seconds / 1e6,
        in_order ? "every guest's messages in order" : "OUT OF ORDER");

    // Pipes move fewer messages a second: a share of the count keeps their run short.
    const std::uint64_t pipe_per_guest = std::max<std::uint64_t>(per_guest / kPipeShare, 1);
    const PipeRun pipes = run_over_pipes(pipe_per_guest);
    const bool pipes_ok = pipes.in_order && pipes.failed == 0 && pipes.messages == kGuests * pipe_per_guest;
    const double pipes_rate = static_cast<double>(pipes.messages) / pipes.seconds;
    if (pipes_ok)
        std::printf("host: the same %zu-byte messages through pipes, %llu from %d guests in %.3f s: %.2f M messages/s; "
                    "shmlink's rings did %.1fx that\n",
            kMessageBytes, static_cast<unsigned long long>(pipes.messages), kGuests, pipes.seconds, pipes_rate / 1e6,
            rings_rate / pipes_rate);
    else
        std::printf("host: the same %zu-byte messages through pipes: %llu of %llu, %s, %d of %d guests failed\n", kMessageBytes,
            static_cast<unsigned long long>(pipes.messages), static_cast<unsigned long long>(kGuests * pipe_per_guest),
            pipes.in_order ? "in order" : "OUT OF ORDER", pipes.failed, kGuests);
    const bool ok = in_order && failed == 0 && total == kGuests * per_guest && pipes_ok;
    std::printf("host: %s\n", ok ? "done" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "queue_host: %s\n", e.what());
    return 1;
}
