// The main demo: a host and three guest processes exchanging messages
// through rings in a shared segment. The host listens on a Unix socket; each
// guest (examples/queue_guest) connects, receives the segment's fd in the
// welcome (SCM_RIGHTS), and sends its messages into the host's inbox, an
// MPSC ring with a lane per guest. The host consumes them with a blocking
// wait (it sleeps on a futex when the inbox is empty), checks each guest's
// order, thanks each guest through its own ring, and prints what flowed.
//
//   queue_host [MESSAGES_PER_GUEST]
#include <shmlink/transport/host.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace {

constexpr int kGuests = 3;
constexpr std::size_t kMessageBytes = 64;

/// A guest process (examples/queue_guest, beside this program), reaped
/// exactly once: finish() waits for it until a deadline and kills it past
/// that; one still running when its owner goes (an error on the way) is
/// killed and reaped then.
class GuestProcess {
public:
    explicit GuestProcess(const std::vector<std::string>& args)
    {
        const auto program = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "queue_guest";
        std::vector<std::string> words {program.string()};
        words.insert(words.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& w : words)
            argv.push_back(w.data());
        argv.push_back(nullptr);
        if (const int rc = ::posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ); rc != 0)
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

    for (const auto& [lane, count] : next) {
        const std::string thanks = "thanks for " + std::to_string(count) + " messages";
        host.send(lane, std::as_bytes(std::span(thanks))); // its ring is empty: it fits
    }
    int failed = 0;
    const auto until = std::chrono::steady_clock::now() + 30s;
    for (GuestProcess& guest : guests)
        failed += !guest.finish(until, [&] { io.run_for(10ms); }); // the host serves their goodbyes meanwhile

    std::printf("host: %llu messages of %zu bytes from %d guests in %.3f s: %.2f M messages/s, %.0f MB/s, %s\n",
        static_cast<unsigned long long>(total), kMessageBytes, kGuests, seconds, static_cast<double>(total) / seconds / 1e6,
        static_cast<double>(total * kMessageBytes) / seconds / 1e6,
        in_order ? "every guest's messages in order" : "OUT OF ORDER");
    const bool ok = in_order && failed == 0 && total == kGuests * per_guest;
    std::printf("host: %s\n", ok ? "done" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "queue_host: %s\n", e.what());
    return 1;
}
