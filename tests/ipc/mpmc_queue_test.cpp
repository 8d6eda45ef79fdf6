// Tests of ipc/mpmc_queue.hpp. The cross-process case runs two producer and
// two consumer processes (tests/helpers/ring_peer mpmc-produce / mpmc-consume).
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::field;
using shmlink::test::finish;

namespace {

using shmlink::test::Item;

/// The sum of the hashes of `count` items from each of producers 1 and 2.
std::uint64_t expected_sum(std::uint64_t count)
{
    std::uint64_t sum = 0;
    for (std::uint64_t id = 1; id <= 2; ++id)
        for (std::uint64_t seq = 0; seq < count; ++seq)
            sum += test::item_hash(id, seq);
    return sum;
}

} // namespace

TEST_CASE("FIFO through many laps; full and empty edges; wrong sizes and capacities are clear errors")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    auto queue = MpmcQueue<std::uint32_t>::create(segment, "queue", 8);
    CHECK(queue.capacity() == 8);
    std::uint32_t next_in = 0;
    std::uint32_t next_out = 0;
    for (int round = 0; round < 1000; ++round) {
        while (queue.try_push(next_in) == RingStatus::ok)
            ++next_in;
        CHECK(queue.size() == 8);
        CHECK(queue.try_push(0) == RingStatus::full);
        for (int i = 0; i < 1 + round % 8; ++i) {
            std::uint32_t out = 0;
            REQUIRE(queue.try_pop(out) == RingStatus::ok);
            REQUIRE(out == next_out++);
        }
    }
    while (auto out = queue.try_pop())
        REQUIRE(*out == next_out++);
    CHECK(next_out == next_in);
    std::uint32_t out = 0;
    CHECK(queue.try_pop(out) == RingStatus::empty);

    std::error_code ec;
    MpmcQueue<std::uint64_t>::open(segment, "queue", ec);
    CHECK(ec == Errc::item_size_mismatch);
    MpmcQueue<std::uint32_t>::create(segment, "odd", 6, ec);
    CHECK(ec == Errc::invalid_argument);
    CHECK_THROWS_AS(MpmcQueue<std::uint32_t>::open(segment, "missing"), Error);
    CHECK(MpmcQueue<std::uint32_t>::open(segment, "queue").capacity() == 8);
}

TEST_CASE("blocking push and pop: woken by the other side, timed out otherwise")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    auto queue = MpmcQueue<std::uint64_t>::create(segment, "queue", 2);
    std::uint64_t out = 0;
    const auto started = std::chrono::steady_clock::now();
    CHECK(queue.pop(out, 100ms, {.mode = WaitMode::block}) == RingStatus::timed_out);
    CHECK(std::chrono::steady_clock::now() - started >= 100ms);
    REQUIRE(queue.try_push(1) == RingStatus::ok);
    REQUIRE(queue.try_push(2) == RingStatus::ok);
    CHECK(queue.push(3, 50ms, {.mode = WaitMode::block}) == RingStatus::timed_out);
    // A second thread frees room; the cross-process wake-ups are the stream test's.
    std::thread popper([&] {
        std::this_thread::sleep_for(50ms);
        std::uint64_t first = 0;
        queue.try_pop(first);
    });
    CHECK(queue.push(3, 10s, {.mode = WaitMode::block}) == RingStatus::ok);
    popper.join();
    REQUIRE(queue.try_pop(out) == RingStatus::ok);
    CHECK(out == 2);
}

TEST_CASE("sequence numbers no correct queue can hold are reported, never followed")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    auto queue = MpmcQueue<std::uint64_t>::create(segment, "queue", 4);
    REQUIRE(queue.try_push(7) == RingStatus::ok);
    const auto object = segment.find("queue");
    auto* control = reinterpret_cast<ipc::MpmcQueueControl*>(segment.base() + object.offset);
    auto* first_cell = reinterpret_cast<std::uint64_t*>(segment.base() + object.offset + sizeof(ipc::MpmcQueueControl)
        + ipc::kMpmcSlots * sizeof(ipc::MpmcSlot));
    std::uint64_t out = 0;

    SUBCASE("a cell's sequence far ahead")
    {
        *first_cell = 1000;
        CHECK(queue.try_pop(out) == RingStatus::corrupt);
    }
    SUBCASE("a cell's sequence far behind")
    {
        control->enqueue_pos = 1;
        first_cell[2] = 0; // cell 1 (cells are 16 bytes here): says position 0, long gone
        CHECK(queue.try_push(8) == RingStatus::corrupt);
    }
    SUBCASE("a capacity rewritten after creation")
    {
        control->capacity = 1 << 20;
        std::error_code ec;
        MpmcQueue<std::uint64_t>::open(segment, "queue", ec);
        CHECK(ec == Errc::corrupt_object);
    }
}

