// The host of docs/guide.md: it creates a segment at a path, lets guests in
// through a Unix socket, and answers every message a guest sends with an
// echo on that guest's own ring. It serves GUESTS guests, one after another
// or side by side, and exits when they have all left.
//
//   echo_host SOCKET SEGMENT_PATH GUESTS
#include <shmlink/transport/host.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

int main(int argc, char** argv)
try {
    using namespace std::chrono_literals;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc != 4) {
        std::fprintf(stderr, "usage: echo_host SOCKET SEGMENT_PATH GUESTS\n");
        return 2;
    }
    const int expected = std::atoi(argv[3]);

    // guide: host
    boost::asio::io_context io;
    shmlink::Host host(io, {.socket_path = argv[1], .segment_path = argv[2], .max_guests = 4});
    int joined = 0;
    int left = 0;
    std::map<std::uint32_t, std::uint64_t> dropped; // per lane: echoes its guest did not make room for
    host.on_join = [&](const shmlink::GuestInfo& guest) {
        ++joined;
        std::printf("host: %s joined (pid %d)\n", guest.name.c_str(), guest.peer.pid);
    };
    host.on_leave = [&](const shmlink::GuestInfo& guest) {
        ++left;
        std::printf("host: %s left (%llu echoes dropped)\n", guest.name.c_str(),
            static_cast<unsigned long long>(dropped[guest.lane]));
        dropped.erase(guest.lane);
    };
    // guide: end

    // guide: serve
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (left < expected && std::chrono::steady_clock::now() < deadline) {
        io.poll(); // accepts, welcomes, notices leaves
        const std::size_t echoed = host.inbox().consume(
            [&](std::uint32_t lane, std::span<const std::byte> message) {
                // Each guest has its own lane of the inbox, and its own ring back.
                // send() never waits: a guest that stops reading loses its own
                // echoes, and every other guest is served as before.
                if (host.send(lane, message) == shmlink::RingStatus::full)
                    ++dropped[lane];
            },
            64);
        if (echoed == 0)
            host.inbox().wait_readable(10ms); // sleeps on a futex, no CPU while idle
    }
    // guide: end
    std::printf("host: served %d of %d guests\n", left, expected);
    return joined == expected && left == expected ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "echo_host: %s\n", e.what());
    return 1;
}
