// Test support: a helper process started with fork + exec, driven line by
// line over its stdin/stdout, with chosen fds passed down at fixed numbers.
// Every read has a timeout, so a stuck helper fails the test instead of hanging
// it; a helper that ended and one that is slow are different outcomes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace shmlink::test {

/// The helper closed its stdout (it exited, or is exiting) before the
/// answer the test waited for.
struct ChildEnded : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The helper is still running but did not answer (or exit) in time.
struct ChildTimeout : std::runtime_error {
    using std::runtime_error::runtime_error;
};

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
    /// One line from the child's stdout, without the newline; throws
    /// ChildTimeout or ChildEnded.
    std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    /// A line if the child has written a whole one by now, without waiting;
    /// throws ChildEnded once it closed its stdout with no line left.
    std::optional<std::string> poll_line();
    /// Everything the child writes up to and including `marker` (a prompt
    /// that does not end its line); throws ChildTimeout or ChildEnded.
    std::string read_through(const std::string& marker, std::chrono::milliseconds timeout = std::chrono::seconds(30));
    /// What the child wrote after its last whole line, taken from the buffer
    /// (an unfinished last line, once it ended).
    std::string take_rest() { return std::exchange(buffered_, {}); }
    std::string request(const std::string& line, std::chrono::milliseconds timeout = std::chrono::seconds(30))
    {
        send(line);
        return read_line(timeout);
    }

    /// Closes its stdin and waits for it; returns the wait status. Throws
    /// ChildTimeout (after killing it) when it does not exit in time.
    int wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));
    void kill(int signal);
    [[nodiscard]] pid_t pid() const { return pid_; }

private:
    std::optional<std::string> take_through(const std::string& marker);
    /// Reads what the pipe holds, waiting up to `timeout` for something;
    /// false once the child closed its stdout.
    bool fill(std::chrono::milliseconds timeout);
    [[nodiscard]] std::string ended_message() const;

    pid_t pid_ = -1;
    int to_child_ = -1;
    int from_child_ = -1;
    std::string buffered_;
    bool ended_ = false;
};

/// A wait status as one number: the exit code, or 128 + the signal that killed it.
int exit_code(int status);

/// The child's answer line ("" when it ended without one) and its exit code
/// (exit_code()): for helpers that print one line and exit. A child that
/// neither answers nor ends within `timeout` is a ChildTimeout.
std::pair<std::string, int> finish(Child& child, std::chrono::milliseconds timeout = std::chrono::seconds(300));

/// Everything the child writes to stdout until it closes it, and its exit
/// code (exit_code()). A child still writing (or silent) after `timeout` is
/// a ChildTimeout whose message holds what it wrote so far.
std::pair<std::string, int> read_all(Child& child, std::chrono::milliseconds timeout = std::chrono::seconds(300));

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
