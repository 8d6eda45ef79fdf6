// docs/layout.md is enough to read shmlink from another language: a Python 3
// script (tests/interop/ring_reader.py, standard library only, written from
// the docs) attaches by path, reads the header and directory, and pops every
// message of an SPSC ring that this C++ process fills, waking it when full.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include "tests/support/child.hpp"
#include "tests/support/ring_peer.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace shmlink;
using shmlink::test::Child;

namespace {

/// Message i as the script expects it: (i * 37) % 300 bytes, byte j = (i + j) & 0xff, i in the first 8.
std::vector<std::byte> message(std::uint64_t i)
{
    std::vector<std::byte> bytes((i * 37) % 300);
    for (std::size_t j = 0; j < bytes.size(); ++j)
        bytes[j] = static_cast<std::byte>((i + j) & 0xff);
    if (bytes.size() >= 8)
        std::memcpy(bytes.data(), &i, 8);
    return bytes;
}

Child start_reader(const std::string& path, const std::string& ring, std::uint64_t count)
{
    return Child::spawn({test::helper_path("SHMLINK_PYTHON"), test::helper_path("SHMLINK_RING_READER"), path, ring,
        std::to_string(count)});
}

} // namespace

#if defined(__x86_64__) // the reader's plain loads and stores rely on x86-64's ordering
TEST_CASE("a Python reader written from the docs pops every message a C++ producer pushes, in order")
{
    constexpr std::uint64_t kMessages = 5000;
    const test::ShmPath file("python-reader");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing::create(segment, "other", 256); // a second entry in the directory to read past
    SpscRing ring = SpscRing::create(segment, "events", 1024); // small: it wraps hundreds of times

    Child reader = start_reader(file.path, "events", kMessages);
    std::uint64_t bytes = 0;
    for (std::uint64_t i = 0; i < kMessages; ++i) {
        const auto m = message(i);
        // The ring fills at once; the producer sleeps until the reader's FUTEX_WAKE.
        REQUIRE(ring.push(m, std::chrono::seconds(30)) == RingStatus::ok);
        bytes += m.size();
    }
    const auto [answer, exit_code] = test::finish(reader, std::chrono::seconds(60));
    INFO(answer);
    CHECK(exit_code == 0);
    CHECK(test::field(answer, "messages") == kMessages);
    CHECK(test::field(answer, "bytes") == static_cast<double>(bytes));
    CHECK(test::field(answer, "size") == 1 << 20);
    CHECK(test::field(answer, "generation") == 0);
    CHECK(test::field(answer, "creator") == ::getpid());
    CHECK(test::field(answer, "capacity") == 1024);
    CHECK(answer.find("objects=events,other ") != std::string::npos);

    // Everything was released: head caught up with tail, nothing is left.
    const ObjectState state = inspect(segment, segment.find("events"));
    REQUIRE(state.spsc);
    CHECK(state.spsc->consistent);
    CHECK(state.spsc->fill_bytes == 0);
    CHECK(state.spsc->head == state.spsc->tail);
    CHECK(state.spsc->tail > 100 * 1024); // wrapped more than 100 times
}

TEST_CASE("the Python reader refuses a foreign file and a ring whose records lie, as the docs say")
{
    const test::ShmPath foreign("python-foreign");
    {
        std::ofstream out(foreign.path);
        out << std::string(8192, 'z');
    }
    Child reader = start_reader(foreign.path, "events", 1);
    const auto [answer, exit_code] = test::finish(reader);
    CHECK(exit_code == 1);
    CHECK(answer.find("error: " + foreign.path + ": not a shmlink segment (bad magic)") == 0);

    const test::ShmPath file("python-corrupt");
    Segment segment = Segment::create(file.path, 1 << 20, {.cleanup = Cleanup::unlink_on_close});
    SpscRing ring = SpscRing::create(segment, "events", 1024);
    REQUIRE(ring.try_push(message(9)) == RingStatus::ok);
    // The record header now claims 4000 bytes, more than the ring's largest message.
    const ObjectInfo info = segment.find("events");
    const std::uint32_t lie = 4000;
    REQUIRE_FALSE(segment.write_at(info.offset + 384, std::as_bytes(std::span(&lie, 1))));
    Child liar_reader = start_reader(file.path, "events", 1);
    const auto [refusal, refusal_exit] = test::finish(liar_reader);
    CHECK(refusal_exit == 1);
    CHECK(refusal.find("error: record type 1 of 4000 bytes at 0") == 0);
}
#endif
