// The subscribing end of a topic (ipc/topic.hpp): it takes a slot of the
// topic, and reads each sample the publisher queued to it where it lies in
// the segment, until it drops the sample. Subscribers join and leave at any
// time; one that dies is found by its lock (as MPSC producers are) and its
// samples go back to the publisher's pool.
//
// Contract: a Subscriber and its samples are used from one thread at a
// time; a Sample must not outlive its Subscriber. Every offset and size the
// publisher wrote is checked before it is used; a sample beyond this
// process's mapping makes it refresh() the segment first.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/topic.hpp>
#include <shmlink/ipc/wait.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace shmlink {

namespace detail {
struct SubscriberCore;
}

template <typename T = void>
class Sample;
template <typename T = void>
class Subscriber;

/// A sample taken from the topic: read-only bytes in the segment, held
/// until the Sample is dropped. Move-only.
template <>
class Sample<void> {
public:
    Sample() noexcept = default;
    Sample(Sample&& other) noexcept { *this = std::move(other); }
    Sample& operator=(Sample&& other) noexcept;
    ~Sample() { release(); }

    explicit operator bool() const noexcept { return status_ == TopicStatus::ok; }
    /// ok, or why take() gave nothing (empty, closed, timed_out, corrupt, hold_limit).
    [[nodiscard]] TopicStatus status() const noexcept { return status_; }
    [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return bytes_; }
    /// How many samples the publisher published before this one: gaps are
    /// what this subscriber missed (or joined after).
    [[nodiscard]] std::uint64_t sequence() const noexcept { return sequence_; }
    /// Gives the sample back now, as dropping it does.
    void release() noexcept;

private:
    friend class Subscriber<void>;
    detail::SubscriberCore* core_ = nullptr;
    std::uint64_t position_ = 0;
    std::uint64_t sequence_ = 0;
    std::span<const std::byte> bytes_ {};
    TopicStatus status_ = TopicStatus::invalid;
};

template <>
class Subscriber<void> {
public:
    Subscriber() noexcept;
    Subscriber(Subscriber&&) noexcept;
    Subscriber& operator=(Subscriber&&) noexcept;
    /// Leaves the topic: the publisher takes back whatever was still queued.
    ~Subscriber();

    /// Joins the topic `name` in `segment` (attached or created; read access
    /// to the payload is all it needs, but its slot is written: in the
    /// topic's table, or in a slot file of its own, SubscriberOptions::own_slot,
    /// which a segment attached read-only requires). Errors:
    /// Errc::not_found, wrong_kind, version_unsupported, corrupt_object (the
    /// topic's fixed fields are broken), invalid_argument (options out of the
    /// topic's range, or a read-only segment without own_slot), no_free_lane
    /// (every slot is taken; a dead subscriber's is free again at the
    /// publisher's next reap), and errno when the segment or the slot file
    /// cannot be reopened through /proc for the locks, or the slot file made.
    static Subscriber open(Segment& segment, std::string_view name, const SubscriberOptions& options = {});
    static Subscriber open(Segment& segment, std::string_view name, const SubscriberOptions& options,
        std::error_code& ec) noexcept;

    [[nodiscard]] bool valid() const noexcept { return core_ != nullptr; }
    /// Which slot of the topic this subscriber holds (0 .. max_subscribers - 1);
    /// kNoSlot for one with a slot of its own that no publisher admitted yet.
    [[nodiscard]] std::uint32_t slot() const noexcept;
    static constexpr std::uint32_t kNoSlot = UINT32_MAX;
    /// SubscriberOptions::own_slot: a copy of the slot file's fd, for the
    /// publisher's process (Publisher::admit()), passed over a Unix socket.
    /// Errors:
    /// Errc::invalid_argument (the slot is in the topic's table), errno.
    UniqueFd share_slot();
    UniqueFd share_slot(std::error_code& ec) const noexcept;

