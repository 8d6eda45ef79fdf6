#include <shmlink/transport/fd_socket.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace shmlink {
namespace {

// Control buffer for kMaxFdsPerMessage fds, aligned as cmsghdr requires.
union ControlBuffer {
    char bytes[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
    cmsghdr align;
};

} // namespace

std::error_code send_with_fds(BorrowedFd socket, std::span<const std::byte> payload,
    std::span<const BorrowedFd> fds) noexcept
{
    if (payload.empty())
        return Errc::invalid_argument;
    if (fds.size() > kMaxFdsPerMessage)
        return Errc::too_many_fds;
    iovec iov {const_cast<std::byte*>(payload.data()), payload.size()};
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ControlBuffer control {};
    if (!fds.empty()) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        for (std::size_t i = 0; i < fds.size(); ++i) {
            const int fd = fds[i].get();
            std::memcpy(CMSG_DATA(cmsg) + i * sizeof(int), &fd, sizeof(int));
        }
    }
    std::size_t sent = 0;
    while (sent < payload.size()) {
        const ssize_t n = ::sendmsg(socket.get(), &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && sent > 0) {
            // Part of the message is out: finish it, or the stream loses its framing.
            pollfd p {socket.get(), POLLOUT, 0};
            if (::poll(&p, 1, -1) < 0 && errno != EINTR)
                return errno_code();
            continue;
        }
        if (n < 0)
            return errno_code();
        sent += static_cast<std::size_t>(n);
        // The fds went with the first byte; a short write sends the rest plain.
        msg.msg_control = nullptr;
        msg.msg_controllen = 0;
        iov.iov_base = const_cast<std::byte*>(payload.data()) + sent;
        iov.iov_len = payload.size() - sent;
    }
    return {};
}

std::error_code recv_with_fds(BorrowedFd socket, std::span<std::byte> buffer, ReceivedMessage& received) noexcept
{
    received.bytes = 0;
    received.fds.clear();
    try {
        // Room for every fd one message can carry, so that taking ownership
        // below cannot fail half-way with fds left unowned.
        received.fds.reserve(kMaxFdsPerMessage);
    } catch (const std::bad_alloc&) {
        return std::make_error_code(std::errc::not_enough_memory);
    }
    iovec iov {buffer.data(), buffer.size()};
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ControlBuffer control {};
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof(control.bytes);
    ssize_t n;
    do
        n = ::recvmsg(socket.get(), &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno_code();

    // Take ownership of every fd that arrived before judging the message, so
    // that each error path below closes them.
    {
        for (cmsghdr* cmsg = CMSG_FIRSTHDR(&msg); cmsg != nullptr; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
            if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS || cmsg->cmsg_len < CMSG_LEN(0))
                continue;
            const std::size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int fd;
                std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
                if (received.fds.size() < received.fds.capacity())
                    received.fds.emplace_back(fd);
                else
                    ::close(fd); // cannot happen: the control buffer holds kMaxFdsPerMessage
            }
        }
    }
    std::error_code ec;
    if (msg.msg_flags & MSG_CTRUNC)
        ec = Errc::control_truncated;
    else if (msg.msg_flags & MSG_TRUNC)
        ec = Errc::message_truncated;
    else if (n == 0)
        ec = Errc::peer_closed;
    if (ec) {
        received.fds.clear();
        return ec;
    }
    received.bytes = static_cast<std::size_t>(n);
    return {};
}

} // namespace shmlink
