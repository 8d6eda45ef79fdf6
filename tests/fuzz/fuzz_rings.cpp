// Fuzz target: a consumer (and a producer) of each ring kind, and a topic's
// publisher and subscribers, working on shared bytes the fuzzer controls, as
// a hostile peer could write them. The objects are made properly and their
// handles opened; then the input is written over their control blocks and
// data, and every call must answer a documented status without a crash, a
// hang or a sanitizer report.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace {

using namespace shmlink;

void check(RingStatus status)
{
    if (status != RingStatus::ok && status != RingStatus::empty && status != RingStatus::full
        && status != RingStatus::corrupt && status != RingStatus::too_large)
        std::abort();
}

void check(TopicStatus status)
{
    if (status == TopicStatus::invalid || status == TopicStatus::too_large)
        std::abort(); // every other status is one a peer's garbage may cause
}

/// Writes `input` over `object` from its start, cycling through the input
/// when it is shorter (so small inputs still reach the data).
void overwrite(Segment& segment, const ObjectInfo& object, std::span<const std::uint8_t> input)
{
    if (input.empty())
        return;
    const auto area = segment.subspan(object.offset, object.length);
    const std::size_t count = std::min(area.size(), input.size() * 4);
    for (std::size_t i = 0; i < count; ++i)
        area[i] = static_cast<std::byte>(input[i % input.size()]);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 2)
        return 0;
    std::error_code ec;
    Segment segment = Segment::create_anonymous(64 << 10, {.max_size_bytes = 256 << 10}, ec);
    if (ec)
        std::abort();
    const auto input = std::span(data + 1, size - 1);
    std::byte buffer[1024];
    std::size_t length = 0;
    const auto message = std::as_bytes(std::span("a message of some length", 24));
    switch (data[0] % 4) {
    case 0: {
        SpscRing consumer = SpscRing::create(segment, "spsc", 1024);
        SpscRing producer = SpscRing::open(segment, "spsc");
        for (int i = 0; i < data[0] / 4 % 8; ++i)
            (void)producer.try_push(message);
        overwrite(segment, segment.find("spsc"), input);
        for (int i = 0; i < 4; ++i) {
            RingStatus status = RingStatus::ok;
            consumer.consume([](std::span<const std::byte>) {}, 16, &status);
            check(status);
            check(consumer.try_pop(buffer, length));
            check(producer.try_push(message));
            auto slot = producer.reserve(100);
            check(slot.status);
            if (slot)
                producer.commit();
        }
        break;
    }
    case 1: {
        MpscRing consumer = MpscRing::create(segment, "mpsc", 1024, 2, {.reap_interval = std::chrono::milliseconds(0)});
        MpscProducer producer = MpscProducer::open(segment, "mpsc");
        for (int i = 0; i < data[0] / 4 % 8; ++i)
            (void)producer.try_push(message);
        overwrite(segment, segment.find("mpsc"), input);
        for (int i = 0; i < 4; ++i) {
            RingStatus status = RingStatus::ok;
            consumer.consume([](std::uint32_t, std::span<const std::byte>) {}, 16, &status);
            check(status);
            check(consumer.try_pop(buffer, length));
            consumer.reap();
            check(producer.try_push(message));
        }
        (void)consumer.stats();
        break;
    }
    case 3: {
        auto publisher = Publisher<>::create(segment, "topic", {.max_subscribers = 3, .queue_depth = 4, .max_held = 2,
            .history = 1, .reap_interval = std::chrono::milliseconds(1)});
        auto dropping = Subscriber<>::open(segment, "topic");
        auto blocking = Subscriber<>::open(segment, "topic", {.overflow = Overflow::block_publisher});
        const auto publish = [&] {
            Loan<> loan = publisher.loan(40);
            if (loan)
                check(publisher.publish(std::move(loan), std::chrono::nanoseconds(0)));
            else
                check(loan.status());
        };
        for (int i = 0; i < data[0] / 4 % 6; ++i)
            publish();
        Sample<> kept = dropping.take();
        overwrite(segment, segment.find("topic"), input);
        for (int i = 0; i < 6; ++i) {
            publish();
            for (Subscriber<>* subscriber : {&dropping, &blocking}) {
                Sample<> sample = subscriber->take();
                check(sample.status());
                if (sample && !sample.bytes().empty()) // checked to lie in the segment: readable
                    (void)std::to_integer<int>(sample.bytes().front() ^ sample.bytes().back());
            }
            if (i == 3)
                kept = {};
            (void)publisher.reap();
        }
        (void)publisher.stats();
        (void)dropping.stats();
        break;
    }
    default: {
        auto consumer = MpmcQueue<std::uint64_t>::create(segment, "mpmc", 16);
        auto producer = MpmcQueue<std::uint64_t>::open(segment, "mpmc");
        for (std::uint64_t i = 0; i < data[0] / 4 % 8; ++i)
            (void)producer.try_push(i);
        overwrite(segment, segment.find("mpmc"), input);
        std::uint64_t item = 0;
        for (int i = 0; i < 20; ++i) {
            check(consumer.try_pop(item));
            check(producer.try_push(item));
            if (i % 4 == 0)
                (void)consumer.recover(); // slot intents and sequences are the fuzzer's too
        }
        break;
    }
    }
    return 0;
}
