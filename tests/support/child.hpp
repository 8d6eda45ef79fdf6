// Test support: a helper process started with fork + exec, driven line by
// line over its stdin/stdout, with chosen fds passed down at fixed numbers.
// Every read has a timeout, so a stuck helper fails the test instead of hanging it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace shmlink::test {

class Child {
public:
    /// An fd of ours to appear in the child as `child_fd` (>= 3).
    struct PassFd {
        int parent_fd;
        int child_fd;
    };

    /// Starts `argv` (argv[0] is the program's path).
    static Child spawn(const std::vector<std::string>& argv, const std::vector<PassFd>& pass = {});

    Child() = default;
    Child(Child&& other) noexcept;
    Child& operator=(Child&& other) noexcept;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child(); ///< kills the child if it still runs, and reaps it

    void send(const std::string& line);
    /// One line from the child's stdout, without the newline; throws on timeout or EOF.
    std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    /// Everything the child writes up to and including `marker` (a prompt
    /// that does not end its line); throws on timeout or EOF.
    std::string read_through(const std::string& marker, std::chrono::milliseconds timeout = std::chrono::seconds(30));
    std::string request(const std::string& line, std::chrono::milliseconds timeout = std::chrono::seconds(30))
    {
        send(line);
        return read_line(timeout);
    }

    /// Closes its stdin and waits for it; returns the wait status.
    int wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    void kill(int signal);
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    pid_t pid_ = -1;
    int to_child_ = -1;
    int from_child_ = -1;
    std::string buffered_;
};

/// A wait status as one number: the exit code, or 128 + the signal that killed it.
int exit_code(int status);

/// The child's answer line ("" when it ended without one) and its exit code
/// (exit_code()): for helpers that print one line and exit.
std::pair<std::string, int> finish(Child& child, std::chrono::milliseconds timeout = std::chrono::seconds(300));

/// Everything the child writes to stdout until it closes it, and its exit code (exit_code()).
std::pair<std::string, int> read_all(Child& child);

/// A helper executable's path, from the environment variable meson sets
/// for it (tests/meson.build); throws when it is not set.
std::string helper_path(const char* env_var);
/// The helper executable tests/helpers/guest.
std::string guest_helper();
/// Starts the helper named by `env_var` with `args`.
Child spawn_helper(const char* env_var, const std::vector<std::string>& args,
    const std::vector<Child::PassFd>& pass = {});

/// A fresh path under /dev/shm for one test, removed when it goes out of
/// scope (also when the test fails half-way).
struct ShmPath {
    explicit ShmPath(const std::string& tag);
    ~ShmPath();
    ShmPath(const ShmPath&) = delete;
    ShmPath& operator=(const ShmPath&) = delete;
    std::string path;
};

} // namespace shmlink::test
