// Tests of ipc/channel.hpp.
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/channel.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <string>

using namespace shmlink;
using namespace std::chrono_literals;

namespace {

struct Tick {
    std::uint64_t seq;
    double price;
    char symbol[8];
};

} // namespace

TEST_CASE("values of one type in order, until full; a record of another size is corrupt")
{
    Segment segment = Segment::create_anonymous(1 << 20);
    auto sender = Channel<Tick>::create(segment, "ticks", 1024);
    auto receiver = Channel<Tick>::open(segment, "ticks");
    std::uint64_t sent = 0;
    while (sender.try_send(Tick {sent, 1.5 * static_cast<double>(sent), "ABC"}) == RingStatus::ok)
        ++sent;
    // Each value is one 8-byte-aligned record; the ring keeps the 8 bytes after the newest.
    CHECK(sent == (1024 - 8) / (sizeof(Tick) + 8));
    for (std::uint64_t i = 0; i < sent; ++i) {
        const auto tick = receiver.try_receive();
        REQUIRE(tick.has_value());
        CHECK(tick->seq == i);
        CHECK(tick->price == 1.5 * static_cast<double>(i));
        CHECK(std::string(tick->symbol) == "ABC");
    }
    Tick tick {};
    CHECK(receiver.try_receive(tick) == RingStatus::empty);
    CHECK(receiver.receive(tick, 10ms) == RingStatus::timed_out);

    // Somebody pushed bytes that are not a Tick.
    const char odd[3] = {1, 2, 3};
    REQUIRE(sender.ring().try_push(std::as_bytes(std::span(odd))) == RingStatus::ok);
    CHECK(receiver.try_receive(tick) == RingStatus::corrupt);
    const char longer[40] = {};
    REQUIRE(sender.ring().try_push(std::as_bytes(std::span(longer))) == RingStatus::ok);
    CHECK(receiver.try_receive(tick) == RingStatus::corrupt);

    struct Big {
        char bytes[200];
    };
    std::error_code ec;
    Channel<Big>::create(segment, "too-small", 256, ec); // a Big would never fit
    CHECK(ec == Errc::invalid_argument);
}
