#include <shmlink/transport/frame_socket.hpp>

#include <shmlink/core/error.hpp>
#include <shmlink/ipc/wait.hpp>
#include <shmlink/transport/fd_socket.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <unistd.h>

namespace shmlink {

FrameSocket::FrameSocket(Socket socket) : socket_(std::move(socket)), buffer_(protocol::kMaxFrameBytes)
{
    socket_.non_blocking(true);
}

bool FrameSocket::hung_up() noexcept
{
    if (!socket_.is_open())
        return true;
    pollfd probe {socket_.native_handle(), POLLRDHUP, 0};
    return ::poll(&probe, 1, 0) == 1 && (probe.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void FrameSocket::close() noexcept
{
    boost::system::error_code ignored;
    socket_.close(ignored);
    fds_.clear();
}

std::error_code FrameSocket::send(const protocol::Frame& frame, std::span<const BorrowedFd> fds) noexcept
try {
    if (fds.size() != protocol::fds_of(protocol::type_of(frame)))
        return Errc::invalid_argument;
    const auto bytes = protocol::encode(frame);
    return send_with_fds(BorrowedFd::of(socket_.native_handle()), bytes, fds);
} catch (const std::bad_alloc&) {
    return std::make_error_code(std::errc::not_enough_memory);
}

namespace {

/// MSG_CTRUNC says only that passed fds were dropped: by the kernel at this
/// process's open-file limit, or because more came than a frame carries.
std::string why_fds_were_dropped(int socket_fd)
{
    const UniqueFd probe(::fcntl(socket_fd, F_DUPFD_CLOEXEC, 0));
    if (!probe && errno == EMFILE) {
        rlimit limit {};
        ::getrlimit(RLIMIT_NOFILE, &limit);
        return "the kernel dropped the fd the peer passed: this process is at its open-file limit (RLIMIT_NOFILE "
            + std::to_string(limit.rlim_cur) + ")";
    }
    return "the kernel dropped passed fds (MSG_CTRUNC): more than a frame may carry";
}

} // namespace

std::error_code FrameSocket::read_available(ReceivedFrame& received, std::string& reason)
{
    for (;;) {
        ReceivedMessage got;
        const std::error_code ec = recv_with_fds(BorrowedFd::of(socket_.native_handle()),
            std::span(buffer_).subspan(have_, need_ - have_), got);
        if (ec == std::errc::operation_would_block || ec == std::errc::resource_unavailable_try_again)
            return std::make_error_code(std::errc::operation_would_block);
        if (ec) {
            // Whatever came of this frame is dropped, its fds closed now.
            const bool mid_frame = have_ != 0;
            fds_.clear();
            have_ = 0;
            need_ = protocol::kHeaderBytes;
            if (ec == Errc::peer_closed && mid_frame) {
                reason = "hung up in the middle of a frame";
                return protocol::bad_frame();
            }
            if (ec == Errc::control_truncated)
                reason = why_fds_were_dropped(socket_.native_handle());
            return ec;
        }
        for (auto& fd : got.fds)
            fds_.push_back(std::move(fd));
        if (fds_.size() > 1) {
            fds_.clear(); // closes them: no frame carries more than one
            reason = "more fds than a frame may carry";
            return protocol::bad_frame();
        }
        have_ += got.bytes;
        if (have_ < need_)
            continue;
        if (need_ == protocol::kHeaderBytes) {
            protocol::Header header;
            if (const auto bad = protocol::decode_header(std::span(buffer_).first(have_), header, reason)) {
                fds_.clear();
                have_ = 0;
                return bad;
            }
            need_ = protocol::kHeaderBytes + header.body_bytes;
            if (have_ < need_)
                continue;
        }
        // A whole frame: decode it and start on the next.
        const std::error_code bad = protocol::decode(std::span(buffer_).first(have_), fds_.size(), received.frame, reason);
        have_ = 0;
        need_ = protocol::kHeaderBytes;
        if (bad) {
            fds_.clear();
            return bad;
        }
        received.fds = std::move(fds_);
        fds_.clear();
        return {};
    }
}

std::error_code FrameSocket::receive(ReceivedFrame& received, std::chrono::milliseconds timeout, std::string& reason)
{
    const auto deadline = deadline_after(timeout);
    for (;;) {
        const std::error_code ec = read_available(received, reason);
        if (ec != std::errc::operation_would_block)
            return ec;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return Errc::timed_out;
        pollfd p {socket_.native_handle(), POLLIN, 0};
        const auto wait_ms = std::min<std::chrono::milliseconds::rep>(left.count(), 60'000); // poll takes an int
        if (::poll(&p, 1, static_cast<int>(wait_ms)) < 0 && errno != EINTR)
            return errno_code();
    }
}

} // namespace shmlink
