// Fuzz target: an arbitrary file attached as a segment. The input is the
// file's content (in a memfd); attaching must either refuse it with an error
// or yield a segment whose every object can be inspected and, for the kinds
// ipc/ knows, opened and consumed without a crash, a hang or a sanitizer
// report, whatever the header, directory, control blocks and records say.
#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/inspect.hpp>
#include <shmlink/ipc/layout.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace {

using namespace shmlink;

void check(RingStatus status)
{
    if (status != RingStatus::ok && status != RingStatus::empty && status != RingStatus::corrupt
        && status != RingStatus::too_large)
        std::abort(); // a consumer that does not wait can answer nothing else
}

void exercise(Segment& segment, const ObjectInfo& object)
{
    (void)inspect(segment, object);
    std::error_code ec;
    std::byte buffer[4096];
    std::size_t length = 0;
    switch (static_cast<ipc::ObjectKind>(object.kind)) {
    case ipc::ObjectKind::spsc_ring: {
        SpscRing ring = SpscRing::open(segment, object.name, ec);
        if (ec)
            return;
        RingStatus status = RingStatus::ok;
        ring.consume([](std::span<const std::byte>) {}, 64, &status);
        check(status);
        check(ring.try_pop(buffer, length));
        const RingStatus pushed = ring.try_push(std::as_bytes(std::span("fuzz", 4)));
        if (pushed != RingStatus::ok && pushed != RingStatus::full && pushed != RingStatus::corrupt)
            std::abort();
        return;
    }
    case ipc::ObjectKind::mpsc_ring: {
        MpscRing ring = MpscRing::open(segment, object.name, {.reap_interval = std::chrono::milliseconds(0)}, ec);
        if (ec)
            return;
        RingStatus status = RingStatus::ok;
        ring.consume([](std::span<const std::byte>) {}, 64, &status);
        check(status);
        ring.reap();
        check(ring.try_pop(buffer, length));
        return;
    }
    case ipc::ObjectKind::mpmc_queue: {
        auto queue = MpmcQueue<std::uint64_t>::open(segment, object.name, ec);
        if (ec)
            return;
        std::uint64_t item = 0;
        for (int i = 0; i < 8; ++i)
            check(queue.try_pop(item));
        (void)queue.recover();
        const RingStatus pushed = queue.try_push(item);
        if (pushed != RingStatus::ok && pushed != RingStatus::full && pushed != RingStatus::corrupt)
            std::abort();
        return;
    }
    case ipc::ObjectKind::topic: {
        auto subscriber = Subscriber<>::open(segment, object.name, {}, ec);
        if (ec)
            return;
        for (int i = 0; i < 8; ++i) {
            Sample<> sample = subscriber.take();
            const TopicStatus status = sample.status();
            if (status == TopicStatus::invalid || status == TopicStatus::no_space || status == TopicStatus::too_large)
                std::abort(); // a subscriber that does not wait can answer nothing else
            if (sample && !sample.bytes().empty()) // checked to lie in the segment: readable
                (void)std::to_integer<int>(sample.bytes().front() ^ sample.bytes().back());
        }
        return;
    }
    default:
        return;
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    UniqueFd fd(::memfd_create("fuzz-segment", MFD_CLOEXEC));
    if (!fd || (size > 0 && ::write(fd.get(), data, size) != static_cast<ssize_t>(size)))
        return 0;
    std::error_code ec;
    Segment segment = Segment::attach(std::move(fd), {}, ec);
    if (ec)
        return 0;
    const auto objects = segment.objects(ec);
    if (ec)
        return 0;
    for (const ObjectInfo& object : objects)
        exercise(segment, object);
    return 0;
}
