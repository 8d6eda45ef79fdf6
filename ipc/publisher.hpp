// The publishing end of a topic (ipc/topic.hpp): it creates the topic in a
// segment it created, loans chunks out of a pool that grows with the
// segment, and publishes each sample to every subscriber at once. It alone
// counts who still holds a chunk, in its own memory: what subscribers write
// into the segment can make them lose their own samples, never make the
// publisher reuse a chunk another subscriber holds.
//
// Contract: the Publisher and its loans are used from one thread at a time,
// the thread that grows and allocates in the segment (Segment's contract);
// a Loan must not outlive its Publisher. The segment must be the
// publisher's own (Segment::create...): only its creator can grow it.
#pragma once

#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/topic.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

namespace shmlink {

namespace detail {
struct PublisherCore;
}

template <typename T = void>
class Loan;
template <typename T = void>
class Publisher;

/// A chunk loaned for one sample: writable bytes in the segment. Move-only;
/// dropped unpublished, the chunk goes back to the pool.
template <>
class Loan<void> {
public:
    Loan() noexcept = default;
    Loan(Loan&& other) noexcept { *this = std::move(other); }
    Loan& operator=(Loan&& other) noexcept;
    ~Loan() { give_back(); }

    explicit operator bool() const noexcept { return status_ == TopicStatus::ok; }
    /// ok, or why loan() gave nothing (no_space, too_large, invalid).
    [[nodiscard]] TopicStatus status() const noexcept { return status_; }
    /// The bytes asked for; the chunk may be larger (capacity()).
    [[nodiscard]] std::span<std::byte> bytes() const noexcept { return bytes_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    /// The bytes publish() will publish: fewer than asked, or up to capacity().
    /// False (nothing changes) past capacity().
    bool resize(std::size_t size_bytes) noexcept;

private:
    friend class Publisher<void>;
    void give_back() noexcept;

    detail::PublisherCore* core_ = nullptr;
    std::uint32_t chunk_ = 0;
    std::size_t capacity_ = 0;
    std::span<std::byte> bytes_ {};
    TopicStatus status_ = TopicStatus::invalid;
};

/// Untyped: samples of any size from 0 bytes to what the segment can hold.
template <>
class Publisher<void> {
public:
    Publisher() noexcept;
    Publisher(Publisher&&) noexcept;
    Publisher& operator=(Publisher&&) noexcept;
    /// Says the topic is closed (subscribers drain what is queued, then read
    /// TopicStatus::closed). The chunks stay in the segment.
    ~Publisher();

    /// Creates the topic `name` in `segment` (which this process created)
    /// and becomes its publisher. A topic larger than the segment's free
    /// space grows the segment once, by what it needs, as the pool does.
    /// Errors: Errc::invalid_argument (options out of range: the message
    /// says which), Errc::not_owner, Errc::no_space (not even the segment's
    /// maximum size holds it), those of Segment::allocate and grow(), and
    /// errno when the segment cannot be reopened through /proc for the
    /// publisher's lock.
    static Publisher create(Segment& segment, std::string_view name, const TopicOptions& options = {});
    static Publisher create(Segment& segment, std::string_view name, const TopicOptions& options,
        std::error_code& ec) noexcept;

    [[nodiscard]] bool valid() const noexcept { return core_ != nullptr; }

    /// A chunk of at least `size_bytes` for one sample, from the pool; when
    /// its size class has no free chunk, the pool adds an extent, growing
    /// the segment if it must (one grow, whatever the segment's size).
    /// Never allocates on the heap once the class's bookkeeping has room.
    /// An empty loan with no_space (the segment is at its maximum) or
    /// too_large (beyond any maximum).
    Loan<> loan(std::size_t size_bytes) noexcept;
    /// Publishes the loan to every subscriber joined now (its size: the
    /// bytes asked for, or resize()d). A full drop_oldest subscriber loses
    /// its oldest sample (counted); for a full block_publisher subscriber
    /// publish waits for room up to `timeout` (TopicOptions::block_timeout),
    /// and then that subscriber misses this sample (counted) and publish
    /// answers timed_out. ok otherwise; invalid for an empty loan.
    TopicStatus publish(Loan<>&& loan) noexcept;
    TopicStatus publish(Loan<>&& loan, std::chrono::nanoseconds timeout) noexcept;

