// Tests of ipc/spsc_ring.hpp. The cross-process cases run tests/helpers/ring_peer
// as producer, consumer, blocked consumer or scribbler, each in its own process.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include "tests/support/child.hpp"
#include "tests/support/leaks.hpp"
#include "tests/support/messages.hpp"
#include "tests/support/ring_peer.hpp"
#include "tests/support/wake_rounds.hpp"

#include <doctest/doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace shmlink;
using namespace std::chrono_literals;
using shmlink::test::Child;
using shmlink::test::field;
using shmlink::test::finish;

namespace {

std::span<const std::byte> bytes_of(const std::string& s) { return std::as_bytes(std::span(s)); }

std::string pop_text(SpscRing& ring)
{
    std::string out(ring.max_message_bytes(), '\0');
    std::size_t length = 0;
    REQUIRE(ring.try_pop(std::as_writable_bytes(std::span(out)), length) == RingStatus::ok);
    out.resize(length);
    return out;
}

/// The number of messages the cross-process stream test sends; fewer under
/// sanitizers, which slow every byte down tenfold.
std::uint64_t stream_messages()
{
    if (const char* n = std::getenv("SHMLINK_TEST_SPSC_MESSAGES"))
        return std::strtoull(n, nullptr, 10);
    return 5'000'000;
}

} // namespace

TEST_CASE("create and open by name; wrong names, kinds and capacities are clear errors")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 4096);
    CHECK(ring.capacity_bytes() == 4096);
    CHECK(ring.max_message_bytes() == 2040);
    CHECK(SpscRing::open(segment, "ring").capacity_bytes() == 4096);

    std::error_code ec;
    SpscRing::create(segment, "odd", 1000, ec);
    CHECK(ec == Errc::invalid_argument);
    SpscRing::create(segment, "tiny", 128, ec);
    CHECK(ec == Errc::invalid_argument);
    SpscRing::create(segment, "ring", 4096, ec);
    CHECK(ec == Errc::name_taken);
    SpscRing::open(segment, "missing", ec);
    CHECK(ec == Errc::not_found);
    segment.allocate("not-a-ring", 0x7777, 1, 4096 + 512);
    SpscRing::open(segment, "not-a-ring", ec);
    CHECK(ec == Errc::wrong_kind);
    CHECK_THROWS_AS(SpscRing::open(segment, "missing"), Error);
}

TEST_CASE("messages of every size from 0 to the maximum, in order, through many wrap-arounds")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing producer = SpscRing::create(segment, "ring", 1024);
    SpscRing consumer = SpscRing::open(segment, "ring");
    std::vector<std::byte> message(producer.max_message_bytes());
    std::vector<std::byte> received(producer.max_message_bytes());
    std::uint64_t sent = 0;
    std::uint64_t got = 0;
    for (int round = 0; round < 20000; ++round) {
        // Push until full, then drain part of it: every alignment of every length.
        for (;;) {
            const auto length = test::message_length(7, sent, producer.max_message_bytes());
            test::make_message(7, sent, std::span(message).first(length));
            const auto status = producer.try_push(std::span(message).first(length));
            if (status == RingStatus::full)
                break;
            REQUIRE(status == RingStatus::ok);
            ++sent;
        }
        const int drain = 1 + round % 3;
        for (int i = 0; i < drain && got < sent; ++i) {
            std::size_t length = 0;
            REQUIRE(consumer.try_pop(received, length) == RingStatus::ok);
            REQUIRE(test::check_message(7, got, producer.max_message_bytes(), std::span(received).first(length), message));
            ++got;
        }
    }
    while (got < sent) {
        std::size_t length = 0;
        REQUIRE(consumer.try_pop(received, length) == RingStatus::ok);
        REQUIRE(test::check_message(7, got, producer.max_message_bytes(), std::span(received).first(length), message));
        ++got;
    }
    std::size_t length = 0;
    CHECK(consumer.try_pop(received, length) == RingStatus::empty);
    CHECK(consumer.size_bytes() == 0);
    CHECK(sent > 20000);
}

