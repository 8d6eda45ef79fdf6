// Publish/subscribe between processes on pinned cores, in one run, beside
// shmlink's SPSC ring (its reserve/commit path, which also writes in place):
// the round trip of a sample (ping-pong over two topics) from 64 B to 4 MiB
// with the payload untouched and with it written and read; throughput at
// 64 B and 64 KiB, the payload written once and checked once; fan-out to
// 1, 2, 4 and 8 blocking subscribers, and the publisher's CPU time per
// sample by size; and what the first loan of a new size class costs (one
// grow) in a small and in a large segment.
//
// Every measurement runs once a trial, all of them in turn, and each ratio
// is taken within a trial (the machine's state changes within tenths of a
// second, see ring_bench); figures are medians over the trials with their
// [p10 .. p90].
//
//   topic_bench [--quick] [--json FILE] [--progress]
#include <shmlink/core/segment.hpp>
#include <shmlink/ipc/publisher.hpp>
#include <shmlink/ipc/spsc_ring.hpp>
#include <shmlink/ipc/subscriber.hpp>

#include "bench/process.hpp"
#include "bench/report.hpp"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

using shmlink::bench::Child;
using shmlink::bench::Clock;
using shmlink::bench::Handshake;
using shmlink::bench::seconds_between;
using shmlink::bench::summarize;
using shmlink::bench::Summary;
using shmlink::bench::unique_name;

namespace {

constexpr int kPublisherCpu = 0; // the publisher, and the side that times round trips
constexpr int kSubscriberCpu = 1; // every subscriber, and the side that echoes
constexpr std::size_t kRoundTripSizes[] = {64, 4096, 65536, std::size_t {1} << 20, std::size_t {4} << 20};
constexpr std::size_t kThroughputSizes[] = {64, 65536};
constexpr unsigned kFanOuts[] = {1, 2, 4, 8};
constexpr std::size_t kCostSizes[] = {64, 65536, std::size_t {1} << 20};
constexpr unsigned kCostSubscribers = 4;
constexpr std::size_t kMaxSegmentBytes = std::size_t {256} << 20; // address space only; pages as touched
constexpr std::size_t kInitialBytes = std::size_t {4} << 20; // room for a topic of 16 slots of depth 1024
constexpr std::size_t kTrials = 7;
constexpr std::size_t kQuickTrials = 3;
constexpr std::uint64_t kQuickDivisor = 20;
constexpr auto kTimeout = std::chrono::seconds(10); // no single take or loan waits this long unless a peer died
constexpr unsigned kWatchdogSeconds = 60;          // a measurement that takes longer has hung: give up
const shmlink::WaitOptions kSpin {.mode = shmlink::WaitMode::spin};
const shmlink::WaitOptions kBlock {.mode = shmlink::WaitMode::block};

/// Round trips a trial, by size: latency is flat when the payload is left
/// alone, and costs about 1 ns a byte a side when it is written and read.
std::uint64_t round_trips(std::size_t size, bool touched, std::uint64_t divisor)
{
    const std::uint64_t trips = touched ? std::max<std::uint64_t>(20, 20'000 * 4096 / (size + 4096)) : 20'000;
    return std::max<std::uint64_t>(trips / divisor, 10);
}

// ---- the payload: a sequence number, then bytes written and checked or left alone ----

std::byte fill_of(std::uint64_t seq) noexcept { return static_cast<std::byte>(seq * 131 + 7); }

void write_sample(std::span<std::byte> bytes, std::uint64_t seq, bool touched) noexcept
{
    if (touched && bytes.size() > sizeof(seq))
        std::memset(bytes.data() + sizeof(seq), static_cast<int>(fill_of(seq)), bytes.size() - sizeof(seq));
    std::memcpy(bytes.data(), &seq, sizeof(seq));
}

/// Reads the sample back: its sequence number, and with `touched` every byte.
bool check_sample(std::span<const std::byte> bytes, std::uint64_t seq, std::size_t size, bool touched) noexcept
{
    std::uint64_t got = 0;
    if (bytes.size() != size || size < sizeof(got))
        return false;
    std::memcpy(&got, bytes.data(), sizeof(got));
    if (got != seq)
        return false;
    if (!touched)
        return true;
    const std::byte want = fill_of(seq);
    bool same = true;
    for (std::size_t i = sizeof(got); i < size; ++i)
        same &= bytes[i] == want; // every byte read, no early exit: the loop vectorises
    return same;
}

/// A path in /dev/shm removed when this goes, whoever created the segment
/// there (a child killed before it could remove its own).
class ScratchPath {
public:
    explicit ScratchPath(std::string_view prefix) : path_(unique_name(std::string("/dev/shm/") + std::string(prefix))) {}
    ScratchPath(const ScratchPath&) = delete;
    ScratchPath& operator=(const ScratchPath&) = delete;
    ~ScratchPath()
    {
        std::error_code ec;
        std::filesystem::remove(path_, ec);
    }
    [[nodiscard]] const std::string& str() const noexcept { return path_; }

private:
    std::string path_;
};

shmlink::Segment create_segment(const ScratchPath& path, std::size_t size = kInitialBytes)
{
    return shmlink::Segment::create(path.str(), size,
        shmlink::SegmentOptions {.max_size_bytes = kMaxSegmentBytes, .cleanup = shmlink::Cleanup::unlink_on_close});
}

/// The defaults but the queue depth; each subscriber chooses its overflow.
shmlink::TopicOptions topic_options(std::uint32_t depth)
{
    return shmlink::TopicOptions {.queue_depth = depth};
}

double median_of(std::vector<double> values) { return summarize(std::move(values)).median; }

// ---- round trips ----

/// Median ns of `trips` round trips after a tenth as many untimed ones:
/// `echo(handshake, total)` answers them in a child on kSubscriberCpu,
/// `trip(seq)` runs here for seq = 1, 2, ...
template <typename Echo, typename Trip>
std::optional<double> time_trips(std::uint64_t trips, Echo&& echo, Trip&& trip)
{
    const std::uint64_t total = trips + trips / 10 + 1;
    Child child(kSubscriberCpu, [&](Handshake& handshake) { return echo(handshake, total); });
    if (!child.wait_ready())
        return std::nullopt;
    std::vector<double> ns;
    ns.reserve(trips);
    for (std::uint64_t seq = 1; seq <= total; ++seq) {
        const auto start = Clock::now();
        if (!trip(seq))
            return std::nullopt;
        if (seq > total - trips)
            ns.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count()));
    }
    if (!child.join())
        return std::nullopt;
    return median_of(std::move(ns));
}

