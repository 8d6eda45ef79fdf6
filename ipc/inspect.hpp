// Reading the state of a ring or queue without taking part in it: for tools
// (tools/shmlink inspect) and monitoring. Every value is loaded once,
// relaxed, from a segment that may be live: a snapshot, not a transaction.
// Nothing is written, and a peer's garbage is reported, never followed.
#pragma once

#include <shmlink/core/segment.hpp>

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shmlink {

/// One SPSC ring, or one lane of an MPSC ring.
struct SpscState {
    std::uint64_t capacity_bytes = 0;
    std::uint64_t head = 0;
    std::uint64_t tail = 0;
    std::uint64_t fill_bytes = 0;       ///< tail - head, when they make sense
    std::uint64_t committed_messages = 0; ///< as the producer counted them (0 from one that does not count)
    std::uint64_t released_messages = 0;  ///< as the consumer counted them
    std::uint32_t claim_bytes = 0;      ///< a reserved, uncommitted message's length
    bool claim_open = false;
    std::uint32_t readable_sleepers = 0; ///< consumers asleep (or armed) on it
    std::uint32_t writable_sleepers = 0; ///< producers asleep on it
    bool consistent = true;             ///< false when its positions break the ring's rules
};

struct LaneState {
    std::uint32_t index = 0;
    std::string state {}; ///< "free", "owned", "draining", "held", or "invalid"
    pid_t pid = 0;     ///< as the owner wrote it; 0 for a held lane (its owner word carries a token)
    SpscState ring {};
};

struct MpscState {
    std::uint32_t lane_count = 0;
    std::uint64_t lane_capacity_bytes = 0;
    std::uint64_t abandoned_claims = 0;
    std::uint64_t dead_producers = 0;
    std::uint64_t corrupt_lanes = 0;
    std::vector<LaneState> lanes {};
};

struct MpmcState {
    std::uint64_t capacity = 0;
    std::uint32_t item_bytes = 0;
    std::uint64_t enqueue_pos = 0;
    std::uint64_t dequeue_pos = 0;
    std::uint64_t size = 0;
    std::uint32_t readable_sleepers = 0;
    std::uint32_t writable_sleepers = 0;
    std::uint64_t abandoned_claims = 0; ///< claims of dead handles released by recovery
    std::uint32_t handles = 0;          ///< slots marked taken (a dead handle's until a new handle takes it)
    bool consistent = true;
};

/// One subscriber slot of a topic.
struct TopicSlotState {
    std::uint32_t index = 0;
    std::string state {}; ///< "free", "joining", "joined", "leaving", "apart" (its queue is in its own slot file), or "invalid"
    pid_t pid = 0;
    std::uint32_t depth = 0;
    std::string overflow {}; ///< "drop oldest" or "block publisher"
    std::uint64_t queued = 0; ///< deliveries not taken yet (tail - head), when they make sense
    std::uint64_t missed = 0;
    std::uint64_t reclaimed = 0;
    bool quarantined = false;
    std::uint32_t readable_sleepers = 0;
    bool consistent = true; ///< false when its positions break the queue's rules
};

struct TopicState {
    std::uint32_t slot_count = 0;
    std::uint32_t queue_depth = 0;
    std::uint32_t max_held = 0;
    std::uint32_t history = 0;
    std::string publisher {}; ///< "open", "closed" or "invalid"
    pid_t publisher_pid = 0;
    std::uint64_t published = 0;
    std::uint64_t extents = 0;
    std::uint64_t pool_bytes = 0;
    std::vector<TopicSlotState> slots {}; ///< those not free
};

/// What an object is, as far as ipc/ knows it; `kind` names it ("spsc ring",
/// "mpsc ring", "mpmc queue", "topic", or "unknown"). A known kind whose fixed fields
/// do not match its object's length has `error` set and no state.
struct ObjectState {
    ObjectInfo object {};
    std::string kind {};
    std::string error {};
    std::optional<SpscState> spsc {};
    std::optional<MpscState> mpsc {};
    std::optional<MpmcState> mpmc {};
    std::optional<TopicState> topic {};
};

/// The state of `object` in `segment` (which may be attached read-only).
ObjectState inspect(const Segment& segment, const ObjectInfo& object);

} // namespace shmlink