TEST_CASE("full and empty edges, the largest message, and too-large requests")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 256);
    const std::string largest(ring.max_message_bytes(), 'L');
    // A largest record is exactly half the ring, and the ring keeps 8 bytes
    // for the zero word after its newest record: a largest and one 8 bytes
    // shorter fill it.
    const std::string shorter(ring.max_message_bytes() - 8, 'S');
    CHECK(ring.try_push(bytes_of(largest)) == RingStatus::ok);
    CHECK(ring.try_push(bytes_of(largest)) == RingStatus::full);
    CHECK(ring.try_push(bytes_of(shorter)) == RingStatus::ok);
    CHECK(ring.try_push({}) == RingStatus::full);
    CHECK(ring.try_push(bytes_of(largest + "x")) == RingStatus::too_large);
    CHECK(pop_text(ring) == largest);
    CHECK(pop_text(ring) == shorter);
    std::size_t length = 0;
    std::byte small[4];
    CHECK(ring.try_pop(small, length) == RingStatus::empty);
    // An empty ring takes the largest message wherever its positions are.
    for (int shift = 0; shift < 40; ++shift) {
        CHECK(ring.try_push(bytes_of(std::string(static_cast<std::size_t>(shift), 's'))) == RingStatus::ok);
        CHECK(pop_text(ring) == std::string(static_cast<std::size_t>(shift), 's'));
        CHECK(ring.try_push(bytes_of(largest)) == RingStatus::ok);
        CHECK(pop_text(ring) == largest);
    }
    // A message longer than the caller's buffer stays in the ring.
    CHECK(ring.try_push(bytes_of("twelve bytes")) == RingStatus::ok);
    CHECK(ring.try_pop(small, length) == RingStatus::too_large);
    CHECK(pop_text(ring) == "twelve bytes");
    // Zero-length messages are messages.
    CHECK(ring.try_push({}) == RingStatus::ok);
    CHECK(pop_text(ring).empty());
    CHECK(ring.try_pop(small, length) == RingStatus::empty);
}

TEST_CASE("zero-copy reserve/commit (also shortened) and peek/release")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 4096);
    auto slot = ring.reserve(100);
    REQUIRE(slot);
    CHECK(slot.bytes.size() == 100);
    CHECK(ring.peek().status == RingStatus::empty); // nothing visible before commit
    std::memcpy(slot.bytes.data(), "hello", 5);
    ring.commit(5);
    auto message = ring.peek();
    REQUIRE(message);
    CHECK(std::string(reinterpret_cast<const char*>(message.bytes.data()), message.bytes.size()) == "hello");
    CHECK(ring.peek().bytes.data() == message.bytes.data()); // peek again: same message
    ring.release();
    CHECK(ring.peek().status == RingStatus::empty);
    CHECK(ring.reserve(ring.max_message_bytes() + 1).status == RingStatus::too_large);
}

TEST_CASE("a producer's first try_push clears the claim a producer that left mid-reservation showed")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 1024);
    const auto* control = reinterpret_cast<const ipc::SpscRingControl*>(segment.base() + segment.find("ring").offset);
    {
        SpscRing gone = SpscRing::open(segment, "ring");
        REQUIRE(gone.reserve(100));
        CHECK(control->claim == ((std::uint64_t {100} << 32) | 1));
    } // left without committing, as a producer killed mid-reservation leaves it
    SpscRing next = SpscRing::open(segment, "ring");
    REQUIRE(next.try_push(bytes_of("first")) == RingStatus::ok);
    CHECK(control->claim == 0);
    // Its later pushes take the inline path, which leaves the claim alone.
    REQUIRE(next.try_push(bytes_of("second")) == RingStatus::ok);
    CHECK(control->claim == 0);
    std::byte buffer[64];
    std::size_t length = 0;
    REQUIRE(ring.try_pop(buffer, length) == RingStatus::ok);
    CHECK(std::string(reinterpret_cast<const char*>(buffer), length) == "first");
}

