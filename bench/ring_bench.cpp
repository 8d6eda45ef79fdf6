// Message passing between two processes on pinned cores, in one run:
// one-way throughput and round-trip latency of shmlink's SPSC and MPSC rings
// beside a pipe, a Unix socket and Boost.Interprocess message_queue, and
// beside the floors (a bare reference ring, cache-line and futex ping-pong,
// memcpy).
// Prints a table and the ratios the project's targets are stated in.
#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/mpsc_ring.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/wait.hpp>

#include "bench/process.hpp"
#include "bench/report.hpp"

#include <boost/interprocess/ipc/message_queue.hpp>

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace bip = boost::interprocess;
using shmlink::bench::Child;
using shmlink::bench::Clock;
using shmlink::bench::Handshake;
using shmlink::bench::json_number;
using shmlink::bench::json_string;
using shmlink::bench::pin_to_cpu;
using shmlink::bench::seconds_between;
using shmlink::bench::Shared;
using shmlink::bench::unique_name;

namespace {

constexpr int kParentCpu = 0; // producer, and the side that times round trips
constexpr int kChildCpu = 1;  // consumer, and the side that echoes
constexpr std::size_t kMessageSizes[] = {8, 64, 1024, 65536};
constexpr std::size_t kMaxMessageBytes = 65536;
constexpr std::size_t kZeroCopyBytes = 65536;     // reserve/commit is measured at this size only
constexpr std::size_t kLatencyMessageBytes = 64;
// Both rings. Small enough to stay in one core's L2 (1 MiB on the machine this
// was written on): a 1 MiB ring made small-message results swing 2x from run to run.
constexpr std::size_t kRingBytes = std::size_t {256} << 10;
constexpr std::size_t kPipeBytes = std::size_t {1} << 20; // for 64 KiB messages only
constexpr std::uint32_t kMpscLanes = 4;
// The largest ring (an MPSC ring's lanes, each a ring of kRingBytes), control blocks, the header.
constexpr std::size_t kSegmentBytes = kMpscLanes * kRingBytes + (std::size_t {64} << 10);
constexpr std::size_t kConsumeBatch = 64;         // messages a ring consumer frees with one store
constexpr std::size_t kRepetitions = 5;
constexpr std::size_t kLatencyRepetitions = 3;
constexpr double kTargetSeconds = 0.25;           // per throughput measurement, from the cost estimates below
constexpr std::uint64_t kSpinRounds = 100'000;    // round trips for peers that answer in well under a microsecond
constexpr std::uint64_t kSleepRounds = 20'000;    // for peers that go through the scheduler
constexpr std::uint64_t kQuickDivisor = 20;
constexpr auto kTimeout = std::chrono::seconds(10); // no single push or pop waits this long unless the peer died
constexpr unsigned kWatchdogSeconds = 60;         // a measurement that takes longer has hung: give up
constexpr std::byte kFill {0x5a};

static_assert(kMessageSizes[0] >= sizeof(std::uint64_t), "every message carries its sequence number");

/// Rough costs of a peer, only to pick message counts that take about
/// kTargetSeconds (the counts are then fixed, so runs compare).
struct Cost {
    double ns_per_message;
    double bytes_per_ns;
};

constexpr Cost kRingCost {40, 8};
constexpr Cost kPipeCost {330, 4};
constexpr Cost kSocketCost {950, 6};
constexpr Cost kBoostCost {200, 4};
constexpr Cost kMemcpyCost {4, 50};

// ---- messages ----

/// Every message starts with its sequence number; the rest is kFill.
void stamp(std::span<std::byte> message, std::uint64_t seq) noexcept
{
    std::memcpy(message.data(), &seq, sizeof(seq));
}

std::uint64_t sequence_of(std::span<const std::byte> message) noexcept
{
    std::uint64_t seq = 0;
    std::memcpy(&seq, message.data(), std::min(sizeof(seq), message.size()));
    return seq;
}

/// The consumer's check of what arrived: sizes and order, and the payload
/// itself where the consumer reads in place (a copying peer has read every
/// byte already; a zero-copy consumer that never touched the payload would
/// leave it in the producer's cache and measure nothing).
class Receipt {
public:
    Receipt(std::size_t size, bool check_payload) : size_(size), pattern_(check_payload ? size : 0, kFill) {}

    void operator()(std::span<const std::byte> message) noexcept
    {
        in_order_ = in_order_ && message.size() == size_ && sequence_of(message) == messages_
            && (pattern_.empty() || std::memcmp(message.data() + 8, pattern_.data() + 8, size_ - 8) == 0);
        ++messages_;
        bytes_ += message.size();
    }
    [[nodiscard]] std::uint64_t messages() const noexcept { return messages_; }
    [[nodiscard]] bool complete(std::uint64_t count) const noexcept
    {
        return in_order_ && messages_ == count && bytes_ == count * size_;
    }
    void explain(std::uint64_t count) const
    {
        std::fprintf(stderr, "consumer: %llu of %llu messages, %llu of %llu bytes, %s\n",
            static_cast<unsigned long long>(messages_), static_cast<unsigned long long>(count),
            static_cast<unsigned long long>(bytes_), static_cast<unsigned long long>(count * size_),
            in_order_ ? "in order" : "out of order or damaged");
    }

private:
    std::size_t size_;
    std::vector<std::byte> pattern_;
    std::uint64_t messages_ = 0;
    std::uint64_t bytes_ = 0;
    bool in_order_ = true;
};

// ---- channels: one direction, producer in one process, consumer in the other ----
//
// Each is created in the parent before fork(); the child calls
// attach_in_child() first. send() blocks (or spins) until the message is
// in; receive(handle) waits for at least one message and calls
// handle(std::span<const std::byte>) for each it takes.

enum class RingApi {
    copy,      ///< try_push, and consume() copying each message out
    zero_copy, ///< reserve, build the message in place, commit; consume() reading in place
    wait,      ///< push() and pop() with WaitOptions
};

/// How a ShmlinkChannel makes and opens its ring: an SPSC ring, or an MPSC
/// ring whose one producer takes a lane.
struct SpscKind {
    using Producer = shmlink::SpscRing;
    using Consumer = shmlink::SpscRing;
    static void create(shmlink::Segment& segment, std::string_view name)
    {
        shmlink::SpscRing::create(segment, name, kRingBytes);
    }
    static Producer producer(shmlink::Segment& segment, std::string_view name)
    {
        return shmlink::SpscRing::open(segment, name);
    }
    static Consumer consumer(shmlink::Segment& segment, std::string_view name)
    {
        return shmlink::SpscRing::open(segment, name);
    }
};

struct MpscKind {
    using Producer = shmlink::MpscProducer;
    using Consumer = shmlink::MpscRing;
    static void create(shmlink::Segment& segment, std::string_view name)
    {
        shmlink::MpscRing::create(segment, name, kRingBytes, kMpscLanes);
    }
    static Producer producer(shmlink::Segment& segment, std::string_view name)
    {
        return shmlink::MpscProducer::open(segment, name);
    }
    static Consumer consumer(shmlink::Segment& segment, std::string_view name)
    {
        return shmlink::MpscRing::open(segment, name);
    }
};

template <typename Kind>
class ShmlinkChannel {
public:
    explicit ShmlinkChannel(RingApi api, shmlink::WaitOptions wait = {})
        : path_(unique_name("/dev/shm/shmlink-ring-bench")),
          api_(api),
          wait_(wait),
          segment_(shmlink::Segment::create(path_, kSegmentBytes,
              {.max_size_bytes = kSegmentBytes, .cleanup = shmlink::Cleanup::unlink_on_close})),
          buffer_(kMaxMessageBytes)
    {
        Kind::create(segment_, kRingName);
    }

