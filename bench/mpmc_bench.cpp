// Fixed-size items through an MPMC queue between processes, in one run:
// shmlink::MpmcQueue beside a bare bounded Vyukov queue (the floor,
// bench/vyukov_queue.hpp) and Boost.Interprocess message_queue, with 8- and
// 64-byte items, one producer and one consumer, and two of each.
// Prints a table and the ratios the project's target is stated in.
#include "bench/mpmc_peers.hpp"
#include "bench/process.hpp"
#include "bench/report.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

using shmlink::bench::BoostChannel;
using shmlink::bench::Child;
using shmlink::bench::Clock;
using shmlink::bench::Handshake;
using shmlink::bench::json_number;
using shmlink::bench::json_string;
using shmlink::bench::pin_to_cpu;
using shmlink::bench::QueueApi;
using shmlink::bench::seconds_between;
using shmlink::bench::Shared;
using shmlink::bench::ShmlinkChannel;
using shmlink::bench::VyukovChannel;

namespace {

// Two CPUs: producers on one, consumers on the other. With two of each, two
// processes share each CPU, and the scheduler's time slices are part of what
// is measured (for every peer alike).
constexpr int kProducerCpu = 0;
constexpr int kConsumerCpu = 1;
constexpr std::size_t kCapacity = 4096; // items, in every peer's queue
constexpr std::size_t kRepetitions = 5;
constexpr double kTargetSeconds = 0.25; // per measurement, from the cost estimates below
constexpr std::uint64_t kQuickDivisor = 20;
constexpr unsigned kWatchdogSeconds = 60; // a measurement that takes longer has hung: give up
constexpr std::byte kFill {0x5a};

/// Producers and consumers, each a process.
struct Shape {
    unsigned producers;
    unsigned consumers;

    [[nodiscard]] std::string name() const { return std::to_string(producers) + "x" + std::to_string(consumers); }
};

constexpr unsigned kMaxProducers = 2;
constexpr Shape kShapes[] = {{1, 1}, {2, 2}};

/// Rough costs of a peer per item (all producers together), only to pick
/// item counts that take about kTargetSeconds (the counts are then fixed, so runs compare).
struct Cost {
    double ns_per_item;
    double bytes_per_ns;
};

constexpr Cost kQueueCost {15, 1.2};
constexpr Cost kBoostCost {200, 0.25};

// ---- items ----

/// What every item starts with; the rest of it is kFill.
struct Stamp {
    std::uint32_t producer; ///< 0 .. producers - 1, or kStop
    std::uint32_t seq;      ///< 0, 1, ... per producer
};
constexpr std::uint32_t kStop = ~std::uint32_t {0}; ///< a consumer that takes this has had its share

template <std::size_t Bytes>
struct Item : Stamp {
    std::byte payload[Bytes - sizeof(Stamp)];
};
template <>
struct Item<sizeof(Stamp)> : Stamp {};

static_assert(sizeof(Item<8>) == 8 && sizeof(Item<64>) == 64);
static_assert(std::is_trivially_copyable_v<Item<8>> && std::is_trivially_copyable_v<Item<64>>);

/// What the consumers found, added up: each producer's items must have
/// arrived exactly once (count and sum of sequence numbers), and in order
/// within each consumer. Also the start signal and the producers' finish line.
struct Tally {
    std::atomic<std::uint32_t> go {0};
    std::atomic<std::uint32_t> producers_done {0};
    std::atomic<std::uint32_t> out_of_order {0};
    std::array<std::atomic<std::uint64_t>, kMaxProducers> items {};
    std::array<std::atomic<std::uint64_t>, kMaxProducers> seq_sums {};

    [[nodiscard]] bool complete(Shape shape, std::uint64_t per_producer) const
    {
        // relaxed, here and in Receipt::add_to(): read after waitpid() of every consumer.
        const std::uint32_t disordered = out_of_order.load(std::memory_order_relaxed);
        bool ok = disordered == 0;
        for (unsigned p = 0; p < shape.producers; ++p) {
            const std::uint64_t items_in = items[p].load(std::memory_order_relaxed);
            const std::uint64_t sum = seq_sums[p].load(std::memory_order_relaxed);
            if (items_in != per_producer || sum != per_producer * (per_producer - 1) / 2) {
                std::fprintf(stderr, "consumers: producer %u's items: %llu of %llu, sequence numbers summing to %llu\n",
                    p, static_cast<unsigned long long>(items_in), static_cast<unsigned long long>(per_producer),
                    static_cast<unsigned long long>(sum));
                ok = false;
            }
        }
        if (disordered != 0)
            std::fprintf(stderr, "consumers: %u saw a producer's items out of order or a producer that is not\n",
                disordered);
        return ok;
    }
};

/// One consumer's check of what it took: per producer, sequence numbers
/// strictly increasing (positions are claimed in order, and each producer
/// claims its own in order).
class Receipt {
public:
    explicit Receipt(unsigned producers) noexcept : producers_(producers) {}

