// Tests of transport/protocol.hpp: every frame survives a round trip, and
// every way a peer can get a frame wrong is refused with a reason.
#include <shmlink/core/error.hpp>
#include <shmlink/transport/protocol.hpp>

#include <doctest/doctest.h>

#include <cstring>
#include <ostream>
#include <string>

using namespace shmlink;
using namespace shmlink::protocol;

namespace {

Frame round_trip(const Frame& frame)
{
    const auto bytes = encode(frame);
    Frame out;
    std::string reason;
    const auto ec = decode(bytes, fds_of(type_of(frame)), out, reason);
    INFO(reason);
    REQUIRE_FALSE(static_cast<bool>(ec));
    CHECK(out.index() == frame.index());
    return out;
}

std::error_code decode_bytes(std::vector<std::byte> bytes, std::size_t fds, std::string& reason)
{
    Frame out;
    return decode(bytes, fds, out, reason);
}

template <typename T>
void poke(std::vector<std::byte>& bytes, std::size_t at, T value)
{
    std::memcpy(bytes.data() + at, &value, sizeof(value));
}

} // namespace

TEST_CASE("every frame type survives encode and decode")
{
    const auto hello = std::get<Hello>(round_trip(Hello {1234, "guest-a"}));
    CHECK(hello.pid == 1234);
    CHECK(hello.name == "guest-a");

    Welcome welcome {3, 0xfeedbeef, 1 << 20, 1 << 30, 7, {}};
    welcome.directory.push_back({"host.inbox", 0x0102, 1, 4096, 65536});
    welcome.directory.push_back({"guest.3", 0x0101, 1, 69632, 4480});
    const auto got = std::get<Welcome>(round_trip(welcome));
    CHECK(got.lane == 3);
    CHECK(got.token == 0xfeedbeef);
    CHECK(got.size_bytes == welcome.size_bytes);
    CHECK(got.max_size_bytes == welcome.max_size_bytes);
    CHECK(got.generation == 7);
    REQUIRE(got.directory.size() == 2);
    CHECK(got.directory[1].name == "guest.3");
    CHECK(got.directory[1].kind == 0x0101);
    CHECK(got.directory[1].offset == 69632);
    CHECK(got.directory[1].length == 4480);

    const auto grown = std::get<Grown>(round_trip(Grown {8 << 20, 9}));
    CHECK(grown.size_bytes == 8 << 20);
    CHECK(grown.generation == 9);
    CHECK(std::get<Goodbye>(round_trip(Goodbye {2})).reason == 2);
    const auto error = std::get<ErrorReport>(round_trip(ErrorReport {13, "not your uid"}));
    CHECK(error.code == 13);
    CHECK(error.text == "not your uid");
    CHECK(std::get<Joined>(round_trip(Joined {5})).lane == 5);
    CHECK(std::get<Offer>(round_trip(Offer {"frames"})).name == "frames");
    CHECK(std::get<Find>(round_trip(Find {std::string(39, 'f')})).name == std::string(39, 'f'));
    CHECK(std::get<Topic>(round_trip(Topic {"frames"})).name == "frames");
    const auto answer = std::get<Answer>(round_trip(Answer {31, "offered already"}));
    CHECK(answer.code == 31);
    CHECK(answer.text == "offered already");
    CHECK(std::get<Join>(round_trip(Join {"frames"})).name == "frames");
    CHECK(std::get<Admit>(round_trip(Admit {"frames"})).name == "frames");
    CHECK(fds_of(FrameType::offer) == 1);
    CHECK(fds_of(FrameType::topic) == 1);
    CHECK(fds_of(FrameType::join) == 1);
    CHECK(fds_of(FrameType::admit) == 1);
    CHECK(fds_of(FrameType::find) == 0);
    CHECK(fds_of(FrameType::answer) == 0);

    // A full directory still fits in one frame.
    Welcome full;
    for (int i = 0; i < 60; ++i)
        full.directory.push_back({std::string(39, 'n'), 1, 1, 4096, 8});
    CHECK(encode(full).size() <= kMaxFrameBytes);
    CHECK(std::get<Welcome>(round_trip(full)).directory.size() == 60);
}

