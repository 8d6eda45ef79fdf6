// Test support: the consumer's side of ring_peer's tagged message streams.
#pragma once

#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/wait.hpp>

#include "tests/support/messages.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <vector>

namespace shmlink::test {

/// Checks the messages of ring_peer's tagged producers (mpsc-produce, die):
/// (id, seq) streams, each in order and intact.
struct Tally {
    std::map<std::uint64_t, std::uint64_t> next; // producer id -> next expected seq
    std::vector<std::byte> scratch = std::vector<std::byte>(512);
    std::uint64_t total = 0;
    bool bad = false;

    void operator()(std::span<const std::byte> message)
    {
        std::uint64_t id = 0;
        if (message.size() < 8) {
            bad = true;
            return;
        }
        std::memcpy(&id, message.data(), 8);
        std::uint64_t& seq = next[id];
        if (!test::check_message(id, seq, 512, message.subspan(8), scratch)) {
            MESSAGE("producer " << id << ": message " << seq << " is wrong or out of order");
            bad = true;
        }
        ++seq;
        ++total;
    }

    /// Consumes from `ring` until `target` messages in all arrived, a
    /// message was wrong, or `timeout` passed; waits with `options` when the
    /// ring is empty, or only polls if `options` is empty. False when the
    /// ring said corrupt.
    template <typename Ring>
    bool drain(Ring& ring, std::uint64_t target, std::chrono::seconds timeout,
        std::optional<WaitOptions> options = WaitOptions {})
    {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (total < target && !bad && std::chrono::steady_clock::now() < deadline) {
            RingStatus status = RingStatus::ok;
            ring.consume(*this, 4096, &status);
            if (status == RingStatus::corrupt)
                return false;
            if (status == RingStatus::empty && total < target && options)
                ring.wait_readable(std::chrono::milliseconds(100), *options);
        }
        return true;
    }
};

} // namespace shmlink::test