    /// Attaches by path, as a guest does; the ring is opened by name on
    /// first use, as producer or consumer. The creator's Segment stays
    /// untouched in the child's copy of memory.
    void attach_in_child() { guest_ = shmlink::Segment::attach(path_); }
    [[nodiscard]] bool in_place() const noexcept { return api_ == RingApi::zero_copy; }

    bool send(std::span<const std::byte> message)
    {
        using shmlink::RingStatus;
        if (!producer_.valid())
            producer_ = Kind::producer(segment(), kRingName);
        if (api_ == RingApi::wait)
            return producer_.push(message, kTimeout, wait_) == RingStatus::ok;
        for (;;) { // throughput: spin while full, as the reference ring does
            if (api_ == RingApi::copy) {
                const RingStatus status = producer_.try_push(message);
                if (status != RingStatus::full)
                    return status == RingStatus::ok;
                continue;
            }
            const auto slot = producer_.reserve(message.size());
            if (slot) {
                // Built in place: the payload is written once, into the ring.
                std::memset(slot.bytes.data(), static_cast<int>(kFill), slot.bytes.size());
                stamp(slot.bytes, sequence_of(message));
                producer_.commit();
                return true;
            }
            if (slot.status != RingStatus::full)
                return false;
        }
    }

    template <typename Handle>
    bool receive(Handle&& handle)
    {
        using shmlink::RingStatus;
        if (!consumer_.valid())
            consumer_ = Kind::consumer(segment(), kRingName);
        if (api_ == RingApi::wait) {
            std::size_t length = 0;
            if (consumer_.pop(buffer_, length, kTimeout, wait_) != RingStatus::ok)
                return false;
            handle(std::span<const std::byte>(buffer_.data(), length));
            return true;
        }
        const auto copy_out = [&](std::span<const std::byte> message) {
            const std::size_t length = std::min(message.size(), buffer_.size());
            std::memcpy(buffer_.data(), message.data(), length);
            handle(std::span<const std::byte>(buffer_.data(), length));
        };
        for (;;) {
            RingStatus status = RingStatus::ok;
            const std::size_t taken = api_ == RingApi::copy ? consumer_.consume(copy_out, kConsumeBatch, &status)
                                                            : consumer_.consume(handle, kConsumeBatch, &status);
            if (taken != 0)
                return true;
            if (status != RingStatus::empty)
                return false;
        }
    }

private:
    static constexpr std::string_view kRingName = "bench";

    shmlink::Segment& segment() noexcept { return guest_.valid() ? guest_ : segment_; }

    std::string path_;
    RingApi api_;
    shmlink::WaitOptions wait_;
    shmlink::Segment segment_; // the creator's, in the parent
    shmlink::Segment guest_;   // attached by path, in the child
    typename Kind::Producer producer_;
    typename Kind::Consumer consumer_;
    std::vector<std::byte> buffer_;
};

using SpscChannel = ShmlinkChannel<SpscKind>;
using MpscChannel = ShmlinkChannel<MpscKind>;

/// The floor for small messages: an SPSC byte ring with nothing but the
/// ring (rigtorp's SPSCQueue, for variable-length bytes). 8-byte length
/// prefixes, records 8-byte aligned as in shmlink's ring, a skip marker
/// where a record would cross the end; each side caches the other's
/// position; release/acquire only; no validation, no waiting, no wake-ups.
struct ReferenceRing {
    // 128-byte spacing: adjacent-line prefetch pulls lines in pairs, so the
    // two sides' stores must not share a pair.
    alignas(128) std::atomic<std::uint64_t> head {0}; // bytes the consumer released
    alignas(128) std::atomic<std::uint64_t> tail {0}; // bytes the producer published
    alignas(128) std::byte data[kRingBytes];
};

class ReferenceChannel {
public:
    void attach_in_child() noexcept {}
    [[nodiscard]] bool in_place() const noexcept { return false; }

    bool send(std::span<const std::byte> message) noexcept
    {
        const std::uint64_t need = record_bytes(message.size());
        const std::uint64_t to_end = kRingBytes - (write_ & kMask);
        const std::uint64_t skip = need > to_end ? to_end : 0;
        while (write_ + skip + need - cached_head_ > kRingBytes) {
            // acquire: pairs with the release store of head in receive(); the consumer is done with those bytes.
            cached_head_ = ring_->head.load(std::memory_order_acquire);
        }
        if (skip != 0) {
            put_length(write_, kSkip);
            write_ += skip;
        }
        put_length(write_, message.size());
        std::memcpy(ring_->data + (write_ & kMask) + kPrefix, message.data(), message.size());
        write_ += need;
        // release: pairs with the acquire load of tail in receive(); the record is written before.
        ring_->tail.store(write_, std::memory_order_release);
        return true;
    }

