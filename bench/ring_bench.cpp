// Message passing between two processes on pinned cores, in one run:
// one-way throughput and round-trip latency of shmlink's SPSC and MPSC rings
// beside a pipe, a Unix socket and Boost.Interprocess message_queue, and
// beside the floors (a bare reference ring, cache-line and futex ping-pong,
// memcpy).
// Peers run in short trials, each once a trial in turn; prints tables of
// the medians over the trials and the ratios the project's targets are
// stated in, each divided within a trial.
#include <shmlink/core/layout.hpp>
#include <shmlink/core/mmap.hpp>
#include <shmlink/core/segment.hpp>
#include <shmlink/core/unique_fd.hpp>
#include <shmlink/ipc/layout.hpp>
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
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace bip = boost::interprocess;
using shmlink::bench::Child;
using shmlink::bench::Clock;
using shmlink::bench::Handshake;
using shmlink::bench::json_field;
using shmlink::bench::json_number;
using shmlink::bench::json_numbers;
using shmlink::bench::json_string;
using shmlink::bench::parse_rounds;
using shmlink::bench::pin_to_cpu;
using shmlink::bench::seconds_between;
using shmlink::bench::Shared;
using shmlink::bench::Summary;
using shmlink::bench::summarize;
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
// MPSC rings: every lane is a ring of kRingBytes, whatever the lane count,
// so that rings of 1, 8 and 64 lanes differ in nothing else.
constexpr std::uint32_t kMaxLanes = 64;          // MpscRing::create's limit
constexpr std::uint32_t kLatencyMpscLanes = 4;   // the MPSC round trips: one producer, three lanes free
constexpr std::uint32_t kProducers = 8;          // the "8 producers" row: as many processes and lanes
/// A segment for a ring of `lanes` rings of kRingBytes (an SPSC ring is one):
/// each lane's control block rounded up to a page, and 64 KiB for the
/// ring's control block and the segment's header and directory. A 64-lane
/// ring takes 16.3 MiB, an SPSC ring 324 KiB.
constexpr std::size_t segment_bytes(std::uint32_t lanes)
{
    return lanes * (kRingBytes + 4096) + (std::size_t {64} << 10);
}
static_assert(sizeof(shmlink::ipc::MpscLane) <= 4096 && sizeof(shmlink::ipc::SpscRingControl) <= 4096,
    "segment_bytes() gives each lane's control block a page");
static_assert(sizeof(shmlink::ipc::MpscRingControl) + shmlink::layout::kHeaderBytes <= (std::size_t {64} << 10),
    "segment_bytes() leaves 64 KiB for the header and the ring's control block");
constexpr std::size_t kConsumeBatch = 64;         // messages a ring consumer frees with one store
// Rounds of trials: a trial runs every peer of a table once, in turn, and
// ratios are taken within a trial (see Report::throughputs()). The time
// one CPU takes to see the other's store flips between about 50, 110 and
// 550 ns within tenths of a second on a VM (two vCPUs whose placement
// changes), so a trial is short: two peers compared in one trial met the
// same machine.
constexpr std::size_t kDefaultRounds = 7;
constexpr std::size_t kQuickRounds = 3;
constexpr std::size_t kTrialsPerRound = 8;
constexpr double kTargetSeconds = 0.25 / kTrialsPerRound; // per throughput trial, from the cost estimates below
// Round trips a round, split among its trials: for peers that answer in
// well under a microsecond, and for those that go through the scheduler.
constexpr std::uint64_t kSpinTrips = 50'000;
constexpr std::uint64_t kSleepTrips = 8'000;
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

// ---- futex words: shared 32-bit words (no FUTEX_PRIVATE_FLAG) one process sleeps on ----

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

/// What processes sleep at until the parent opens it, so that they all start at once.
struct Gate {
    alignas(128) std::uint32_t opened = 0; // atomic (atomic_ref)

