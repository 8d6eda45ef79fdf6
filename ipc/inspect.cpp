#include <shmlink/ipc/inspect.hpp>

#include <shmlink/ipc/detail/topic.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/wait.hpp>

#include <atomic>

namespace shmlink {
namespace {

template <typename T>
T load(const T& field) noexcept
{
    // relaxed: a snapshot for people; nothing is ordered after it.
    return std::atomic_ref(const_cast<T&>(field)).load(std::memory_order_relaxed);
}

SpscState spsc_state(const ipc::SpscRingControl& control, std::uint64_t capacity) noexcept
{
    SpscState s;
    s.capacity_bytes = capacity;
    s.head = load(control.head);
    s.tail = load(control.tail);
    s.consistent = s.head <= s.tail && s.tail - s.head <= capacity && (s.head | s.tail) % ipc::kRecordAlignment == 0;
    s.fill_bytes = s.consistent ? s.tail - s.head : 0;
    s.committed_messages = load(control.committed_messages);
    s.released_messages = load(control.released_messages);
    const std::uint64_t claim = load(control.claim);
    s.claim_open = (claim & 1) != 0;
    s.claim_bytes = static_cast<std::uint32_t>(claim >> 32);
    s.readable_sleepers = load(control.readable.sleepers);
    s.writable_sleepers = load(control.writable.sleepers);
    return s;
}

const char* lane_state_name(std::uint32_t state) noexcept
{
    switch (static_cast<ipc::LaneState>(state)) {
    case ipc::LaneState::free: return "free";
    case ipc::LaneState::owned: return "owned";
    case ipc::LaneState::draining: return "draining";
    case ipc::LaneState::held: return "held";
    }
    return "invalid";
}

} // namespace

ObjectState inspect(const Segment& segment, const ObjectInfo& object)
{
    ObjectState result {object, "unknown", {}, {}, {}, {}, {}};
    const std::byte* base = segment.base() + object.offset;
    const auto aligned = object.offset % ipc::kFalseSharingRange == 0;
    switch (static_cast<ipc::ObjectKind>(object.kind)) {
    case ipc::ObjectKind::spsc_ring: {
        result.kind = "spsc ring";
        const auto& control = *reinterpret_cast<const ipc::SpscRingControl*>(base);
        const std::uint64_t capacity = aligned && object.length >= sizeof(control) ? load(control.capacity_bytes) : 0;
        if (!SpscRing::valid_capacity(capacity) || capacity != object.length - sizeof(control))
            result.error = "capacity does not match the object's length";
        else
            result.spsc = spsc_state(control, capacity);
        break;
    }
    case ipc::ObjectKind::mpsc_ring: {
        result.kind = "mpsc ring";
        const auto& control = *reinterpret_cast<const ipc::MpscRingControl*>(base);
        if (!aligned || object.length < sizeof(control)) {
            result.error = "too short for its control block";
            break;
        }
        MpscState m;
        m.lane_count = load(control.lane_count);
        m.lane_capacity_bytes = load(control.lane_capacity_bytes);
        const std::uint64_t stride = sizeof(ipc::MpscLane) + m.lane_capacity_bytes;
        if (m.lane_count == 0 || m.lane_count > 64 || !SpscRing::valid_capacity(m.lane_capacity_bytes)
            || sizeof(control) + m.lane_count * stride != object.length) {
            result.error = "lanes do not fill the object's length";
            break;
        }
        m.abandoned_claims = load(control.abandoned_claims);
        m.dead_producers = load(control.dead_producers);
        m.corrupt_lanes = load(control.corrupt_lanes);
        for (std::uint32_t i = 0; i < m.lane_count; ++i) {
            const auto& lane = *reinterpret_cast<const ipc::MpscLane*>(base + sizeof(control) + i * stride);
            const std::uint64_t owner = load(lane.owner);
            const auto state = static_cast<ipc::LaneState>(static_cast<std::uint32_t>(owner));
            // A held lane's upper bits are its token, which is nobody's pid (and a secret).
            const pid_t pid = state == ipc::LaneState::held ? 0 : static_cast<pid_t>(owner >> 32);
            m.lanes.push_back({i, lane_state_name(static_cast<std::uint32_t>(owner)), pid,
                spsc_state(lane.ring, m.lane_capacity_bytes)});
        }
        result.mpsc = std::move(m);
        break;
    }
    case ipc::ObjectKind::mpmc_queue: {
        result.kind = "mpmc queue";
        const auto& control = *reinterpret_cast<const ipc::MpmcQueueControl*>(base);
        if (!aligned || object.length < sizeof(control)) {
            result.error = "too short for its control block";
            break;
        }
        MpmcState q;
        q.capacity = load(control.capacity);
        q.item_bytes = load(control.item_bytes);
        if (q.capacity < 2 || (q.capacity & (q.capacity - 1)) != 0 || q.item_bytes == 0 || q.item_bytes > 4096
            || sizeof(control) + ipc::kMpmcSlots * sizeof(ipc::MpmcSlot) + q.capacity * load(control.cell_bytes)
                != object.length) {
            result.error = "cells do not fill the object's length";
            break;
        }
        q.enqueue_pos = load(control.enqueue_pos);
        q.dequeue_pos = load(control.dequeue_pos);
        q.consistent = q.dequeue_pos <= q.enqueue_pos && q.enqueue_pos - q.dequeue_pos <= q.capacity;
        q.size = q.consistent ? q.enqueue_pos - q.dequeue_pos : 0;
        q.readable_sleepers = load(control.readable.sleepers);
        q.writable_sleepers = load(control.writable.sleepers);
        q.abandoned_claims = load(control.abandoned_claims);
        const auto* slots = reinterpret_cast<const ipc::MpmcSlot*>(base + sizeof(control));
        for (std::uint32_t i = 0; i < ipc::kMpmcSlots; ++i)
            q.handles += load(slots[i].owner) != 0 ? 1 : 0;
        result.mpmc = q;
        break;
    }
    case ipc::ObjectKind::topic: {
        result.kind = "topic";
        const auto& control = *reinterpret_cast<const ipc::TopicControl*>(base);
        detail::TopicGeometry g;
        if (!aligned || object.length < sizeof(control) || !detail::read_geometry(control, object.length, g, result.error))
            break;
        TopicState t;
        t.slot_count = g.slot_count;
        t.queue_depth = g.queue_depth;
        t.max_held = g.max_held;
        t.history = g.history;
        const std::uint64_t publisher = load(control.publisher);
        const auto state = static_cast<ipc::PublisherState>(static_cast<std::uint32_t>(publisher));
        t.publisher = state == ipc::PublisherState::open ? "open" : state == ipc::PublisherState::closed ? "closed" : "invalid";
        t.publisher_pid = static_cast<pid_t>(publisher >> 32);
        t.published = load(control.published);
        t.extents = load(control.extents);
        t.pool_bytes = load(control.pool_bytes);
        const detail::TopicView view {const_cast<ipc::TopicControl*>(&control), g, object.offset};
        for (std::uint32_t i = 0; i < g.slot_count; ++i) {
            const ipc::TopicSlot& slot = view.slot(i);
            const std::uint64_t owner = load(slot.owner);
            if (owner == 0)
                continue;
            TopicSlotState s;
            s.index = i;
            // apart: the slot is in its subscriber's own file (its queue is not here to show).
            static const char* const names[] = {"free", "joining", "joined", "leaving", "apart"};
            const auto slot_state = static_cast<std::uint32_t>(owner);
            s.state = slot_state < 5 ? names[slot_state] : "invalid";
            s.pid = static_cast<pid_t>(owner >> 32);
            s.depth = load(slot.depth);
            s.overflow = load(slot.overflow) == 0 ? "drop oldest" : "block publisher";
            const std::uint64_t head = load(slot.head);
            const std::uint64_t tail = load(slot.tail);
            s.consistent = head <= tail && tail - head <= g.queue_depth;
            s.queued = s.consistent ? tail - head : 0;
            s.missed = load(slot.missed);
            s.reclaimed = load(slot.reclaimed);
            s.quarantined = (load(slot.flags) & ipc::kSlotQuarantined) != 0;
            s.readable_sleepers = sole_sleeper_asleep(slot.readable) ? 1 : 0;
            t.slots.push_back(std::move(s));
        }
        result.topic = std::move(t);
        break;
    }
    }
    return result;
}

} // namespace shmlink
