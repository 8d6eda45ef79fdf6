// Writes the seed corpus of the fuzz targets into DIR/segment, DIR/protocol
// and DIR/rings: well-formed inputs for the fuzzer to start mutating from
// (a real segment with one ring of each kind, one frame of each type, a
// topic with subscribers, ...).
// The corpus in tests/fuzz/corpus was made with it:
//   build-fuzz/tests/fuzz/make_seeds tests/fuzz/corpus
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>
#include <shmlink/transport/protocol.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

namespace {

using namespace shmlink;

void write(const std::filesystem::path& path, std::span<const std::byte> bytes)
{
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<std::byte> with_flags(std::uint8_t flags, std::span<const std::byte> bytes)
{
    std::vector<std::byte> out {static_cast<std::byte>(flags)};
    out.insert(out.end(), bytes.begin(), bytes.end());
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    const std::filesystem::path dir = argv[1];
    const auto message = std::as_bytes(std::span("seed message", 12));

    // segment: an empty one, and one with a ring of each kind holding messages.
    Segment empty = Segment::create_anonymous(4096, {.max_size_bytes = 1 << 20});
    write(dir / "segment" / "empty", empty.bytes());
    Segment full = Segment::create_anonymous(16 << 10, {.max_size_bytes = 1 << 20});
    SpscRing spsc = SpscRing::create(full, "spsc", 1024);
    MpscRing mpsc = MpscRing::create(full, "mpsc", 512, 2);
    MpscProducer producer = MpscProducer::open(full, "mpsc");
    auto mpmc = MpmcQueue<std::uint64_t>::create(full, "mpmc", 8);
    for (std::uint64_t i = 0; i < 5; ++i) {
        (void)spsc.try_push(message);
        (void)producer.try_push(message);
        (void)mpmc.try_push(i);
    }
    write(dir / "segment" / "three-rings", full.bytes());

    // protocol: each frame type, decoded directly (flag 0) and through a socket (flag 4).
    const std::vector<protocol::Frame> frames {
        protocol::Hello {1234, "seed"},
        protocol::Welcome {1, 77, 4 << 20, 1 << 30, 2, {ObjectInfo {"host.inbox", 0x0102, 1, 4096, 8192}}},
        protocol::Grown {1 << 20, 3},
        protocol::Goodbye {},
        protocol::ErrorReport {13, "seed refusal"},
        protocol::Joined {1},
        protocol::Offer {"frames"},
        protocol::Find {"frames"},
        protocol::Topic {"frames"},
        protocol::Answer {17, "seed refusal"},
        protocol::Join {"frames"},
        protocol::Admit {"frames"},
    };
    int n = 0;
    for (const auto& frame : frames) {
        const auto bytes = protocol::encode(frame);
        const auto fds = static_cast<std::uint8_t>(protocol::fds_of(protocol::type_of(frame)));
        write(dir / "protocol" / ("direct-" + std::to_string(n)), with_flags(fds, bytes));
        write(dir / "protocol" / ("socket-" + std::to_string(n)), with_flags(static_cast<std::uint8_t>(4 | fds), bytes));
        ++n;
    }

    // rings: each kind, overwritten with a well-formed control block of its own kind.
    const char* names[] = {"spsc", "mpsc", "mpmc"};
    for (std::uint8_t kind = 0; kind < 3; ++kind) {
        const ObjectInfo object = full.find(names[kind]);
        write(dir / "rings" / names[kind],
            with_flags(static_cast<std::uint8_t>(kind + 3 * 4), full.subspan(object.offset, std::min<std::size_t>(object.length, 1024))));
    }

    // rings, the topic case (flag 3 mod 4): a topic of the fuzz target's
    // options with two subscribers, samples queued, taken and held.
    Segment pubsub = Segment::create_anonymous(64 << 10, {.max_size_bytes = 256 << 10});
    auto publisher = Publisher<>::create(pubsub, "topic", {.max_subscribers = 3, .queue_depth = 4, .max_held = 2,
        .history = 1});
    auto dropping = Subscriber<>::open(pubsub, "topic");
    auto blocking = Subscriber<>::open(pubsub, "topic", {.overflow = Overflow::block_publisher});
    for (int i = 0; i < 3; ++i) {
        Loan<> loan = publisher.loan(40);
        std::copy_n(message.begin(), message.size(), loan.bytes().begin());
        (void)publisher.publish(std::move(loan), std::chrono::nanoseconds(0));
    }
    Sample<> held = dropping.take();
    Sample<> released = blocking.take();
    released = {};
    const ObjectInfo topic = pubsub.find("topic");
    write(dir / "rings" / "topic", with_flags(3 + 3 * 4, pubsub.subspan(topic.offset, std::min<std::size_t>(topic.length, 4096))));
    return 0;
}