    template <typename Handle>
    bool receive(Handle&& handle) noexcept
    {
        while (read_ == cached_tail_) {
            // acquire: pairs with the release store of tail in send(); the records are written before.
            cached_tail_ = ring_->tail.load(std::memory_order_acquire);
        }
        for (std::size_t taken = 0; taken < kConsumeBatch && read_ != cached_tail_; ++taken) {
            std::uint64_t length = get_length(read_);
            if (length == kSkip) { // a skip is published with the record after it
                read_ += kRingBytes - (read_ & kMask);
                length = get_length(read_);
            }
            std::memcpy(buffer_.data(), ring_->data + (read_ & kMask) + kPrefix, length);
            handle(std::span<const std::byte>(buffer_.data(), length));
            read_ += record_bytes(length);
        }
        // release: pairs with the acquire load of head in send(); we are done reading before.
        ring_->head.store(read_, std::memory_order_release);
        return true;
    }

private:
    static constexpr std::uint64_t kMask = kRingBytes - 1;
    static constexpr std::uint64_t kPrefix = sizeof(std::uint64_t);
    static constexpr std::uint64_t kSkip = ~std::uint64_t {0};

    static std::uint64_t record_bytes(std::uint64_t length) noexcept { return (kPrefix + length + 7) & ~std::uint64_t {7}; }
    void put_length(std::uint64_t at, std::uint64_t length) noexcept
    {
        std::memcpy(ring_->data + (at & kMask), &length, sizeof(length));
    }
    std::uint64_t get_length(std::uint64_t at) const noexcept
    {
        std::uint64_t length = 0;
        std::memcpy(&length, ring_->data + (at & kMask), sizeof(length));
        return length;
    }

