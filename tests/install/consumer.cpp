// A program of another project, built against an installed shmlink by
// tests/install/install_test.py (pkg-config, CMake, meson subproject), with
// -Wall -Wextra -Werror. It includes only the umbrella header and names one
// field of each public options struct, as a user's designated initializers
// do, so a field without a default initializer fails its build.
//
//   consumer SOCKET COUNT   a host on SOCKET that starts itself again as a
//                           guest process, echoes COUNT messages to it, and
//                           prints "ok echoed=COUNT version=V" when all came back
//   consumer --guest SOCKET COUNT   the guest
#include <shmlink/shmlink.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace std::chrono_literals;

namespace {

int guest(const char* socket_path, int count)
{
    shmlink::Guest guest = shmlink::Guest::connect(socket_path, {.name = "consumer-guest"});
    for (int i = 0; i < count; ++i) {
        const std::string text = "message " + std::to_string(i);
        std::error_code host_error;
        if (guest.send(std::as_bytes(std::span(text)), 5s, host_error) != shmlink::RingStatus::ok)
            return 1;
        char echo[64];
        std::size_t length = 0;
        if (guest.receive(std::as_writable_bytes(std::span(echo)), length, 5s, host_error) != shmlink::RingStatus::ok)
            return 1;
        if (std::string(echo, length) != text)
            return 1;
    }
    return 0;
}

/// The options structs a user fills, each with one field named.
void name_one_field_of_each_options_struct()
{
    [[maybe_unused]] const shmlink::MapOptions map {.guard_truncation = true};
    [[maybe_unused]] const shmlink::SegmentOptions segment {.cleanup = shmlink::Cleanup::keep};
    [[maybe_unused]] const shmlink::AttachOptions attach {.map = {}};
    [[maybe_unused]] const shmlink::SnapshotOptions snapshot {.directory = "/tmp"};
    [[maybe_unused]] const shmlink::MpscOptions mpsc {.reap_interval = 10ms};
    [[maybe_unused]] const shmlink::WaitOptions wait {.mode = shmlink::WaitMode::block};
    [[maybe_unused]] const shmlink::GuestOptions guest_options {.timeout = 1s};
    [[maybe_unused]] const shmlink::HostOptions host_options {.max_guests = 2};
    [[maybe_unused]] const shmlink::HostOptions allowing {.allow = [](const shmlink::PeerCredentials&) { return true; }};
}

} // namespace

int main(int argc, char** argv)
try {
    if (argc == 4 && std::strcmp(argv[1], "--guest") == 0)
        return guest(argv[2], std::atoi(argv[3]));
    if (argc != 3) {
        std::fprintf(stderr, "usage: consumer SOCKET COUNT\n");
        return 2;
    }
    name_one_field_of_each_options_struct();
    const int count = std::atoi(argv[2]);
    boost::asio::io_context io;
    shmlink::Host host(io, {.socket_path = argv[1]});
    const pid_t child = ::fork();
    if (child == 0) {
        ::execl("/proc/self/exe", argv[0], "--guest", argv[1], argv[2], static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int echoed = 0;
    int status = -1;
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
        io.poll();
        echoed += static_cast<int>(host.inbox().consume(
            [&](std::uint32_t lane, std::span<const std::byte> message) { (void)host.send(lane, message); }, 64));
        if (::waitpid(child, &status, WNOHANG) == child)
            break;
        host.inbox().wait_readable(1ms);
    }
    if (status == -1)
        ::kill(child, SIGKILL);
    if (status != 0 || echoed != count) {
        std::fprintf(stderr, "consumer: the guest ended with status %d after %d of %d echoes\n", status, echoed, count);
        return 1;
    }
    std::printf("ok echoed=%d version=%.*s\n", echoed, static_cast<int>(shmlink::version().size()),
        shmlink::version().data());
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return 1;
}