    void operator()(const Stamp& item) noexcept
    {
        if (item.producer >= producers_ || item.seq < next_[item.producer]) {
            in_order_ = false;
            return;
        }
        next_[item.producer] = std::uint64_t {item.seq} + 1;
        ++items_[item.producer];
        seq_sums_[item.producer] += item.seq;
    }
    void add_to(Tally& tally) const noexcept
    {
        for (unsigned p = 0; p < producers_; ++p) {
            tally.items[p].fetch_add(items_[p], std::memory_order_relaxed);
            tally.seq_sums[p].fetch_add(seq_sums_[p], std::memory_order_relaxed);
        }
        if (!in_order_)
            tally.out_of_order.fetch_add(1, std::memory_order_relaxed);
    }

private:
    unsigned producers_;
    std::array<std::uint64_t, kMaxProducers> next_ {};
    std::array<std::uint64_t, kMaxProducers> items_ {};
    std::array<std::uint64_t, kMaxProducers> seq_sums_ {};
    bool in_order_ = true;
};

// ---- measurements ----

/// Runs shape.producers producer processes that push `per_producer` items
/// each and shape.consumers consumer processes that take them all, and
/// checks what arrived. Seconds from the start signal to the last
/// consumer's last item, or nothing if anything failed.
template <typename Channel>
std::optional<double> mpmc_seconds(Channel& channel, Shape shape, std::uint64_t per_producer)
{
    using T = typename Channel::value_type;
    Shared<Tally> tally;
    std::vector<std::unique_ptr<Child>> consumers;
    std::vector<std::unique_ptr<Child>> producers;
    for (unsigned c = 0; c < shape.consumers; ++c)
        consumers.push_back(std::make_unique<Child>(kConsumerCpu, [&](Handshake& handshake) {
            channel.attach_in_child();
            Receipt receipt(shape.producers);
            handshake.set_ready();
            T item {};
            for (;;) {
                if (!channel.pop(item))
                    return false;
                // The whole item is copied out, as a consumer that uses it would need.
                asm volatile("" : : "r"(&item) : "memory");
                if (item.producer == kStop)
                    break;
                receipt(item);
            }
            handshake.set_done();
            receipt.add_to(*tally);
            return true;
        }));
    for (unsigned p = 0; p < shape.producers; ++p)
        producers.push_back(std::make_unique<Child>(kProducerCpu, [&, p](Handshake& handshake) {
            channel.attach_in_child();
            T item {};
            std::memset(static_cast<void*>(&item), static_cast<int>(kFill), sizeof(item));
            item.producer = p;
            handshake.set_ready();
            // acquire: pairs with the parent's release store; yielding, for the producer that shares the CPU.
            while (tally->go.load(std::memory_order_acquire) == 0)
                ::sched_yield();
            for (std::uint64_t seq = 0; seq < per_producer; ++seq) {
                item.seq = static_cast<std::uint32_t>(seq);
                if (!channel.push(item))
                    return false;
            }
            // The last producer to finish tells each consumer to stop. acq_rel:
            // every other producer's items were in before its increment, so the
            // stops come after every item, and every item is taken before the last stop.
            if (tally->producers_done.fetch_add(1, std::memory_order_acq_rel) + 1 == shape.producers) {
                item.producer = kStop;
                for (unsigned c = 0; c < shape.consumers; ++c)
                    if (!channel.push(item))
                        return false;
            }
            return true;
        }));
    for (auto& child : consumers)
        if (!child->wait_ready())
            return std::nullopt;
    for (auto& child : producers)
        if (!child->wait_ready())
            return std::nullopt;
    const auto start = Clock::now();
    tally->go.store(1, std::memory_order_release); // release: pairs with the producers' acquire load
    // Producers first: a consumer cannot finish before they do. A child that
    // fails ends the run at once; the others die with their Child.
    for (auto& child : producers)
        if (!child->join())
            return std::nullopt;
    auto end = start;
    for (auto& child : consumers) {
        if (!child->join())
            return std::nullopt;
        end = std::max(end, child->done_at());
    }
    if (!tally->complete(shape, per_producer))
        return std::nullopt;
    return seconds_between(start, end);
}

// ---- results ----

struct Result {
    std::string peer;
    std::size_t item_bytes = 0;
    Shape shape {};
    std::uint64_t items = 0;               // across all producers
    std::optional<double> seconds;         // the fastest of kRepetitions; empty if any failed
    std::optional<double> median_seconds;
    double spread = 0;                     // slowest / fastest: how much to trust it