/// A sample out on topic "ping" (our segment), back on "pong" (the child's).
std::optional<double> topic_round_trip(std::size_t size, bool touched, std::uint64_t trips)
{
    const ScratchPath ping_path("shmlink-topic-bench"), pong_path("shmlink-topic-bench");
    shmlink::Segment ping_segment = create_segment(ping_path);
    auto ping = shmlink::Publisher<>::create(ping_segment, "ping", topic_options(16));
    shmlink::Segment pong_segment;
    shmlink::Subscriber<> pong;
    return time_trips(
        trips,
        [&](Handshake& handshake, std::uint64_t total) {
            shmlink::Segment in = shmlink::Segment::attach(ping_path.str());
            auto requests = shmlink::Subscriber<>::open(in, "ping");
            shmlink::Segment out = create_segment(pong_path);
            auto answers = shmlink::Publisher<>::create(out, "pong", topic_options(16));
            handshake.set_ready();
            for (std::uint64_t seq = 1; seq <= total; ++seq) {
                {
                    const shmlink::Sample<> request = requests.take(kTimeout, kSpin);
                    if (!request || !check_sample(request.bytes(), seq, size, touched))
                        return false;
                }
                shmlink::Loan<> answer = answers.loan(size);
                if (!answer)
                    return false;
                write_sample(answer.bytes(), seq, touched);
                if (answers.publish(std::move(answer)) != shmlink::TopicStatus::ok)
                    return false;
            }
            return true;
        },
        [&](std::uint64_t seq) {
            if (!pong.valid()) { // the child made its topic before it said ready; it answers only once asked
                pong_segment = shmlink::Segment::attach(pong_path.str());
                pong = shmlink::Subscriber<>::open(pong_segment, "pong");
            }
            shmlink::Loan<> request = ping.loan(size);
            if (!request)
                return false;
            write_sample(request.bytes(), seq, touched);
            if (ping.publish(std::move(request)) != shmlink::TopicStatus::ok)
                return false;
            const shmlink::Sample<> answer = pong.take(kTimeout, kSpin);
            return answer && check_sample(answer.bytes(), seq, size, touched);
        });
}

