// A guest of the main demo (examples/queue_host): it joins the host through
// its socket, sends COUNT messages of 64 bytes into the host's inbox, and
// waits for the host's thanks on its own ring. With --pipe it does the same
// job over a pipe instead, for the host's comparison: COUNT messages of 64
// bytes written into the pipe's end at fd FD, then it closes it and exits.
//
//   queue_guest SOCKET NAME COUNT
//   queue_guest --pipe FD COUNT
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/transport/guest.hpp>

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// One write() per message, as the rings take one send() per message; a
// pipe's writes of up to PIPE_BUF bytes are atomic, so none is cut short.
int send_into_pipe(shmlink::UniqueFd pipe, std::uint64_t count)
{
    std::byte message[64] = {};
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        std::memcpy(message, &seq, sizeof(seq));
        ssize_t written = 0;
        do
            written = ::write(pipe.get(), message, sizeof(message));
        while (written < 0 && errno == EINTR);
        if (written != static_cast<ssize_t>(sizeof(message))) {
            std::fprintf(stderr, "queue_guest --pipe: write %llu: %s\n", static_cast<unsigned long long>(seq),
                written < 0 ? std::strerror(errno) : "cut short");
            return 1;
        }
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
try {
    using namespace std::chrono_literals;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc == 4 && std::strcmp(argv[1], "--pipe") == 0) {
        char* end = nullptr;
        const long fd = std::strtol(argv[2], &end, 10);
        if (end != argv[2] && *end == '\0' && fd >= 0 && fd <= INT_MAX)
            return send_into_pipe(shmlink::UniqueFd(static_cast<int>(fd)), std::strtoull(argv[3], nullptr, 10));
    }
    if (argc != 4 || std::strcmp(argv[1], "--pipe") == 0) {
        std::fprintf(stderr, "usage: queue_guest SOCKET NAME COUNT\n       queue_guest --pipe FD COUNT\n");
        return 2;
    }
    const std::uint64_t count = std::strtoull(argv[3], nullptr, 10);
    shmlink::Guest guest = shmlink::Guest::connect(argv[1], {.name = argv[2]});

    std::byte message[64] = {};
    std::error_code host_error;
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        std::memcpy(message, &seq, sizeof(seq));
        // Waits (spinning, then asleep on a futex) while the lane is full,
        // and gives up at once when the host is gone.
        if (const auto status = guest.send(message, 10s, host_error); status != shmlink::RingStatus::ok) {
            std::fprintf(stderr, "%s: send %llu: %s%s%s\n", argv[2], static_cast<unsigned long long>(seq),
                shmlink::to_string(status), host_error ? ", the host is gone: " : "",
                host_error ? host_error.message().c_str() : "");
            return 1;
        }
    }
    char thanks[128];
    std::size_t length = 0;
    const auto status = guest.receive(std::as_writable_bytes(std::span(thanks)), length, 30s, host_error);
    if (status != shmlink::RingStatus::ok) {
        std::fprintf(stderr, "%s: no thanks: %s %s\n", argv[2], shmlink::to_string(status), host_error.message().c_str());
        return 1;
    }
    std::printf("%s: sent %llu messages on lane %u; the host says \"%.*s\"\n", argv[2],
        static_cast<unsigned long long>(count), guest.lane(), static_cast<int>(length), thanks);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "queue_guest: %s\n", e.what());
    return 1;
}
