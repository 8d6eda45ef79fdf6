// The soak (suite soak, not in the default run: `meson test --suite soak`):
// this process hosts four guest processes (tests/helpers/endpoint
// soak-guest) for SHMLINK_SOAK_SECONDS (default 180) while it grows the
// segment, SIGKILLs guests and starts new ones, and now and then restarts
// itself as a host. Each guest records how many messages it has committed
// in a file of its own, which survives its SIGKILL. At the end every
// guest's stream must have arrived exactly once: whole, in order, without a
// gap or a repeat, and as many as it committed (or one more: a guest killed
// between a commit and its record of it).
#include <shmlink/transport/host.hpp>

#include "tests/support/child.hpp"
#include "tests/support/tally.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::Tally;

namespace {

struct SoakGuest {
    std::uint64_t id;
    Child process;
};

std::uint64_t committed(const std::string& counter)
{
    std::uint64_t value = 0;
    const int fd = ::open(counter.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (::pread(fd, &value, sizeof(value), 0) != static_cast<ssize_t>(sizeof(value)))
            value = 0;
        ::close(fd);
    }
    return value;
}

} // namespace

TEST_CASE("soak: four guests, growth, kills and host restarts; every committed message delivered exactly once")
{
    const char* seconds_text = std::getenv("SHMLINK_SOAK_SECONDS");
    const auto duration = std::chrono::seconds(seconds_text != nullptr ? std::atol(seconds_text) : 180);
    const std::string dir = "/tmp/shmlink-soak-" + std::to_string(::getpid());
    std::filesystem::create_directory(dir);
    const std::string sock = dir + "/host.sock";
    const auto counter_of = [&](std::uint64_t id) { return dir + "/committed-" + std::to_string(id); };

    std::mt19937_64 random(2026);
    Tally tally;
    std::uint64_t next_id = 1;
    std::uint64_t kills = 0;
    std::uint64_t grows = 0;
    std::uint64_t restarts = 0;
    std::vector<SoakGuest> guests;
    const auto start_guest = [&] {
        const std::uint64_t id = next_id++;
        guests.push_back({id, test::spawn_helper("SHMLINK_ENDPOINT",
                                  {"soak-guest", sock, std::to_string(id), counter_of(id)})});
    };

    const auto end = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < end && !tally.bad) {
        boost::asio::io_context io;
        Host host(io, {.socket_path = sock, .segment_bytes = 1 << 20, .max_segment_bytes = 64 << 20,
                          .max_guests = 8, .ring_bytes = 16 << 10, .reap_interval = 20ms});
        const auto serve = [&](std::chrono::milliseconds how_long) {
            const auto until = std::chrono::steady_clock::now() + how_long;
            while (std::chrono::steady_clock::now() < until && !tally.bad) {
                io.poll();
                RingStatus status = RingStatus::ok;
                host.inbox().consume([&](std::uint32_t, std::span<const std::byte> bytes) { tally(bytes); }, 1024, &status);
                REQUIRE(status != RingStatus::corrupt);
                if (status == RingStatus::empty)
                    host.inbox().wait_readable(5ms);
            }
        };
        while (guests.size() < 4)
            start_guest();
        // One host's life: a few seconds of random faults.
        const auto host_end = std::min(end, std::chrono::steady_clock::now() + std::chrono::seconds(5 + random() % 10));
        while (std::chrono::steady_clock::now() < host_end && !tally.bad) {
            serve(std::chrono::milliseconds(50 + random() % 200));
            switch (random() % 3) {
            case 0: // grow, while they send
                if (host.segment().size_bytes() + (256 << 10) <= host.segment().max_size_bytes()) {
                    host.grow(host.segment().size_bytes() + (256 << 10));
                    ++grows;
                }
                break;
            case 1: { // kill one, start another
                auto victim = guests.begin() + static_cast<std::ptrdiff_t>(random() % guests.size());
                victim->process.kill(SIGKILL);
                victim->process.wait();
                guests.erase(victim);
                ++kills;
                start_guest();
                break;
            }
            default:
                break;
            }
        }
        // Restart: the guests go first (killed), what they committed is drained, then the host goes.
        for (auto& guest : guests) {
            guest.process.kill(SIGKILL);
            guest.process.wait();
            ++kills;
        }
        guests.clear();
        serve(500ms); // their lanes' last messages; reaping frees the lanes
        ++restarts;
    }

    // Exactly once: each stream a whole, ordered prefix (the tally checks every
    // message against its sequence number), as long as what the guest committed.
    CHECK_FALSE(tally.bad);
    std::uint64_t checked = 0;
    for (std::uint64_t id = 1; id < next_id; ++id) {
        const std::uint64_t sent = committed(counter_of(id));
        const std::uint64_t arrived = tally.next.count(id) != 0 ? tally.next[id] : 0;
        CAPTURE(id);
        CHECK((arrived == sent || arrived == sent + 1));
        checked += arrived;
    }
    MESSAGE("soak: " << next_id - 1 << " guests, " << kills << " SIGKILLs, " << grows << " grows, " << restarts
                     << " host restarts, " << checked << " messages delivered exactly once");
    std::filesystem::remove_all(dir);
}