TEST_CASE("try_push beside zero copy: it drops an open reservation, and publishes after a deferred batch, in order")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 4096);
    auto dropped = ring.reserve(16);
    REQUIRE(dropped);
    std::memcpy(dropped.bytes.data(), "never-committed!", 16);
    REQUIRE(ring.try_push(bytes_of("first")) == RingStatus::ok);
    ring.commit(); // the reservation went with the try_push: nothing more is published
    auto slot = ring.reserve(6);
    REQUIRE(slot);
    std::memcpy(slot.bytes.data(), "second", 6);
    ring.commit_deferred();
    REQUIRE(ring.try_push(bytes_of("third")) == RingStatus::ok); // publishes "second" with it
    CHECK(pop_text(ring) == "first");
    CHECK(pop_text(ring) == "second");
    CHECK(pop_text(ring) == "third");
    CHECK(ring.peek().status == RingStatus::empty);
}

TEST_CASE("batches: many messages published with one store, consumed with one")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 1024);
    std::vector<std::string> texts;
    for (int i = 0; i < 100; ++i)
        texts.push_back("message-" + std::to_string(i));
    std::vector<std::span<const std::byte>> spans;
    for (const auto& t : texts)
        spans.push_back(bytes_of(t));
    const std::size_t pushed = ring.try_push_batch(spans);
    CHECK(pushed > 10);
    CHECK(pushed < texts.size()); // 1 KiB holds only some
    std::vector<std::string> seen;
    RingStatus status = RingStatus::ok;
    const std::size_t consumed = ring.consume(
        [&](std::span<const std::byte> m) { seen.emplace_back(reinterpret_cast<const char*>(m.data()), m.size()); }, 1000,
        &status);
    CHECK(consumed == pushed);
    CHECK(status == RingStatus::empty);
    CHECK(std::equal(seen.begin(), seen.end(), texts.begin()));
}

TEST_CASE("a peer's corrupt positions and records are reported, never followed")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    const auto object_offset = [&] { return segment.find("ring").offset; };
    SpscRing producer = SpscRing::create(segment, "ring", 1024);
    auto* control = reinterpret_cast<ipc::SpscRingControl*>(segment.base() + object_offset());
    std::byte* data = segment.base() + object_offset() + sizeof(ipc::SpscRingControl);
    std::byte buffer[1024];
    std::size_t length = 0;

    SUBCASE("tail beyond head + capacity")
    {
        control->tail = 1024 + 8;
        SpscRing consumer = SpscRing::open(segment, "ring");
        CHECK(consumer.try_pop(buffer, length) == RingStatus::corrupt);
        CHECK(consumer.try_pop(buffer, length) == RingStatus::corrupt); // and stays so
    }
    SUBCASE("head beyond tail, seen by the producer")
    {
        REQUIRE(producer.try_push(bytes_of(std::string(496, 'x'))) == RingStatus::ok);
        REQUIRE(producer.try_push(bytes_of(std::string(496, 'x'))) == RingStatus::ok);
        REQUIRE(producer.try_push(bytes_of(std::string(496, 'x'))) == RingStatus::full);
        control->head = 4096;
        CHECK(producer.try_push(bytes_of("y")) == RingStatus::corrupt);
    }
    SUBCASE("a record longer than the maximum")
    {
        REQUIRE(producer.try_push(bytes_of("fine")) == RingStatus::ok);
        const ipc::RecordHeader bad {5000, static_cast<std::uint32_t>(ipc::RecordType::message)};
        std::memcpy(data, &bad, sizeof(bad));
        SpscRing consumer = SpscRing::open(segment, "ring");
        CHECK(consumer.try_pop(buffer, length) == RingStatus::corrupt);
    }
    SUBCASE("a header word that is neither a record nor zero (not published)")
    {
        REQUIRE(producer.try_push(bytes_of("fine")) == RingStatus::ok);
        const ipc::RecordHeader bad {200, static_cast<std::uint32_t>(ipc::RecordType::none)};
        std::memcpy(data, &bad, sizeof(bad));
        SpscRing consumer = SpscRing::open(segment, "ring");
        CHECK(consumer.try_pop(buffer, length) == RingStatus::corrupt);
    }
    SUBCASE("an unknown record type, and padding that does not reach the end")
    {
        REQUIRE(producer.try_push(bytes_of("fine")) == RingStatus::ok);
        ipc::RecordHeader bad {4, 99};
        std::memcpy(data, &bad, sizeof(bad));
        SpscRing consumer = SpscRing::open(segment, "ring");
        CHECK(consumer.peek().status == RingStatus::corrupt);
        bad = {4, static_cast<std::uint32_t>(ipc::RecordType::padding)};
        std::memcpy(data, &bad, sizeof(bad));
        SpscRing other = SpscRing::open(segment, "ring");
        CHECK(other.peek().status == RingStatus::corrupt);
    }
    SUBCASE("a capacity rewritten after creation")
    {
        control->capacity_bytes = 1 << 30;
        std::error_code ec;
        SpscRing::open(segment, "ring", ec);
        CHECK(ec == Errc::corrupt_object);
    }
}