    /// The oldest sample queued to this subscriber; never waits, never makes
    /// a syscall unless the sample lies beyond this process's mapping (one
    /// refresh). An empty sample says why: empty, closed (the publisher
    /// left and nothing is queued), hold_limit, corrupt.
    Sample<> take() noexcept;
    /// take(), waiting up to `timeout` for a sample (timed_out then).
    Sample<> take(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    /// Waits until a sample is queued (ok), the publisher is gone (closed),
    /// or `timeout` (timed_out). Asks the kernel whether the publisher lives
    /// every liveness_interval meanwhile.
    TopicStatus wait(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept;
    /// Eventfd mode, for an event loop that watches this subscriber's
    /// eventfd (one the publisher's process holds: Publisher::set_wake_fd()):
    /// empty when it is now armed, so that the publisher's next delivery to
    /// it, or its leaving, signals the fd; then disarm_readable(), drain the
    /// fd (drain_wake_fd()), take() until empty, and arm again. Otherwise
    /// nothing is armed and it says why: ok (a sample is queued), closed,
    /// corrupt. A killed publisher signals nothing: arm again from a timer
    /// (every liveness_interval); it asks the kernel whether the publisher
    /// lives once that interval has passed, and answers closed when it does
    /// not. Do not call wait() or take(timeout) while armed.
    TopicStatus arm_readable() noexcept;
    void disarm_readable() noexcept;
    [[nodiscard]] SubscriberStats stats() const noexcept;

private:
    std::unique_ptr<detail::SubscriberCore> core_;
};

template <typename T>
class Sample {
    static_assert(std::is_trivially_copyable_v<T>, "a sample is read in another address space: T must be trivially copyable");

public:
    Sample() noexcept = default;
    /// A sample of another size than T is given back and reads as corrupt.
    explicit Sample(Sample<void>&& raw) noexcept : raw_(std::move(raw))
    {
        if (raw_ && raw_.bytes().size() != sizeof(T)) {
            raw_.release();
            corrupt_ = true;
        }
    }
    explicit operator bool() const noexcept { return !corrupt_ && static_cast<bool>(raw_); }
    [[nodiscard]] TopicStatus status() const noexcept { return corrupt_ ? TopicStatus::corrupt : raw_.status(); }
    [[nodiscard]] std::uint64_t sequence() const noexcept { return raw_.sequence(); }
    const T& operator*() const noexcept { return *std::launder(reinterpret_cast<const T*>(raw_.bytes().data())); }
    const T* operator->() const noexcept { return &**this; }

private:
    Sample<void> raw_;
    bool corrupt_ = false;
};

template <typename T>
class Subscriber {
public:
    Subscriber() noexcept = default;
    static Subscriber open(Segment& segment, std::string_view name, const SubscriberOptions& options = {})
    {
        return Subscriber(Subscriber<void>::open(segment, name, options));
    }
    [[nodiscard]] bool valid() const noexcept { return raw_.valid(); }
    Sample<T> take() noexcept { return Sample<T>(raw_.take()); }
    Sample<T> take(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        return Sample<T>(raw_.take(timeout, options));
    }
    TopicStatus wait(std::chrono::nanoseconds timeout, const WaitOptions& options = {}) noexcept
    {
        return raw_.wait(timeout, options);
    }
    TopicStatus arm_readable() noexcept { return raw_.arm_readable(); }
    void disarm_readable() noexcept { raw_.disarm_readable(); }
    [[nodiscard]] std::uint32_t slot() const noexcept { return raw_.slot(); }
    UniqueFd share_slot() { return raw_.share_slot(); }
    UniqueFd share_slot(std::error_code& ec) const noexcept { return raw_.share_slot(ec); }
    [[nodiscard]] SubscriberStats stats() const noexcept { return raw_.stats(); }
    Subscriber<void>& raw() noexcept { return raw_; }

private:
    explicit Subscriber(Subscriber<void>&& raw) noexcept : raw_(std::move(raw)) {}
    Subscriber<void> raw_;
};

} // namespace shmlink
