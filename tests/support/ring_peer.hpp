// Test support: starting tests/helpers/ring_peer (one side of a ring, in its
// own process) and reading its one-line answer ("ok key=value ...").
#pragma once

#include "tests/support/child.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

namespace shmlink::test {

inline Child start_ring_peer(const std::vector<std::string>& args, const std::vector<Child::PassFd>& pass = {})
{
    const char* path = std::getenv("SHMLINK_RING_PEER");
    REQUIRE_MESSAGE(path != nullptr, "SHMLINK_RING_PEER is not set (run through meson test)");
    std::vector<std::string> argv {path};
    argv.insert(argv.end(), args.begin(), args.end());
    return Child::spawn(argv, pass);
}

/// The helper's answer and its exit code (128 + signal when killed).
inline std::pair<std::string, int> finish(Child& peer, std::chrono::milliseconds timeout = std::chrono::seconds(300))
{
    std::string line = peer.read_line(timeout);
    const int status = peer.wait();
    return {line, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)};
}

/// The number after "key=" in an answer.
inline double field(const std::string& answer, const std::string& key)
{
    const auto at = answer.find(key + "=");
    REQUIRE_MESSAGE(at != std::string::npos, "no " << key << " in: " << answer);
    return std::stod(answer.substr(at + key.size() + 1));
}

} // namespace shmlink::test