    [[nodiscard]] double items_per_s() const { return static_cast<double>(items) / *seconds; }
    [[nodiscard]] double median_items_per_s() const { return static_cast<double>(items) / *median_seconds; }
};

struct Options {
    bool quick = false;
    bool progress = false; ///< a line "progress DONE TOTAL what" on stderr per measurement
    std::string json_path;
    std::string only; ///< measure only the peers whose name contains this
};

/// A ratio of the fastest runs' items/s, with the median runs' ratio beside
/// it; with a target, or (context) without one.
struct Ratio {
    std::string name;
    std::optional<double> value;
    std::optional<double> median_value;
    std::optional<double> target; // at least this; none for context

    [[nodiscard]] bool met() const { return value && target && *value >= *target; }
};

class Report {
public:
    explicit Report(const Options& options) : options_(options) {}

    /// One peer: `measure(per_producer)` moves that many items per producer
    /// through a fresh channel and answers the seconds it took.
    struct Peer {
        std::string_view name;
        Cost cost;
        std::function<std::optional<double>(std::uint64_t)> measure;
    };
    /// Every measurement at one item size and shape.
    struct Group {
        std::size_t item_bytes;
        Shape shape;
        std::vector<Peer> peers;
    };

    /// Counts the measurements ahead, for the progress lines.
    void plan(const std::vector<Group>& groups)
    {
        for (const auto& group : groups)
            for (const auto& peer : group.peers)
                planned_ += skipped(peer.name) ? 0 : kRepetitions;
    }

    /// Measures every peer of `group` kRepetitions times, interleaved (A B C,
    /// A B C, ...), and keeps each one's fastest and median run: the machine
    /// drifts between a fast and a slow state that lasts seconds, so peers
    /// compared in a ratio must run close together, and interference only
    /// ever slows a run (see ring_bench).
    void measure(const Group& group)
    {
        const std::vector<Peer>& peers = group.peers;
        std::vector<std::vector<double>> seconds(peers.size());
        const std::uint64_t divisor = options_.quick ? kQuickDivisor : 1;
        const std::string where = ", " + std::to_string(group.item_bytes) + " bytes, " + group.shape.name();
        std::vector<Result> results;
        for (const Peer& peer : peers) {
            const double ns = peer.cost.ns_per_item + static_cast<double>(group.item_bytes) / peer.cost.bytes_per_ns;
            const auto total = static_cast<std::uint64_t>(kTargetSeconds * 1e9 / ns) / divisor;
            const std::uint64_t per_producer = std::max<std::uint64_t>(100, total / group.shape.producers);
            results.push_back({std::string(peer.name), group.item_bytes, group.shape, per_producer * group.shape.producers,
                std::nullopt, std::nullopt});
        }
        for (std::size_t repetition = 0; repetition < kRepetitions; ++repetition) {
            for (std::size_t i = 0; i < peers.size(); ++i) {
                if (skipped(peers[i].name))
                    continue;
                progressed(results[i].peer + where);
                if (seconds[i].size() != repetition)
                    continue; // an earlier run failed
                ::alarm(kWatchdogSeconds);
                std::optional<double> run;
                try {
                    run = peers[i].measure(results[i].items / group.shape.producers);
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "%s%s: %s\n", results[i].peer.c_str(), where.c_str(), e.what());
                }
                ::alarm(0);
                if (run)
                    seconds[i].push_back(*run);
            }
        }
        for (std::size_t i = 0; i < peers.size(); ++i) {
            if (skipped(peers[i].name))
                continue;
            Result& result = results[i];
            if (seconds[i].size() == kRepetitions) {
                std::sort(seconds[i].begin(), seconds[i].end());
                result.seconds = seconds[i].front();
                result.median_seconds = seconds[i][kRepetitions / 2];
                result.spread = seconds[i].back() / seconds[i].front();
                std::printf("  %-30s %5zu %4s %11llu %11.3f %11.3f %9.3f %7.2f\n", result.peer.c_str(), result.item_bytes,
                    result.shape.name().c_str(), static_cast<unsigned long long>(result.items),
                    result.items_per_s() / 1e6, result.median_items_per_s() / 1e6, *result.seconds, result.spread);
            } else {
                std::printf("  %-30s %5zu %4s %11llu %11s\n", result.peer.c_str(), result.item_bytes,
                    result.shape.name().c_str(), static_cast<unsigned long long>(result.items), "FAILED");
            }
            results_.push_back(std::move(result));
        }
        std::fflush(stdout);
    }

