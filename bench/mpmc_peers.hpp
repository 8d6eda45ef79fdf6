// The MPMC benchmark's peers (bench/mpmc_bench.cpp), each behind one
// interface: made in the parent before fork(), attach_in_child() first in
// every child, then push(item) and pop(item), which return once the item is
// in (or out), and false on an error. Each queue holds Capacity items.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/mpmc_queue.hpp>
#include <shmlink/ipc/wait.hpp>

#include "bench/process.hpp"
#include "bench/vyukov_queue.hpp"

#include <boost/interprocess/ipc/message_queue.hpp>

#include <sched.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shmlink::bench {

inline constexpr unsigned kSpinsBeforeYield = 256; // see spin()
inline constexpr auto kTimeout = std::chrono::seconds(10); // no single push or pop waits this long unless a peer died
inline constexpr WaitOptions kSpinWait {.mode = WaitMode::spin};

enum class Try { done, busy, failed };

/// Calls `attempt()` until it answers done or failed. After
/// kSpinsBeforeYield busy answers in a row it gives the CPU away once: a
/// process that shares its CPU (two producers on one) would otherwise spin
/// out its time slice while the other, which may hold the claim everybody
/// waits for, cannot run. Alone on a CPU, a yield returns at once.
template <typename Attempt>
bool spin(Attempt&& attempt) noexcept
{
    for (unsigned busy = 1;; ++busy) {
        const Try answer = attempt();
        if (answer != Try::busy)
            return answer == Try::done;
        if (busy % kSpinsBeforeYield == 0)
            ::sched_yield();
    }
}

enum class QueueApi {
    try_ops,   ///< try_push and try_pop in spin()
    spin_wait, ///< push() and pop() with WaitMode::spin
};

template <typename T, std::size_t Capacity>
class ShmlinkChannel {
public:
    using value_type = T;

    explicit ShmlinkChannel(QueueApi api)
        : path_(unique_name("/dev/shm/shmlink-mpmc-bench")),
          api_(api),
          segment_(Segment::create(path_, kSegmentBytes,
              {.max_size_bytes = kSegmentBytes, .cleanup = Cleanup::unlink_on_close})),
          creator_(MpmcQueue<T>::create(segment_, kQueueName, Capacity))
    {
    }

    /// Attaches by path and opens the queue, as a guest does (a handle of its
    /// own per process). The creator's Segment and handle stay untouched in
    /// the child's copy of memory.
    void attach_in_child()
    {
        guest_ = Segment::attach(path_);
        queue_ = MpmcQueue<T>::open(guest_, kQueueName);
    }

    bool push(const T& item) noexcept
    {
        if (api_ == QueueApi::spin_wait)
            return queue_.push(item, kTimeout, kSpinWait) == RingStatus::ok;
        return spin([&] { return answer(queue_.try_push(item), RingStatus::full); });
    }
    bool pop(T& item) noexcept
    {
        if (api_ == QueueApi::spin_wait)
            return queue_.pop(item, kTimeout, kSpinWait) == RingStatus::ok;
        return spin([&] { return answer(queue_.try_pop(item), RingStatus::empty); });
    }

private:
    static constexpr std::string_view kQueueName = "bench";
    // The cells, and room for the segment's header and the queue's control block and slots.
    static constexpr std::size_t kSegmentBytes
        = Capacity * (sizeof(std::uint64_t) + sizeof(T)) + (std::size_t {64} << 10);

    static Try answer(RingStatus status, RingStatus busy) noexcept
    {
        return status == RingStatus::ok ? Try::done : status == busy ? Try::busy : Try::failed;
    }

    std::string path_;
    QueueApi api_;
    Segment segment_;      // the creator's, in the parent
    MpmcQueue<T> creator_; // the parent's handle, held for the run
    Segment guest_;        // attached by path, in a child
    MpmcQueue<T> queue_;   // the child's handle
};

/// The floor, in an anonymous MAP_SHARED mapping made before fork().
template <typename T, std::size_t Capacity>
class VyukovChannel {
public:
    using value_type = T;

    void attach_in_child() noexcept {}
    bool push(const T& item) noexcept
    {
        return spin([&] { return queue_->try_push(item) ? Try::done : Try::busy; });
    }
    bool pop(T& item) noexcept
    {
        return spin([&] { return queue_->try_pop(item) ? Try::done : Try::busy; });
    }

private:
    Shared<VyukovQueue<T, Capacity>> queue_;
};

/// Boost.Interprocess message_queue of Capacity items under a unique name,
/// send() and receive() blocking as Boost does (a mutex and two condition
/// variables in the shared memory); removed when the channel goes.
template <typename T, std::size_t Capacity>
class BoostChannel {
    using Queue = boost::interprocess::message_queue;

public:
    using value_type = T;

    BoostChannel() : name_(unique_name("shmlink-mpmc-bench-mq"))
    {
        Queue::remove(name_.c_str());
        created_.emplace(boost::interprocess::create_only, name_.c_str(), Capacity, sizeof(T));
        queue_ = &*created_;
    }
    BoostChannel(const BoostChannel&) = delete;
    BoostChannel& operator=(const BoostChannel&) = delete;
    ~BoostChannel() { Queue::remove(name_.c_str()); }

    void attach_in_child()
    {
        opened_.emplace(boost::interprocess::open_only, name_.c_str());
        queue_ = &*opened_;
    }
    bool push(const T& item)
    {
        queue_->send(&item, sizeof(T), 0);
        return true;
    }
    bool pop(T& item)
    {
        Queue::size_type length = 0;
        unsigned priority = 0;
        queue_->receive(&item, sizeof(T), length, priority);
        return length == sizeof(T);
    }

private:
    std::string name_;
    std::optional<Queue> created_; // in the parent
    std::optional<Queue> opened_;  // in a child, by name
    Queue* queue_ = nullptr;
};

} // namespace shmlink::bench