TEST_CASE("MPMC across processes: 2 producers and 2 consumers, the multiset out equals the multiset in")
{
    const test::ResourceCount before;
    const test::ShmPath file("mpmc-stream");
    {
        Segment segment = Segment::create(file.path, 4 << 20, {.cleanup = Cleanup::unlink_on_close});
        auto queue = MpmcQueue<Item>::create(segment, "queue", 1024);
        const std::uint64_t count = 300'000;
        std::vector<Child> consumers;
        for (int i = 0; i < 2; ++i)
            consumers.push_back(test::start_ring_peer({"mpmc-consume", file.path, "queue"}));
        std::vector<Child> producers;
        for (int id = 1; id <= 2; ++id)
            producers.push_back(test::start_ring_peer({"mpmc-produce", file.path, "queue", std::to_string(count), std::to_string(id)}));
        for (auto& producer : producers) {
            const auto [answer, exit_code] = finish(producer);
            INFO(answer);
            CHECK(exit_code == 0);
        }
        // One stop item per consumer, after everything the producers sent.
        for (int i = 0; i < 2; ++i)
            REQUIRE(queue.push(Item {~std::uint64_t {0}, 0, 0}, 10s) == RingStatus::ok);
        std::uint64_t total = 0;
        std::uint64_t sum = 0;
        for (auto& consumer : consumers) {
            const auto [answer, exit_code] = finish(consumer);
            INFO(answer);
            REQUIRE(exit_code == 0);
            total += static_cast<std::uint64_t>(field(answer, "count"));
            sum += std::stoull(answer.substr(answer.find("sum=") + 4));
        }
        CHECK(total == 2 * count);
        CHECK(sum == expected_sum(count));
        CHECK(queue.size() == 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a peer process scribbling random bytes over an MPMC queue: errors, no crash, no hang")
{
    const test::ShmPath file("mpmc-scribble");
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close, .take_over_dead = true});
        auto queue = MpmcQueue<std::uint64_t>::create(segment, "queue", 64);
        int corrupt = 0;
        const std::string answer = test::while_scribbled(file.path, "queue", seed, 50, [&] {
            const auto pushed = queue.push(seed, 1ms);
            CHECK((pushed == RingStatus::ok || pushed == RingStatus::timed_out || pushed == RingStatus::corrupt));
            std::uint64_t out = 0;
            const auto popped = queue.pop(out, 1ms);
            CHECK((popped == RingStatus::ok || popped == RingStatus::timed_out || popped == RingStatus::corrupt));
            corrupt += popped == RingStatus::corrupt || pushed == RingStatus::corrupt;
        });
        CHECK(answer == "ok scribbled=50");
        CHECK(corrupt > 0); // random positions and sequence numbers are caught
    }
}

TEST_CASE("producer and consumer threads, so that ThreadSanitizer checks the cell handshake")
{
    // The cross-process test above proves the multiset across address
    // spaces; this one runs the same protocol where the sanitizer can see it.
    Segment segment = Segment::create_anonymous(1 << 20);
    auto queue = MpmcQueue<Item>::create(segment, "queue", 64);
    constexpr std::uint64_t kCount = 30'000;
    std::vector<std::thread> threads;
    // A handle per thread: its slot names its one claim, which recovery relies on.
    for (std::uint64_t id = 1; id <= 2; ++id)
        threads.emplace_back([&segment, id] {
            auto mine = MpmcQueue<Item>::open(segment, "queue");
            for (std::uint64_t seq = 0; seq < kCount; ++seq)
                if (mine.push(test::make_item(id, seq), 10s) != RingStatus::ok)
                    return; // the consumers' count tells
        });
    std::atomic<std::uint64_t> total {0};
    std::atomic<std::uint64_t> sum {0};
    for (int c = 0; c < 2; ++c)
        threads.emplace_back([&] {
            auto mine = MpmcQueue<Item>::open(segment, "queue");
            Item item {};
            while (mine.pop(item, 10s, {.mode = WaitMode::block}) == RingStatus::ok && item.producer != 0) {
                total += 1;
                sum += item.hash;
            }
        });
    for (std::size_t i = 0; i < 2; ++i)
        threads[i].join();
    for (int c = 0; c < 2; ++c)
        REQUIRE(queue.push(Item {0, 0, 0}, 10s) == RingStatus::ok);
    for (std::size_t i = 2; i < threads.size(); ++i)
        threads[i].join();
    CHECK(total == 2 * kCount);
    CHECK(sum == expected_sum(kCount));
}

TEST_CASE("an MPMC queue that is not valid (default or moved from) answers corrupt, never crashes")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    auto queue = MpmcQueue<std::uint64_t>::create(segment, "q", 8);
    const auto taker = std::move(queue);
    MpmcQueue<std::uint64_t> fresh;
    for (auto* q : {&queue, &fresh}) {
        std::uint64_t item = 0;
        CHECK_FALSE(q->valid());
        CHECK(q->try_push(1) == RingStatus::corrupt);
        CHECK(q->try_pop(item) == RingStatus::corrupt);
        CHECK(q->push(1, std::chrono::milliseconds(1)) == RingStatus::corrupt);
        CHECK(q->pop(item, std::chrono::milliseconds(1)) == RingStatus::corrupt);
        CHECK_FALSE(q->try_pop().has_value());
        CHECK(q->recover() == 0);
        CHECK(q->size() == 0);
        CHECK(q->abandoned_claims() == 0);
    }
    CHECK(taker.valid());
}