/// The SPSC ring's in-place path: reserve, write, commit; peek, read, release.
std::size_t ring_bytes_for(std::size_t size) { return std::max<std::size_t>(std::size_t {256} << 10, std::bit_ceil(4 * size)); }

bool ring_send(shmlink::SpscRing& ring, std::size_t size, std::uint64_t seq, bool touched)
{
    const auto slot = ring.reserve(size, kTimeout, kSpin);
    if (!slot)
        return false;
    write_sample(slot.bytes, seq, touched);
    ring.commit();
    return true;
}

bool ring_receive(shmlink::SpscRing& ring, std::size_t size, std::uint64_t seq, bool touched)
{
    const auto message = ring.peek(kTimeout, kSpin);
    const bool ok = message && check_sample(message.bytes, seq, size, touched);
    ring.release();
    return ok;
}

std::optional<double> ring_round_trip(std::size_t size, bool touched, std::uint64_t trips)
{
    const ScratchPath path("shmlink-topic-bench-ring");
    const std::size_t ring_bytes = ring_bytes_for(size);
    shmlink::Segment segment = create_segment(path, 2 * ring_bytes + (std::size_t {64} << 10));
    auto ping = shmlink::SpscRing::create(segment, "ping", ring_bytes);
    auto pong = shmlink::SpscRing::create(segment, "pong", ring_bytes);
    return time_trips(
        trips,
        [&](Handshake& handshake, std::uint64_t total) {
            shmlink::Segment guest = shmlink::Segment::attach(path.str());
            auto requests = shmlink::SpscRing::open(guest, "ping");
            auto answers = shmlink::SpscRing::open(guest, "pong");
            handshake.set_ready();
            for (std::uint64_t seq = 1; seq <= total; ++seq)
                if (!ring_receive(requests, size, seq, touched) || !ring_send(answers, size, seq, touched))
                    return false;
            return true;
        },
        [&](std::uint64_t seq) { return ring_send(ping, size, seq, touched) && ring_receive(pong, size, seq, touched); });
}

// ---- one-way: throughput, fan-out, the publisher's cost ----

/// Samples a second from the publisher's first loan to the last
/// subscriber's last check, and the publisher's CPU seconds per sample.
struct Rate {
    double per_second = 0;
    double publisher_cpu_ns = 0;
};