    Shared<ReferenceRing> ring_;
    std::uint64_t write_ = 0;       // producer
    std::uint64_t cached_head_ = 0; // producer
    std::uint64_t read_ = 0;        // consumer
    std::uint64_t cached_tail_ = 0; // consumer
    std::vector<std::byte> buffer_ = std::vector<std::byte>(kMaxMessageBytes);
};

bool write_all(int fd, std::span<const std::byte> bytes) noexcept
{
    while (!bytes.empty()) {
        const ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return true;
}

bool read_all(int fd, std::span<std::byte> bytes) noexcept
{
    while (!bytes.empty()) {
        const ssize_t n = ::read(fd, bytes.data(), bytes.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        bytes = bytes.subspan(static_cast<std::size_t>(n));
    }
    return true;
}

/// A pipe carrying fixed-size messages: one write() and (for sizes the pipe
/// delivers whole) one read() per message.
class PipeChannel {
public:
    explicit PipeChannel(std::size_t message_bytes) : buffer_(message_bytes)
    {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::generic_category(), "pipe2");
        read_end_.reset(fds[0]);
        write_end_.reset(fds[1]);
        // The default 64 KiB buffer would hold one 64 KiB message at a time.
        if (message_bytes >= 65536 && ::fcntl(write_end_.get(), F_SETPIPE_SZ, static_cast<int>(kPipeBytes)) < 0)
            throw std::system_error(errno, std::generic_category(), "F_SETPIPE_SZ");
    }
    void attach_in_child() noexcept {}
    [[nodiscard]] bool in_place() const noexcept { return false; }
    bool send(std::span<const std::byte> message) noexcept { return write_all(write_end_.get(), message); }
    template <typename Handle>
    bool receive(Handle&& handle) noexcept
    {
        if (!read_all(read_end_.get(), buffer_))
            return false;
        handle(std::span<const std::byte>(buffer_));
        return true;
    }

private:
    shmlink::UniqueFd read_end_;
    shmlink::UniqueFd write_end_;
    std::vector<std::byte> buffer_;
};

/// A SOCK_SEQPACKET socketpair: the kernel keeps message boundaries.
class SocketChannel {
public:
    explicit SocketChannel(std::size_t message_bytes) : buffer_(message_bytes)
    {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
            throw std::system_error(errno, std::generic_category(), "socketpair");
        sender_.reset(fds[0]);
        receiver_.reset(fds[1]);
    }
    void attach_in_child() noexcept {}
    [[nodiscard]] bool in_place() const noexcept { return false; }
    bool send(std::span<const std::byte> message) noexcept
    {
        for (;;) {
            const ssize_t n = ::send(sender_.get(), message.data(), message.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            return n == static_cast<ssize_t>(message.size());
        }
    }
    template <typename Handle>
    bool receive(Handle&& handle) noexcept
    {
        for (;;) {
            const ssize_t n = ::recv(receiver_.get(), buffer_.data(), buffer_.size(), 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return false;
            handle(std::span<const std::byte>(buffer_.data(), static_cast<std::size_t>(n)));
            return true;
        }
    }

private:
    shmlink::UniqueFd sender_;
    shmlink::UniqueFd receiver_;
    std::vector<std::byte> buffer_;
};

/// Boost.Interprocess message_queue under a unique name, holding as many
/// bytes of messages as the rings do; removed when the channel goes.
class BoostQueueChannel {
public:
    explicit BoostQueueChannel(std::size_t message_bytes)
        : name_(unique_name("shmlink-ring-bench-mq")), buffer_(message_bytes)
    {
        bip::message_queue::remove(name_.c_str());
        created_.emplace(bip::create_only, name_.c_str(), std::max<std::size_t>(16, kRingBytes / message_bytes),
            message_bytes);
        queue_ = &*created_;
    }
    BoostQueueChannel(const BoostQueueChannel&) = delete;
    BoostQueueChannel& operator=(const BoostQueueChannel&) = delete;
    ~BoostQueueChannel() { bip::message_queue::remove(name_.c_str()); }

    void attach_in_child()
    {
        opened_.emplace(bip::open_only, name_.c_str());
        queue_ = &*opened_;
    }
    [[nodiscard]] bool in_place() const noexcept { return false; }
    bool send(std::span<const std::byte> message)
    {
        queue_->send(message.data(), message.size(), 0);
        return true;
    }
    template <typename Handle>
    bool receive(Handle&& handle)
    {
        bip::message_queue::size_type length = 0;
        unsigned priority = 0;
        queue_->receive(buffer_.data(), buffer_.size(), length, priority);
        handle(std::span<const std::byte>(buffer_.data(), length));
        return true;
    }

private:
    std::string name_;
    std::vector<std::byte> buffer_;
    std::optional<bip::message_queue> created_; // in the parent
    std::optional<bip::message_queue> opened_;  // in the child, by name
    bip::message_queue* queue_ = nullptr;
};

// ---- measurements ----

std::uint64_t message_count(Cost cost, std::size_t size, std::uint64_t divisor)
{
    const double ns = cost.ns_per_message + static_cast<double>(size) / cost.bytes_per_ns;
    return std::max<std::uint64_t>(100, static_cast<std::uint64_t>(kTargetSeconds * 1e9 / ns) / divisor);
}

/// Sends `count` messages of `size` bytes from this process to a child,
/// which checks every one. Seconds from the first send to the child's last
/// receive, or nothing if anything failed.
template <typename Channel>
std::optional<double> one_way_seconds(Channel& channel, std::size_t size, std::uint64_t count)
{
    Child child(kChildCpu, [&](Handshake& handshake) {
        channel.attach_in_child();
        Receipt receipt(size, channel.in_place());
        handshake.set_ready();
        while (receipt.messages() < count) {
            if (!channel.receive(receipt))
                return false;
        }
        handshake.set_done();
        if (!receipt.complete(count))
            receipt.explain(count);
        return receipt.complete(count);
    });
    if (!child.wait_ready())
        return std::nullopt;
    std::vector<std::byte> message(size, kFill);
    const auto start = Clock::now();
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        stamp(message, seq);
        if (!channel.send(message))
            return std::nullopt;
    }
    if (!child.join())
        return std::nullopt;
    return seconds_between(start, child.done_at());
}

/// The bandwidth floor: one process copying each message into a ring-sized
/// buffer, cycling through it as a ring does, so the working set matches.
double memcpy_seconds(std::size_t size, std::uint64_t count)
{
    std::vector<std::byte> message(size, kFill);
    std::vector<std::byte> ring(kRingBytes);
    std::size_t at = 0;
    const auto start = Clock::now();
    for (std::uint64_t seq = 0; seq < count; ++seq) {
        stamp(message, seq);
        std::memcpy(ring.data() + at, message.data(), size);
        at = (at + size) & (kRingBytes - 1);
        // A compiler barrier: nothing reads most copies, and they must happen anyway.
        asm volatile("" : : "r"(ring.data()) : "memory");
    }
    return seconds_between(start, Clock::now());
}

struct Latency {
    double median_ns = 0;
    double p90_ns = 0;
    double p99_ns = 0;
    double p999_ns = 0;
};

/// Times `rounds` round trips after a tenth as many untimed ones:
/// `echo(handshake, total)` runs in the child and answers all of them;
/// `round_trip(seq)` runs here for seq = 1, 2, ... and returns false on error.
template <typename Echo, typename RoundTrip>
std::optional<Latency> time_round_trips(std::uint64_t rounds, Echo&& echo, RoundTrip&& round_trip)
{
    const std::uint64_t total = rounds + rounds / 10;
    Child child(kChildCpu, [&](Handshake& handshake) { return echo(handshake, total); });
    if (!child.wait_ready())
        return std::nullopt;
    std::vector<std::int64_t> ns;
    ns.reserve(rounds);
    for (std::uint64_t seq = 1; seq <= total; ++seq) {
        const auto start = Clock::now();
        if (!round_trip(seq))
            return std::nullopt;
        if (seq > total - rounds)
            ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    }
    if (!child.join())
        return std::nullopt;
    std::sort(ns.begin(), ns.end());
    const auto at = [&](std::size_t per_mille) { return static_cast<double>(ns[ns.size() * per_mille / 1000]); };
    return Latency {at(500), at(900), at(990), at(999)};
}

/// Ping-pong of one kLatencyMessageBytes message: out on `to_child`, echoed back on `to_parent`.
template <typename Channel>
std::optional<Latency> channel_round_trips(Channel& to_child, Channel& to_parent, std::uint64_t rounds)
{
    std::vector<std::byte> message(kLatencyMessageBytes, kFill);
    return time_round_trips(
        rounds,
        [&](Handshake& handshake, std::uint64_t total) {
            to_child.attach_in_child();
            to_parent.attach_in_child();
            handshake.set_ready();
            for (std::uint64_t seq = 1; seq <= total; ++seq) {
                bool ok = false;
                const auto echo = [&](std::span<const std::byte> ping) {
                    ok = ping.size() == message.size() && sequence_of(ping) == seq;
                    std::memcpy(message.data(), ping.data(), std::min(ping.size(), message.size()));
                };
                if (!to_child.receive(echo) || !ok || !to_parent.send(message))
                    return false;
            }
            return true;
        },
        [&](std::uint64_t seq) {
            stamp(message, seq);
            bool ok = false;
            const auto check = [&](std::span<const std::byte> pong) {
                ok = pong.size() == message.size() && sequence_of(pong) == seq;
            };
            return to_child.send(message) && to_parent.receive(check) && ok;
        });
}

/// The spinning floor: one 64-bit counter each way, each on its own 128-byte
/// range, polled without even a pause: one line's transfer each way.
struct CacheLines {
    alignas(128) std::atomic<std::uint64_t> ping {0};
    alignas(128) std::atomic<std::uint64_t> pong {0};
};

std::optional<Latency> cache_line_round_trips(std::uint64_t rounds)
{
    Shared<CacheLines> lines;
    return time_round_trips(
        rounds,
        [&](Handshake& handshake, std::uint64_t total) {
            handshake.set_ready();
            for (std::uint64_t seq = 1; seq <= total; ++seq) {
                // acquire/release: each side's store pairs with the other's load; nothing else is shared.
                while (lines->ping.load(std::memory_order_acquire) != seq) {
                }
                lines->pong.store(seq, std::memory_order_release);
            }
            return true;
        },
        [&](std::uint64_t seq) {
            lines->ping.store(seq, std::memory_order_release);
            while (lines->pong.load(std::memory_order_acquire) != seq) {
            }
            return true;
        });
}

/// The sleeping floor: two shared 32-bit futex words (no FUTEX_PRIVATE_FLAG);
/// the waker always calls FUTEX_WAKE, the waiter sleeps until its word changes.
struct FutexWords {
    alignas(128) std::uint32_t ping = 0; // atomic (atomic_ref): parent -> child
    alignas(128) std::uint32_t pong = 0; // atomic (atomic_ref): child -> parent
};

void futex_post(std::uint32_t& word, std::uint32_t value) noexcept
{
    // release: pairs with the acquire load in futex_wait_for(); the waiter sees our writes before.
    std::atomic_ref(word).store(value, std::memory_order_release);
    ::syscall(SYS_futex, &word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

void futex_wait_for(std::uint32_t& word, std::uint32_t value) noexcept
{
    for (;;) {
        // acquire: pairs with the release store in futex_post().
        const std::uint32_t seen = std::atomic_ref(word).load(std::memory_order_acquire);
        if (seen == value)
            return;
        ::syscall(SYS_futex, &word, FUTEX_WAIT, seen, nullptr, nullptr, 0);
    }
}

std::optional<Latency> futex_round_trips(std::uint64_t rounds)
{
    Shared<FutexWords> words;
    return time_round_trips(
        rounds,
        [&](Handshake& handshake, std::uint64_t total) {
            handshake.set_ready();
            for (std::uint64_t seq = 1; seq <= total; ++seq) {
                futex_wait_for(words->ping, static_cast<std::uint32_t>(seq));
                futex_post(words->pong, static_cast<std::uint32_t>(seq));
            }
            return true;
        },
        [&](std::uint64_t seq) {
            futex_post(words->ping, static_cast<std::uint32_t>(seq));
            futex_wait_for(words->pong, static_cast<std::uint32_t>(seq));
            return true;
        });
}

// ---- results ----

struct ThroughputResult {
    std::string peer;
    std::size_t size = 0;
    std::uint64_t messages = 0;
    std::optional<double> seconds; // the fastest of kRepetitions; empty if any failed
    double spread = 0;             // slowest / fastest: how much to trust it

    [[nodiscard]] double messages_per_s() const { return static_cast<double>(messages) / *seconds; }
    [[nodiscard]] double bytes_per_s() const { return messages_per_s() * static_cast<double>(size); }
};

struct LatencyResult {
    std::string peer;
    std::uint64_t rounds = 0;
    std::optional<Latency> latency;
};

enum class Comparison { at_least, at_most, below };

struct Ratio {
    std::string name;
    std::optional<double> value;
    Comparison comparison;
    double target;

    [[nodiscard]] const char* sign() const
    {
        return comparison == Comparison::at_least ? ">=" : comparison == Comparison::at_most ? "<=" : "<";
    }
    [[nodiscard]] bool met() const
    {
        if (!value)
            return false;
        return comparison == Comparison::at_least ? *value >= target
            : comparison == Comparison::at_most   ? *value <= target
                                                  : *value < target;
    }
};

struct Options {
    bool quick = false;
    bool progress = false; ///< a line "progress DONE TOTAL what" on stderr per measurement
    std::string json_path;
    std::string plot_path;
    std::string only; ///< measure only the peers whose name contains this
};

class Report {
public:
    explicit Report(const Options& options) : options_(options) {}

    [[nodiscard]] std::uint64_t divisor() const noexcept { return options_.quick ? kQuickDivisor : 1; }

    /// One peer's throughput measurement: `measure(count)` moves `count`
    /// messages through a fresh channel and answers the seconds it took.
    struct Peer {
        std::string_view name;
        Cost cost;
        std::function<std::optional<double>(std::uint64_t)> measure;
    };

    /// One peer's latency measurement: `measure(rounds)` times that many round trips.
    struct LatencyPeer {
        std::string_view name;
        std::uint64_t rounds;
        std::function<std::optional<Latency>(std::uint64_t)> measure;
    };

    /// Every throughput measurement at one message size.
    struct SizePlan {
        std::size_t size;
        std::vector<Peer> peers;
    };

    /// Counts the measurements ahead, for the progress lines.
    void plan(const std::vector<SizePlan>& sizes, const std::vector<LatencyPeer>& latencies)
    {
        for (const auto& s : sizes)
            for (const auto& peer : s.peers)
                planned_ += skipped(peer.name) ? 0 : kRepetitions;
        for (const auto& peer : latencies)
            planned_ += skipped(peer.name) ? 0 : kLatencyRepetitions;
    }

    /// Measures every peer at `size` kRepetitions times, interleaved (A B C,
    /// A B C, ...), and keeps each one's fastest run. Interleaving matters
    /// here: the machine drifts between a fast and a slow state that lasts
    /// seconds (two vCPUs whose placement changes), so runs of peers compared
    /// in a ratio must be taken close together; interference only ever slows
    /// a run, so the fastest run is the one to keep. The spread column
    /// (slowest / fastest) shows how much that mattered.
    void throughputs(std::size_t size, const std::vector<Peer>& peers)
    {
        std::vector<ThroughputResult> results;
        std::vector<std::vector<double>> seconds(peers.size());
        for (const Peer& peer : peers)
            results.push_back({std::string(peer.name), size, message_count(peer.cost, size, divisor()), std::nullopt});
        for (std::size_t repetition = 0; repetition < kRepetitions; ++repetition) {
            for (std::size_t i = 0; i < peers.size(); ++i) {
                if (skipped(peers[i].name))
                    continue;
                progressed(std::string(peers[i].name) + ", " + std::to_string(size) + " bytes");
                if (seconds[i].size() != repetition)
                    continue; // an earlier run failed
                ::alarm(kWatchdogSeconds);
                std::optional<double> run;
                try {
                    run = peers[i].measure(results[i].messages);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "%s, %zu bytes: %s\n", results[i].peer.c_str(), size, e.what());
                }
                ::alarm(0);
                if (run)
                    seconds[i].push_back(*run);
            }
        }
        for (std::size_t i = 0; i < peers.size(); ++i) {
            if (skipped(peers[i].name))
                continue;
            ThroughputResult& result = results[i];
            if (seconds[i].size() == kRepetitions) {
                const auto [fastest, slowest] = std::minmax_element(seconds[i].begin(), seconds[i].end());
                result.seconds = *fastest;
                result.spread = *slowest / *fastest;
                std::printf("  %-28s %7zu %12llu %14.3f %12.1f %9.3f %7.2f\n", result.peer.c_str(), size,
                    static_cast<unsigned long long>(result.messages), result.messages_per_s() / 1e6,
                    result.bytes_per_s() / 1e6, *result.seconds, result.spread);
            } else {
                std::printf("  %-28s %7zu %12llu %14s\n", result.peer.c_str(), size,
                    static_cast<unsigned long long>(result.messages), "FAILED");
            }
            throughputs_.push_back(std::move(result));
        }
        std::fflush(stdout);
    }

    void latency(const LatencyPeer& peer)
    {
        if (skipped(peer.name))
            return;
        LatencyResult result {std::string(peer.name), std::max<std::uint64_t>(100, peer.rounds / divisor()), std::nullopt};
        // The run with the lowest median of kLatencyRepetitions, for the same
        // reason throughputs() keeps the fastest: the machine's slow spells.
        bool failed = false;
        for (std::size_t repetition = 0; repetition < kLatencyRepetitions; ++repetition) {
            progressed(result.peer + ", round trips");
            if (failed)
                continue;
            ::alarm(kWatchdogSeconds);
            std::optional<Latency> run;
            try {
                run = peer.measure(result.rounds);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "%s: %s\n", result.peer.c_str(), e.what());
            }
            ::alarm(0);
            if (!run) {
                result.latency.reset();
                failed = true;
                continue;
            }
            if (!result.latency || run->median_ns < result.latency->median_ns)
                result.latency = run;
        }
        if (result.latency)
            std::printf("  %-28s %10llu %12.0f %12.0f %12.0f %12.0f\n", result.peer.c_str(),
                static_cast<unsigned long long>(result.rounds), result.latency->median_ns, result.latency->p90_ns,
                result.latency->p99_ns, result.latency->p999_ns);
        else
            std::printf("  %-28s %10llu %12s\n", result.peer.c_str(), static_cast<unsigned long long>(result.rounds),
                "FAILED");
        std::fflush(stdout);
        latencies_.push_back(std::move(result));
    }

    [[nodiscard]] std::optional<double> bytes_per_s(std::string_view peer, std::size_t size) const
    {
        for (const auto& r : throughputs_)
            if (r.peer == peer && r.size == size && r.seconds)
                return r.bytes_per_s();
        return std::nullopt;
    }
    [[nodiscard]] std::optional<double> median_ns(std::string_view peer) const
    {
        for (const auto& r : latencies_)
            if (r.peer == peer && r.latency)
                return r.latency->median_ns;
        return std::nullopt;
    }

    void ratio(std::string name, std::optional<double> numerator, std::optional<double> denominator,
        Comparison comparison, double target)
    {
        Ratio r {std::move(name), std::nullopt, comparison, target};
        if (numerator && denominator && *denominator > 0)
            r.value = *numerator / *denominator;
        if (r.value)
            std::printf("  %-52s = %8.2fx  (target %s %gx)  %s\n", r.name.c_str(), *r.value, r.sign(), r.target,
                r.met() ? "met" : "MISSED");
        else
            std::printf("  %-52s = %8s   (target %s %gx)\n", r.name.c_str(), "n/a", r.sign(), r.target);
        ratios_.push_back(std::move(r));
    }

    /// True if every measurement ran and verified (targets aside).
    [[nodiscard]] bool complete() const
    {
        return std::all_of(throughputs_.begin(), throughputs_.end(), [](const auto& r) { return r.seconds.has_value(); })
            && std::all_of(latencies_.begin(), latencies_.end(), [](const auto& r) { return r.latency.has_value(); });
    }

    bool write_json() const;
    bool write_plot() const;

private:
    void progressed(const std::string& what)
    {
        ++done_;
        if (options_.progress) {
            std::fprintf(stderr, "progress %zu %zu %s\n", done_, planned_, what.c_str());
            std::fflush(stderr);
        }
    }

    [[nodiscard]] bool skipped(std::string_view peer) const noexcept
    {
        return !options_.only.empty() && peer.find(options_.only) == std::string_view::npos;
    }

    Options options_;
    std::vector<ThroughputResult> throughputs_;
    std::vector<LatencyResult> latencies_;
    std::vector<Ratio> ratios_;
    std::size_t planned_ = 0;
    std::size_t done_ = 0;
};

bool Report::write_json() const
{
    std::FILE* out = std::fopen(options_.json_path.c_str(), "w");
    if (out == nullptr) {
        std::fprintf(stderr, "%s: %s\n", options_.json_path.c_str(), std::strerror(errno));
        return false;
    }
    std::fprintf(out, "{\n  \"quick\": %s,\n  \"cpus\": [%d, %d],\n  \"repetitions\": %zu,\n  \"throughput\": [",
        options_.quick ? "true" : "false", kParentCpu, kChildCpu, kRepetitions);
    const char* separator = "\n";
    for (const auto& r : throughputs_) {
        std::fprintf(out,
            "%s    {\"peer\": %s, \"message_bytes\": %zu, \"messages\": %llu, \"seconds\": %s, "
            "\"spread\": %s, \"messages_per_second\": %s, \"bytes_per_second\": %s}",
            separator, json_string(r.peer).c_str(), r.size, static_cast<unsigned long long>(r.messages),
            json_number(r.seconds).c_str(), json_number(r.seconds ? std::optional(r.spread) : std::nullopt).c_str(),
            json_number(r.seconds ? std::optional(r.messages_per_s()) : std::nullopt).c_str(),
            json_number(r.seconds ? std::optional(r.bytes_per_s()) : std::nullopt).c_str());
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"latency\": [");
    separator = "\n";
    for (const auto& r : latencies_) {
        std::fprintf(out,
            "%s    {\"peer\": %s, \"message_bytes\": %zu, \"round_trips\": %llu, \"median_ns\": %s, \"p90_ns\": %s, "
            "\"p99_ns\": %s, \"p999_ns\": %s}",
            separator, json_string(r.peer).c_str(), kLatencyMessageBytes, static_cast<unsigned long long>(r.rounds),
            json_number(r.latency ? std::optional(r.latency->median_ns) : std::nullopt).c_str(),
            json_number(r.latency ? std::optional(r.latency->p90_ns) : std::nullopt).c_str(),
            json_number(r.latency ? std::optional(r.latency->p99_ns) : std::nullopt).c_str(),
            json_number(r.latency ? std::optional(r.latency->p999_ns) : std::nullopt).c_str());
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"ratios\": [");
    separator = "\n";
    for (const auto& r : ratios_) {
        std::fprintf(out, "%s    {\"name\": %s, \"value\": %s, \"comparison\": %s, \"target\": %s, \"met\": %s}",
            separator, json_string(r.name).c_str(), json_number(r.value).c_str(), json_string(r.sign()).c_str(),
            json_number(r.target).c_str(), r.met() ? "true" : "false");
        separator = ",\n";
    }
    std::fprintf(out, "\n  ]\n}\n");
    return std::fclose(out) == 0;
}

bool Report::write_plot() const
{
    shmlink::bench::Chart chart;
    chart.title = "shmlink rings beside their peers";
    chart.subtitle = "producer and consumer processes pinned to CPUs " + std::to_string(kParentCpu) + " and "
        + std::to_string(kChildCpu) + "; throughput best of " + std::to_string(kRepetitions) + ", latency of "
        + std::to_string(kLatencyMessageBytes) + "-byte messages" + (options_.quick ? "; --quick run" : "");
    for (const auto& r : throughputs_) {
        if (!r.seconds)
            continue;
        auto series = std::find_if(chart.throughput.begin(), chart.throughput.end(),
            [&](const auto& s) { return s.peer == r.peer; });
        if (series == chart.throughput.end())
            series = chart.throughput.insert(chart.throughput.end(), {r.peer, {}});
        series->points.emplace_back(static_cast<double>(r.size), r.bytes_per_s());
    }
    chart.percentiles = {"p50", "p90", "p99", "p99.9"};
    for (const auto& r : latencies_)
        if (r.latency)
            chart.latency.push_back({r.peer, {r.latency->median_ns, r.latency->p90_ns, r.latency->p99_ns, r.latency->p999_ns}});
    std::FILE* out = std::fopen(options_.plot_path.c_str(), "w");
    if (out == nullptr) {
        std::fprintf(stderr, "%s: %s\n", options_.plot_path.c_str(), std::strerror(errno));
        return false;
    }
    const std::string text = shmlink::bench::svg(chart);
    const bool written = std::fwrite(text.data(), 1, text.size(), out) == text.size();
    return std::fclose(out) == 0 && written;
}

// Peer names: the table rows, the JSON "peer" fields, and how ratios find them.
constexpr std::string_view kShmlinkCopy = "shmlink try_push/consume";
constexpr std::string_view kShmlinkZeroCopy = "shmlink reserve/commit";
constexpr std::string_view kMpscCopy = "shmlink MPSC try_push/consume";
constexpr std::string_view kMpscSpin = "shmlink MPSC spin";
constexpr std::string_view kMpscBlock = "shmlink MPSC block";
constexpr std::string_view kReference = "reference ring (floor)";
constexpr std::string_view kPipe = "pipe";
constexpr std::string_view kSocket = "unix socket (seqpacket)";
constexpr std::string_view kBoost = "boost message_queue";
constexpr std::string_view kMemcpy = "memcpy, 1 process (floor)";
constexpr std::string_view kSpin = "shmlink spin";
constexpr std::string_view kBlock = "shmlink block";
constexpr std::string_view kSpinThenBlock = "shmlink spin_then_block";
constexpr std::string_view kCacheLine = "cache-line ping-pong (floor)";
constexpr std::string_view kFutex = "futex ping-pong (floor)";

/// One throughput measurement of a `Channel` made from `args`: a fresh one
/// per repetition, so every run starts from an empty channel.
template <typename Channel, typename... Args>
auto one_way(std::size_t size, Args... args)
{
    return [=](std::uint64_t count) {
        Channel channel(args...);
        return one_way_seconds(channel, size, count);
    };
}

/// One latency measurement over a pair of `Channel`s made from `args`.
template <typename Channel, typename... Args>
auto round_trips(Args... args)
{
    return [=](std::uint64_t rounds) {
        Channel to_child(args...);
        Channel to_parent(args...);
        return channel_round_trips(to_child, to_parent, rounds);
    };
}

std::vector<Report::SizePlan> throughput_plan()
{
    std::vector<Report::SizePlan> plan;
    for (const std::size_t size : kMessageSizes) {
        std::vector<Report::Peer> peers {
            {kShmlinkCopy, kRingCost, one_way<SpscChannel>(size, RingApi::copy)},
            {kMpscCopy, kRingCost, one_way<MpscChannel>(size, RingApi::copy)},
            {kReference, kRingCost, one_way<ReferenceChannel>(size)},
            {kPipe, kPipeCost, one_way<PipeChannel>(size, size)},
            {kSocket, kSocketCost, one_way<SocketChannel>(size, size)},
            {kBoost, kBoostCost, one_way<BoostQueueChannel>(size, size)},
            {kMemcpy, kMemcpyCost, [size](std::uint64_t count) { return std::optional(memcpy_seconds(size, count)); }},
        };
        if (size == kZeroCopyBytes)
            peers.insert(peers.begin() + 1, {kShmlinkZeroCopy, kRingCost, one_way<SpscChannel>(size, RingApi::zero_copy)});
        plan.push_back({size, std::move(peers)});
    }
    return plan;
}

std::vector<Report::LatencyPeer> latency_plan()
{
    using shmlink::WaitMode;
    using shmlink::WaitOptions;
    return {
        {kSpin, kSpinRounds, round_trips<SpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::spin})},
        {kBlock, kSleepRounds, round_trips<SpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::block})},
        {kMpscSpin, kSpinRounds, round_trips<MpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::spin})},
        {kMpscBlock, kSleepRounds, round_trips<MpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::block})},
        // The default options: spin_then_block.
        {kSpinThenBlock, kSpinRounds, round_trips<SpscChannel>(RingApi::wait, WaitOptions {})},
        {kPipe, kSleepRounds, round_trips<PipeChannel>(kLatencyMessageBytes)},
        {kSocket, kSleepRounds, round_trips<SocketChannel>(kLatencyMessageBytes)},
        {kBoost, kSleepRounds, round_trips<BoostQueueChannel>(kLatencyMessageBytes)},
        {kCacheLine, kSpinRounds, cache_line_round_trips},
        {kFutex, kSleepRounds, futex_round_trips},
    };
}