    /// Ratio of `numerator`'s items/s to `denominator`'s, at one size and shape.
    void ratio(std::string name, std::string_view numerator, std::string_view denominator, std::size_t item_bytes,
        Shape shape, std::optional<double> target)
    {
        const Result* top = find(numerator, item_bytes, shape);
        const Result* bottom = find(denominator, item_bytes, shape);
        Ratio r {std::move(name), std::nullopt, std::nullopt, target};
        if (top != nullptr && bottom != nullptr) {
            r.value = top->items_per_s() / bottom->items_per_s();
            r.median_value = top->median_items_per_s() / bottom->median_items_per_s();
        }
        std::string goal = target ? "(target >= " + json_number(target) + "x)" : "(context, no target)";
        if (target && r.value)
            goal += r.met() ? "  met" : "  MISSED";
        if (r.value)
            std::printf("  %-44s = %6.2fx  median %6.2fx  %s\n", r.name.c_str(), *r.value, *r.median_value, goal.c_str());
        else
            std::printf("  %-44s = %6s   median %6s   %s\n", r.name.c_str(), "n/a", "n/a", goal.c_str());
        ratios_.push_back(std::move(r));
    }

    /// True if every measurement ran and verified (targets aside).
    [[nodiscard]] bool complete() const
    {
        return std::all_of(results_.begin(), results_.end(), [](const Result& r) { return r.seconds.has_value(); });
    }

    bool write_json() const;

private:
    [[nodiscard]] const Result* find(std::string_view peer, std::size_t item_bytes, Shape shape) const
    {
        for (const auto& r : results_)
            if (r.peer == peer && r.item_bytes == item_bytes && r.shape.producers == shape.producers
                && r.shape.consumers == shape.consumers && r.seconds)
                return &r;
        return nullptr;
    }
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
    std::vector<Result> results_;
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
    std::fprintf(out,
        "{\n  \"quick\": %s,\n  \"producer_cpu\": %d,\n  \"consumer_cpu\": %d,\n  \"capacity\": %zu,\n"
        "  \"repetitions\": %zu,\n  \"throughput\": [",
        options_.quick ? "true" : "false", kProducerCpu, kConsumerCpu, kCapacity, kRepetitions);
    const char* separator = "\n";
    for (const auto& r : results_) {
        std::fprintf(out,
            "%s    {\"peer\": %s, \"item_bytes\": %zu, \"producers\": %u, \"consumers\": %u, \"items\": %llu, "
            "\"seconds\": %s, \"median_seconds\": %s, \"spread\": %s, \"items_per_second\": %s, "
            "\"median_items_per_second\": %s}",
            separator, json_string(r.peer).c_str(), r.item_bytes, r.shape.producers, r.shape.consumers,
            static_cast<unsigned long long>(r.items), json_number(r.seconds).c_str(),
            json_number(r.median_seconds).c_str(), json_number(r.seconds ? std::optional(r.spread) : std::nullopt).c_str(),
            json_number(r.seconds ? std::optional(r.items_per_s()) : std::nullopt).c_str(),
            json_number(r.seconds ? std::optional(r.median_items_per_s()) : std::nullopt).c_str());
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"ratios\": [");
    separator = "\n";
    for (const auto& r : ratios_) {
        std::fprintf(out,
            "%s    {\"name\": %s, \"value\": %s, \"median_value\": %s, \"comparison\": %s, \"target\": %s, \"met\": %s}",
            separator, json_string(r.name).c_str(), json_number(r.value).c_str(), json_number(r.median_value).c_str(),
            r.target ? "\">=\"" : "null", json_number(r.target).c_str(), r.target ? (r.met() ? "true" : "false") : "null");
        separator = ",\n";
    }
    std::fprintf(out, "\n  ]\n}\n");
    return std::fclose(out) == 0;
}

