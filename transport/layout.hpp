// The shared-memory objects of transport/, as another process sees them:
// what a Host writes into its segment beside its rings. This is an ABI; it
// matches docs/layout.md ("Objects of transport/") field for field.
#pragma once

#include <cstddef>
#include <cstdint>

namespace shmlink::transport {

/// Directory kinds (core/layout.hpp DirectoryEntry::kind) of transport objects.
enum class ObjectKind : std::uint16_t {
    host_socket = 0x0201,
};

inline constexpr std::uint16_t kHostSocketVersion = 1;
/// The directory name of the HostSocket object.
inline constexpr char kHostSocketName[] = "host.socket";
/// The longest path a Unix socket address holds (sockaddr_un::sun_path less its NUL).
inline constexpr std::size_t kSocketPathBytes = 107;

/// Where the host that created the segment listens: written once, before the
/// object is published, and never again. It lets `shmlink gc` find the socket
/// a dead host left behind; nothing else reads it, and a peer that scribbles
/// on it can make gc look at another path, never remove what is not a stale
/// socket (gc checks the file it names: docs/layout.md).
struct HostSocket {
    std::uint32_t path_bytes;           ///< 1 .. kSocketPathBytes
    std::uint32_t reserved;             ///< zero
    char path[kSocketPathBytes + 1];    ///< the absolute path, path_bytes bytes, NUL-padded
};

static_assert(sizeof(HostSocket) == 116);
static_assert(offsetof(HostSocket, path_bytes) == 0);
static_assert(offsetof(HostSocket, reserved) == 4);
static_assert(offsetof(HostSocket, path) == 8);

} // namespace shmlink::transport
