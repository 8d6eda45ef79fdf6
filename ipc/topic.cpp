#include <shmlink/ipc/topic.hpp>

#include <shmlink/core/error.hpp>
#include <shmlink/core/log.hpp>
#include <shmlink/core/mmap.hpp>
#include <shmlink/ipc/detail/object.hpp>
#include <shmlink/ipc/detail/topic.hpp>

#include <bit>

namespace shmlink {

const char* to_string(TopicStatus status) noexcept
{
    switch (status) {
    case TopicStatus::ok:
        return "ok";
    case TopicStatus::empty:
        return "empty";
    case TopicStatus::timed_out:
        return "timed out";
    case TopicStatus::closed:
        return "closed";
    case TopicStatus::corrupt:
        return "corrupt";
    case TopicStatus::hold_limit:
        return "hold limit reached";
    case TopicStatus::no_space:
        return "no space";
    case TopicStatus::too_large:
        return "too large";
    case TopicStatus::invalid:
        return "invalid";
    }
    return "unknown";
}

namespace detail {
namespace {

std::uint32_t slot_bytes_for(std::uint32_t queue_depth, std::uint32_t release_capacity) noexcept
{
    const std::size_t bytes = sizeof(ipc::TopicSlot) + std::size_t {queue_depth} * sizeof(ipc::TopicDelivery)
        + std::size_t {release_capacity} * sizeof(std::uint64_t);
    return static_cast<std::uint32_t>((bytes + ipc::kFalseSharingRange - 1) / ipc::kFalseSharingRange
        * ipc::kFalseSharingRange);
}

std::uint32_t release_capacity_for(std::uint32_t queue_depth, std::uint32_t max_held) noexcept
{
    // What an honest subscriber can release between two of the publisher's
    // reads of its ring: every sample it held, the queue as it was, and up to
    // a queue's worth delivered since (the publisher reads the ring at least
    // that often), and one (docs/layout.md).
    return std::bit_ceil(max_held + 2 * queue_depth + 1);
}

} // namespace

TopicGeometry TopicGeometry::from(const TopicOptions& options, std::string& why)
{
    TopicGeometry g;
    if (options.max_subscribers == 0 || options.max_subscribers > kMaxTopicSlots)
        why = "max_subscribers must be 1 to 64, not " + std::to_string(options.max_subscribers);
    else if (!std::has_single_bit(options.queue_depth) || options.queue_depth > kMaxTopicQueueDepth)
        why = "queue_depth must be a power of two from 1 to 1024, not " + std::to_string(options.queue_depth);
    else if (options.max_held == 0 || options.max_held > kMaxTopicHeld)
        why = "max_held must be 1 to 1024, not " + std::to_string(options.max_held);
    else if (options.history > options.queue_depth)
        why = "history must be at most queue_depth (" + std::to_string(options.queue_depth) + "), not "
            + std::to_string(options.history);
    else if (options.reap_interval <= std::chrono::milliseconds::zero()
        || options.block_timeout < std::chrono::milliseconds::zero())
        why = "reap_interval must be positive and block_timeout not negative";
    if (!why.empty())
        return g;
    g.slot_count = options.max_subscribers;
    g.queue_depth = options.queue_depth;
    g.max_held = options.max_held;
    g.release_capacity = release_capacity_for(g.queue_depth, g.max_held);
    g.history = options.history;
    g.slot_bytes = slot_bytes_for(g.queue_depth, g.release_capacity);
    return g;
}

bool read_geometry(const ipc::TopicControl& control, std::uint64_t object_length, TopicGeometry& out,
    std::string& why) noexcept
{
    // Written before the directory entry was published (acquire in find());
    // read once, into our copy, so that a peer's later scribble changes nothing.
    TopicGeometry g;
    g.slot_count = shared(control.slot_count).load(std::memory_order_relaxed);
    g.queue_depth = shared(control.queue_depth).load(std::memory_order_relaxed);
    g.max_held = shared(control.max_held).load(std::memory_order_relaxed);
    g.release_capacity = shared(control.release_capacity).load(std::memory_order_relaxed);
    g.history = shared(control.history).load(std::memory_order_relaxed);
    g.slot_bytes = shared(control.slot_bytes).load(std::memory_order_relaxed);
    const bool sane = g.slot_count != 0 && g.slot_count <= kMaxTopicSlots && std::has_single_bit(g.queue_depth)
        && g.queue_depth <= kMaxTopicQueueDepth && g.max_held != 0 && g.max_held <= kMaxTopicHeld
        && g.history <= g.queue_depth && g.release_capacity == release_capacity_for(g.queue_depth, g.max_held)
        && g.slot_bytes == slot_bytes_for(g.queue_depth, g.release_capacity) && g.object_bytes() == object_length;
    if (!sane) {
        why = "its fixed fields (" + std::to_string(g.slot_count) + " slots, queue depth "
            + std::to_string(g.queue_depth) + ", " + std::to_string(g.max_held) + " held, slot of "
            + std::to_string(g.slot_bytes) + " bytes) do not fill its " + std::to_string(object_length)
            + "-byte object";
        return false;
    }
    out = g;
    return true;
}

std::size_t own_slot_file_bytes(const TopicGeometry& geometry) noexcept
{
    return round_up_to_pages(geometry.slot_bytes);
}

TopicView open_topic(Segment& segment, std::string_view name, std::error_code& ec) noexcept
{
    std::uint64_t length = 0;
    std::byte* object = open_object(segment, name, ipc::ObjectKind::topic, ipc::kTopicVersion,
        sizeof(ipc::TopicControl), length, ec);
    if (object == nullptr)
        return {};
    TopicView view;
    view.control = reinterpret_cast<ipc::TopicControl*>(object);
    view.object_offset = static_cast<std::uint64_t>(object - segment.base());
    std::string why;
    if (!read_geometry(*view.control, length, view.geometry, why)) {
        ec = Errc::corrupt_object;
        logger().warn("topic '{}': {}", name, why);
        return {};
    }
    return view;
}

} // namespace detail
} // namespace shmlink