TEST_CASE("SPSC across two processes: millions of messages of 0..4096 bytes, none lost, duplicated or reordered")
{
    const test::ResourceCount before;
    const test::ShmPath file("spsc-stream");
    {
        Segment segment = Segment::create(file.path, 4 << 20, {.cleanup = Cleanup::unlink_on_close});
        SpscRing::create(segment, "stream", 1 << 20);
        const std::string count = std::to_string(stream_messages());
        Child consumer = test::start_ring_peer({"consume", file.path, "stream", count, "42", "4096"});
        Child producer = test::start_ring_peer({"produce", file.path, "stream", count, "42", "4096"});
        const auto [produced, produced_exit] = finish(producer);
        const auto [consumed, consumed_exit] = finish(consumer);
        INFO(produced);
        INFO(consumed);
        CHECK(produced_exit == 0);
        CHECK(consumed_exit == 0);
        CHECK(consumed == "ok consumed=" + count);
        // The ring (1 MiB) is far smaller than the stream: it wrapped hundreds of times at least.
        CHECK(field(produced, "bytes") > 100.0 * (1 << 20));
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

// "Costs no CPU" is measured as the waiting thread's own CPU time: the
// process's would add what a sanitizer's runtime threads and the one-time
// spin calibration cost, which grow with the machine's load and say nothing
// about the wait. A consumer that spun or polled would burn about the whole
// wait; one that sleeps on the futex, well under 1% of it, on any machine.
TEST_CASE("blocking: a consumer waiting on an empty ring costs no CPU, wakes on a push, and times out")
{
    const test::ShmPath file("spsc-block");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing ring = SpscRing::create(segment, "ring", 4096);

    SUBCASE("nothing comes: timed out after its timeout, under 1% of a core meanwhile")
    {
        Child consumer = test::start_ring_peer({"block-pop", file.path, "ring", "1000"});
        const auto [answer, exit_code] = finish(consumer, 30s);
        INFO(answer);
        CHECK(exit_code == 0);
        CHECK(answer.find("status=timed out") != std::string::npos);
        CHECK(field(answer, "waited_ms") >= 1000);
        CHECK(field(answer, "cpu_ms") < 10); // 1% of the one second it waited
        CHECK(field(answer, "sleeps") >= 1); // it went to sleep, rather than spinning
    }
    SUBCASE("a push wakes it")
    {
        Child consumer = test::start_ring_peer({"block-pop", file.path, "ring", "60000"});
        // Pushed once the consumer has counted itself a sleeper: the push must wake it.
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (inspect(segment, segment.find("ring")).spsc->readable_sleepers == 0) {
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            std::this_thread::sleep_for(1ms);
        }
        REQUIRE(ring.try_push(bytes_of("wake up")) == RingStatus::ok);
        const auto [answer, exit_code] = finish(consumer, 30s);
        INFO(answer);
        CHECK(exit_code == 0);
        CHECK(answer.find("status=ok length=7") != std::string::npos);
        CHECK(field(answer, "waited_ms") < 60000); // woken, not timed out
        CHECK(field(answer, "cpu_ms") < 10);
    }
}

TEST_CASE("zero copy without retry loops: reserve and peek with a timeout, and a batch published at once")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing producer = SpscRing::create(segment, "ring", 256);
    SpscRing consumer = SpscRing::open(segment, "ring");
    CHECK(consumer.peek(20ms).status == RingStatus::timed_out);
    // Three deferred commits: nothing visible until publish(), then all three.
    for (const char* text : {"one", "two", "three"}) {
        auto slot = producer.reserve(std::strlen(text), 1s);
        REQUIRE(slot);
        std::memcpy(slot.bytes.data(), text, slot.bytes.size());
        producer.commit_deferred();
    }
    CHECK(consumer.peek().status == RingStatus::empty);
    CHECK(consumer.wait_readable(0ns) == RingStatus::timed_out);
    producer.publish();
    for (const char* text : {"one", "two", "three"}) {
        const auto message = consumer.peek(1s);
        REQUIRE(message);
        CHECK(std::string(reinterpret_cast<const char*>(message.bytes.data()), message.bytes.size()) == text);
        consumer.release();
    }
    // Full: reserve waits, then times out; a release in another thread lets it through.
    const std::string big(producer.max_message_bytes(), 'b');
    REQUIRE(producer.try_push(bytes_of(big)) == RingStatus::ok);
    CHECK(producer.reserve(big.size(), 20ms).status == RingStatus::timed_out);
    std::thread freer([&] {
        std::this_thread::sleep_for(50ms);
        REQUIRE(consumer.peek(1s));
        consumer.release();
    });
    const auto slot = producer.reserve(big.size(), 10s, {.mode = WaitMode::block});
    freer.join();
    REQUIRE(slot);
    producer.commit_deferred();
    // A deferred commit is published when its ring object goes.
    producer = SpscRing();
    CHECK(consumer.peek(1s).bytes.size() == big.size());
}

TEST_CASE("no lost wake-up: 1,000,000 sleep/wake cycles between two processes")
{
    // Each round trip is two cycles, one per side (tests/support/wake_rounds.hpp).
    std::uint64_t cycles = 1'000'000;
    if (const char* n = std::getenv("SHMLINK_TEST_WAKE_CYCLES")) // fewer under the sanitizers
        cycles = std::strtoull(n, nullptr, 10);
    const std::uint64_t rounds = cycles / 2;
    const test::ShmPath file("spsc-wake");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing ping = SpscRing::create(segment, "ping", 4096);
    SpscRing pong = SpscRing::create(segment, "pong", 4096);
    Child echo = test::start_ring_peer({"wake-echo", file.path, "ping", "pong", std::to_string(rounds), "7"});
    const std::string error = test::wake_rounds(ping, pong, rounds, true, 11);
    const auto [answer, exit_code] = finish(echo, 60s);
    INFO(answer);
    CHECK_MESSAGE(error.empty(), error);
    CHECK(exit_code == 0);
    CHECK(answer.find("ok rounds=" + std::to_string(rounds)) == 0);
}

TEST_CASE("a producer blocked on a full ring wakes when the consumer frees room, and times out otherwise")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing ring = SpscRing::create(segment, "ring", 256);
    const std::string big(ring.max_message_bytes(), 'b');
    const std::string shorter(ring.max_message_bytes() - 8, 's'); // with big, fills the ring (see above)
    REQUIRE(ring.try_push(bytes_of(big)) == RingStatus::ok);
    REQUIRE(ring.try_push(bytes_of(shorter)) == RingStatus::ok);
    const auto start = std::chrono::steady_clock::now();
    CHECK(ring.push(bytes_of(big), 200ms, {.mode = WaitMode::block}) == RingStatus::timed_out);
    CHECK(std::chrono::steady_clock::now() - start >= 200ms);
    CHECK(ring.wait_writable(big.size(), 0ns) == RingStatus::timed_out);
    CHECK(pop_text(ring) == big);
    CHECK(pop_text(ring) == shorter);
    CHECK(ring.wait_writable(big.size(), 0ns) == RingStatus::ok);
    // Blocked in another thread of this process here; the cross-process wake-up is the consumer test above.
    REQUIRE(ring.try_push(bytes_of(big)) == RingStatus::ok); // a second big one does not fit beside it
    std::thread freer([&] {
        std::this_thread::sleep_for(100ms);
        pop_text(ring);
    });
    CHECK(ring.push(bytes_of(big), 10s, {.mode = WaitMode::block}) == RingStatus::ok);
    freer.join();
}