    /// Finds subscribers that died or left and takes their samples back,
    /// and reads every subscriber's releases; returns how many slots it
    /// freed. loan() and publish() call it every reap_interval by
    /// themselves; call it from a timer when you publish rarely. One
    /// syscall per subscriber.
    std::size_t reap() noexcept;
    /// Eventfd mode: from now on, a delivery that finds the subscriber in
    /// `slot` armed (Subscriber::arm_readable()) also signals `wake_fd`,
    /// that subscriber's eventfd (create_wake_fd()), passed to this process
    /// over a Unix socket or inherited; so does this publisher's leaving.
    /// The publisher owns the fd and closes it when the slot's subscriber
    /// leaves or dies (its successor in the slot brings its own), or when
    /// set_wake_fd() replaces it. False, and the fd closed, for a slot out
    /// of range. The signal is a write() to the fd: a subscriber that holds
    /// its eventfd could hold that write up (a counter at its maximum, or a
    /// blocking pipe in its place), so take wake fds only from subscribers
    /// trusted not to stall the publisher (a subscriber apart's are not
    /// passed through the host yet).
    bool set_wake_fd(std::uint32_t slot, UniqueFd wake_fd) noexcept;
    /// Admits a subscriber whose slot is a file of its own
    /// (SubscriberOptions::own_slot, Subscriber::share_slot()), passed to this
    /// process over a Unix socket; returns the slot index it takes. The
    /// history is delivered to it at once, and every publish from then on.
    /// The file is mapped here and nowhere but in its subscriber, so what
    /// that subscriber writes reaches no other. Its slot is freed when it
    /// leaves or dies (found by reap(), as for any slot). Who may take a
    /// slot is the caller's policy: each admit takes one. Errors:
    /// Errc::not_a_segment (not a regular file or memfd of tmpfs),
    /// invalid_argument (not a slot file of this topic: its size, no seal
    /// against shrinking, or not joined), peer_closed (its subscriber is
    /// gone), no_free_lane (every slot is taken), errno from mmap.
    std::uint32_t admit(UniqueFd slot_file);
    std::uint32_t admit(UniqueFd slot_file, std::error_code& ec) noexcept;
    [[nodiscard]] PublisherStats stats() const;

private:
    std::uint32_t admit(UniqueFd slot_file, std::error_code& ec, std::string& why) noexcept;
    std::unique_ptr<detail::PublisherCore> core_;
};

/// A loan for one T: value-initialised, written in place.
template <typename T>
class Loan {
    static_assert(std::is_trivially_copyable_v<T>, "a sample is read in another address space: T must be trivially copyable");

public:
    Loan() noexcept = default;
    explicit Loan(Loan<void>&& raw) noexcept : raw_(std::move(raw))
    {
        if (raw_)
            ::new (static_cast<void*>(raw_.bytes().data())) T {};
    }
    explicit operator bool() const noexcept { return static_cast<bool>(raw_); }
    [[nodiscard]] TopicStatus status() const noexcept { return raw_.status(); }
    T& operator*() const noexcept { return *std::launder(reinterpret_cast<T*>(raw_.bytes().data())); }
    T* operator->() const noexcept { return &**this; }
    Loan<void>&& raw() && noexcept { return std::move(raw_); }

private:
    Loan<void> raw_;
};

/// Typed: one T per sample.
template <typename T>
class Publisher {
    static_assert(std::is_trivially_copyable_v<T>, "a sample is read in another address space: T must be trivially copyable");

public:
    Publisher() noexcept = default;
    static Publisher create(Segment& segment, std::string_view name, const TopicOptions& options = {})
    {
        return Publisher(Publisher<void>::create(segment, name, options));
    }
    [[nodiscard]] bool valid() const noexcept { return raw_.valid(); }
    Loan<T> loan() noexcept { return Loan<T>(raw_.loan(sizeof(T))); }
    TopicStatus publish(Loan<T>&& loan) noexcept { return raw_.publish(std::move(loan).raw()); }
    TopicStatus publish(Loan<T>&& loan, std::chrono::nanoseconds timeout) noexcept
    {
        return raw_.publish(std::move(loan).raw(), timeout);
    }
    std::size_t reap() noexcept { return raw_.reap(); }
    bool set_wake_fd(std::uint32_t slot, UniqueFd wake_fd) noexcept { return raw_.set_wake_fd(slot, std::move(wake_fd)); }
    std::uint32_t admit(UniqueFd slot_file) { return raw_.admit(std::move(slot_file)); }
    std::uint32_t admit(UniqueFd slot_file, std::error_code& ec) noexcept { return raw_.admit(std::move(slot_file), ec); }
    [[nodiscard]] PublisherStats stats() const { return raw_.stats(); }
    Publisher<void>& raw() noexcept { return raw_; }

private:
    explicit Publisher(Publisher<void>&& raw) noexcept : raw_(std::move(raw)) {}
    Publisher<void> raw_;
};

} // namespace shmlink
