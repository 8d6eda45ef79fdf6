// A guest of docs/guide.md: it joins the echo host through its socket (the
// segment's fd arrives with the welcome), sends COUNT messages, and prints
// each echo the host sends back on this guest's own ring.
//
//   echo_guest SOCKET NAME COUNT
#include <shmlink/transport/guest.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv)
try {
    using namespace std::chrono_literals;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc != 4) {
        std::fprintf(stderr, "usage: echo_guest SOCKET NAME COUNT\n");
        return 2;
    }
    const std::string name = argv[2];
    const int count = std::atoi(argv[3]);

    // guide: guest
    // wait_for_host: the host may still be starting (up to the 2 s timeout).
    shmlink::Guest guest = shmlink::Guest::connect(argv[1], {.name = name, .wait_for_host = true});
    for (int i = 1; i <= count; ++i) {
        const std::string text = name + " says hello #" + std::to_string(i);
        std::error_code host_gone; // send() and receive() notice a host that died
        if (guest.send(std::as_bytes(std::span(text)), 1s, host_gone) != shmlink::RingStatus::ok)
            return 1;
        char echo[256];
        std::size_t length = 0;
        if (guest.receive(std::as_writable_bytes(std::span(echo)), length, 5s, host_gone) != shmlink::RingStatus::ok)
            return 1;
        std::printf("%s: the host echoed \"%.*s\"\n", name.c_str(), static_cast<int>(length), echo);
    }
    // guide: end
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "echo_guest: %s\n", e.what());
    return 1;
}
