// The guest side of the segment demo (started by examples/segment_host):
// attaches by path (--path P) or by an fd received on a Unix socket
// (--socket N), reads the host's greeting, looks for later news, and writes
// its answer into reply slot --slot K.
#include <shmlink/core/segment.hpp>
#include <shmlink/transport/fd_socket.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

constexpr std::size_t kSlotBytes = 256;

std::string read_text(shmlink::Segment& segment, const char* name)
{
    std::error_code ec;
    const auto object = segment.find(name, ec); // refreshes if the host grew
    if (!object)
        return "(no " + std::string(name) + ": " + ec.message() + ")";
    std::string text(object->length, '\0');
    segment.read_into(object->offset, std::as_writable_bytes(std::span(text)));
    return text.substr(0, text.find('\0'));
}

shmlink::Segment attach(int argc, char** argv)
{
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], "--path") == 0)
            return shmlink::Segment::attach(argv[i + 1]);
        if (std::strcmp(argv[i], "--socket") == 0) {
            shmlink::UniqueFd socket(std::atoi(argv[i + 1]));
            std::byte tag[1];
            shmlink::ReceivedMessage message;
            if (auto ec = shmlink::recv_with_fds(socket, tag, message))
                throw shmlink::Error(ec, "receive segment fd");
            if (message.fds.size() != 1)
                throw shmlink::Error(shmlink::Errc::invalid_argument, "receive segment fd", "expected exactly one fd");
            return shmlink::Segment::attach(std::move(message.fds[0]));
        }
    }
    throw shmlink::Error(shmlink::Errc::invalid_argument, "segment_guest", "usage: segment_guest --path P | --socket N --slot K");
}

} // namespace

int main(int argc, char** argv)
try {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    shmlink::Segment segment = attach(argc, argv);
    int slot = 0;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--slot") == 0)
            slot = std::atoi(argv[i + 1]);
    const std::string how = segment.path().empty() ? "fd" : "path";
    std::printf("guest %d: attached by %s, %zu bytes, read \"%s\"\n", ::getpid(), how.c_str(), segment.size_bytes(),
        read_text(segment, "greeting").c_str());
    if (segment.generation() > 0)
        std::printf("guest %d: read \"%s\"\n", ::getpid(), read_text(segment, "late-news").c_str());

    const auto replies = segment.find("replies");
    const std::string reply = "guest pid " + std::to_string(::getpid()) + " attached by " + how;
    if (slot < 0 || slot > 1 || reply.size() >= kSlotBytes)
        return 2;
    if (auto ec = segment.write_at(replies.offset + slot * kSlotBytes, std::as_bytes(std::span(reply))))
        throw shmlink::Error(ec, "write reply");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "segment_guest: %s\n", e.what());
    return 1;
}
