// Test support: what the topic tests do to a publisher in the test process:
// publish sample `sequence` (tests/support/samples.hpp), and count the
// chunks of its pool that are not free.
#pragma once

#include <shmlink/ipc/publisher.hpp>

#include "tests/support/samples.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <utility>

namespace shmlink::test {

inline TopicStatus publish_sample(Publisher<>& publisher, std::uint64_t sequence)
{
    Loan<> loan = publisher.loan(sample_size(sequence));
    REQUIRE_MESSAGE(loan, "loan: " << to_string(loan.status()));
    fill_sample(loan.bytes(), sequence);
    return publisher.publish(std::move(loan));
}

/// Chunks not free in any class: loaned, queued, held or kept.
inline std::uint64_t chunks_in_use(const Publisher<>& publisher)
{
    std::uint64_t used = 0;
    for (const PoolClass& c : publisher.stats().classes)
        used += c.chunks - c.free;
    return used;
}

} // namespace shmlink::test