TEST_CASE("a peer process scribbling random bytes over the ring: errors, no crash, no hang")
{
    const test::ShmPath file("spsc-scribble");
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
        Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close, .take_over_dead = true});
        SpscRing ring = SpscRing::create(segment, "ring", 4096);
        for (int i = 0; i < 20; ++i)
            REQUIRE(ring.try_push(bytes_of("message " + std::to_string(i))) == RingStatus::ok);
        // Both sides keep working against the scribbled ring while it happens.
        SpscRing consumer = SpscRing::open(segment, "ring");
        std::byte buffer[4096];
        int corrupt = 0;
        const std::string answer = test::while_scribbled(file.path, "ring", seed, 50, [&] {
            std::size_t length = 0;
            const auto popped = consumer.pop(buffer, length, 2ms);
            CHECK((popped == RingStatus::ok || popped == RingStatus::timed_out || popped == RingStatus::corrupt
                || popped == RingStatus::too_large));
            const auto pushed = ring.try_push(bytes_of("more"));
            CHECK((pushed == RingStatus::ok || pushed == RingStatus::full || pushed == RingStatus::corrupt));
            if (popped == RingStatus::corrupt)
                ++corrupt;
            if (popped == RingStatus::too_large)
                consumer = SpscRing::open(segment, "ring"); // reopen; skipping the message is the caller's choice
        });
        CHECK(answer == "ok scribbled=50");
        CHECK(corrupt > 0); // 64 random bytes over the control block break its invariants
    }
}