TEST_CASE("malformed frames are refused with a reason")
{
    std::string reason;
    const auto good = encode(Grown {4096, 1});

    SUBCASE("short") { CHECK(decode_bytes({good.begin(), good.begin() + 10}, 0, reason) == Errc::bad_frame); }
    SUBCASE("bad magic")
    {
        auto bytes = good;
        poke<std::uint32_t>(bytes, 0, 0xdeadbeef);
        CHECK(decode_bytes(bytes, 0, reason) == Errc::bad_frame);
        CHECK(reason.find("magic") != std::string::npos);
    }
    SUBCASE("another protocol version: 1 (no lane in the welcome), 2 (no topics) and 3 (no joins) are refused")
    {
        auto bytes = good;
        for (std::uint16_t old = 1; old <= 3; ++old) {
            poke<std::uint16_t>(bytes, 4, old);
            CHECK(decode_bytes(bytes, 0, reason) == Errc::protocol_mismatch);
            CHECK(reason == "protocol version " + std::to_string(old) + " (this side speaks 4)");
        }
    }
    SUBCASE("a topic frame's name: empty, too long or with a NUL; an offer or topic without its fd")
    {
        auto empty = encode(Find {""});
        CHECK(decode_bytes(empty, 0, reason) == Errc::bad_frame);
        CHECK(reason.find("topic") != std::string::npos);
        auto nul = encode(Offer {std::string("a\0b", 3)});
        CHECK(decode_bytes(nul, 1, reason) == Errc::bad_frame);
        auto long_name = encode(Topic {"abc"});
        poke<std::uint16_t>(long_name, kHeaderBytes, 40);
        long_name.resize(kHeaderBytes + 2 + 40, std::byte {'x'});
        poke<std::uint32_t>(long_name, 8, 42);
        CHECK(decode_bytes(long_name, 1, reason) == Errc::bad_frame);
        CHECK(decode_bytes(encode(Offer {"frames"}), 0, reason) == Errc::bad_frame);
        CHECK(decode_bytes(encode(Topic {"frames"}), 0, reason) == Errc::bad_frame);
        CHECK(decode_bytes(encode(Find {"frames"}), 1, reason) == Errc::bad_frame);
        CHECK(decode_bytes(encode(Join {"frames"}), 0, reason) == Errc::bad_frame);
        CHECK(decode_bytes(encode(Admit {""}), 1, reason) == Errc::bad_frame);
    }
    SUBCASE("unknown type")
    {
        auto bytes = good;
        poke<std::uint16_t>(bytes, 6, 77);
        CHECK(decode_bytes(bytes, 0, reason) == Errc::bad_frame);
    }
    SUBCASE("oversized length")
    {
        auto bytes = good;
        poke<std::uint32_t>(bytes, 8, 0x7fffffff);
        Header header;
        CHECK(decode_header(bytes, header, reason) == Errc::bad_frame);
        CHECK(reason.find("maximum") != std::string::npos);
    }
    SUBCASE("truncated body")
    {
        CHECK(decode_bytes({good.begin(), good.end() - 1}, 0, reason) == Errc::bad_frame);
    }
    SUBCASE("a body longer than its type's layout")
    {
        auto bytes = good;
        bytes.resize(bytes.size() + 8);
        poke<std::uint32_t>(bytes, 8, 24);
        CHECK(decode_bytes(bytes, 0, reason) == Errc::bad_frame);
    }
    SUBCASE("fds where none belong, and a welcome without its fd")
    {
        CHECK(decode_bytes(good, 1, reason) == Errc::bad_frame);
        CHECK(reason.find("fds") != std::string::npos);
        const auto welcome = encode(Welcome {});
        CHECK(decode_bytes(welcome, 0, reason) == Errc::bad_frame);
        auto declares = good;
        poke<std::uint32_t>(declares, 12, 3);
        CHECK(decode_bytes(declares, 3, reason) == Errc::bad_frame);
    }
    SUBCASE("a name longer than allowed, and a directory name without its NUL")
    {
        auto hello = encode(Hello {1, "abc"});
        poke<std::uint16_t>(hello, kHeaderBytes + 4, 1000);
        CHECK(decode_bytes(hello, 0, reason) == Errc::bad_frame);
        Welcome welcome;
        welcome.directory.push_back({"x", 1, 1, 4096, 8});
        auto bytes = encode(welcome);
        std::memset(bytes.data() + kHeaderBytes + 28, 'x', 40);
        CHECK(decode_bytes(bytes, 1, reason) == Errc::bad_frame);
    }
    SUBCASE("a directory entry with bytes after its name's NUL, or a non-zero reserved field")
    {
        // Found by fuzz/protocol: each frame has one encoding, so nothing hides in padding.
        Welcome welcome;
        welcome.directory.push_back({"x", 1, 1, 4096, 8});
        const auto clean = encode(welcome);
        CHECK_FALSE(decode_bytes(clean, 1, reason));
        auto padded = clean;
        padded[kHeaderBytes + 28 + 20] = std::byte {'y'};
        CHECK(decode_bytes(padded, 1, reason) == Errc::bad_frame);
        CHECK(reason.find("padding") != std::string::npos);
        auto reserved = clean;
        poke<std::uint32_t>(reserved, kHeaderBytes + 28 + 44, 5);
        CHECK(decode_bytes(reserved, 1, reason) == Errc::bad_frame);
    }
}
