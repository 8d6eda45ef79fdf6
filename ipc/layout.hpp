// The shared-memory structures of ipc/, as another process sees them. This
// is an ABI: it matches docs/layout.md ("Rings and queues") field for field,
// and the static_asserts pin it. Fields that change are accessed with
// std::atomic_ref; everything else is fixed when the object is created.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shmlink::ipc {

/// Directory kinds (core/layout.hpp DirectoryEntry::kind) of ipc objects.
enum class ObjectKind : std::uint16_t {
    spsc_ring = 0x0101,
    mpsc_ring = 0x0102,
    mpmc_queue = 0x0103,
    topic = 0x0104,
};

/// 2: a record's header is its commit mark (the consumer polls it, not the
/// tail) and the word after the newest record is zero; version 1 rings
/// published by the tail alone and are refused.
inline constexpr std::uint16_t kSpscRingVersion = 2;
inline constexpr std::uint16_t kMpscRingVersion = 2; ///< its lanes are version 2 SPSC rings
inline constexpr std::uint16_t kMpmcQueueVersion = 2;
/// 2: a release ring holds max_held + 2 queues (the publisher reads it a
/// queue's worth of deliveries apart, not at every one); version 1 topics
/// are refused.
inline constexpr std::uint16_t kTopicVersion = 3;

/// Separates what two sides write: a cache line pair (adjacent-line
/// prefetch pulls lines in twos on x86), so neither side's stores evict the
/// other's line.
inline constexpr std::size_t kFalseSharingRange = 128;

/// A futex word and its sleeper count: a side that will sleep increments
/// `sleepers` and waits on `seq`; the other side bumps `seq` and wakes only
/// when `sleepers` is not zero, so nobody pays a syscall while nobody sleeps.
/// Each sits in the block its waking side writes (ipc/wait.hpp says why).
struct WaitWord {
    std::uint32_t seq;      ///< futex word; atomic
    std::uint32_t sleepers; ///< processes blocked or about to block on seq; atomic
};

/// The control block of an SPSC byte ring; the ring's data follows it.
struct SpscRingControl {
    // Fixed at creation; and the producer's claim, which the consumer reads
    // only to recover from the producer's death (so not on the tail's line).
    std::uint64_t capacity_bytes; ///< a power of two, 256 .. 2^31
    std::uint64_t claim;          ///< 0, or (length << 32) | 1 while a reserved message is not committed; atomic
    std::uint8_t reserved0[kFalseSharingRange - 16];
    // The producer's block.
    std::uint64_t tail; ///< bytes ever published; atomic, only grows; stored after the headers it covers
    WaitWord readable;  ///< the consumer sleeps here while the ring is empty
    /// Messages ever committed; atomic. For inspection only (nothing is read
    /// through it): a producer that does not count leaves it 0.
    std::uint64_t committed_messages;
    std::uint8_t reserved1[kFalseSharingRange - 24];
    // The consumer's block.
    std::uint64_t head; ///< bytes ever released; atomic, only grows, head <= tail
    WaitWord writable;  ///< the producer sleeps here while the ring is full
    std::uint64_t released_messages; ///< messages ever released; atomic; for inspection, as committed_messages
    std::uint8_t reserved2[kFalseSharingRange - 24];
};

/// Every record in a ring's data starts with this, 8-byte aligned; a
/// record never wraps: a padding record fills the end of the buffer instead.
/// Read and written as one 64-bit atomic word: its release store publishes
/// the record, and an all-zero word is a record not published yet.
struct RecordHeader {
    std::uint32_t length; ///< payload bytes (padding: bytes after this header up to the end)
    std::uint32_t type;   ///< RecordType
};

enum class RecordType : std::uint32_t {
    none = 0,    ///< with length 0: nothing published here yet
    message = 1,
    padding = 2,
};

inline constexpr std::size_t kRecordAlignment = 8;