TEST_CASE("threads on both sides, so that ThreadSanitizer checks every acquire and release pair")
{
    // The cross-process stream above proves delivery across address spaces;
    // this one runs the same protocol where the sanitizer can see it.
    Segment segment = Segment::create_anonymous(1 << 20);
    SpscRing producer = SpscRing::create(segment, "ring", 4096);
    SpscRing consumer = SpscRing::open(segment, "ring");
    constexpr std::uint64_t kCount = 50'000;
    std::thread writer([&] {
        std::vector<std::byte> message(300);
        for (std::uint64_t seq = 0; seq < kCount; ++seq) {
            const auto length = test::message_length(5, seq, 300);
            test::make_message(5, seq, std::span(message).first(length));
            if (producer.push(std::span(message).first(length), 10s) != RingStatus::ok)
                return; // the consumer's count tells
        }
    });
    std::vector<std::byte> scratch(300);
    std::vector<std::byte> buffer(300);
    std::uint64_t got = 0;
    bool intact = true;
    while (got < kCount) {
        std::size_t length = 0;
        if (consumer.pop(buffer, length, 10s, {.mode = got % 2 == 0 ? WaitMode::block : WaitMode::spin_then_block})
            != RingStatus::ok)
            break;
        intact = intact && test::check_message(5, got, 300, std::span(buffer).first(length), scratch);
        ++got;
    }
    writer.join();
    CHECK(intact);
    CHECK(got == kCount);
}