double thread_cpu_seconds()
{
    timespec t {};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

/// `count` samples of `size` to `subscribers` subscriber processes, each of
/// which must see every one (block_publisher), or only the newest it can
/// (drop_oldest: `lossy`), after a tenth as many untimed ones that grow the
/// pool to what the run needs.
std::optional<Rate> topic_one_way(std::size_t size, bool touched, std::uint64_t count, unsigned subscribers,
    std::uint32_t depth, const shmlink::WaitOptions& wait, bool lossy)
{
    const ScratchPath path("shmlink-topic-bench");
    shmlink::Segment segment = create_segment(path);
    auto topic = shmlink::Publisher<>::create(segment, "samples", topic_options(depth));
    const std::uint64_t warm = count / 10;
    const std::uint64_t total = warm + count;
    const shmlink::SubscriberOptions options {
        .overflow = lossy ? shmlink::Overflow::drop_oldest : shmlink::Overflow::block_publisher};
    std::vector<std::unique_ptr<Child>> children;
    for (unsigned i = 0; i < subscribers; ++i) {
        children.push_back(std::make_unique<Child>(kSubscriberCpu, [&](Handshake& handshake) {
            shmlink::Segment guest = shmlink::Segment::attach(path.str());
            auto subscriber = shmlink::Subscriber<>::open(guest, "samples", options);
            handshake.set_ready();
            std::uint64_t last = 0;
            for (;;) {
                const shmlink::Sample<> sample = subscriber.take(kTimeout, wait);
                if (!sample) {
                    std::fprintf(stderr, "topic_bench: subscriber %u after sample %llu: %s\n", i,
                        static_cast<unsigned long long>(last), shmlink::to_string(sample.status()));
                    return false;
                }
                const std::uint64_t seq = sample.sequence() + 1;
                if ((!lossy && seq != last + 1) || !check_sample(sample.bytes(), seq, size, touched)) {
                    std::fprintf(stderr, "topic_bench: subscriber %u after sample %llu: sample %llu, %zu bytes, wrong\n",
                        i, static_cast<unsigned long long>(last), static_cast<unsigned long long>(seq), sample.bytes().size());
                    return false;
                }
                last = seq;
                if (seq == total)
                    break;
            }
            handshake.set_done();
            return true;
        }));
        if (!children.back()->wait_ready())
            return std::nullopt;
    }
    double cpu_start = 0;
    Clock::time_point start {};
    for (std::uint64_t seq = 1; seq <= total; ++seq) {
        if (seq == warm + 1) {
            cpu_start = thread_cpu_seconds();
            start = Clock::now();
        }
        shmlink::Loan<> loan = topic.loan(size);
        if (!loan)
            return std::nullopt;
        write_sample(loan.bytes(), seq, touched);
        // Lossy or not, the last one reaches everyone (nothing comes after
        // it to drop it), and ends their loop.
        if (topic.publish(std::move(loan), kTimeout) != shmlink::TopicStatus::ok)
            return std::nullopt;
    }
    const double cpu = thread_cpu_seconds() - cpu_start;
    Clock::time_point end = start;
    for (auto& child : children) {
        if (!child->join())
            return std::nullopt;
        end = std::max(end, child->done_at());
    }
    return Rate {static_cast<double>(count) / seconds_between(start, end), cpu * 1e9 / static_cast<double>(count)};
}

std::optional<Rate> ring_one_way(std::size_t size, std::uint64_t count)
{
    const ScratchPath path("shmlink-topic-bench-ring");
    const std::size_t ring_bytes = size <= 64 ? std::size_t {256} << 10 : std::size_t {1} << 20;
    shmlink::Segment segment = create_segment(path, ring_bytes + (std::size_t {64} << 10));
    auto ring = shmlink::SpscRing::create(segment, "samples", ring_bytes);
    Child child(kSubscriberCpu, [&](Handshake& handshake) {
        shmlink::Segment guest = shmlink::Segment::attach(path.str());
        auto consumer = shmlink::SpscRing::open(guest, "samples");
        handshake.set_ready();
        for (std::uint64_t seq = 1; seq <= count; ++seq)
            if (!ring_receive(consumer, size, seq, true))
                return false;
        handshake.set_done();
        return true;
    });
    if (!child.wait_ready())
        return std::nullopt;
    const auto start = Clock::now();
    for (std::uint64_t seq = 1; seq <= count; ++seq)
        if (!ring_send(ring, size, seq, true))
            return std::nullopt;
    if (!child.join())
        return std::nullopt;
    return Rate {static_cast<double>(count) / seconds_between(start, child.done_at()), 0};
}

// ---- the first loan of a new size class ----

struct GrowCost {
    double first_us = 0;     ///< the loan that adds an extent (one grow)
    double following_ns = 0; ///< a loan and its drop afterwards, the median of many
};

/// In a segment of `size` bytes whose data area is full.
GrowCost grow_cost(std::size_t size, std::size_t sample_bytes)
{
    const ScratchPath path("shmlink-topic-bench-grow");
    shmlink::Segment segment = create_segment(path, size);
    auto topic = shmlink::Publisher<>::create(segment, "samples");
    const std::uint64_t left = segment.size_bytes() - segment.info().data_used_bytes;
    std::error_code ec;
    if (left != 0)
        (void)segment.allocate_extent(left, 8, ec); // so that the pool must grow the segment
    if (ec)
        throw std::system_error(ec, "fill the data area");
    const std::uint64_t size_before = segment.size_bytes();
    const auto start = Clock::now();
    shmlink::Loan<> first = topic.loan(sample_bytes);
    const auto end = Clock::now();
    if (!first || segment.size_bytes() == size_before)
        throw std::runtime_error("the first loan of a class did not grow the segment");
    first = {};
    std::vector<double> ns;
    for (int i = 0; i < 1000; ++i) {
        const auto t0 = Clock::now();
        shmlink::Loan<> again = topic.loan(sample_bytes);
        again = {};
        ns.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
    }
    return GrowCost {std::chrono::duration<double, std::micro>(end - start).count(), median_of(std::move(ns))};
}

// ---- the run ----

std::string size_name(std::size_t bytes)
{
    if (bytes >= (std::size_t {1} << 20))
        return std::to_string(bytes >> 20) + " MiB";
    if (bytes >= 1024)
        return std::to_string(bytes >> 10) + " KiB";
    return std::to_string(bytes) + " B";
}

/// One measured figure: its name, its value in every trial.
struct Series {
    std::string name;
    std::string unit;
    std::vector<double> values {};
};

class Run {
public:
    Series& at(const std::string& name, const std::string& unit)
    {
        for (auto& s : series_)
            if (s.name == name)
                return s;
        series_.push_back(Series {name, unit});
        return series_.back();
    }
    void add(const std::string& name, const std::string& unit, double value) { at(name, unit).values.push_back(value); }
    [[nodiscard]] const std::vector<Series>& series() const noexcept { return series_; }
    [[nodiscard]] const Series* find(const std::string& name) const
    {
        for (const auto& s : series_)
            if (s.name == name)
                return &s;
        return nullptr;
    }

private:
    std::vector<Series> series_;
};

std::string spread(const std::vector<double>& values, const char* format)
{
    if (values.empty())
        return "-";
    const Summary s = summarize(values);
    char text[128];
    std::snprintf(text, sizeof(text), format, s.median, s.p10, s.p90);
    return text;
}

/// A ratio of two series, trial by trial, against its goal.
struct Goal {
    std::string what;
    std::string numerator;
    std::string denominator;
    bool at_most;
    double target;
};

void one_trial(Run& run, std::uint64_t divisor)
{
    for (const std::size_t size : kRoundTripSizes) {
        for (const bool touched : {false, true}) {
            const std::string row = size_name(size) + (touched ? ", written+read" : ", untouched");
            const std::uint64_t trips = round_trips(size, touched, divisor);
            alarm(kWatchdogSeconds);
            const auto topic = topic_round_trip(size, touched, trips);
            const auto ring = ring_round_trip(size, touched, trips);
            alarm(0);
            if (!topic || !ring)
                throw std::runtime_error("round trip of " + row + ": a sample was lost or wrong");
            run.add("round trip " + row + ": topic", "ns", *topic);
            run.add("round trip " + row + ": SPSC ring", "ns", *ring);
        }
    }
    for (const std::size_t size : kThroughputSizes) {
        const std::uint64_t count = (size <= 64 ? 1'000'000 : 20'000) / divisor;
        alarm(kWatchdogSeconds);
        const auto topic = topic_one_way(size, true, count, 1, size <= 64 ? 1024 : 16, kSpin, false);
        const auto ring = ring_one_way(size, count);
        alarm(0);
        if (!topic || !ring)
            throw std::runtime_error("throughput at " + size_name(size) + ": a sample was lost or wrong");
        run.add("throughput " + size_name(size) + ": topic", "samples/s", topic->per_second);
        run.add("throughput " + size_name(size) + ": SPSC ring", "samples/s", ring->per_second);
    }
    for (const unsigned subscribers : kFanOuts) {
        alarm(kWatchdogSeconds);
        const auto rate = topic_one_way(64, true, 100'000 / divisor, subscribers, 256, kBlock, false);
        alarm(0);
        if (!rate)
            throw std::runtime_error("fan-out to " + std::to_string(subscribers) + ": a sample was lost or wrong");
        run.add("fan-out " + std::to_string(subscribers) + ": per subscriber", "samples/s", rate->per_second);
    }
    for (const std::size_t size : kCostSizes) {
        alarm(kWatchdogSeconds);
        const auto rate = topic_one_way(size, false, 100'000 / divisor, kCostSubscribers, 16, kBlock, true);
        alarm(0);
        if (!rate)
            throw std::runtime_error("publisher's cost at " + size_name(size) + ": a sample was wrong");
        run.add("publisher CPU per sample, " + size_name(size), "ns", rate->publisher_cpu_ns);
    }
    const std::size_t large = divisor > 1 ? std::size_t {16} << 20 : std::size_t {192} << 20;
    for (const std::size_t used : {kInitialBytes, large}) {
        for (const std::size_t sample : {std::size_t {64}, std::size_t {4} << 20}) {
            const GrowCost cost = grow_cost(used, sample);
            const std::string row = size_name(sample) + " class, " + (used == kInitialBytes ? "small" : "large") + " segment";
            run.add("first loan of a " + row, "us", cost.first_us);
            run.add("following loans of a " + row, "ns", cost.following_ns);
        }
    }
}

std::vector<Goal> goals()
{
    return {
        {"64 B round trip / SPSC ring's", "round trip 64 B, untouched: topic", "round trip 64 B, untouched: SPSC ring", true, 1.5},
        {"4 MiB / 64 B round trip, payload untouched", "round trip 4 MiB, untouched: topic", "round trip 64 B, untouched: topic", true, 1.3},
        {"1 MiB round trip written+read / SPSC ring's", "round trip 1 MiB, written+read: topic",
            "round trip 1 MiB, written+read: SPSC ring", true, 1.5},
        {"throughput at 64 B / SPSC ring's reserve+commit", "throughput 64 B: topic", "throughput 64 B: SPSC ring", false, 0.8},
        {"throughput at 64 KiB / SPSC ring's reserve+commit", "throughput 64 KiB: topic", "throughput 64 KiB: SPSC ring", false, 1.0},
        {"per-subscriber rate, 4 subscribers / 1", "fan-out 4: per subscriber", "fan-out 1: per subscriber", false, 0.5},
        {"publisher CPU per sample, 1 MiB / 64 B", "publisher CPU per sample, 1 MiB", "publisher CPU per sample, 64 B", true, 1.3},
        {"first loan of a 64 B class, large / small segment", "first loan of a 64 B class, large segment",
            "first loan of a 64 B class, small segment", true, 2.0},
        {"first loan of a 4 MiB class, large / small segment", "first loan of a 4 MiB class, large segment",
            "first loan of a 4 MiB class, small segment", true, 2.0},
    };
}

struct Verdict {
    Goal goal;
    std::vector<double> ratios;
    bool met = false;
};

std::vector<Verdict> judge(const Run& run)
{
    std::vector<Verdict> verdicts;
    for (const Goal& goal : goals()) {
        const Series* a = run.find(goal.numerator);
        const Series* b = run.find(goal.denominator);
        if (a == nullptr || b == nullptr)
            continue;
        Verdict v {goal, {}, false};
        for (std::size_t i = 0; i < std::min(a->values.size(), b->values.size()); ++i)
            v.ratios.push_back(a->values[i] / b->values[i]);
        const double median = summarize(v.ratios).median;
        v.met = goal.at_most ? median <= goal.target : median >= goal.target;
        verdicts.push_back(std::move(v));
    }
    return verdicts;
}

bool write_json(const std::string& path, const Run& run, const std::vector<Verdict>& verdicts, std::size_t trials)
{
    using shmlink::bench::json_number;
    using shmlink::bench::json_numbers;
    using shmlink::bench::json_string;
    std::FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr) {
        std::fprintf(stderr, "topic_bench: %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    std::fprintf(out, "{\n  \"trials\": %zu,\n  \"figures\": [\n", trials);
    const char* separator = "";
    for (const Series& s : run.series()) {
        const Summary m = summarize(s.values);
        std::fprintf(out, "%s    {\"name\": %s, \"unit\": %s, \"median\": %s, \"p10\": %s, \"p90\": %s, \"trials\": %s}",
            separator, json_string(s.name).c_str(), json_string(s.unit).c_str(), json_number(m.median).c_str(),
            json_number(m.p10).c_str(), json_number(m.p90).c_str(), json_numbers(s.values).c_str());
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"ratios\": [\n");
    separator = "";
    for (const Verdict& v : verdicts) {
        const Summary m = summarize(v.ratios);
        std::fprintf(out, "%s    {\"name\": %s, \"median\": %s, \"p10\": %s, \"p90\": %s, \"goal\": %s, \"at_most\": %s, \"met\": %s}",
            separator, json_string(v.goal.what).c_str(), json_number(m.median).c_str(), json_number(m.p10).c_str(),
            json_number(m.p90).c_str(), json_number(v.goal.target).c_str(), v.goal.at_most ? "true" : "false",
            v.met ? "true" : "false");
        separator = ",\n";
    }
    std::fprintf(out, "\n  ]\n}\n");
    return std::fclose(out) == 0;
}

} // namespace

int main(int argc, char** argv)
{
    bool quick = false;
    bool progress = false;
    std::string json_path;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--quick")
            quick = true;
        else if (arg == "--progress")
            progress = true;
        else if (arg == "--json" && i + 1 < argc)
            json_path = argv[++i];
        else {
            std::fputs("usage: topic_bench [--quick] [--json FILE] [--progress]\n\n"
                       "Publish/subscribe between processes pinned to CPUs 0 and 1, beside shmlink's SPSC\n"
                       "ring: round trip 64 B to 4 MiB, throughput, fan-out, the publisher's cost per\n"
                       "sample, and the first loan of a new size class. --quick: 3 trials, counts 20x\n"
                       "smaller (7 trials in a full run, about a minute).\n",
                arg == "--help" ? stdout : stderr);
            return arg == "--help" ? 0 : 2;
        }
    }
    if (!shmlink::bench::start_benchmark("topic_bench", kPublisherCpu, kSubscriberCpu))
        return 1;
    const std::size_t trials = quick ? kQuickTrials : kTrials;
    const std::uint64_t divisor = quick ? kQuickDivisor : 1;
    Run run;
    for (std::size_t t = 0; t < trials; ++t) {
        if (progress) {
            std::fprintf(stderr, "progress %zu %zu topic trial %zu\n", t + 1, trials, t + 1);
            std::fflush(stderr);
        }
        try {
            one_trial(run, divisor);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "topic_bench: %s\n", e.what());
            return 1;
        }
    }
    std::printf("publish/subscribe (topic) beside the SPSC ring, %zu trials: median [p10 .. p90]\n", trials);
    for (const Series& s : run.series())
        std::printf("  %-58s %s %s\n", s.name.c_str(), spread(s.values, "%12.1f [%.1f .. %.1f]").c_str(), s.unit.c_str());
    const std::vector<Verdict> verdicts = judge(run);
    std::printf("\nratios, each taken within a trial: median [p10 .. p90] (goal)\n");
    for (const Verdict& v : verdicts)
        std::printf("  %-52s %s  (%s %.2f) %s\n", v.goal.what.c_str(), spread(v.ratios, "%6.2fx [%.2f .. %.2f]").c_str(),
            v.goal.at_most ? "<=" : ">=", v.goal.target, v.met ? "met" : "MISSED");
    std::fflush(stdout);
    if (!json_path.empty() && !write_json(json_path, run, verdicts, trials))
        return 1;
    return 0;
}
