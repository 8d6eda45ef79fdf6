// Tests of transport/fd_socket.hpp: bytes and fds as one message, and every
// error path closing what arrived.
#include <shmlink/transport/fd_socket.hpp>

#include "tests/support/leaks.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

using namespace shmlink;

namespace {

std::pair<UniqueFd, UniqueFd> socket_pair(int type = SOCK_STREAM)
{
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) == 0);
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

UniqueFd open_null() { return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

} // namespace

TEST_CASE("send and receive bytes with fds")
{
    const test::ResourceCount before;
    {
        auto [a, b] = socket_pair();
        UniqueFd one = open_null();
        UniqueFd two = open_null();
        const std::string payload = "two fds";
        const BorrowedFd fds[] = {one, two};
        REQUIRE_FALSE(send_with_fds(a, std::as_bytes(std::span(payload)), fds));
        std::byte buffer[64];
        ReceivedMessage message;
        REQUIRE_FALSE(recv_with_fds(b, buffer, message));
        CHECK(message.bytes == payload.size());
        CHECK(std::memcmp(buffer, payload.data(), payload.size()) == 0);
        REQUIRE(message.fds.size() == 2);
        for (const auto& fd : message.fds)
            CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("send refuses empty payloads and too many fds")
{
    auto [a, b] = socket_pair();
    UniqueFd null = open_null();
    CHECK(send_with_fds(a, {}, {}) == Errc::invalid_argument);
    std::vector<BorrowedFd> many(kMaxFdsPerMessage + 1, BorrowedFd(null));
    const std::byte x[1] {};
    CHECK(send_with_fds(a, x, many) == Errc::too_many_fds);
}

TEST_CASE("more fds than the receiver takes: MSG_CTRUNC is reported and what arrived is closed")
{
    const test::ResourceCount before;
    {
        auto [a, b] = socket_pair();
        std::vector<UniqueFd> owned;
        for (std::size_t i = 0; i < kMaxFdsPerMessage + 4; ++i)
            owned.push_back(open_null());
        // A raw sendmsg: send_with_fds itself refuses this many.
        char control[CMSG_SPACE(sizeof(int) * (kMaxFdsPerMessage + 4))] {};
        char byte = 'x';
        iovec iov {&byte, 1};
        msghdr msg {};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * owned.size());
        for (std::size_t i = 0; i < owned.size(); ++i) {
            const int fd = owned[i].get();
            std::memcpy(CMSG_DATA(cmsg) + i * sizeof(int), &fd, sizeof(int));
        }
        REQUIRE(::sendmsg(a.get(), &msg, 0) == 1);
        const int fds_before_receive = test::count_open_fds();
        std::byte buffer[8];
        ReceivedMessage message;
        CHECK(recv_with_fds(b, buffer, message) == Errc::control_truncated);
        CHECK(message.fds.empty());
        CHECK(test::count_open_fds() == fds_before_receive);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a datagram larger than the buffer: MSG_TRUNC is reported and its fds are closed")
{
    const test::ResourceCount before;
    {
        auto [a, b] = socket_pair(SOCK_SEQPACKET);
        UniqueFd null = open_null();
        const std::string payload(100, 'p');
        const BorrowedFd fds[] = {null};
        REQUIRE_FALSE(send_with_fds(a, std::as_bytes(std::span(payload)), fds));
        const int fds_before_receive = test::count_open_fds();
        std::byte small[10];
        ReceivedMessage message;
        CHECK(recv_with_fds(b, small, message) == Errc::message_truncated);
        CHECK(test::count_open_fds() == fds_before_receive);
    }
    SHMLINK_CHECK_NO_LEAKS(before);
}

TEST_CASE("a hang-up is peer_closed")
{
    auto [a, b] = socket_pair();
    a.reset();
    std::byte buffer[8];
    ReceivedMessage message;
    CHECK(recv_with_fds(b, buffer, message) == Errc::peer_closed);
    CHECK(send_with_fds(b, buffer, {}) == std::errc::broken_pipe);
}
