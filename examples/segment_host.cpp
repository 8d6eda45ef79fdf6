// The host side of the segment demo: it creates a segment, publishes a
// greeting in it, and starts two guest processes (examples/segment_guest):
// the first attaches by path, the second by a file descriptor passed over a
// Unix socket (SCM_RIGHTS). Between the two it grows the segment. Each guest
// answers in a slot of its own; the host prints what flowed.
#include <shmlink/core/segment.hpp>
#include <shmlink/transport/fd_socket.hpp>

#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

extern char** environ;

namespace {

constexpr std::size_t kSlotBytes = 256;

/// Runs the guest next to this program with `args` and waits for it.
int run_guest(std::vector<std::string> args, const posix_spawn_file_actions_t* actions = nullptr)
{
    const auto guest = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "segment_guest";
    args.insert(args.begin(), guest.string());
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (int rc = ::posix_spawn(&pid, argv[0], actions, nullptr, argv.data(), environ); rc != 0)
        throw std::system_error(rc, std::system_category(), "spawn " + args[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_slot(const shmlink::Segment& segment, const shmlink::ObjectInfo& replies, int slot)
{
    std::string text(kSlotBytes, '\0');
    if (auto ec = segment.read_into(replies.offset + slot * kSlotBytes, std::as_writable_bytes(std::span(text))))
        throw shmlink::Error(ec, "read reply");
    return text.substr(0, text.find('\0'));
}

} // namespace

int main()
{
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // lines in order with the guests' output
    const std::string path = "/dev/shm/shmlink-demo-" + std::to_string(::getpid());
    const auto start = std::chrono::steady_clock::now();

    // 64 KiB now, room to grow to 64 MiB without ever moving.
    shmlink::Segment segment = shmlink::Segment::create(path, 64 << 10,
        {.max_size_bytes = 64 << 20, .cleanup = shmlink::Cleanup::unlink_on_close});
    const auto greeting = segment.allocate("greeting", 1, 1, kSlotBytes);
    const auto replies = segment.allocate("replies", 1, 1, 2 * kSlotBytes);
    const std::string hello = "hello from host pid " + std::to_string(::getpid());
    segment.write_at(greeting.offset, std::as_bytes(std::span(hello)));
    std::printf("host: created %s (%zu bytes), wrote \"%s\"\n", path.c_str(), segment.size_bytes(), hello.c_str());

    // Guest 1 attaches by path.
    if (run_guest({"--path", path, "--slot", "0"}) != 0)
        return 1;
    std::printf("host: guest 1 (by path) answered \"%s\"\n", read_slot(segment, replies, 0).c_str());

    // Grow, and put something in the new extent for the next guest to find.
    segment.grow(8 << 20);
    const auto late = segment.allocate("late-news", 1, 1, kSlotBytes);
    const std::string news = "written after growing to " + std::to_string(segment.size_bytes()) + " bytes";
    segment.write_at(late.offset, std::as_bytes(std::span(news)));
    std::printf("host: grew to %zu bytes (generation %llu)\n", segment.size_bytes(),
        static_cast<unsigned long long>(segment.generation()));

    // Guest 2 receives the segment's fd over a Unix socket.
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        return 1;
    shmlink::UniqueFd ours(pair[0]);
    shmlink::UniqueFd theirs(pair[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, theirs.get(), 3); // the guest's fd 3 is the socket
    const std::byte tag[] = {std::byte {'S'}};
    const shmlink::BorrowedFd fds[] = {segment.fd()};
    if (auto ec = shmlink::send_with_fds(ours, tag, fds)) // queued in the socket until the guest reads
        throw shmlink::Error(ec, "send segment fd");
    const int rc = run_guest({"--socket", "3", "--slot", "1"}, &actions);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        return 1;
    std::printf("host: guest 2 (by fd) answered \"%s\"\n", read_slot(segment, replies, 1).c_str());

    const auto elapsed = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    std::printf("host: 2 guests, 4 messages, 1 grow in %.1f ms; removing %s\n", elapsed.count(), path.c_str());
    return 0;
}
