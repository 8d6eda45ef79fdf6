// Test support: starting tests/helpers/ring_peer (one side of a ring, in its
// own process) and reading its one-line answer ("ok key=value ...").
#pragma once

#include "tests/support/child.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace shmlink::test {

inline Child start_ring_peer(const std::vector<std::string>& args, const std::vector<Child::PassFd>& pass = {})
{
    return spawn_helper("SHMLINK_RING_PEER", args, pass);
}

/// The number after "key=" in an answer.
inline double field(const std::string& answer, const std::string& key)
{
    const auto at = answer.find(key + "=");
    REQUIRE_MESSAGE(at != std::string::npos, "no " << key << " in: " << answer);
    return std::stod(answer.substr(at + key.size() + 1));
}

/// Starts ring_peer's scribbler on object `name` of the segment at `path`
/// (ROUNDS rounds of 64 random bytes) and calls `exercise()` while each
/// round is written and again after it: every round's damage meets the
/// calls under test, however the two processes are scheduled. Returns the
/// scribbler's last answer.
template <typename Exercise>
std::string while_scribbled(const std::string& path, const std::string& name, std::uint64_t seed, int rounds,
    Exercise&& exercise)
{
    Child scribbler = start_ring_peer({"scribble", path, name, std::to_string(seed), std::to_string(rounds)});
    REQUIRE(scribbler.read_line() == "ready");
    std::string answer;
    for (int round = 0; round < rounds; ++round) {
        scribbler.send("go");
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        for (;;) {
            REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "the scribbler did not answer round " << round + 1);
            exercise();
            if (auto got = scribbler.poll_line()) {
                answer = *got;
                break;
            }
        }
        exercise();
    }
    CHECK(scribbler.wait() == 0);
    return answer;
}

} // namespace shmlink::test
