// Publish/subscribe over a topic: an object in a segment, found by name like
// the rings. A publisher loans a chunk of the segment, writes a sample into
// it in place and publishes it to every subscriber at once; subscribers read
// it where it lies and release it when they drop it. The payload is never
// copied. The pool of chunks needs no sizes up front: it grows with the
// segment (docs/pubsub.md). This file holds what both sides share: options,
// statuses and statistics; ipc/publisher.hpp and ipc/subscriber.hpp the ends.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

namespace shmlink {

enum class TopicStatus : std::uint8_t {
    ok,
    empty,      ///< nothing queued for this subscriber now
    timed_out,  ///< a wait reached its timeout; for publish(): a blocking subscriber stayed full and missed the sample
    closed,     ///< the publisher left or died, and everything it queued was taken
    corrupt,    ///< a peer broke the topic's rules (this subscriber's slot, or the topic's fixed fields)
    hold_limit, ///< the subscriber holds max_held samples: drop one first
    no_space,   ///< the pool cannot grow: the segment is at its maximum size
    too_large,  ///< a loan larger than any segment can hold, or a publish past the loan's size
    invalid,    ///< an empty loan or a moved-from end
};

const char* to_string(TopicStatus status) noexcept;

/// What a subscriber's full queue does to the publisher.
enum class Overflow : std::uint32_t {
    drop_oldest = 0,     ///< the oldest queued sample is dropped and counted; the publisher never waits
    block_publisher = 1, ///< publish() waits for room, up to its timeout
};

/// Fixed when the publisher creates the topic.
struct TopicOptions {
    std::uint32_t max_subscribers = 16; ///< slots, 1 .. 64
    std::uint32_t queue_depth = 16;     ///< the deepest queue a subscriber may ask for, a power of two, 1 .. 1024
    std::uint32_t max_held = 16;        ///< the most samples a subscriber may hold at once, 1 .. 1024
    std::uint32_t history = 0;          ///< the newest samples a subscriber gets when it joins, 0 .. queue_depth
    /// How often the publisher looks for subscribers that died, from its
    /// own calls (loan, publish, reap): a dead subscriber's samples are
    /// back in the pool within this, once the publisher calls in.
    std::chrono::milliseconds reap_interval {100};
    /// publish()'s wait for a block_publisher subscriber's room.
    std::chrono::milliseconds block_timeout {1000};
};

struct SubscriberOptions {
    std::uint32_t queue_depth = 0; ///< 0: the topic's queue_depth; else 1 .. it
    std::uint32_t max_held = 0;    ///< 0: the topic's max_held; else 1 .. it
    Overflow overflow = Overflow::drop_oldest;
    /// While it waits, how often the subscriber asks the kernel whether the
    /// publisher lives (a publisher that was killed cannot say it left).
    std::chrono::milliseconds liveness_interval {100};
    /// Keep this subscriber's slot (its queue, head and release ring) in a
    /// slot file of its own, a sealed memfd that only it and the publisher
    /// map, instead of in the topic's table where every subscriber could
    /// write it. The publisher must be handed the file
    /// (Subscriber::share_slot(), Publisher::admit()); until then nothing is
    /// delivered. Needed on a segment attached read-only; with a segment
    /// sealed against its peers' writes (SegmentOptions::peers_read_only),
    /// what makes a subscriber unable to touch anything another subscriber
    /// reads or releases.
    bool own_slot = false;
};

/// One size class of the publisher's pool: chunks of 2^class_log2 bytes.
struct PoolClass {
    std::uint32_t chunk_bytes = 0;
    std::uint32_t chunks = 0; ///< in this class's extents
    std::uint32_t free = 0;   ///< neither loaned, queued, held nor kept for history
};

struct PublisherStats {
    std::uint32_t subscribers = 0;       ///< slots the publisher delivers to
    std::uint64_t published = 0;
    std::uint64_t extents = 0;           ///< pool extents added
    std::uint64_t pool_bytes = 0;        ///< bytes in them
    std::uint64_t dead_subscribers = 0;  ///< subscribers found dead, whose samples came back
    std::uint64_t corrupt_slots = 0;     ///< slots quarantined because a peer broke their fields
    std::uint64_t bogus_releases = 0;    ///< releases that named nothing the subscriber held (ignored)
    std::vector<PoolClass> classes {};   ///< those with any chunk
};

struct SubscriberStats {
    std::uint64_t missed = 0;    ///< samples this subscriber lost: dropped as oldest, or a blocked publish timed out
    std::uint64_t reclaimed = 0; ///< samples the publisher took back because this subscriber broke its hold limit
    std::uint32_t held = 0;      ///< samples held now
    std::uint32_t queued = 0;    ///< deliveries waiting now
};

} // namespace shmlink