/// The control block of an MPSC byte ring: `lane_count` lanes follow it,
/// each an MpscLane and then `lane_capacity_bytes` of data. Each producer
/// owns one lane, an SPSC ring of its own, so producers never contend and a
/// producer that dies mid-message holds up nobody but itself.
struct MpscRingControl {
    // Fixed at creation.
    std::uint32_t lane_count;          ///< producers that can be attached at once, 1 .. 64
    std::uint32_t reserved0;           ///< zero
    std::uint64_t lane_capacity_bytes; ///< each lane's data, a power of two, 256 .. 2^31
    std::uint8_t reserved1[kFalseSharingRange - 16];
    // Producers wake the consumer here; the consumer writes the counters.
    std::uint32_t readable_seq;      ///< futex word the consumer sleeps on while every lane is empty; atomic
    /// Lanes ever taken by producers (wraps); atomic. Bumped after each take,
    /// so the consumer rescans the owner words only when it changed and
    /// otherwise looks only at lanes that have a producer. (The sleeper
    /// counts are per lane: MpscLane::ring.readable.)
    std::uint32_t lanes_taken;
    std::uint64_t abandoned_claims;  ///< messages reserved by a producer that died before commit; atomic
    std::uint64_t dead_producers;    ///< producers the consumer found dead; atomic
    std::uint64_t corrupt_lanes;     ///< lanes the consumer found broken and quarantined; atomic
    std::uint8_t reserved3[kFalseSharingRange - 32];
};

/// Lane ownership (MpscLane::owner, low 32 bits; the pid is the high 32 bits).
enum class LaneState : std::uint32_t {
    free = 0,     ///< a producer may take it (compare-and-swap from 0)
    owned = 1,    ///< a live producer writes into it
    draining = 2, ///< its producer left or died: the consumer drains it, then frees it
    held = 3,     ///< the consumer holds it for one producer (the pid bits carry a token instead)
};

/// One producer's lane in an MPSC ring. Whether its owner lives is not
/// written here: the owner holds a lock on a byte of the segment file
/// (ipc/mpsc_ring.hpp), which the kernel drops when the owner dies.
struct MpscLane {
    std::uint64_t owner; ///< (pid << 32) | LaneState; atomic. The pid is for people reading it.
    std::uint8_t reserved[kFalseSharingRange - 8];
    SpscRingControl ring; ///< the lane's SPSC ring (readable.seq unused: readable_seq is); its data follows
};

/// The control block of an MPMC queue of fixed-size items (a bounded
/// Vyukov queue): kMpmcSlots participant slots follow it, then `capacity`
/// cells, each `cell_bytes` long, a 64-bit sequence number and then the item.
struct MpmcQueueControl {
    // Fixed at creation.
    std::uint64_t capacity;   ///< cells, a power of two, 2 .. 2^24
    std::uint32_t item_bytes; ///< sizeof(T), 1 .. 4096
    std::uint32_t cell_bytes; ///< 8 + item_bytes rounded up to 8
    std::uint64_t abandoned_claims; ///< claims whose holder died, released by recovery; atomic
    std::uint8_t reserved0[kFalseSharingRange - 24];
    // The producers' block.
    std::uint64_t enqueue_pos; ///< items ever claimed by producers; atomic
    WaitWord readable;         ///< consumers sleep here while the queue is empty
    std::uint8_t reserved1[kFalseSharingRange - 16];
    // The consumers' block.
    std::uint64_t dequeue_pos; ///< items ever claimed by consumers; atomic
    WaitWord writable;         ///< producers sleep here while it is full
    std::uint8_t reserved2[kFalseSharingRange - 16];
};

/// One handle on an MPMC queue, in some process. Its liveness is an
/// open-file-description lock on byte `object_offset + slot index` of the
/// segment file, as for MPSC lanes; `intent` names the claim it is trying
/// or holding, so that a dead holder's claim can be told from a slow one's.
struct MpmcSlot {
    std::uint64_t owner;  ///< (pid << 32) | 1 while a handle holds the slot, else 0; atomic; for people
    std::uint64_t intent; ///< 0, or ((position + 1) << 1) | side (0 producer, 1 consumer); atomic
    std::uint8_t reserved[48];
};
inline constexpr std::uint32_t kMpmcSlots = 64; ///< handles one queue can have at once
/// In a cell's sequence number: the producer that claimed this position
/// died before writing it; consumers skip the cell.
inline constexpr std::uint64_t kMpmcSkipped = std::uint64_t {1} << 63;