// Peer names: the table rows, the JSON "peer" fields, and how ratios find them.
constexpr std::string_view kShmlinkTry = "shmlink MPMC try_push/try_pop";
constexpr std::string_view kShmlinkSpin = "shmlink MPMC push/pop spin";
constexpr std::string_view kVyukov = "bare Vyukov queue (floor)";
constexpr std::string_view kBoost = "boost message_queue";

/// One measurement through a `Channel` made from `args`: a fresh one per
/// repetition, so every run starts from an empty queue.
template <typename Channel, typename... Args>
auto through(Shape shape, Args... args)
{
    return [=](std::uint64_t per_producer) {
        Channel channel(args...);
        return mpmc_seconds(channel, shape, per_producer);
    };
}

template <typename T>
Report::Group group(Shape shape)
{
    return {sizeof(T), shape,
        {
            {kShmlinkTry, kQueueCost, through<ShmlinkChannel<T, kCapacity>>(shape, QueueApi::try_ops)},
            {kShmlinkSpin, kQueueCost, through<ShmlinkChannel<T, kCapacity>>(shape, QueueApi::spin_wait)},
            {kVyukov, kQueueCost, through<VyukovChannel<T, kCapacity>>(shape)},
            {kBoost, kBoostCost, through<BoostChannel<T, kCapacity>>(shape)},
        }};
}

std::vector<Report::Group> plan()
{
    std::vector<Report::Group> groups;
    for (const Shape shape : kShapes)
        groups.push_back(group<Item<8>>(shape));
    for (const Shape shape : kShapes)
        groups.push_back(group<Item<64>>(shape));
    return groups;
}

void print_ratios(Report& report)
{
    std::printf("\nratios (items/s of the fastest runs; of the median runs beside)\n");
    for (const std::size_t bytes : {std::size_t {8}, std::size_t {64}})
        for (const Shape shape : kShapes) {
            const std::string what = "MPMC " + std::to_string(bytes) + "B " + shape.name();
            report.ratio(what + " / bare Vyukov queue", kShmlinkTry, kVyukov, bytes, shape, 0.8);
            report.ratio(what + " / Boost message_queue", kShmlinkTry, kBoost, bytes, shape, std::nullopt);
        }
}

constexpr char kUsage[] = R"(usage: mpmc_bench [--quick] [--json FILE] [--progress] [--only PEER]

Measures shmlink's MPMC queue (try_push/try_pop spinning, and push/pop
with WaitMode::spin) against a bare bounded Vyukov queue (the floor) and
Boost.Interprocess message_queue, with 8- and 64-byte items, for one
producer and one consumer and for two of each. Every producer and consumer
is a process of its own; producers are pinned to CPU 0 and consumers to
CPU 1, so with two of each, two processes share each CPU. Prints the ratios
against the project's target.

  --quick      every item count 20x smaller (a smoke run)
  --json FILE  also write every figure and ratio to FILE as JSON
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

    // The parent only starts and collects (it sleeps in waitpid() while a run goes).
    if (!shmlink::bench::start_benchmark("mpmc_bench", kProducerCpu, kConsumerCpu))
        return 1;

    const auto start = Clock::now();
    Report report(options);
    const auto groups = plan();
    report.plan(groups);
    std::printf("MPMC queue throughput, %zu-item queues, producers pinned to CPU %d, consumers to CPU %d "
                "(2x2: two processes share each CPU), best of %zu\n",
        kCapacity, kProducerCpu, kConsumerCpu, kRepetitions);
    std::printf("  %-30s %5s %4s %11s %11s %11s %9s %7s\n", "peer", "bytes", "PxC", "items", "M items/s", "median M/s",
        "seconds", "spread");
    std::fflush(stdout);
    for (const auto& g : groups)
        report.measure(g);
    print_ratios(report);
    std::printf("\n%.1f s in all%s\n", seconds_between(start, Clock::now()), options.quick ? " (--quick)" : "");
    if (!options.json_path.empty() && !report.write_json())
        return 1;
    return report.complete() ? 0 : 1;
}
