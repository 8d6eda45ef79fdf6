// Test support: a subscriber process's loop. It takes every sample queued to
// it until the publisher is gone, checking each in place
// (tests/support/samples.hpp), and says what it saw in one line:
// "ok taken=T gaps=G missed=M reclaimed=R last=S base_moved=0|1", or
// "bad ..." at the first wrong sample or status.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include "tests/support/samples.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

namespace shmlink::test {

struct TakeAll {
    bool ok = false;
    std::string line;
};

inline TakeAll take_all(Subscriber<>& subscriber, Segment& segment, long slow_us = 0)
{
    std::byte* const base = segment.base();
    std::uint64_t taken = 0, gaps = 0;
    std::int64_t last = -1;
    for (;;) {
        Sample<> sample = subscriber.take(std::chrono::seconds(60));
        if (sample.status() == TopicStatus::closed)
            break;
        if (!sample)
            return {false, std::string("bad status ") + to_string(sample.status()) + " after " + std::to_string(taken)};
        const std::uint64_t seq = sample.sequence();
        if (static_cast<std::int64_t>(seq) <= last || !check_sample(sample.bytes(), seq))
            return {false, "bad seq=" + std::to_string(seq) + " after=" + std::to_string(last)
                    + " size=" + std::to_string(sample.bytes().size())};
        gaps += seq - static_cast<std::uint64_t>(last + 1);
        last = static_cast<std::int64_t>(seq);
        ++taken;
        if (slow_us > 0)
            std::this_thread::sleep_for(std::chrono::microseconds(slow_us));
    }
    const SubscriberStats stats = subscriber.stats();
    return {true, "ok taken=" + std::to_string(taken) + " gaps=" + std::to_string(gaps) + " missed="
            + std::to_string(stats.missed) + " reclaimed=" + std::to_string(stats.reclaimed) + " last="
            + std::to_string(last) + " base_moved=" + std::to_string(segment.base() != base ? 1 : 0)};
}

} // namespace shmlink::test
