#include "tools/directory.hpp"

#include <shmlink/core/error.hpp>
#include <shmlink/core/file_type.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/spsc_ring.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shmlink::tool {
namespace {

/// A copy of the `T` at `offset` of the file, or false when it cannot be read whole.
template <typename T>
bool read_at(const SegmentFile& file, std::uint64_t offset, T& out)
{
    return ::pread(file.fd.get(), &out, sizeof(out), static_cast<off_t>(offset)) == static_cast<ssize_t>(sizeof(out));
}

} // namespace

std::vector<layout::DirectoryEntry> read_directory(const SegmentFile& file)
{
    std::vector<layout::DirectoryEntry> entries;
    for (std::uint32_t i = 0; i < file.header.directory_count && i < layout::kDirectoryCapacity; ++i) {
        layout::DirectoryEntry entry {};
        std::string detail;
        if (read_at(file, layout::kDirectoryOffset + i * sizeof(entry), entry)
            && !layout::validate_entry(entry, i, file.header.size_bytes, detail))
            entries.push_back(entry);
    }
    return entries;
}

std::uint32_t attached_lanes(const SegmentFile& file, const std::vector<layout::DirectoryEntry>& entries)
{
    std::uint32_t attached = 0;
    for (const auto& entry : entries) {
        if (entry.kind != static_cast<std::uint16_t>(ipc::ObjectKind::mpsc_ring)
            || entry.object_version != ipc::kMpscRingVersion)
            continue;
        ipc::MpscRingControl control {};
        if (!read_at(file, entry.offset, control))
            continue;
        // The geometry ipc/inspect.cpp checks: lanes that fill the object exactly.
        const std::uint64_t stride = sizeof(ipc::MpscLane) + control.lane_capacity_bytes;
        if (control.lane_count == 0 || control.lane_count > 64 || !SpscRing::valid_capacity(control.lane_capacity_bytes)
            || sizeof(control) + control.lane_count * stride != entry.length)
            continue;
        for (std::uint32_t lane = 0; lane < control.lane_count; ++lane) {
            std::uint64_t owner = 0;
            if (!read_at(file, entry.offset + sizeof(control) + lane * stride, owner)
                || static_cast<ipc::LaneState>(owner & 0xffffffffu) != ipc::LaneState::owned)
                continue;
            // Its producer holds the lock on byte offset + lane while it lives.
            if (detail::byte_holder(file.fd, entry.offset + lane) == Liveness::alive)
                ++attached;
        }
    }
    return attached;
}

std::string socket_path_of(const transport::HostSocket& record)
{
    if (record.path_bytes == 0 || record.path_bytes > transport::kSocketPathBytes
        || ::strnlen(record.path, sizeof(record.path)) != record.path_bytes || record.path[0] != '/')
        return {};
    return std::string(record.path, record.path_bytes);
}

std::string recorded_socket(const SegmentFile& file, const std::vector<layout::DirectoryEntry>& entries)
{
    for (const auto& entry : entries) {
        if (std::string_view(entry.name) != transport::kHostSocketName
            || entry.kind != static_cast<std::uint16_t>(transport::ObjectKind::host_socket)
            || entry.object_version != transport::kHostSocketVersion || entry.length < sizeof(transport::HostSocket))
            continue;
        transport::HostSocket record {};
        if (read_at(file, entry.offset, record))
            return socket_path_of(record);
    }
    return {};
}

SocketState judge_socket(const std::string& path, struct stat& st, std::string& detail)
{
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT)
            return SocketState::missing;
        detail = "lstat: " + errno_code().message();
        return SocketState::unknown;
    }
    if (!S_ISSOCK(st.st_mode)) {
        detail = std::string("it is ") + file_type_name(st.st_mode) + ", not a socket";
        return SocketState::not_socket;
    }
    sockaddr_un address {};
    if (path.size() >= sizeof(address.sun_path)) {
        detail = "its path is too long for a socket address";
        return SocketState::unknown;
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    const UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) {
        detail = "socket: " + errno_code().message();
        return SocketState::unknown;
    }
    // Non-blocking: a listener with a full backlog answers EAGAIN at once.
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0 || errno == EAGAIN
        || errno == EINPROGRESS) {
        detail = "a host listens there";
        return SocketState::listening;
    }
    if (errno == ECONNREFUSED)
        return SocketState::stale;
    detail = "connect: " + errno_code().message(); // EACCES, EPROTOTYPE (not a stream socket), ...
    return SocketState::unknown;
}

} // namespace shmlink::tool