/// The control block of a publish/subscribe topic (docs/pubsub.md). Its
/// `slot_count` subscriber slots follow it, each `slot_bytes` long: a
/// TopicSlot, then `queue_depth` TopicDeliveries, then `release_capacity`
/// 64-bit release entries. Payloads live in extents of the segment that
/// have no directory entry; only the publisher knows them and their chunks,
/// and only the publisher counts references. Subscribers name what they
/// release by delivery position, never by chunk, so a lying subscriber can
/// lose only its own samples.
struct TopicControl {
    // Fixed at creation.
    std::uint32_t slot_count;       ///< subscribers at once, 1 .. 64
    std::uint32_t queue_depth;      ///< deliveries each slot's queue holds, a power of two, 1 .. 1024
    std::uint32_t max_held;         ///< samples a subscriber may hold at once, 1 .. 1024
    std::uint32_t release_capacity; ///< each slot's release ring, bit_ceil(max_held + 2 * queue_depth + 1)
    std::uint32_t history;          ///< samples replayed to a subscriber that joins, 0 .. queue_depth
    std::uint32_t slot_bytes;       ///< one slot's stride, a multiple of 128
    std::uint8_t reserved0[kFalseSharingRange - 24];
    // The publisher's block.
    std::uint64_t publisher;  ///< (pid << 32) | PublisherState; atomic
    std::uint64_t published;  ///< samples ever published; atomic; for inspection
    std::uint64_t extents;    ///< pool extents ever added (each one grow at most); atomic; for inspection
    std::uint64_t pool_bytes; ///< bytes of those extents; atomic; for inspection
    std::uint8_t reserved1[kFalseSharingRange - 32];
    // The subscribers' block.
    std::uint32_t joins; ///< bumped by a subscriber after it joined or left (wraps); atomic
    std::uint8_t reserved2[kFalseSharingRange - 4];
};

enum class PublisherState : std::uint32_t {
    open = 1,   ///< the publisher publishes (whether it lives: its lock, docs/pubsub.md)
    closed = 2, ///< the publisher left; what is queued stays readable
};

/// TopicSlot::owner's low 32 bits (the pid is the high 32 bits).
enum class SlotState : std::uint32_t {
    free = 0,    ///< a subscriber may take it (compare-and-swap from 0)
    joining = 1, ///< a subscriber took it and is writing its options
    joined = 2,  ///< the publisher delivers to it once it has seen it
    leaving = 3, ///< its subscriber left; the publisher takes its samples back and frees it
    /// In the topic's table only: the publisher admitted a subscriber whose
    /// slot is in memory of the subscriber's own (Publisher::admit()), and
    /// delivers there; this entry only keeps the index taken.
    apart = 4,
};

/// One subscriber's slot. The publisher writes the delivery block and the
/// queue; the subscriber writes the owner word (but for the publisher's
/// reset to free), its options, the consumer block and its release ring.
struct TopicSlot {
    // The owner and the subscriber's options, written before `joined`.
    std::uint64_t owner;       ///< (pid << 32) | SlotState; atomic
    std::uint32_t depth;       ///< the subscriber's queue depth, 1 .. queue_depth
    std::uint32_t max_held;    ///< the subscriber's hold limit, 1 .. max_held
    std::uint32_t overflow;    ///< Overflow: 0 drop the oldest, 1 block the publisher
    std::uint32_t flags;       ///< TopicSlotFlags, set by the publisher; atomic (on this read-mostly line: read at every take)
    std::uint8_t reserved1[kFalseSharingRange - 24];
    // The publisher's block.
    std::uint64_t tail;     ///< deliveries ever queued to this slot; atomic, only grows
    WaitWord readable;      ///< the subscriber sleeps here while its queue is empty
    std::uint64_t missed;   ///< samples this subscriber lost (dropped oldest, or a blocked publish timed out); atomic
    std::uint64_t reclaimed; ///< samples taken back beyond its hold limit, or named twice; atomic
    std::uint64_t admitted;  ///< in a slot of the subscriber's own: its index in the table plus 1, once admitted; atomic
    std::uint64_t release_head; ///< release entries the publisher has read; atomic
    std::uint8_t reserved3[kFalseSharingRange - 48];
    // The subscriber's block.
    std::uint64_t head;         ///< deliveries taken (by the subscriber) or dropped (by the publisher); atomic, CAS
    WaitWord writable;          ///< the publisher sleeps here while a blocking subscriber's queue is full
    std::uint64_t release_tail; ///< release entries written; atomic
    std::uint8_t reserved4[kFalseSharingRange - 24];
};

enum TopicSlotFlags : std::uint32_t {
    /// The publisher found this slot's fields broken and delivers to it no
    /// more; its samples went back to the pool. Freed once its owner is gone.
    kSlotQuarantined = 1u << 0,
};

/// One queued delivery. Its fields are written with relaxed atomic stores,
/// then its mark (release), then the slot's tail; a subscriber that reads
/// the mark of position `head` as `head + 1` (acquire) copies the fields and
/// claims it by compare-and-swap of head, which the publisher's drop also
/// competes for. The subscriber reads the tail only when head is unmarked.
struct TopicDelivery {
    std::uint64_t mark;     ///< this delivery's position in the slot's queue, plus 1 (0: never written); atomic
    std::uint64_t offset;   ///< the payload, from the segment's start
    std::uint64_t size;     ///< payload bytes
    std::uint64_t sequence; ///< samples the publisher published before this one
};

