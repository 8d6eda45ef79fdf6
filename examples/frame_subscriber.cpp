// A subscriber of examples/frame_publisher's 4 MiB frames: it reads each
// frame where the publisher wrote it, checks it, and drops it. "steady" asks
// the publisher to wait when it falls behind and sees every frame; "slow"
// takes 20 ms a frame and lets the publisher drop its oldest ones.
//
//   frame_subscriber PATH steady|slow
#include <shmlink/ipc/subscriber.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv)
{
    if (argc != 3) {
        std::fprintf(stderr, "usage: frame_subscriber PATH steady|slow\n");
        return 2;
    }
    const bool slow = std::string(argv[2]) == "slow";
    try {
        shmlink::Segment segment = shmlink::Segment::attach(argv[1]);
        shmlink::SubscriberOptions options;
        options.overflow = slow ? shmlink::Overflow::drop_oldest : shmlink::Overflow::block_publisher;
        auto subscriber = shmlink::Subscriber<>::open(segment, "frames", options);
        std::uint64_t seen = 0;
        for (;;) {
            shmlink::Sample<> frame = subscriber.take(std::chrono::seconds(10));
            if (frame.status() == shmlink::TopicStatus::closed)
                break;
            if (!frame) {
                std::fprintf(stderr, "frame_subscriber: %s\n", shmlink::to_string(frame.status()));
                return 1;
            }
            std::uint64_t number = 0;
            std::memcpy(&number, frame.bytes().data(), sizeof(number));
            for (std::size_t at = 4096; at < frame.bytes().size(); at += 4096)
                if (frame.bytes()[at] != static_cast<std::byte>(number + at / 4096)) {
                    std::fprintf(stderr, "frame_subscriber: frame %llu is not what was drawn\n",
                        static_cast<unsigned long long>(number));
                    return 1;
                }
            ++seen;
            if (slow)
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        const shmlink::SubscriberStats stats = subscriber.stats();
        std::printf("subscriber %d (%s): %llu frames read in place and checked, %llu missed\n", static_cast<int>(::getpid()),
            argv[2], static_cast<unsigned long long>(seen), static_cast<unsigned long long>(stats.missed));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "frame_subscriber: %s\n", e.what());
        return 1;
    }
}
