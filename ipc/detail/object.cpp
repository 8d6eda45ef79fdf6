#include <shmlink/ipc/detail/object.hpp>

#include <shmlink/core/layout.hpp>
#include <shmlink/core/log.hpp>

namespace shmlink::detail {

std::byte* open_object(Segment& segment, std::string_view name, ipc::ObjectKind kind, std::uint16_t version,
    std::size_t min_length, std::uint64_t& length, std::error_code& ec) noexcept
{
    // Every end of a ring writes its side of the control block: a segment
    // mapped read-only would fault at the first write. A topic's subscriber
    // may keep its slot apart, and decides for itself (Subscriber::open).
    if (!segment.is_writable() && kind != ipc::ObjectKind::topic) {
        ec = std::make_error_code(std::errc::permission_denied);
        logger().warn("object '{}': the segment is attached read-only, and this end of it writes", name);
        return nullptr;
    }
    const auto object = segment.find(name, ec);
    if (!object)
        return nullptr;
    if (object->kind != static_cast<std::uint16_t>(kind)) {
        ec = Errc::wrong_kind;
        return nullptr;
    }
    if (object->version != version) {
        ec = Errc::version_unsupported;
        return nullptr;
    }
    // The directory was validated against the mapped size; the control block
    // must fit in the object and be aligned as the creator placed it.
    if (object->length < min_length || object->offset % ipc::kFalseSharingRange != 0) {
        ec = Errc::corrupt_directory;
        logger().warn("object '{}': {} bytes at offset {} cannot hold its control block", name, object->length,
            object->offset);
        return nullptr;
    }
    length = object->length;
    return segment.base() + object->offset;
}

std::byte* create_object(Segment& segment, std::string_view name, ipc::ObjectKind kind, std::uint16_t version,
    std::size_t length, const std::function<void(std::byte*)>& initialize, std::error_code& ec) noexcept
{
    const ObjectInfo object = segment.allocate(name, static_cast<std::uint16_t>(kind), version, length,
        ipc::kFalseSharingRange, [&](std::span<std::byte> bytes) { initialize(bytes.data()); }, ec);
    return ec ? nullptr : segment.base() + object.offset;
}

std::string name_rule_broken(std::string_view name)
{
    if (name.empty())
        return "the name is empty (1 to 39 bytes)";
    if (name.size() >= layout::kNameBytes)
        return "the name is " + std::to_string(name.size()) + " bytes long (1 to 39 bytes)";
    if (name.find('\0') != std::string_view::npos)
        return "the name holds a NUL byte";
    return {};
}

std::string capacity_rule(std::string_view what, std::uint64_t capacity_bytes)
{
    return std::string(what) + " must be a power of two from 256 to 2^31 bytes, not " + std::to_string(capacity_bytes);
}

} // namespace shmlink::detail
