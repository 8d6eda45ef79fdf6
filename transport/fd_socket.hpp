// Sending bytes together with file descriptors over a Unix socket
// (SCM_RIGHTS), as one value. Received fds are close-on-exec
// (MSG_CMSG_CLOEXEC); truncated ancillary data is an error, and on every
// error each fd that did arrive is closed.
#pragma once

#include <shmlink/core/error.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <cstddef>
#include <span>
#include <system_error>
#include <vector>

namespace shmlink {

/// Most fds one message may carry.
inline constexpr std::size_t kMaxFdsPerMessage = 16;

/// A message as received: how many payload bytes landed in the caller's buffer, and the fds.
struct ReceivedMessage {
    std::size_t bytes = 0;
    std::vector<UniqueFd> fds {};
};

/// Sends `payload` (at least one byte: a stream socket cannot carry fds
/// alone) with `fds` in one sendmsg. Retries EINTR. On a non-blocking
/// socket, EAGAIN means nothing was sent; once the first byte is out the
/// call waits (poll) until the whole message is, so framing is never lost.
/// Errors: errno (EPIPE, EAGAIN, ...), Errc::too_many_fds.
std::error_code send_with_fds(BorrowedFd socket, std::span<const std::byte> payload,
    std::span<const BorrowedFd> fds = {}) noexcept;

/// Receives one message into `buffer` with up to kMaxFdsPerMessage fds.
/// Errors: Errc::peer_closed (orderly hang-up), Errc::control_truncated
/// (MSG_CTRUNC: the sender sent more fds than fit), Errc::message_truncated
/// (MSG_TRUNC on datagram and seqpacket sockets), errno otherwise. On
/// error `received` holds no fds: any that arrived were closed.
std::error_code recv_with_fds(BorrowedFd socket, std::span<std::byte> buffer, ReceivedMessage& received) noexcept;

} // namespace shmlink
