// Test support: a fresh directory under /dev/shm holding the kinds of file
// that are not a segment and that a careless open() blocks on or fails on
// obscurely: a FIFO, a bound Unix socket and a directory. Removed with all
// it holds when it goes out of scope, also when the test fails half-way.
#pragma once

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

namespace shmlink::test {

struct HostileFiles {
    explicit HostileFiles(const std::string& tag)
        : dir("/dev/shm/shmlink-test-" + std::to_string(::getpid()) + "-" + tag + "-" + std::to_string(counter()++)),
          fifo(dir + "/fifo"), socket(dir + "/socket"), directory(dir + "/directory")
    {
        try {
            std::filesystem::create_directory(dir);
            std::filesystem::create_directory(directory);
            if (::mkfifo(fifo.c_str(), 0600) != 0)
                throw std::system_error(errno, std::system_category(), "mkfifo " + fifo);
            socket_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un address {};
            address.sun_family = AF_UNIX;
            std::strncpy(address.sun_path, socket.c_str(), sizeof(address.sun_path) - 1);
            if (socket_fd < 0 || ::bind(socket_fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0
                || ::listen(socket_fd, 1) != 0)
                throw std::system_error(errno, std::system_category(), "bind " + socket);
        } catch (...) {
            remove();
            throw;
        }
    }
    ~HostileFiles() { remove(); }
    void remove() noexcept
    {
        if (socket_fd >= 0)
            ::close(std::exchange(socket_fd, -1));
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    HostileFiles(const HostileFiles&) = delete;
    HostileFiles& operator=(const HostileFiles&) = delete;

    static std::atomic<int>& counter()
    {
        static std::atomic<int> n {0};
        return n;
    }

    std::string dir;
    std::string fifo;
    std::string socket;    ///< bound and listening: open() on it is ENXIO
    std::string directory;
    int socket_fd = -1;
};

} // namespace shmlink::test
