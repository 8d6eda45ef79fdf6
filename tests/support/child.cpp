#include "tests/support/child.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace shmlink::test {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + std::strerror(errno)); }

} // namespace

Child Child::spawn(const std::vector<std::string>& argv, const std::vector<PassFd>& pass)
{
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
        fail("pipe2");
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);

    const pid_t pid = ::fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        // Only async-signal-safe calls from here to exec.
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        // Move passed fds out of the way first, so that one passed fd's
        // target number cannot clobber another passed fd.
        int staged[16];
        const std::size_t count = pass.size() < 16 ? pass.size() : 16;
        for (std::size_t i = 0; i < count; ++i)
            staged[i] = ::fcntl(pass[i].parent_fd, F_DUPFD, 100);
        for (std::size_t i = 0; i < count; ++i)
            ::dup2(staged[i], pass[i].child_fd); // dup2 clears FD_CLOEXEC on the target
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    Child child;
    child.pid_ = pid;
    child.to_child_ = in[1];
    child.from_child_ = out[0];
    return child;
}

Child::Child(Child&& other) noexcept { *this = std::move(other); }

Child& Child::operator=(Child&& other) noexcept
{
    std::swap(pid_, other.pid_);
    std::swap(to_child_, other.to_child_);
    std::swap(from_child_, other.from_child_);
    std::swap(buffered_, other.buffered_);
    std::swap(ended_, other.ended_);
    return *this;
}

Child::~Child()
{
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    if (to_child_ >= 0)
        ::close(to_child_);
    if (from_child_ >= 0)
        ::close(from_child_);
}

void Child::send(const std::string& line)
{
    const std::string data = line + "\n";
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(to_child_, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("write to helper");
        done += static_cast<std::size_t>(n);
    }
}

std::string Child::read_line(std::chrono::milliseconds timeout)
{
    std::string line = read_through("\n", timeout);
    line.pop_back();
    return line;
}

std::optional<std::string> Child::take_through(const std::string& marker)
{
    const auto at = buffered_.find(marker);
    if (at == std::string::npos)
        return std::nullopt;
    std::string through = buffered_.substr(0, at + marker.size());
    buffered_.erase(0, at + marker.size());
    return through;
}

bool Child::fill(std::chrono::milliseconds timeout)
{
    if (ended_)
        return false;
    pollfd p {from_child_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::max<std::chrono::milliseconds::rep>(timeout.count(), 0)));
    if (rc < 0 && errno == EINTR)
        return true;
    if (rc < 0)
        fail("poll");
    if (rc == 0)
        return true;
    char chunk[4096];
    const ssize_t n = ::read(from_child_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
        return true;
    if (n < 0)
        fail("read from helper");
    if (n == 0) {
        ended_ = true;
        return false;
    }
    buffered_.append(chunk, static_cast<std::size_t>(n));
    return true;
}

std::string Child::ended_message() const
{
    return "helper (pid " + std::to_string(pid_) + ") closed its output (exited?)"
        + (buffered_.empty() ? std::string() : " after an unfinished line: " + buffered_);
}

std::string Child::read_through(const std::string& marker, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (auto through = take_through(marker))
            return *through;
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            throw ChildTimeout("helper (pid " + std::to_string(pid_) + ") did not answer within "
                + std::to_string(timeout.count()) + " ms");
        if (!fill(left))
            throw ChildEnded(ended_message());
    }
}

std::optional<std::string> Child::poll_line()
{
    for (;;) {
        if (auto line = take_through("\n")) {
            line->pop_back();
            return line;
        }
        const std::size_t before = buffered_.size();
        if (!fill(std::chrono::milliseconds(0)))
            throw ChildEnded(ended_message());
        if (buffered_.size() == before)
            return std::nullopt; // nothing more in the pipe yet
    }
}

int Child::wait(std::chrono::milliseconds timeout)
{
    if (to_child_ >= 0) {
        ::close(to_child_);
        to_child_ = -1;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
        const pid_t got = ::waitpid(pid_, &status, WNOHANG);
        if (got == pid_)
            break;
        if (got < 0)
            fail("waitpid");
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            const pid_t pid = std::exchange(pid_, -1);
            throw ChildTimeout("helper (pid " + std::to_string(pid) + ") did not exit within "
                + std::to_string(timeout.count()) + " ms (killed)");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pid_ = -1;
    return status;
}

void Child::kill(int signal)
{
    if (pid_ > 0)
        ::kill(pid_, signal);
}

std::string helper_path(const char* env_var)
{
    const char* path = std::getenv(env_var);
    if (path == nullptr)
        throw std::runtime_error(std::string(env_var) + " is not set (run the tests through meson test)");
    return path;
}

std::string guest_helper() { return helper_path("SHMLINK_GUEST_HELPER"); }

Child spawn_helper(const char* env_var, const std::vector<std::string>& args, const std::vector<Child::PassFd>& pass)
{
    std::vector<std::string> argv {helper_path(env_var)};
    argv.insert(argv.end(), args.begin(), args.end());
    return Child::spawn(argv, pass);
}

ShmPath::ShmPath(const std::string& tag)
{
    static std::atomic<int> counter {0};
    path = "/dev/shm/shmlink-test-" + std::to_string(::getpid()) + "-" + tag + "-" + std::to_string(counter++);
}

ShmPath::~ShmPath() { ::unlink(path.c_str()); }

int exit_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::pair<std::string, int> finish(Child& child, std::chrono::milliseconds timeout)
{
    std::string line;
    try {
        line = child.read_line(timeout);
    } catch (const ChildEnded&) { // it ended without a line: its status says how
    }
    return {line, exit_code(child.wait())};
}

std::pair<std::string, int> read_all(Child& child, std::chrono::milliseconds timeout)
{
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string out;
    try {
        for (;;) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            out += child.read_line(std::max(left, std::chrono::milliseconds(0))) + "\n";
        }
    } catch (const ChildEnded&) { // it closed its output: all of it is read, an unfinished last line too
        out += child.take_rest();
    } catch (const ChildTimeout&) {
        throw ChildTimeout("helper (pid " + std::to_string(child.pid()) + ") still had not closed its output after "
            + std::to_string(timeout.count()) + " ms; it wrote:\n" + out);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return {out, exit_code(child.wait(std::max(left, std::chrono::milliseconds(1000))))};
}

} // namespace shmlink::test
