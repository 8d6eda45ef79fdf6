// Test support: one side of the no-lost-wake-up test, played by the test
// and by tests/helpers/ring_peer (job wake-echo) in two processes. Each
// round trip is two sleep/wake cycles: a side pushes, then pops in block
// mode, so it counts itself as a sleeper and sleeps until the other side's
// push wakes it. Before each push a side waits a pseudo-random 0..16 us,
// so that pushes land all over the other side's way to sleep (counting
// itself, its fence, its last look, the futex call). A lost wake-up would
// leave a side asleep until its pop times out.
#pragma once

#include <shmlink/ipc/spsc_ring.hpp>

#include "tests/support/messages.hpp"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

namespace shmlink::test {

inline constexpr auto kWakeTimeout = std::chrono::seconds(10);

/// `rounds` round trips; `first` pushes first. Empty on success, else what went wrong.
inline std::string wake_rounds(SpscRing& out, SpscRing& in, std::uint64_t rounds, bool first, std::uint64_t seed)
{
    const WaitOptions block {.mode = WaitMode::block};
    std::uint64_t state = seed;
    const auto push = [&](std::uint64_t round) -> std::string {
        state = mix(state);
        const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(state % 16'000);
        while (std::chrono::steady_clock::now() < until) {
        }
        std::byte message[8];
        std::memcpy(message, &round, sizeof(round));
        const RingStatus status = out.push(message, kWakeTimeout, block);
        return status == RingStatus::ok ? std::string() : "push " + std::to_string(round) + ": " + to_string(status);
    };
    const auto pop = [&](std::uint64_t round) -> std::string {
        std::byte message[8];
        std::size_t length = 0;
        const RingStatus status = in.pop(message, length, kWakeTimeout, block);
        if (status != RingStatus::ok)
            return "pop " + std::to_string(round) + ": " + to_string(status) + " (a lost wake-up, if timed out)";
        std::uint64_t got = 0;
        std::memcpy(&got, message, sizeof(got));
        if (length != sizeof(got) || got != round)
            return "pop " + std::to_string(round) + ": got " + std::to_string(got);
        return {};
    };
    for (std::uint64_t round = 0; round < rounds; ++round) {
        std::string error = first ? push(round) : pop(round);
        if (error.empty())
            error = first ? pop(round) : push(round);
        if (!error.empty())
            return error;
    }
    return {};
}

} // namespace shmlink::test
