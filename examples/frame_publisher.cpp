// Publish/subscribe of 4 MiB "frames", written once and read in place by
// three subscriber processes (examples/frame_subscriber): two steady ones
// that block the publisher when they fall behind, so they see every frame,
// and one deliberately slow one that drops its oldest frames instead, and
// counts what it missed, without slowing anybody else down. The pool of
// chunks starts empty: the first 4 MiB loan grows the segment.
//
//   frame_publisher [FRAMES]
#include <shmlink/ipc/publisher.hpp>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace {

constexpr std::size_t kFrameBytes = std::size_t {4} << 20;

/// Starts examples/frame_subscriber (beside this program) with `args`.
pid_t start_subscriber(const std::vector<std::string>& args)
{
    const auto program = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "frame_subscriber";
    std::vector<std::string> words {program.string()};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& w : words)
        argv.push_back(w.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    if (const int rc = ::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ); rc != 0)
        throw std::system_error(rc, std::system_category(), "spawn " + words[0]);
    return pid;
}

/// A frame's bytes: its number at the start and one byte a page, so that
/// a reader can check it where it lies without reading all 4 MiB.
void draw(std::span<std::byte> frame, std::uint64_t number)
{
    std::memcpy(frame.data(), &number, sizeof(number));
    for (std::size_t at = 4096; at < frame.size(); at += 4096)
        frame[at] = static_cast<std::byte>(number + at / 4096);
}

} // namespace

int main(int argc, char** argv)
{
    const std::uint64_t frames = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200;
    const std::string path = "/dev/shm/shmlink-demo-frames-" + std::to_string(::getpid());
    try {
        shmlink::SegmentOptions options;
        options.cleanup = shmlink::Cleanup::unlink_on_close;
        options.max_size_bytes = std::size_t {256} << 20;
        shmlink::Segment segment = shmlink::Segment::create(path, std::size_t {1} << 20, options);
        auto publisher = shmlink::Publisher<>::create(segment, "frames", {.max_subscribers = 4, .queue_depth = 4});
        std::vector<pid_t> subscribers {start_subscriber({path, "steady"}), start_subscriber({path, "steady"}),
            start_subscriber({path, "slow"})};
        // Each subscriber joins on its own time: wait (bounded) until all three have.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while ((publisher.reap(), publisher.stats().subscribers) < subscribers.size()) {
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("the subscribers did not join within 10 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        std::printf("publisher: segment %s of %zu bytes, 3 subscribers joined\n", path.c_str(), segment.size_bytes());
        std::fflush(stdout); // before the subscribers' lines, wherever stdout goes
        const auto start = std::chrono::steady_clock::now();
        for (std::uint64_t n = 0; n < frames; ++n) {
            shmlink::Loan<> frame = publisher.loan(kFrameBytes);
            if (!frame)
                throw std::runtime_error(std::string("loan: ") + shmlink::to_string(frame.status()));
            draw(frame.bytes(), n);
            if (const auto status = publisher.publish(std::move(frame)); status != shmlink::TopicStatus::ok)
                std::printf("publisher: frame %llu: %s\n", static_cast<unsigned long long>(n), shmlink::to_string(status));
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const shmlink::PublisherStats stats = publisher.stats();
        std::printf("publisher: %llu frames of 4 MiB in %.3f s, none copied; the pool grew to %llu extents, "
                    "%llu bytes, and the segment to %zu bytes without moving\n",
            static_cast<unsigned long long>(frames), seconds, static_cast<unsigned long long>(stats.extents),
            static_cast<unsigned long long>(stats.pool_bytes), segment.size_bytes());
        std::fflush(stdout);
        publisher = {}; // closed: the subscribers read what is queued, then end
        int failed = 0;
        for (pid_t pid : subscribers) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        }
        return failed == 0 ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "frame_publisher: %s\n", e.what());
        return 1;
    }
}