static_assert(sizeof(WaitWord) == 8);
static_assert(sizeof(SpscRingControl) == 3 * kFalseSharingRange);
static_assert(offsetof(SpscRingControl, capacity_bytes) == 0);
static_assert(offsetof(SpscRingControl, tail) == 128);
static_assert(offsetof(SpscRingControl, claim) == 8);
static_assert(offsetof(SpscRingControl, readable) == 136);
static_assert(offsetof(SpscRingControl, committed_messages) == 144);
static_assert(offsetof(SpscRingControl, head) == 256);
static_assert(offsetof(SpscRingControl, writable) == 264);
static_assert(offsetof(SpscRingControl, released_messages) == 272);
static_assert(sizeof(RecordHeader) == kRecordAlignment);

static_assert(sizeof(MpscRingControl) == 2 * kFalseSharingRange);
static_assert(offsetof(MpscRingControl, lane_count) == 0);
static_assert(offsetof(MpscRingControl, lane_capacity_bytes) == 8);
static_assert(offsetof(MpscRingControl, readable_seq) == 128);
static_assert(offsetof(MpscRingControl, lanes_taken) == 132);
static_assert(offsetof(MpscRingControl, abandoned_claims) == 136);
static_assert(offsetof(MpscRingControl, dead_producers) == 144);
static_assert(offsetof(MpscRingControl, corrupt_lanes) == 152);
static_assert(sizeof(MpscLane) == 4 * kFalseSharingRange);
static_assert(offsetof(MpscLane, owner) == 0);
static_assert(offsetof(MpscLane, ring) == 128);

static_assert(sizeof(MpmcQueueControl) == 3 * kFalseSharingRange);
static_assert(offsetof(MpmcQueueControl, capacity) == 0);
static_assert(offsetof(MpmcQueueControl, item_bytes) == 8);
static_assert(offsetof(MpmcQueueControl, cell_bytes) == 12);
static_assert(offsetof(MpmcQueueControl, abandoned_claims) == 16);
static_assert(offsetof(MpmcQueueControl, enqueue_pos) == 128);
static_assert(offsetof(MpmcQueueControl, readable) == 136);
static_assert(offsetof(MpmcQueueControl, dequeue_pos) == 256);
static_assert(offsetof(MpmcQueueControl, writable) == 264);
static_assert(sizeof(MpmcSlot) == 64);
static_assert(offsetof(MpmcSlot, owner) == 0);
static_assert(offsetof(MpmcSlot, intent) == 8);

static_assert(sizeof(TopicControl) == 3 * kFalseSharingRange);
static_assert(offsetof(TopicControl, slot_count) == 0);
static_assert(offsetof(TopicControl, queue_depth) == 4);
static_assert(offsetof(TopicControl, max_held) == 8);
static_assert(offsetof(TopicControl, release_capacity) == 12);
static_assert(offsetof(TopicControl, history) == 16);
static_assert(offsetof(TopicControl, slot_bytes) == 20);
static_assert(offsetof(TopicControl, publisher) == 128);
static_assert(offsetof(TopicControl, published) == 136);
static_assert(offsetof(TopicControl, extents) == 144);
static_assert(offsetof(TopicControl, pool_bytes) == 152);
static_assert(offsetof(TopicControl, joins) == 256);
static_assert(sizeof(TopicSlot) == 3 * kFalseSharingRange);
static_assert(offsetof(TopicSlot, owner) == 0);
static_assert(offsetof(TopicSlot, depth) == 8);
static_assert(offsetof(TopicSlot, max_held) == 12);
static_assert(offsetof(TopicSlot, overflow) == 16);
static_assert(offsetof(TopicSlot, flags) == 20);
static_assert(offsetof(TopicSlot, tail) == 128);
static_assert(offsetof(TopicSlot, readable) == 136);
static_assert(offsetof(TopicSlot, missed) == 144);
static_assert(offsetof(TopicSlot, reclaimed) == 152);
static_assert(offsetof(TopicSlot, admitted) == 160);
static_assert(offsetof(TopicSlot, release_head) == 168);
static_assert(offsetof(TopicSlot, head) == 256);
static_assert(offsetof(TopicSlot, writable) == 264);
static_assert(offsetof(TopicSlot, release_tail) == 272);
static_assert(sizeof(TopicDelivery) == 32);

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

} // namespace shmlink::ipc
