#include <shmlink/ipc/mpmc_queue.hpp>

#include <shmlink/core/log.hpp>
#include <shmlink/ipc/detail/liveness.hpp>
#include <shmlink/ipc/detail/object.hpp>

#include <unistd.h>

namespace shmlink::detail {
namespace {

constexpr std::uint64_t kMaxCapacity = std::uint64_t {1} << 24;
constexpr std::size_t kSlotsBytes = sizeof(ipc::MpmcSlot) * ipc::kMpmcSlots;
constexpr std::uint64_t kOwned = 1;

std::uint32_t cell_bytes_for(std::size_t item_bytes) noexcept
{
    return static_cast<std::uint32_t>((sizeof(std::uint64_t) + item_bytes + 7) & ~std::size_t {7});
}

bool valid_capacity(std::uint64_t capacity) noexcept
{
    return capacity >= 2 && capacity <= kMaxCapacity && (capacity & (capacity - 1)) == 0;
}

MpmcLayout layout_of(std::byte* object, const Segment& segment, std::uint64_t capacity, std::uint32_t cell_bytes)
{
    register_waker(); // before this process's first notify() (ipc/wait.hpp)
    return {reinterpret_cast<ipc::MpmcQueueControl*>(object),
        reinterpret_cast<ipc::MpmcSlot*>(object + sizeof(ipc::MpmcQueueControl)),
        object + sizeof(ipc::MpmcQueueControl) + kSlotsBytes, capacity, cell_bytes,
        static_cast<std::uint64_t>(object - segment.base())};
}

std::uint64_t intent_of(std::uint64_t pos, bool consumer) noexcept
{
    return ((pos + 1) << 1) | (consumer ? 1 : 0);
}

std::uint64_t& sequence_at(const MpmcLayout& q, std::uint64_t pos) noexcept
{
    return *reinterpret_cast<std::uint64_t*>(q.cells + (pos & (q.capacity - 1)) * q.cell_bytes);
}

/// Whether a handle other than `me` that lives holds or tries the claim `intent`.
bool claim_held(const MpmcLayout& q, const MpmcParticipant& me, std::uint64_t intent) noexcept
{
    for (std::uint32_t i = 0; i < ipc::kMpmcSlots; ++i) {
        if (i == me.slot)
            continue;
        // acquire: pairs with the release of the claim's compare-and-swap, which follows the intent's store.
        if (std::atomic_ref(q.slots[i].intent).load(std::memory_order_acquire) == intent
            && byte_locked(me.lock, q.object_offset + i))
            return true;
    }
    return false;
}

} // namespace

MpmcLayout create_mpmc(Segment& segment, std::string_view name, std::size_t capacity, std::size_t item_bytes,
    std::error_code& ec) noexcept
{
    if (!valid_capacity(capacity) || item_bytes == 0 || item_bytes > 4096) {
        ec = Errc::invalid_argument;
        return {};
    }
    const std::uint32_t cell_bytes = cell_bytes_for(item_bytes);
    std::byte* object = create_object(segment, name, ipc::ObjectKind::mpmc_queue, ipc::kMpmcQueueVersion,
        sizeof(ipc::MpmcQueueControl) + kSlotsBytes + capacity * cell_bytes, [&](std::byte* bytes) {
            auto* control = reinterpret_cast<ipc::MpmcQueueControl*>(bytes);
            std::byte* cells = bytes + sizeof(ipc::MpmcQueueControl) + kSlotsBytes;
            // Cell i starts its first lap free for position i; the slots start free (zero).
            for (std::uint64_t i = 0; i < capacity; ++i)
                *reinterpret_cast<std::uint64_t*>(cells + i * cell_bytes) = i;
            control->capacity = capacity;
            control->item_bytes = static_cast<std::uint32_t>(item_bytes);
            control->cell_bytes = cell_bytes;
        }, ec);
    if (object == nullptr)
        return {};
    return layout_of(object, segment, capacity, cell_bytes);
}

MpmcLayout open_mpmc(Segment& segment, std::string_view name, std::size_t item_bytes, std::error_code& ec) noexcept
{
    std::uint64_t length = 0;
    std::byte* object = open_object(segment, name, ipc::ObjectKind::mpmc_queue, ipc::kMpmcQueueVersion,
        sizeof(ipc::MpmcQueueControl) + kSlotsBytes, length, ec);
    if (object == nullptr)
        return {};
    auto* control = reinterpret_cast<ipc::MpmcQueueControl*>(object);
    // relaxed: written before the directory entry was published (acquire in find()).
    const std::uint64_t capacity = std::atomic_ref(control->capacity).load(std::memory_order_relaxed);
    const std::uint32_t stored_item_bytes = control->item_bytes;
    const std::uint32_t cell_bytes = control->cell_bytes;
    // Read once, here: every later index is masked by this capacity.
    if (!valid_capacity(capacity) || stored_item_bytes == 0 || stored_item_bytes > 4096
        || cell_bytes != cell_bytes_for(stored_item_bytes)
        || length != sizeof(ipc::MpmcQueueControl) + kSlotsBytes + capacity * cell_bytes) {
        ec = Errc::corrupt_object;
        logger().warn("MPMC queue '{}': {} cells of {} bytes do not fill its {}-byte object", name, capacity,
            cell_bytes, length);
        return {};
    }
    if (stored_item_bytes != item_bytes) {
        ec = Errc::item_size_mismatch;
        return {};
    }
    return layout_of(object, segment, capacity, cell_bytes);
}

MpmcParticipant join_mpmc(const Segment& segment, const MpmcLayout& layout, std::error_code& ec) noexcept
{
    MpmcParticipant participant;
    participant.lock = reopen_segment(segment, ec);
    if (!participant.lock)
        return {};
    for (std::uint32_t i = 0; i < ipc::kMpmcSlots; ++i) {
        // A slot whose lock we get is free, whatever its fields say: whoever
        // held it last is gone, and a live handle never trusts a dead one's intent.
        if (!lock_byte(participant.lock, layout.object_offset + i))
            continue;
        ipc::MpmcSlot& slot = layout.slots[i];
        std::atomic_ref(slot.intent).store(0, std::memory_order_relaxed);
        std::atomic_ref(slot.owner).store((static_cast<std::uint64_t>(::getpid()) << 32) | kOwned, std::memory_order_release);
        participant.slot = i;
        participant.pid = ::getpid();
        return participant;
    }
    ec = Errc::no_free_lane;
    return {};
}

void leave_mpmc(const MpmcLayout& layout, MpmcParticipant& participant) noexcept
{
    if (layout.control == nullptr || !participant.lock)
        return;
    // A child forked from the handle's process shares its lock (one file
    // description) and must not clear the slot the parent still uses.
    if (participant.pid == ::getpid()) {
        ipc::MpmcSlot& slot = layout.slots[participant.slot];
        std::atomic_ref(slot.intent).store(0, std::memory_order_relaxed);
        std::atomic_ref(slot.owner).store(0, std::memory_order_release);
    }
    participant.lock.reset(); // drops the lock once no process holds the description
}

std::size_t recover_mpmc(const MpmcLayout& q, const MpmcParticipant& me) noexcept
{
    std::size_t released = 0;
    auto& control = *q.control;
    // acquire, for both positions: a claim seen in a position has its intent visible.
    const std::uint64_t dequeue = std::atomic_ref(control.dequeue_pos).load(std::memory_order_acquire);
    const std::uint64_t enqueue = std::atomic_ref(control.enqueue_pos).load(std::memory_order_acquire);

    // The consumers' head: claimed by a producer (enqueue is past it) and never written.
    std::uint64_t& head = sequence_at(q, dequeue);
    std::uint64_t unwritten = dequeue;
    if (enqueue > dequeue && std::atomic_ref(head).load(std::memory_order_acquire) == unwritten
        && !claim_held(q, me, intent_of(dequeue, false))
        // acq_rel: fails if the producer (slow, not dead) published after all.
        && std::atomic_ref(head).compare_exchange_strong(unwritten, (dequeue + 1) | ipc::kMpmcSkipped,
            std::memory_order_acq_rel)) {
        ++released;
        notify(control.readable);
    }

    // The producers' head: its cell still holds the item of the lap before,
    // claimed by a consumer (dequeue is past it) that never freed it.
    if (enqueue >= q.capacity) {
        const std::uint64_t lap_before = enqueue - q.capacity;
        std::uint64_t& tail = sequence_at(q, enqueue);
        // The item there may be a skipped one: a dead consumer can claim a dead producer's cell too.
        std::uint64_t unfreed = std::atomic_ref(tail).load(std::memory_order_acquire);
        if (dequeue > lap_before && (unfreed & ~ipc::kMpmcSkipped) == lap_before + 1
            && !claim_held(q, me, intent_of(lap_before, true))
            && std::atomic_ref(tail).compare_exchange_strong(unfreed, enqueue, std::memory_order_acq_rel)) {
            ++released;
            notify(control.writable);
        }
    }
    if (released > 0) {
        std::atomic_ref(control.abandoned_claims).fetch_add(released, std::memory_order_relaxed);
        logger().warn("MPMC queue: released {} claim(s) whose holder died", released);
    }
    // A dead handle's slot keeps its fields until a new handle takes it: only
    // a slot's holder writes it, or a sweep here could wipe the intent of a
    // handle that took the slot between our lock test and our store.
    return released;
}

} // namespace shmlink::detail
