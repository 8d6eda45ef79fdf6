// Test helper that plays a guest process: it attaches to a segment (by path,
// by an inherited fd, or by an fd received over a Unix socket) and then obeys
// one command per stdin line, answering one line on stdout: "ok ..." or
// "error <what>". The multi-process tests in tests/core drive it.
#include <shmlink/core/segment.hpp>
#include <shmlink/transport/fd_socket.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

using shmlink::Segment;

std::string describe(const Segment& s)
{
    std::ostringstream out;
    out << "base=" << static_cast<const void*>(s.base()) << " size=" << s.size_bytes() << " gen=" << s.generation();
    return out.str();
}

std::string attached(Segment& into, Segment&& from)
{
    into = std::move(from);
    return "ok " + describe(into);
}

std::string run(Segment& segment, const std::string& line)
{
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "attach-path") {
        std::string path;
        in >> path;
        return attached(segment, Segment::attach(path));
    }
    if (command == "attach-fd") {
        int fd = -1;
        in >> fd;
        return attached(segment, Segment::attach(shmlink::UniqueFd(fd)));
    }
    if (command == "recv-fd") {
        int socket = -1;
        in >> socket;
        shmlink::UniqueFd owned(socket);
        std::byte tag[16];
        shmlink::ReceivedMessage message;
        if (auto ec = shmlink::recv_with_fds(owned, tag, message))
            return "error recv: " + ec.message();
        if (message.fds.size() != 1)
            return "error expected one fd, got " + std::to_string(message.fds.size());
        return attached(segment, Segment::attach(std::move(message.fds[0])));
    }
    if (command == "read") {
        std::size_t offset = 0, length = 0;
        in >> offset >> length;
        std::string text(length, '\0');
        if (auto ec = segment.read_into(offset, std::as_writable_bytes(std::span(text))))
            return "error " + ec.message();
        return "ok " + text;
    }
    if (command == "write") {
        std::size_t offset = 0;
        std::string text;
        in >> offset >> text;
        if (auto ec = segment.write_at(offset, std::as_bytes(std::span(text))))
            return "error " + ec.message();
        return "ok";
    }
    if (command == "refresh") {
        const bool grew = segment.refresh();
        return std::string("ok ") + (grew ? "1 " : "0 ") + describe(segment);
    }
    if (command == "find") {
        std::string name;
        in >> name;
        const auto object = segment.find(name);
        return "ok " + std::to_string(object.offset) + " " + std::to_string(object.length);
    }
    if (command == "truncate") {
        std::size_t length = 0;
        in >> length;
        if (::ftruncate(segment.fd().get(), static_cast<off_t>(length)) != 0)
            return std::string("error ") + std::strerror(errno);
        return "ok";
    }
    if (command == "detach") {
        segment = Segment();
        return "ok";
    }
    if (command == "watch-file") {
        // Reads a whole file `count` times; each read must be all one byte
        // value past the header (an atomic commit never shows a mix).
        std::string path;
        int count = 0;
        in >> path >> count;
        int mixed = 0, reads = 0;
        std::vector<int> seen(256, 0);
        for (int i = 0; i < count; ++i) {
            std::string data;
            shmlink::UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            char chunk[65536];
            for (ssize_t n; file && (n = ::read(file.get(), chunk, sizeof(chunk))) > 0;)
                data.append(chunk, static_cast<std::size_t>(n));
            if (data.size() <= 4096)
                continue;
            ++reads;
            const char first = data[4096];
            bool uniform = true;
            for (std::size_t k = 4096; k < data.size() && uniform; ++k)
                uniform = data[k] == first;
            if (uniform)
                ++seen[static_cast<unsigned char>(first)];
            else
                ++mixed;
        }
        int kinds = 0;
        for (int s : seen)
            kinds += s > 0;
        return "ok reads=" + std::to_string(reads) + " mixed=" + std::to_string(mixed) + " kinds=" + std::to_string(kinds);
    }
    if (command == "exit")
        std::exit(0);
    return "error unknown command '" + command + "'";
}

} // namespace

int main()
{
    Segment segment;
    for (std::string line; std::getline(std::cin, line);) {
        std::string answer;
        try {
            answer = run(segment, line);
        } catch (const std::exception& e) {
            answer = std::string("error ") + e.what();
        }
        std::cout << answer << std::endl;
    }
    return 0;
}
