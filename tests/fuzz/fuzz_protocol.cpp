// Fuzz target: control frames as a peer can send them. The first input byte
// picks how many fds (0..3) travel with the rest and whether the bytes are
// decoded directly or go through a real Unix socket into FrameSocket. Every
// input must end in a frame or a clear error, never a crash, and every fd
// that came with the bytes must be closed or handed over, never leaked.
#include <shmlink/transport/frame_socket.hpp>
#include <shmlink/transport/protocol.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace {

using namespace shmlink;

/// The lowest free fd number: received fds take the lowest numbers, so a
/// leaked one moves it.
int lowest_free_fd()
{
    const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ::close(fd);
    return fd;
}

void through_socket(std::span<const std::byte> bytes, int fd_count)
{
    const int baseline = lowest_free_fd();
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return;
    {
        std::vector<int> fds;
        for (int i = 0; i < fd_count; ++i)
            fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        msghdr message {};
        iovec part {const_cast<std::byte*>(bytes.data()), bytes.size()};
        message.msg_iov = &part;
        message.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 3)] = {};
        if (fd_count > 0) {
            message.msg_control = control;
            message.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
            cmsghdr* header = CMSG_FIRSTHDR(&message);
            header->cmsg_level = SOL_SOCKET;
            header->cmsg_type = SCM_RIGHTS;
            header->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
            std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fd_count);
        }
        (void)::sendmsg(pair[0], &message, MSG_NOSIGNAL);
        for (const int fd : fds)
            ::close(fd);
        ::close(pair[0]); // the receiver sees the end after the bytes

        boost::asio::io_context io;
        FrameSocket socket(FrameSocket::Socket(io, boost::asio::local::stream_protocol(), pair[1]));
        for (int frames = 0; frames < 8; ++frames) {
            ReceivedFrame received;
            std::string reason;
            if (socket.receive(received, std::chrono::milliseconds(0), reason))
                break;
        }
    }
    if (lowest_free_fd() != baseline)
        std::abort(); // an fd that came with the bytes (or the socket) was not closed
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0)
        return 0;
    const int fd_count = data[0] & 3;
    const bool socket = (data[0] & 4) != 0;
    const auto bytes = std::as_bytes(std::span(data + 1, size - 1));
    if (socket) {
        through_socket(bytes, fd_count);
        return 0;
    }
    protocol::Header header;
    std::string reason;
    (void)protocol::decode_header(bytes, header, reason);
    protocol::Frame frame;
    if (!protocol::decode(bytes, static_cast<std::size_t>(fd_count), frame, reason)) {
        // What decodes must encode back to the same bytes.
        const auto again = protocol::encode(frame);
        if (again.size() != bytes.size() || std::memcmp(again.data(), bytes.data(), bytes.size()) != 0)
            std::abort();
    }
    return 0;
}
