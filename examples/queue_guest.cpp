// A guest of the main demo (examples/queue_host): it joins the host through
// its socket, sends COUNT messages of 64 bytes into the host's inbox, and
// waits for the host's thanks on its own ring.
//
//   queue_guest SOCKET NAME COUNT
#include <shmlink/transport/guest.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv)
try {
    using namespace std::chrono_literals;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc != 4) {
        std::fprintf(stderr, "usage: queue_guest SOCKET NAME COUNT\n");
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
