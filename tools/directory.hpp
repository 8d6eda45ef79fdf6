// What ls and gc read of a segment file beyond its header, with pread
// (nothing is mapped): its directory, the lanes guests hold, and the socket
// its host recorded. Every value comes from a file anybody with write access
// may have scribbled on: each is checked, and one that does not check out
// counts as absent.
#pragma once

#include <shmlink/core/layout.hpp>
#include <shmlink/core/liveness.hpp>
#include <shmlink/transport/layout.hpp>

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

namespace shmlink::tool {

/// The published entries of `file`'s directory that check out
/// (layout::validate_entry against the header's size).
std::vector<layout::DirectoryEntry> read_directory(const SegmentFile& file);

/// Guests attached now: the lanes of the segment's MPSC rings that are
/// owned and whose lock their producer holds (ipc/mpsc_ring.hpp), whether the
/// guest came through the host's socket or attached by path.
std::uint32_t attached_lanes(const SegmentFile& file, const std::vector<layout::DirectoryEntry>& entries);

/// The path a record holds (transport/layout.hpp), or "" when it is not a
/// valid record: a length in range, no NUL within it, a NUL after it, absolute.
std::string socket_path_of(const transport::HostSocket& record);

/// The socket path the segment's host recorded in host.socket, or "".
std::string recorded_socket(const SegmentFile& file, const std::vector<layout::DirectoryEntry>& entries);

/// What is at a path recorded as a host's socket.
enum class SocketState {
    missing,    ///< nothing there
    stale,      ///< a socket nobody listens on: connect() was refused
    listening,  ///< a socket somebody accepts connections on
    not_socket, ///< another kind of file (a symbolic link included: never followed)
    unknown,    ///< lstat or connect failed otherwise; `detail` says how
};

/// Looks at `path` without following a symbolic link and, when it is a
/// socket, tries to connect (without blocking). `st` gets its lstat.
SocketState judge_socket(const std::string& path, struct stat& st, std::string& detail);

} // namespace shmlink::tool
