// The host/guest control protocol (docs/protocol.md), as values: encoding
// frames to bytes and decoding bytes a peer sent back into frames, with
// every field checked. No I/O here; transport/frame_socket.hpp moves frames.
#pragma once

#include <shmlink/core/segment.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

namespace shmlink::protocol {

inline constexpr std::uint32_t kMagic = 0x50434c53; ///< "SLCP" read as a little-endian integer
/// 2: the welcome names the guest's lane; the guest answers joined.
/// 3: guests offer and find topics (frames offer, find, topic, answer).
/// 4: a subscriber's slot file goes to the topic's publisher (join, admit).
inline constexpr std::uint16_t kVersion = 4;
inline constexpr std::size_t kHeaderBytes = 16;
inline constexpr std::size_t kMaxFrameBytes = 4096; ///< header included
inline constexpr std::size_t kMaxNameBytes = 64;
inline constexpr std::size_t kMaxDirectoryEntries = 60;
inline constexpr std::size_t kMaxTopicNameBytes = 39; ///< a topic's name is an object's: 1..39 bytes, no NUL

enum class FrameType : std::uint16_t {
    hello = 1,   ///< guest -> host: who connects
    welcome = 2, ///< host -> guest, with the segment's fd: what to attach to
    grown = 3,   ///< host -> guest: the segment grew; refresh before touching the new extent
    goodbye = 4, ///< either way: the sender leaves
    error = 5,   ///< host -> guest: why the host refuses or drops it, before closing
    joined = 6,  ///< guest -> host: it took the lane the welcome held for it and opened its rings
    offer = 7,   ///< guest -> host, with a segment's fd: a topic in it, for other guests to find
    find = 8,    ///< guest -> host: which segment holds the topic of this name?
    topic = 9,   ///< host -> guest, with the segment's fd: the answer to a find
    answer = 10, ///< host -> guest: the answer to an offer, or to a find that found nothing
    join = 11,   ///< guest -> host, with a subscriber's slot file: for the publisher of this topic to admit
    admit = 12,  ///< host -> guest, with a slot file: a subscriber of a topic this guest offered
};

struct Hello {
    std::uint32_t pid = 0;
    std::string name {}; ///< 0..64 bytes
};

struct Welcome {
    std::uint32_t lane = 0;  ///< the lane of host.inbox held for this guest
    std::uint32_t token = 0; ///< what the held lane's owner word carries until the guest takes it
    std::uint64_t size_bytes = 0;
    std::uint64_t max_size_bytes = 0;
    std::uint64_t generation = 0;
    std::vector<ObjectInfo> directory {}; ///< the segment's directory, as core/segment.hpp reads it
};

struct Grown {
    std::uint64_t size_bytes = 0;
    std::uint64_t generation = 0;
};

struct Goodbye {
    std::uint32_t reason = 0; ///< 0: a normal leave
};

struct ErrorReport {
    std::uint32_t code = 0; ///< a shmlink::Errc or errno value
    std::string text {};       ///< 0..256 bytes, for people
};

struct Joined {
    std::uint32_t lane = 0; ///< the lane the guest took: the welcome's
};

struct Offer {
    std::string name {}; ///< the topic's, 1..39 bytes, no NUL
};

struct Find {
    std::string name {}; ///< 1..39 bytes, no NUL
};

struct Topic {
    std::string name {}; ///< the find's
};

struct Answer {
    std::uint32_t code = 0; ///< 0: done; else a shmlink::Errc value
    std::string text {};    ///< 0..256 bytes, for people
};

struct Join {
    std::string name {}; ///< the topic's, 1..39 bytes, no NUL
};

struct Admit {
    std::string name {}; ///< the topic's: one the receiving guest offered
};

using Frame = std::variant<Hello, Welcome, Grown, Goodbye, ErrorReport, Joined, Offer, Find, Topic, Answer, Join, Admit>;
static_assert(std::variant_size_v<Frame> == 12, "type_of() maps the variant's index to FrameType: keep them in order");

FrameType type_of(const Frame& frame) noexcept;
/// How many fds travel with a frame of this type (welcome, offer, topic: a
/// segment; join, admit: a slot file; others: none).
std::size_t fds_of(FrameType type) noexcept;

/// Whether `name` is one a topic frame may carry: 1..39 bytes, no NUL.
bool topic_name_ok(std::string_view name) noexcept;

/// The frame's bytes, header included.
std::vector<std::byte> encode(const Frame& frame);

/// The header of a frame whose first kHeaderBytes bytes are `bytes`:
/// checks magic, version, type, size and fd count, and says how many body
/// bytes follow. On error, `reason` says what was wrong in a phrase.
struct Header {
    FrameType type {};
    std::uint32_t body_bytes = 0;
    std::uint32_t fd_count = 0;
};
std::error_code decode_header(std::span<const std::byte> bytes, Header& header, std::string& reason) noexcept;

/// A whole frame (header and body) that arrived with `fds_received` fds.
std::error_code decode(std::span<const std::byte> bytes, std::size_t fds_received, Frame& frame,
    std::string& reason);

/// The error of a malformed frame: Errc::bad_frame.
std::error_code bad_frame() noexcept;

} // namespace shmlink::protocol
