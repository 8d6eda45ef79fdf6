#include "ipc/mpmc_queue.hpp"

#include "core/log.hpp"
#include "ipc/detail/object.hpp"

namespace shmlink::detail {
namespace {

constexpr std::uint64_t kMaxCapacity = std::uint64_t {1} << 24;

std::uint32_t cell_bytes_for(std::size_t item_bytes) noexcept
{
    return static_cast<std::uint32_t>((sizeof(std::uint64_t) + item_bytes + 7) & ~std::size_t {7});
}

bool valid_capacity(std::uint64_t capacity) noexcept
{
    return capacity >= 2 && capacity <= kMaxCapacity && (capacity & (capacity - 1)) == 0;
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
        sizeof(ipc::MpmcQueueControl) + capacity * cell_bytes, [&](std::byte* bytes) {
            auto* control = reinterpret_cast<ipc::MpmcQueueControl*>(bytes);
            std::byte* cells = bytes + sizeof(ipc::MpmcQueueControl);
            // Cell i starts its first lap free for position i.
            for (std::uint64_t i = 0; i < capacity; ++i)
                *reinterpret_cast<std::uint64_t*>(cells + i * cell_bytes) = i;
            control->capacity = capacity;
            control->item_bytes = static_cast<std::uint32_t>(item_bytes);
            control->cell_bytes = cell_bytes;
        }, ec);
    if (object == nullptr)
        return {};
    return {reinterpret_cast<ipc::MpmcQueueControl*>(object), object + sizeof(ipc::MpmcQueueControl), capacity, cell_bytes};
}

MpmcLayout open_mpmc(Segment& segment, std::string_view name, std::size_t item_bytes, std::error_code& ec) noexcept
{
    std::uint64_t length = 0;
    std::byte* object = open_object(segment, name, ipc::ObjectKind::mpmc_queue, ipc::kMpmcQueueVersion,
        sizeof(ipc::MpmcQueueControl), length, ec);
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
        || length != sizeof(ipc::MpmcQueueControl) + capacity * cell_bytes) {
        ec = Errc::corrupt_directory;
        logger().warn("MPMC queue '{}': {} cells of {} bytes do not fill its {}-byte object", name, capacity,
            cell_bytes, length);
        return {};
    }
    if (stored_item_bytes != item_bytes) {
        ec = Errc::item_size_mismatch;
        return {};
    }
    return {control, object + sizeof(ipc::MpmcQueueControl), capacity, cell_bytes};
}

} // namespace shmlink::detail
