// The benchmarks' processes: child processes pinned to a CPU, the state a
// parent and its children share (mapped before fork()), and the handshake
// by which a child says it is set up and when it was done.
#pragma once

#include <shmlink/core/mmap.hpp>
#include <shmlink/core/unique_fd.hpp>

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace shmlink::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_between(Clock::time_point from, Clock::time_point to)
{
    return std::chrono::duration<double>(to - from).count();
}

inline void pin_to_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof(set), &set) != 0)
        throw std::system_error(errno, std::generic_category(), "sched_setaffinity to CPU " + std::to_string(cpu));
}

/// `prefix`-pid-n, a name no other run (and no other call here) uses.
inline std::string unique_name(std::string_view prefix)
{
    static int counter = 0;
    return std::string(prefix) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

/// One T in an anonymous MAP_SHARED mapping: made before fork(), it is the
/// same object in both processes.
template <typename T>
class Shared {
public:
    Shared()
    {
        std::error_code ec;
        mapping_ = shmlink::map(sizeof(T), shmlink::Prot::read | shmlink::Prot::write,
            shmlink::Map::shared | shmlink::Map::anonymous, shmlink::UniqueFd(), 0, ec);
        if (ec)
            throw std::system_error(ec, "mmap shared state");
        object_ = new (mapping_.data()) T();
    }
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;
    ~Shared() { object_->~T(); }

    T& operator*() const noexcept { return *object_; }
    T* operator->() const noexcept { return object_; }

private:
    shmlink::Mapping mapping_;
    T* object_ = nullptr;
};

/// What the child tells the parent: that it is set up, and when it was done.
struct Handshake {
    std::atomic<std::uint32_t> ready {0};
    std::atomic<std::int64_t> done_ns {0}; // steady_clock is CLOCK_MONOTONIC: one clock for both processes

    void set_ready() noexcept { ready.store(1, std::memory_order_release); } // release: pairs with wait_ready()
    // relaxed: the parent reads it after waitpid(), which orders everything the child did before.
    void set_done() noexcept { done_ns.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed); }
};

/// A child process pinned to `cpu` that runs `body(Handshake&)` and exits 0
/// if it returned true. The destructor kills a child not joined.
class Child {
public:
    template <typename Body>
    Child(int cpu, Body&& body)
    {
        pid_ = ::fork();
        if (pid_ < 0)
            throw std::system_error(errno, std::generic_category(), "fork");
        if (pid_ == 0)
            run(cpu, body);
    }
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child()
    {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }

    /// Spins until the child is set up; false if it exited first.
    bool wait_ready()
    {
        // acquire: pairs with the release store in Handshake::set_ready().
        while (handshake_->ready.load(std::memory_order_acquire) == 0) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return false;
            }
            ::sched_yield(); // the child may be setting up on this CPU
        }
        return true;
    }
    /// Waits for the child to exit; true if its body succeeded.
    bool join()
    {
        int status = 0;
        const pid_t pid = std::exchange(pid_, -1);
        return pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    /// When the child called set_done(); valid after join().
    [[nodiscard]] Clock::time_point done_at() const noexcept
    {
        // relaxed: pairs with Handshake::set_done(); join() has waited for the child to exit.
        return Clock::time_point(Clock::duration(handshake_->done_ns.load(std::memory_order_relaxed)));
    }

private:
    template <typename Body>
    [[noreturn]] void run(int cpu, Body& body) noexcept
    {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL); // a parent that gives up must not leave a spinning child
        bool ok = false;
        try {
            pin_to_cpu(cpu);
            ok = body(*handshake_);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "child: %s\n", e.what());
        }
        // _exit, not exit: the parent's objects in this copy of its memory must
        // not run destructors (the creator's Segment would unlink its file) and
        // the parent's pending stdout must not be flushed twice.
        ::_exit(ok ? 0 : 1);
    }

    Shared<Handshake> handshake_; // mapped before fork(), in the constructor's member initialisation
    pid_t pid_ = -1;
};

/// A benchmark's parent, before it measures: SIGALRM (armed around each
/// measurement with alarm()) ends the run with status 3, naming `program`,
/// and this process is pinned to `cpu`. False, with the reason on stderr,
/// when the CPU cannot be had (`other_cpu` is named there too).
inline bool start_benchmark(const char* program, int cpu, int other_cpu)
{
    static const char* name = nullptr; // for the handler, which can capture nothing
    name = program;
    struct sigaction watchdog {};
    watchdog.sa_handler = [](int) {
        const char* const text = ": a measurement hung; giving up\n";
        // write() only: async-signal-safe. Nothing to do if stderr is gone.
        if (::write(STDERR_FILENO, name, std::strlen(name)) < 0 || ::write(STDERR_FILENO, text, std::strlen(text)) < 0) {
        }
        ::_exit(3); // the children die with us (PR_SET_PDEATHSIG)
    };
    ::sigaction(SIGALRM, &watchdog, nullptr);
    try {
        pin_to_cpu(cpu);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s (needs CPUs %d and %d)\n", program, e.what(), cpu, other_cpu);
        return false;
    }
    return true;
}

} // namespace shmlink::bench
