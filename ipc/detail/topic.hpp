// What both ends of a topic compute the same way: where a slot, its queue
// and its release ring lie, the rules the fixed fields obey, the owner word,
// and which byte of the segment file stands for whose liveness.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/topic.hpp>

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

namespace shmlink::detail {

inline constexpr std::uint32_t kMaxTopicSlots = 64;
inline constexpr std::uint32_t kMaxTopicQueueDepth = 1024;
inline constexpr std::uint32_t kMaxTopicHeld = 1024;

/// The fixed fields of a topic, as the creator chose them.
struct TopicGeometry {
    std::uint32_t slot_count = 0;
    std::uint32_t queue_depth = 0;
    std::uint32_t max_held = 0;
    std::uint32_t release_capacity = 0;
    std::uint32_t history = 0;
    std::uint32_t slot_bytes = 0;

    /// From the options, or "" and the rule they break in `why`.
    static TopicGeometry from(const TopicOptions& options, std::string& why);
    [[nodiscard]] std::size_t object_bytes() const noexcept
    {
        return sizeof(ipc::TopicControl) + std::size_t {slot_count} * slot_bytes;
    }
};

/// The geometry a topic's control block claims, checked against its object's
/// length; false (and `why`) when a peer rewrote it.
bool read_geometry(const ipc::TopicControl& control, std::uint64_t object_length, TopicGeometry& out,
    std::string& why) noexcept;

/// A slot's three parts, from where its TopicSlot lies: in the topic's
/// table, or in a slot file of the subscriber's own.
inline ipc::TopicSlot& slot_at(std::byte* at) noexcept { return *reinterpret_cast<ipc::TopicSlot*>(at); }
inline ipc::TopicDelivery* queue_at(std::byte* at) noexcept
{
    return reinterpret_cast<ipc::TopicDelivery*>(at + sizeof(ipc::TopicSlot));
}
inline std::uint64_t* releases_at(std::byte* at, const TopicGeometry& geometry) noexcept
{
    return reinterpret_cast<std::uint64_t*>(queue_at(at) + geometry.queue_depth);
}

/// A slot file's length (SubscriberOptions::own_slot): one slot, in whole pages.
std::size_t own_slot_file_bytes(const TopicGeometry& geometry) noexcept;
/// The byte of its slot file that a subscriber with a slot of its own locks.
inline constexpr std::uint64_t kOwnSlotLockByte = 0;

/// A topic's object seen through its geometry.
struct TopicView {
    ipc::TopicControl* control = nullptr;
    TopicGeometry geometry {};
    std::uint64_t object_offset = 0; ///< from the segment's start: where the lock bytes are

    /// Where slot `index` of the table starts.
    [[nodiscard]] std::byte* slot_bytes(std::uint32_t index) const noexcept
    {
        return reinterpret_cast<std::byte*>(control) + sizeof(ipc::TopicControl)
            + std::size_t {index} * geometry.slot_bytes;
    }
    [[nodiscard]] ipc::TopicSlot& slot(std::uint32_t index) const noexcept { return slot_at(slot_bytes(index)); }
    [[nodiscard]] ipc::TopicDelivery* queue(std::uint32_t index) const noexcept { return queue_at(slot_bytes(index)); }
    [[nodiscard]] std::uint64_t* releases(std::uint32_t index) const noexcept
    {
        return releases_at(slot_bytes(index), geometry);
    }
    /// The publisher's lock byte, then one per slot (docs/pubsub.md).
    [[nodiscard]] std::uint64_t publisher_lock_byte() const noexcept { return object_offset; }
    [[nodiscard]] std::uint64_t slot_lock_byte(std::uint32_t index) const noexcept { return object_offset + 1 + index; }
};

/// Opens the topic `name` of `segment` and checks its fixed fields.
/// Errors: those of open_object(), Errc::corrupt_object.
TopicView open_topic(Segment& segment, std::string_view name, std::error_code& ec) noexcept;

template <typename State>
std::uint64_t owner_word(pid_t pid, State state) noexcept
{
    return (std::uint64_t {static_cast<std::uint32_t>(pid)} << 32) | static_cast<std::uint32_t>(state);
}

inline ipc::SlotState slot_state(std::uint64_t owner) noexcept
{
    return static_cast<ipc::SlotState>(owner & 0xffffffffU);
}

template <typename Field>
std::atomic_ref<Field> shared(Field& field) noexcept
{
    return std::atomic_ref<Field>(field);
}

} // namespace shmlink::detail