    void wait() noexcept { futex_wait_for(opened, 1); }
    void open() noexcept
    {
        // release: pairs with the acquire load in futex_wait_for().
        std::atomic_ref(opened).store(1, std::memory_order_release);
        ::syscall(SYS_futex, &opened, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
    }
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
/// ring of `lanes` lanes on which each producer takes one.
struct SpscKind {
    using Producer = shmlink::SpscRing;
    using Consumer = shmlink::SpscRing;
    static void create(shmlink::Segment& segment, std::string_view name, std::uint32_t /*lanes*/)
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
    static void create(shmlink::Segment& segment, std::string_view name, std::uint32_t lanes)
    {
        shmlink::MpscRing::create_only(segment, name, kRingBytes, lanes);
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
    explicit ShmlinkChannel(RingApi api, shmlink::WaitOptions wait = {}, std::uint32_t lanes = 1)
        : path_(unique_name("/dev/shm/shmlink-ring-bench")),
          api_(api),
          wait_(wait),
          segment_(shmlink::Segment::create(path_, segment_bytes(lanes),
              {.max_size_bytes = segment_bytes(lanes), .cleanup = shmlink::Cleanup::unlink_on_close})),
          buffer_(kMaxMessageBytes)
    {
        Kind::create(segment_, kRingName, lanes);
    }

    /// Attaches by path, as a guest does; the ring is opened by name on
    /// first use, as producer or consumer. The creator's Segment stays
    /// untouched in the child's copy of memory.
    void attach_in_child() { guest_ = shmlink::Segment::attach(path_); }
    [[nodiscard]] bool in_place() const noexcept { return api_ == RingApi::zero_copy; }

    /// Opens the producer's end now (an MPSC producer takes its lane) rather than at the first send().
    void open_producer()
    {
        if (!producer_.valid())
            producer_ = Kind::producer(segment(), kRingName);
    }

    bool send(std::span<const std::byte> message)
    {
        using shmlink::RingStatus;
        open_producer();
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

    /// `handle(bytes)`, or on an MPSC ring `handle(lane, bytes)` to learn
    /// which lane a message came from (not with RingApi::wait, whose pop()
    /// does not say: false then).
    template <typename Handle>
    bool receive(Handle&& handle)
    {
        using shmlink::RingStatus;
        constexpr bool kByLane = std::is_invocable_v<Handle&, std::uint32_t, std::span<const std::byte>>;
        if (!consumer_.valid())
            consumer_ = Kind::consumer(segment(), kRingName);
        if (api_ == RingApi::wait) {
            std::size_t length = 0;
            if constexpr (kByLane)
                return false;
            else if (consumer_.pop(buffer_, length, kTimeout, wait_) != RingStatus::ok)
                return false;
            else
                handle(std::span<const std::byte>(buffer_.data(), length));
            return true;
        }
        const auto copied = [&](std::span<const std::byte> message) {
            const std::size_t length = std::min(message.size(), buffer_.size());
            std::memcpy(buffer_.data(), message.data(), length);
            return std::span<const std::byte>(buffer_.data(), length);
        };
        const auto copy_out = [&] {
            if constexpr (kByLane)
                return [&](std::uint32_t lane, std::span<const std::byte> message) { handle(lane, copied(message)); };
            else
                return [&](std::span<const std::byte> message) { handle(copied(message)); };
        }();
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

/// A multiple of 64, so that kProducers producers share it evenly.
std::uint64_t message_count(Cost cost, std::size_t size, std::uint64_t divisor)
{
    const double ns = cost.ns_per_message + static_cast<double>(size) / cost.bytes_per_ns;
    const auto count = static_cast<std::uint64_t>(kTargetSeconds * 1e9 / ns) / divisor;
    return std::max<std::uint64_t>(128, count) & ~std::uint64_t {63};
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

/// kProducers processes pinned to kParentCpu, all on one CPU (the machine
/// has two, and the consumer has the other), each sending its share of
/// `count` messages on a lane of its own of a kProducers-lane MPSC ring to
/// one consumer, which checks each lane's order. Seconds from opening the
/// gate the producers wait at to the consumer's last receive.
std::optional<double> many_producers_seconds(std::size_t size, std::uint64_t count)
{
    MpscChannel channel(RingApi::copy, {}, kProducers);
    const std::uint64_t each = count / kProducers;
    Shared<Gate> gate;
    Child consumer(kChildCpu, [&](Handshake& handshake) {
        channel.attach_in_child();
        // One receipt a lane: every lane must carry one producer's messages, all of them, in order.
        std::vector<Receipt> lanes(kProducers, Receipt(size, false));
        std::uint64_t received = 0;
        const auto check = [&](std::uint32_t lane, std::span<const std::byte> message) {
            ++received;
            lanes[lane](message); // MpscRing::consume() names lanes below lane_count() only
        };
        handshake.set_ready();
        while (received < each * kProducers) {
            if (!channel.receive(check))
                return false;
        }
        handshake.set_done();
        bool complete = true;
        for (std::size_t lane = 0; lane < lanes.size(); ++lane) {
            if (!lanes[lane].complete(each)) {
                std::fprintf(stderr, "lane %zu: ", lane);
                lanes[lane].explain(each);
                complete = false;
            }
        }
        return complete;
    });
    if (!consumer.wait_ready())
        return std::nullopt;
    std::vector<std::unique_ptr<Child>> producers;
    for (std::uint32_t i = 0; i < kProducers; ++i) {
        producers.push_back(std::make_unique<Child>(kParentCpu, [&](Handshake& handshake) {
            channel.attach_in_child();
            channel.open_producer(); // takes a lane before the gate opens
            handshake.set_ready();
            gate->wait();
            std::vector<std::byte> message(size, kFill);
            for (std::uint64_t seq = 0; seq < each; ++seq) {
                stamp(message, seq);
                if (!channel.send(message))
                    return false;
            }
            return true;
        }));
    }
    for (const auto& producer : producers)
        if (!producer->wait_ready())
            return std::nullopt;
    const auto start = Clock::now();
    gate->open();
    for (const auto& producer : producers)
        if (!producer->join())
            return std::nullopt; // the consumer would wait for its messages forever
    if (!consumer.join())
        return std::nullopt;
    return seconds_between(start, consumer.done_at());
}

/// `bytes` bytes from the start of a page inside `storage`.
std::span<std::byte> page_aligned(std::vector<std::byte>& storage, std::size_t bytes)
{
    constexpr std::size_t kPage = 4096;
    storage.assign(bytes + kPage, kFill);
    const auto address = reinterpret_cast<std::uintptr_t>(storage.data());
    return std::span(storage).subspan((kPage - address % kPage) % kPage, bytes);
}

/// The bandwidth floor: one process copying each message into a ring-sized
/// buffer, cycling through it as a ring does, so the working set matches.
/// Both start a page: where the destination lies a few bytes past the
/// source modulo 4096, this machine's memcpy (AMD EPYC under KVM) copies
/// 64 KiB some 17x slower (2.5 against 45 GB/s), and that is no floor.
double memcpy_seconds(std::size_t size, std::uint64_t count)
{
    std::vector<std::byte> message_storage;
    std::vector<std::byte> ring_storage;
    const std::span<std::byte> message = page_aligned(message_storage, size);
    const std::span<std::byte> ring = page_aligned(ring_storage, kRingBytes);
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

/// Round-trip times in ns, sorted.
using Samples = std::vector<std::int64_t>;

struct Latency {
    double median_ns = 0;
    double p90_ns = 0;
    double p99_ns = 0;
    double p999_ns = 0;
};

Latency percentiles(const Samples& ns)
{
    const auto at = [&](std::size_t per_mille) { return static_cast<double>(ns[ns.size() * per_mille / 1000]); };
    return Latency {at(500), at(900), at(990), at(999)};
}

/// Times `trips` round trips after a tenth as many untimed ones:
/// `echo(handshake, total)` runs in the child and answers all of them;
/// `round_trip(seq)` runs here for seq = 1, 2, ... and returns false on error.
template <typename Echo, typename RoundTrip>
std::optional<Samples> time_round_trips(std::uint64_t trips, Echo&& echo, RoundTrip&& round_trip)
{
    const std::uint64_t total = trips + trips / 10;
    Child child(kChildCpu, [&](Handshake& handshake) { return echo(handshake, total); });
    if (!child.wait_ready())
        return std::nullopt;
    Samples ns;
    ns.reserve(trips);
    for (std::uint64_t seq = 1; seq <= total; ++seq) {
        const auto start = Clock::now();
        if (!round_trip(seq))
            return std::nullopt;
        if (seq > total - trips)
            ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    }
    if (!child.join())
        return std::nullopt;
    std::sort(ns.begin(), ns.end());
    return ns;
}

/// Ping-pong of one kLatencyMessageBytes message: out on `to_child`, echoed back on `to_parent`.
template <typename Channel>
std::optional<Samples> channel_round_trips(Channel& to_child, Channel& to_parent, std::uint64_t trips)
{
    std::vector<std::byte> message(kLatencyMessageBytes, kFill);
    return time_round_trips(
        trips,
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

std::optional<Samples> cache_line_round_trips(std::uint64_t trips)
{
    Shared<CacheLines> lines;
    return time_round_trips(
        trips,
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

std::optional<Samples> futex_round_trips(std::uint64_t trips)
{
    Shared<FutexWords> words;
    return time_round_trips(
        trips,
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
    std::uint64_t messages = 0;       // in each run
    std::vector<double> per_trial;    // messages/s, one per trial
    bool failed = false;              // a run failed: no figure at all

    [[nodiscard]] bool measured() const noexcept { return !failed && !per_trial.empty(); }
    [[nodiscard]] Summary messages_per_s() const { return summarize(per_trial); }
};

struct LatencyResult {
    std::string peer;
    std::uint64_t trips = 0;          // timed in each trial
    std::vector<Latency> per_trial;
    Samples all;                      // every trial's round trips, for the tails
    bool failed = false;

    [[nodiscard]] bool measured() const noexcept { return !failed && !per_trial.empty(); }
    [[nodiscard]] std::vector<double> medians() const
    {
        std::vector<double> out;
        for (const auto& round : per_trial)
            out.push_back(round.median_ns);
        return out;
    }
};

enum class Comparison { at_least, at_most, context };

/// A ratio of two peers' figures taken in each trial, and the median of those.
struct Ratio {
    std::string name;
    Comparison comparison;
    double target;                    // unused for context
    std::vector<double> per_trial;    // empty when a peer is missing

    [[nodiscard]] bool has_target() const noexcept { return comparison != Comparison::context; }
    [[nodiscard]] const char* sign() const
    {
        return comparison == Comparison::at_least ? ">=" : "<=";
    }
    [[nodiscard]] bool met() const
    {
        if (per_trial.empty() || !has_target())
            return false;
        const double value = summarize(per_trial).median;
        return comparison == Comparison::at_least ? value >= target : value <= target;
    }
};

struct Options {
    bool quick = false;
    bool progress = false; ///< a line "progress DONE TOTAL what" on stderr per measurement
    std::size_t rounds = 0; ///< 0: kDefaultRounds, or kQuickRounds with --quick
    std::string json_path;
    std::string plot_path;
    std::string only; ///< measure only the peers it selects (bench::selected(): a name part, or "A|B")
};

class Report {
public:
    explicit Report(const Options& options) : options_(options)
    {
        if (options_.rounds == 0)
            options_.rounds = options_.quick ? kQuickRounds : kDefaultRounds;
    }

    [[nodiscard]] std::uint64_t divisor() const noexcept { return options_.quick ? kQuickDivisor : 1; }
    [[nodiscard]] std::size_t rounds() const noexcept { return options_.rounds; }
    [[nodiscard]] std::size_t trials() const noexcept { return options_.rounds * kTrialsPerRound; }
    [[nodiscard]] bool skipped(std::string_view peer) const noexcept
    {
        return !shmlink::bench::selected(peer, options_.only);
    }

    /// One peer's throughput measurement: `measure(count)` moves `count`
    /// messages through a fresh channel and answers the seconds it took.
    struct Peer {
        std::string_view name;
        Cost cost;
        std::function<std::optional<double>(std::uint64_t)> measure;
    };

    /// One peer's latency measurement: `measure(trips)` times that many round trips.
    struct LatencyPeer {
        std::string_view name;
        std::uint64_t trips;
        std::function<std::optional<Samples>(std::uint64_t)> measure;
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
                planned_ += skipped(peer.name) ? 0 : trials();
        for (const auto& peer : latencies)
            planned_ += skipped(peer.name) ? 0 : trials();
    }

    /// Measures every peer at `size` in trials: each trial runs every peer
    /// once, in turn (A B C, A B C, ...), kTrialsPerRound trials a round.
    /// The machine flips between fast and slow states within tenths of a
    /// second (two vCPUs whose placement changes), so only figures taken
    /// close together compare: a ratio is taken within each trial, and what
    /// is reported is the median over the trials, with the 10th and 90th
    /// percentiles to show how far to trust it.
    void throughputs(std::size_t size, const std::vector<Peer>& peers)
    {
        std::vector<ThroughputResult> results;
        for (const Peer& peer : peers)
            results.push_back({std::string(peer.name), size, message_count(peer.cost, size, divisor()), {}});
        for (std::size_t trial = 0; trial < trials(); ++trial) {
            for (std::size_t i = 0; i < peers.size(); ++i) {
                if (skipped(peers[i].name))
                    continue;
                ThroughputResult& result = results[i];
                progressed(result.peer + ", " + std::to_string(size) + " bytes, trial " + std::to_string(trial + 1));
                if (result.failed)
                    continue;
                ::alarm(kWatchdogSeconds);
                std::optional<double> seconds;
                try {
                    seconds = peers[i].measure(result.messages);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "%s, %zu bytes: %s\n", result.peer.c_str(), size, e.what());
                }
                ::alarm(0);
                if (seconds && *seconds > 0)
                    result.per_trial.push_back(static_cast<double>(result.messages) / *seconds);
                else
                    result.failed = true;
            }
        }
        for (std::size_t i = 0; i < peers.size(); ++i) {
            if (skipped(peers[i].name))
                continue;
            ThroughputResult& result = results[i];
            if (result.measured()) {
                const Summary rate = result.messages_per_s();
                std::printf("  %-28s %7zu %13llu %13.3f  [%8.3f .. %8.3f] %11.1f\n", result.peer.c_str(), size,
                    static_cast<unsigned long long>(result.messages), rate.median / 1e6, rate.p10 / 1e6,
                    rate.p90 / 1e6, rate.median * static_cast<double>(size) / 1e6);
            } else {
                std::printf("  %-28s %7zu %13llu %13s\n", result.peer.c_str(), size,
                    static_cast<unsigned long long>(result.messages), "FAILED");
            }
            throughputs_.push_back(std::move(result));
        }
        std::fflush(stdout);
    }

    /// Every latency peer in trials, as throughputs() does.
    void latencies(const std::vector<LatencyPeer>& peers)
    {
        std::vector<LatencyResult> results;
        for (const LatencyPeer& peer : peers)
            results.push_back({std::string(peer.name),
                std::max<std::uint64_t>(100, peer.trips / divisor() / kTrialsPerRound), {}, {}});
        for (std::size_t trial = 0; trial < trials(); ++trial) {
            for (std::size_t i = 0; i < peers.size(); ++i) {
                if (skipped(peers[i].name))
                    continue;
                LatencyResult& result = results[i];
                progressed(result.peer + ", round trips, trial " + std::to_string(trial + 1));
                if (result.failed)
                    continue;
                ::alarm(kWatchdogSeconds);
                std::optional<Samples> samples;
                try {
                    samples = peers[i].measure(result.trips);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "%s: %s\n", result.peer.c_str(), e.what());
                }
                ::alarm(0);
                if (!samples || samples->empty()) {
                    result.failed = true;
                    continue;
                }
                result.per_trial.push_back(percentiles(*samples));
                result.all.insert(result.all.end(), samples->begin(), samples->end());
            }
        }
        for (std::size_t i = 0; i < peers.size(); ++i) {
            if (skipped(peers[i].name))
                continue;
            LatencyResult& result = results[i];
            if (result.measured()) {
                std::sort(result.all.begin(), result.all.end());
                const Summary median = summarize(result.medians());
                const Latency tails = percentiles(result.all);
                std::printf("  %-28s %11llu %12.0f  [%8.0f .. %8.0f] %12.0f %12.0f %12.0f\n", result.peer.c_str(),
                    static_cast<unsigned long long>(result.trips), median.median, median.p10, median.p90,
                    tails.p90_ns, tails.p99_ns, tails.p999_ns);
            } else {
                std::printf("  %-28s %11llu %12s\n", result.peer.c_str(), static_cast<unsigned long long>(result.trips),
                    "FAILED");
            }
            latencies_.push_back(std::move(result));
        }
        std::fflush(stdout);
    }

    /// `numerator` over `denominator` at message size `size` (messages/s), trial by trial.
    void throughput_ratio(std::string name, std::string_view numerator, std::string_view denominator,
        std::size_t size, Comparison comparison, double target = 0)
    {
        const ThroughputResult* top = throughput(numerator, size);
        const ThroughputResult* bottom = throughput(denominator, size);
        ratio({std::move(name), comparison, target, {}}, top ? top->per_trial : std::vector<double>(),
            bottom ? bottom->per_trial : std::vector<double>());
    }

    /// `numerator`'s median round trip over `denominator`'s, trial by trial.
    void latency_ratio(std::string name, std::string_view numerator, std::string_view denominator,
        Comparison comparison, double target = 0)
    {
        const LatencyResult* top = latency(numerator);
        const LatencyResult* bottom = latency(denominator);
        ratio({std::move(name), comparison, target, {}}, top ? top->medians() : std::vector<double>(),
            bottom ? bottom->medians() : std::vector<double>());
    }

    /// True if every measurement ran and verified (targets aside).
    [[nodiscard]] bool complete() const
    {
        return std::all_of(throughputs_.begin(), throughputs_.end(), [](const auto& r) { return r.measured(); })
            && std::all_of(latencies_.begin(), latencies_.end(), [](const auto& r) { return r.measured(); });
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

    [[nodiscard]] const ThroughputResult* throughput(std::string_view peer, std::size_t size) const
    {
        for (const auto& r : throughputs_)
            if (r.peer == peer && r.size == size && r.measured())
                return &r;
        return nullptr;
    }
    [[nodiscard]] const LatencyResult* latency(std::string_view peer) const
    {
        for (const auto& r : latencies_)
            if (r.peer == peer && r.measured())
                return &r;
        return nullptr;
    }

    /// Divides trial by trial (both peers ran in every trial, or the ratio has none) and prints the result.
    void ratio(Ratio r, const std::vector<double>& top, const std::vector<double>& bottom)
    {
        if (!top.empty() && top.size() == bottom.size())
            for (std::size_t i = 0; i < top.size(); ++i)
                r.per_trial.push_back(top[i] / bottom[i]);
        char target[48] = "context";
        if (r.has_target())
            std::snprintf(target, sizeof(target), "target %s %gx", r.sign(), r.target);
        if (r.per_trial.empty()) {
            std::printf("  %-52s = %6s                    (%s)\n", r.name.c_str(), "n/a", target);
        } else {
            const Summary value = summarize(r.per_trial);
            std::printf("  %-52s = %6.2fx [%5.2f .. %5.2f]  (%s)%s\n", r.name.c_str(), value.median, value.p10,
                value.p90, target, !r.has_target() ? "" : r.met() ? "  met" : "  MISSED");
        }
        ratios_.push_back(std::move(r));
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
    // Every figure is the median over the trials, with its 10th and 90th
    // percentiles, min and max, and the trials' own values.
    std::fprintf(out,
        "{\n  \"quick\": %s,\n  \"cpus\": [%d, %d],\n  \"rounds\": %zu,\n  \"trials_per_round\": %zu,\n"
        "  \"throughput\": [",
        options_.quick ? "true" : "false", kParentCpu, kChildCpu, rounds(), kTrialsPerRound);
    const char* separator = "\n";
    for (const auto& r : throughputs_) {
        std::optional<Summary> rate;
        if (r.measured())
            rate = r.messages_per_s();
        std::fprintf(out,
            "%s    {\"peer\": %s, \"message_bytes\": %zu, \"messages\": %llu, \"messages_per_second\": %s, "
            "\"p10_messages_per_second\": %s, \"p90_messages_per_second\": %s, "
            "\"min_messages_per_second\": %s, \"max_messages_per_second\": %s, \"bytes_per_second\": %s, "
            "\"trials_messages_per_second\": %s}",
            separator, json_string(r.peer).c_str(), r.size, static_cast<unsigned long long>(r.messages),
            json_field(rate, &Summary::median).c_str(), json_field(rate, &Summary::p10).c_str(),
            json_field(rate, &Summary::p90).c_str(), json_field(rate, &Summary::min).c_str(),
            json_field(rate, &Summary::max).c_str(),
            json_field(rate, &Summary::median, static_cast<double>(r.size)).c_str(),
            r.measured() ? json_numbers(r.per_trial).c_str() : "null");
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"latency\": [");
    separator = "\n";
    for (const auto& r : latencies_) {
        // median_ns: the median over the trials of each trial's median; the
        // other percentiles: of every round trip of every trial.
        std::optional<Summary> median;
        std::optional<Latency> tails;
        std::string per_trial = "null";
        if (r.measured()) {
            median = summarize(r.medians());
            tails = percentiles(r.all);
            per_trial = "[";
            for (std::size_t i = 0; i < r.per_trial.size(); ++i) {
                const Latency& l = r.per_trial[i];
                per_trial += std::string(i == 0 ? "" : ", ") + "{\"median_ns\": " + json_number(l.median_ns)
                    + ", \"p90_ns\": " + json_number(l.p90_ns) + ", \"p99_ns\": " + json_number(l.p99_ns)
                    + ", \"p999_ns\": " + json_number(l.p999_ns) + "}";
            }
            per_trial += "]";
        }
        std::fprintf(out,
            "%s    {\"peer\": %s, \"message_bytes\": %zu, \"round_trips\": %llu, \"median_ns\": %s, "
            "\"p10_median_ns\": %s, \"p90_median_ns\": %s, \"min_median_ns\": %s, \"max_median_ns\": %s, "
            "\"p90_ns\": %s, \"p99_ns\": %s, \"p999_ns\": %s, \"trials\": %s}",
            separator, json_string(r.peer).c_str(), kLatencyMessageBytes, static_cast<unsigned long long>(r.trips),
            json_field(median, &Summary::median).c_str(), json_field(median, &Summary::p10).c_str(),
            json_field(median, &Summary::p90).c_str(), json_field(median, &Summary::min).c_str(),
            json_field(median, &Summary::max).c_str(), json_field(tails, &Latency::p90_ns).c_str(),
            json_field(tails, &Latency::p99_ns).c_str(), json_field(tails, &Latency::p999_ns).c_str(),
            per_trial.c_str());
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"ratios\": [");
    separator = "\n";
    for (const auto& r : ratios_) {
        std::optional<Summary> value;
        if (!r.per_trial.empty())
            value = summarize(r.per_trial);
        // "value" is the median, as "median" is; a context ratio has no comparison, target or met.
        std::fprintf(out,
            "%s    {\"name\": %s, \"value\": %s, \"median\": %s, \"p10\": %s, \"p90\": %s, \"min\": %s, "
            "\"max\": %s, \"trials\": %s, \"context\": %s, \"comparison\": %s, \"target\": %s, \"met\": %s}",
            separator, json_string(r.name).c_str(), json_field(value, &Summary::median).c_str(),
            json_field(value, &Summary::median).c_str(), json_field(value, &Summary::p10).c_str(),
            json_field(value, &Summary::p90).c_str(), json_field(value, &Summary::min).c_str(),
            json_field(value, &Summary::max).c_str(), json_numbers(r.per_trial).c_str(),
            r.has_target() ? "false" : "true", r.has_target() ? json_string(r.sign()).c_str() : "null",
            r.has_target() ? json_number(r.target).c_str() : "null",
            r.has_target() ? (r.met() ? "true" : "false") : "null");
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
        + std::to_string(kChildCpu) + "; medians of " + std::to_string(trials()) + " trials; latency of "
        + std::to_string(kLatencyMessageBytes) + "-byte messages" + (options_.quick ? "; --quick run" : "");
    for (const auto& r : throughputs_) {
        if (!r.measured())
            continue;
        auto series = std::find_if(chart.throughput.begin(), chart.throughput.end(),
            [&](const auto& s) { return s.peer == r.peer; });
        if (series == chart.throughput.end())
            series = chart.throughput.insert(chart.throughput.end(), {r.peer, {}});
        const double bytes = static_cast<double>(r.size);
        series->points.emplace_back(bytes, r.messages_per_s().median * bytes);
    }
    chart.percentiles = {"p50", "p90", "p99", "p99.9"};
    for (const auto& r : latencies_) {
        if (!r.measured())
            continue;
        const Latency tails = percentiles(r.all);
        chart.latency.push_back({r.peer, {summarize(r.medians()).median, tails.p90_ns, tails.p99_ns, tails.p999_ns}});
    }
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
constexpr std::string_view kMpsc1Lane = "shmlink MPSC 1 lane";
constexpr std::string_view kMpsc8Lanes = "shmlink MPSC 8 lanes";
constexpr std::string_view kMpsc64Lanes = "shmlink MPSC 64 lanes";
constexpr std::string_view kMpscProducers = "shmlink MPSC 8 producers";
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
/// per run, so every run starts from an empty channel.
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
    return [=](std::uint64_t trips) {
        Channel to_child(args...);
        Channel to_parent(args...);
        return channel_round_trips(to_child, to_parent, trips);
    };
}

/// Each size's peers, in the order they run in a round: the two peers of a
/// ratio close together (the SPSC rows beside the reference ring, the MPSC
/// rows divided by the 1-lane ring on either side of it).
std::vector<Report::SizePlan> throughput_plan()
{
    std::vector<Report::SizePlan> plan;
    for (const std::size_t size : kMessageSizes) {
        const bool small = size <= 64;
        std::vector<Report::Peer> peers {
            {kShmlinkCopy, kRingCost, one_way<SpscChannel>(size, RingApi::copy)},
            {kReference, kRingCost, one_way<ReferenceChannel>(size)},
        };
        if (small || size == kZeroCopyBytes)
            peers.push_back({kShmlinkZeroCopy, kRingCost, one_way<SpscChannel>(size, RingApi::zero_copy)});
        const auto mpsc = [size](std::uint32_t lanes) {
            return one_way<MpscChannel>(size, RingApi::copy, shmlink::WaitOptions {}, lanes);
        };
        if (small) {
            peers.push_back({kMpsc8Lanes, kRingCost, mpsc(8)});
            peers.push_back({kMpsc64Lanes, kRingCost, mpsc(kMaxLanes)});
        }
        peers.push_back({kMpsc1Lane, kRingCost, mpsc(1)});
        if (size == 64)
            peers.push_back({kMpscProducers, kRingCost,
                [size](std::uint64_t count) { return many_producers_seconds(size, count); }});
        peers.push_back({kPipe, kPipeCost, one_way<PipeChannel>(size, size)});
        peers.push_back({kSocket, kSocketCost, one_way<SocketChannel>(size, size)});
        peers.push_back({kBoost, kBoostCost, one_way<BoostQueueChannel>(size, size)});
        peers.push_back({kMemcpy, kMemcpyCost,
            [size](std::uint64_t count) { return std::optional(memcpy_seconds(size, count)); }});
        plan.push_back({size, std::move(peers)});
    }
    return plan;
}

/// In the order they run in a round: each floor just before the peers divided by it.
std::vector<Report::LatencyPeer> latency_plan()
{
    using shmlink::WaitMode;
    using shmlink::WaitOptions;
    return {
        {kCacheLine, kSpinTrips, cache_line_round_trips},
        {kSpin, kSpinTrips, round_trips<SpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::spin})},
        {kMpscSpin, kSpinTrips,
            round_trips<MpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::spin}, kLatencyMpscLanes)},
        // The default options: spin_then_block.
        {kSpinThenBlock, kSpinTrips, round_trips<SpscChannel>(RingApi::wait, WaitOptions {})},
        {kFutex, kSleepTrips, futex_round_trips},
        {kBlock, kSleepTrips, round_trips<SpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::block})},
        {kMpscBlock, kSleepTrips,
            round_trips<MpscChannel>(RingApi::wait, WaitOptions {.mode = WaitMode::block}, kLatencyMpscLanes)},
        {kPipe, kSleepTrips, round_trips<PipeChannel>(kLatencyMessageBytes)},
        {kSocket, kSleepTrips, round_trips<SocketChannel>(kLatencyMessageBytes)},
        {kBoost, kSleepTrips, round_trips<BoostQueueChannel>(kLatencyMessageBytes)},
    };
}

void measure_throughput(Report& report, const std::vector<Report::SizePlan>& plan)
{
    std::printf("one-way throughput, producer on CPU %d -> consumer process on CPU %d\n", kParentCpu, kChildCpu);
    std::printf("%zu trials (%zu round%s of %zu) at each size, every peer once a trial in turn; M messages/s: "
                "median of the trials [p10 .. p90]\n",
        report.trials(), report.rounds(), report.rounds() == 1 ? "" : "s", kTrialsPerRound);
    if (!report.skipped(kMpsc1Lane) || !report.skipped(kMpsc8Lanes) || !report.skipped(kMpsc64Lanes))
        std::printf("MPSC N lanes: one producer on a ring of N lanes of %zu KiB each, the other lanes free\n",
            kRingBytes >> 10);
    if (!report.skipped(kMpscProducers))
        std::printf("MPSC %u producers: %u producer processes sharing CPU %d (the machine has 2 CPUs; the consumer "
                    "has CPU %d),\n  each on a lane of its own of a ring of %u lanes; messages/s of all of them, each "
                    "one's order checked\n",
            kProducers, kProducers, kParentCpu, kChildCpu, kProducers);
    std::printf("  %-28s %7s %13s %13s  %-22s %11s\n", "peer", "bytes", "messages/run", "M messages/s",
        "[p10 .. p90]", "MB/s");
    std::fflush(stdout);
    for (const auto& size : plan)
        report.throughputs(size.size, size.peers);
}

void measure_latency(Report& report, const std::vector<Report::LatencyPeer>& plan)
{
    std::printf("\nround trip of a %zu-byte message between two processes (CPU %d <-> CPU %d)\n", kLatencyMessageBytes,
        kParentCpu, kChildCpu);
    std::printf("%zu trials (%zu round%s of %zu), every peer once a trial in turn; median: of the trials' medians "
                "[p10 .. p90]; p90 to p99.9: of all trials' round trips\n",
        report.trials(), report.rounds(), report.rounds() == 1 ? "" : "s", kTrialsPerRound);
    if (!report.skipped(kMpscSpin) || !report.skipped(kMpscBlock))
        std::printf("MPSC: one producer each way on a ring of %u lanes, the other lanes free\n", kLatencyMpscLanes);
    std::printf("  %-28s %11s %12s  %-22s %12s %12s %12s\n", "peer", "trips/trial", "median ns", "[p10 .. p90]",
        "p90 ns", "p99 ns", "p99.9 ns");
    std::fflush(stdout);
    report.latencies(plan);
}

void print_ratios(Report& report)
{
    std::printf("\nratios against the project's targets: each taken within a trial; median of the trials "
                "[p10 .. p90]\n");
    report.throughput_ratio("SPSC 8B try_push/consume / reference ring", kShmlinkCopy, kReference, 8,
        Comparison::at_least, 0.9);
    report.throughput_ratio("SPSC 64B try_push/consume / reference ring", kShmlinkCopy, kReference, 64,
        Comparison::at_least, 0.9);
    report.throughput_ratio("SPSC 8B reserve/commit / reference ring", kShmlinkZeroCopy, kReference, 8,
        Comparison::at_least, 0.9);
    report.throughput_ratio("SPSC 64B reserve/commit / reference ring", kShmlinkZeroCopy, kReference, 64,
        Comparison::at_least, 0.9);
    report.latency_ratio("spin round trip / cache-line ping-pong", kSpin, kCacheLine, Comparison::at_most, 1.3);
    report.latency_ratio("MPSC spin round trip / cache-line ping-pong", kMpscSpin, kCacheLine, Comparison::at_most,
        1.3);
    report.latency_ratio("block round trip / futex ping-pong", kBlock, kFutex, Comparison::at_most, 1.05);
    report.latency_ratio("spin_then_block round trip / cache-line ping-pong", kSpinThenBlock, kCacheLine,
        Comparison::at_most, 1.5);
    report.throughput_ratio("MPSC 64 lanes / MPSC 1 lane (64B)", kMpsc64Lanes, kMpsc1Lane, 64, Comparison::at_least,
        0.9);
    report.throughput_ratio("MPSC 8 producers / MPSC 1 lane (64B)", kMpscProducers, kMpsc1Lane, 64,
        Comparison::at_least, 0.9);
    // Context, with no target: what the peers outside the floors do.
    report.throughput_ratio("SPSC 64B / pipe", kShmlinkCopy, kPipe, 64, Comparison::context);
    report.throughput_ratio("SPSC 64B / Boost message_queue", kShmlinkCopy, kBoost, 64, Comparison::context);
    report.throughput_ratio("64 KiB reserve/commit / memcpy", kShmlinkZeroCopy, kMemcpy, kZeroCopyBytes,
        Comparison::context);
}

static_assert(kTrialsPerRound == 8, "the usage text says 8 trials a round");
constexpr char kUsage[] = R"(usage: ring_bench [--quick] [--rounds N] [--json FILE] [--plot FILE.svg] [--progress]
                  [--only PEER]

Measures shmlink's SPSC and MPSC rings against a pipe, a Unix socket, Boost.Interprocess
message_queue and the floors, producer and consumer in two processes pinned
to CPUs 0 and 1, and prints the ratios the project's targets are stated in.

The machine's speed flips within tenths of a second (the time one CPU takes
to see another's store changes several-fold as vCPUs move), so peers are
measured in short trials: a trial runs every peer of a table once, in
turn, and each ratio is taken between the figures of one trial; a round is
8 trials. Every figure and ratio printed is the median over the trials,
beside its 10th and 90th percentiles [p10 .. p90]; the JSON report also
has the least and greatest.

  --quick      every message and round-trip count 20x smaller, and 3 rounds
               unless --rounds says otherwise (a smoke run)
  --rounds N   N rounds of 8 trials of every measurement (default 7)
  --json FILE  also write every figure and ratio to FILE as JSON: each
               round's value, the median, min and max
  --plot FILE  also draw throughput by message size and latency percentiles
               as an SVG image in FILE
  --progress   a line "progress DONE TOTAL what" on stderr as each
               measurement starts (the shmlink tool draws its bar from them)
  --only PEER  measure only the peers whose name contains PEER, or one of
               the alternatives of "A|B" (ratios of peers not measured
               print as n/a)
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
        } else if (arg == "--rounds" && i + 1 < argc) {
            const auto rounds = parse_rounds(argv[++i]);
            if (!rounds) {
                std::fprintf(stderr, "ring_bench: --rounds %s: a count from 1 to 1000\n", argv[i]);
                return 2;
            }
            options.rounds = *rounds;
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

    if (!shmlink::bench::start_benchmark("ring_bench", kParentCpu, kChildCpu))
        return 1;

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
