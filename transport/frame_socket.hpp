// One end of a control connection (docs/protocol.md) on a Boost.Asio Unix
// stream socket: whole frames out, with their fds (SCM_RIGHTS), and whole,
// checked frames in, asynchronously on an io_context or synchronously with
// a timeout. A frame that breaks the protocol is an error with a reason,
// and any fd that came with it is closed.
#pragma once

#include <shmlink/core/unique_fd.hpp>
#include <shmlink/transport/asio.hpp>
#include <shmlink/transport/protocol.hpp>

#include <chrono>
#include <cstddef>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace shmlink {

/// A frame as received, with the fds it carried (close-on-exec).
struct ReceivedFrame {
    protocol::Frame frame {};
    std::vector<UniqueFd> fds {};
};

class FrameSocket {
public:
    using Socket = boost::asio::local::stream_protocol::socket;

    /// Takes the socket and makes it non-blocking.
    explicit FrameSocket(Socket socket);

    /// Sends one frame with its fds (protocol::fds_of its type). Frames are
    /// small: the kernel takes one whole unless the peer stopped reading for
    /// long, which is an error (EAGAIN) rather than a wait.
    std::error_code send(const protocol::Frame& frame, std::span<const BorrowedFd> fds = {}) noexcept;

    /// Waits up to `timeout` for one whole frame. Errors: Errc::timed_out,
    /// Errc::peer_closed, Errc::bad_frame or protocol_mismatch (with
    /// `reason`), errno.
    std::error_code receive(ReceivedFrame& received, std::chrono::milliseconds timeout, std::string& reason);

    /// Calls `handler(std::error_code, ReceivedFrame, std::string reason)`
    /// on the socket's executor once a whole frame arrived, or the
    /// connection failed. One receive at a time.
    template <typename Handler>
    void async_receive(Handler&& handler)
    {
        socket_.async_wait(Socket::wait_read,
            [this, handler = std::forward<Handler>(handler)](const boost::system::error_code& wait_error) mutable {
                ReceivedFrame received;
                std::string reason;
                std::error_code ec;
                if (wait_error)
                    ec = wait_error == boost::asio::error::operation_aborted
                        ? std::make_error_code(std::errc::operation_canceled)
                        : std::error_code(wait_error.value(), std::system_category());
                else
                    ec = read_available(received, reason);
                if (ec == std::errc::operation_would_block) {
                    async_receive(std::move(handler));
                    return;
                }
                handler(ec, std::move(received), std::move(reason));
            });
    }

    [[nodiscard]] bool is_open() const noexcept { return socket_.is_open(); }
    /// True when the peer has hung up (its end is closed), even though
    /// frames it sent before may still wait to be read. Never waits.
    [[nodiscard]] bool hung_up() noexcept;
    void close() noexcept;

private:
    /// Makes what progress it can on the frame being read without blocking:
    /// a whole frame, operation_would_block, or an error.
    std::error_code read_available(ReceivedFrame& received, std::string& reason);

    Socket socket_;
    std::vector<std::byte> buffer_; // the frame read so far
    std::size_t have_ = 0;
    std::size_t need_ = protocol::kHeaderBytes;
    std::vector<UniqueFd> fds_; // what came with it
};

} // namespace shmlink