void measure_throughput(Report& report, const std::vector<Report::SizePlan>& plan)
{
    std::printf("one-way throughput, producer on CPU %d -> consumer process on CPU %d, best of %zu\n", kParentCpu,
        kChildCpu, kRepetitions);
    std::printf("  %-28s %7s %12s %14s %12s %9s %7s\n", "peer", "bytes", "messages", "M messages/s", "MB/s", "seconds",
        "spread");
    std::fflush(stdout);
    for (const auto& size : plan)
        report.throughputs(size.size, size.peers);
}

void measure_latency(Report& report, const std::vector<Report::LatencyPeer>& plan)
{
    std::printf("\nround trip of a %zu-byte message between two processes (CPU %d <-> CPU %d)\n", kLatencyMessageBytes,
        kParentCpu, kChildCpu);
    std::printf("  %-28s %10s %12s %12s %12s %12s\n", "peer", "rounds", "median ns", "p90 ns", "p99 ns", "p99.9 ns");
    std::fflush(stdout);
    for (const auto& peer : plan)
        report.latency(peer);
}

void print_ratios(Report& report)
{
    std::printf("\nratios against the project's targets\n");
    const auto spsc64 = report.bytes_per_s(kShmlinkCopy, 64);
    report.ratio("SPSC 64B throughput / pipe", spsc64, report.bytes_per_s(kPipe, 64), Comparison::at_least, 40);
    report.ratio("SPSC 64B throughput / Boost message_queue", spsc64, report.bytes_per_s(kBoost, 64),
        Comparison::at_least, 25);
    report.ratio("SPSC 64B throughput / reference ring", spsc64, report.bytes_per_s(kReference, 64),
        Comparison::at_least, 0.8);
    report.ratio("spin round trip / cache-line ping-pong", report.median_ns(kSpin), report.median_ns(kCacheLine),
        Comparison::at_most, 1.5);
    report.ratio("block round trip / futex ping-pong", report.median_ns(kBlock), report.median_ns(kFutex),
        Comparison::at_most, 1.2);
    report.ratio("block round trip / pipe round trip", report.median_ns(kBlock), report.median_ns(kPipe),
        Comparison::below, 1.0);
    report.ratio("spin_then_block round trip / cache-line ping-pong", report.median_ns(kSpinThenBlock),
        report.median_ns(kCacheLine), Comparison::at_most, 3);
    report.ratio("64 KiB reserve/commit bytes/s / memcpy bytes/s", report.bytes_per_s(kShmlinkZeroCopy, kZeroCopyBytes),
        report.bytes_per_s(kMemcpy, kZeroCopyBytes), Comparison::at_least, 0.5);
}

void on_watchdog(int) noexcept
{
    static constexpr char kMessage[] = "ring_bench: a measurement hung; giving up\n";
    if (::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1) < 0) {
    }
    ::_exit(3); // the children die with us (PR_SET_PDEATHSIG)
}

constexpr char kUsage[] = R"(usage: ring_bench [--quick] [--json FILE] [--plot FILE.svg] [--progress] [--only PEER]

Measures shmlink's SPSC and MPSC rings against a pipe, a Unix socket, Boost.Interprocess
message_queue and the floors, producer and consumer in two processes pinned
to CPUs 0 and 1, and prints the ratios the project's targets are stated in.

  --quick      every message and round-trip count 20x smaller (a smoke run)
  --json FILE  also write every figure and ratio to FILE as JSON
  --plot FILE  also draw throughput by message size and latency percentiles
               as an SVG image in FILE
  --progress   a line "progress DONE TOTAL what" on stderr as each
               measurement starts (the shmlink tool draws its bar from them)
  --only PEER  measure only the peers whose name contains PEER (ratios of
               peers not measured print as n/a)
  --help       this text

Exit status: 0 if every measurement ran and verified (targets aside),
1 if one failed, 2 on bad arguments, 3 if a measurement hung.
)";

} // namespace

int main(int argc, char** argv)
{
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--quick") {
            options.quick = true;
        } else if (arg == "--json" && i + 1 < argc) {
            options.json_path = argv[++i];
        } else if (arg == "--plot" && i + 1 < argc) {
            options.plot_path = argv[++i];
        } else if (arg == "--progress") {
            options.progress = true;
        } else if (arg == "--only" && i + 1 < argc) {
            options.only = argv[++i];
        } else if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        } else {
            std::fputs(kUsage, stderr);
            return 2;
        }
    }

    struct sigaction watchdog {};
    watchdog.sa_handler = on_watchdog;
    ::sigaction(SIGALRM, &watchdog, nullptr);
    try {
        pin_to_cpu(kParentCpu);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ring_bench: %s (needs CPUs %d and %d)\n", e.what(), kParentCpu, kChildCpu);
        return 1;
    }

    const auto start = Clock::now();
    Report report(options);
    const auto throughputs = throughput_plan();
    const auto latencies = latency_plan();
    report.plan(throughputs, latencies);
    measure_throughput(report, throughputs);
    measure_latency(report, latencies);
    print_ratios(report);
    std::printf("\n%.1f s in all%s\n", seconds_between(start, Clock::now()), options.quick ? " (--quick)" : "");
    if (!options.json_path.empty() && !report.write_json())
        return 1;
    if (!options.plot_path.empty() && !report.write_plot())
        return 1;
    return report.complete() ? 0 : 1;
}
