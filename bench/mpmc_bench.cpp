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
using shmlink::bench::json_field;
using shmlink::bench::json_number;
using shmlink::bench::json_numbers;
using shmlink::bench::json_string;
using shmlink::bench::pin_to_cpu;
using shmlink::bench::QueueApi;
using shmlink::bench::seconds_between;
using shmlink::bench::Shared;
using shmlink::bench::Summary;
using shmlink::bench::summarize;
using shmlink::bench::ShmlinkChannel;
using shmlink::bench::VyukovChannel;

namespace {

// Two CPUs: producers on one, consumers on the other. With two of each, two
// processes share each CPU, and the scheduler's time slices are part of what
// is measured (for every peer alike).
constexpr int kProducerCpu = 0;
constexpr int kConsumerCpu = 1;
constexpr std::size_t kCapacity = 4096; // items, in every peer's queue
// Short trials, every peer once a trial in turn, each ratio taken within a
// trial: the machine flips between fast and slow states within tenths of a
// second (see ring_bench).
constexpr std::size_t kTrials = 40;
constexpr double kTargetSeconds = 0.03; // per trial, from the cost estimates below
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
    std::uint64_t items = 0;               // across all producers, in each trial
    std::vector<double> per_trial;         // items/s; empty if any trial failed

    [[nodiscard]] bool measured() const noexcept { return !per_trial.empty(); }
    [[nodiscard]] Summary items_per_s() const { return summarize(per_trial); }
};

struct Options {
    bool quick = false;
    bool progress = false; ///< a line "progress DONE TOTAL what" on stderr per measurement
    std::string json_path;
    std::string only; ///< measure only the peers it selects (bench::selected(): a name part, or "A|B")
};

/// A ratio of two peers' items/s taken in each trial, summarized; with a
/// target, or (context) without one.
struct Ratio {
    std::string name;
    std::vector<double> per_trial; // empty when a peer is missing
    std::optional<double> target;  // at least this; none for context

    [[nodiscard]] std::optional<Summary> value() const
    {
        return per_trial.empty() ? std::nullopt : std::optional(summarize(per_trial));
    }
    [[nodiscard]] bool met() const { return value() && target && value()->median >= *target; }
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
                planned_ += skipped(peer.name) ? 0 : kTrials;
    }

    /// Measures every peer of `group` in kTrials short trials, interleaved
    /// (A B C, A B C, ...), and keeps every trial's items/s: peers compared
    /// in a ratio must run close together, as the machine's state flips
    /// within tenths of a second (see ring_bench).
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
                {}});
        }
        for (std::size_t trial = 0; trial < kTrials; ++trial) {
            for (std::size_t i = 0; i < peers.size(); ++i) {
                if (skipped(peers[i].name))
                    continue;
                progressed(results[i].peer + where);
                if (seconds[i].size() != trial)
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
            if (seconds[i].size() == kTrials) {
                for (const double s : seconds[i])
                    result.per_trial.push_back(static_cast<double>(result.items) / s);
                const Summary rate = result.items_per_s();
                std::printf("  %-30s %5zu %4s %11llu %11.3f  [%8.3f .. %8.3f]\n", result.peer.c_str(),
                    result.item_bytes, result.shape.name().c_str(), static_cast<unsigned long long>(result.items),
                    rate.median / 1e6, rate.p10 / 1e6, rate.p90 / 1e6);
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
        Ratio r {std::move(name), {}, target};
        if (top != nullptr && bottom != nullptr)
            for (std::size_t i = 0; i < kTrials; ++i)
                r.per_trial.push_back(top->per_trial[i] / bottom->per_trial[i]);
        std::string goal = target ? "(target >= " + json_number(target) + "x)" : "(context, no target)";
        const std::optional<Summary> value = r.value();
        if (target && value)
            goal += r.met() ? "  met" : "  MISSED";
        if (value)
            std::printf("  %-44s = %6.2fx [%5.2f .. %5.2f]  %s\n", r.name.c_str(), value->median, value->p10,
                value->p90, goal.c_str());
        else
            std::printf("  %-44s = %6s                    %s\n", r.name.c_str(), "n/a", goal.c_str());
        ratios_.push_back(std::move(r));
    }

    /// True if every measurement ran and verified (targets aside).
    [[nodiscard]] bool complete() const
    {
        return std::all_of(results_.begin(), results_.end(), [](const Result& r) { return r.measured(); });
    }

    bool write_json() const;

private:
    [[nodiscard]] const Result* find(std::string_view peer, std::size_t item_bytes, Shape shape) const
    {
        for (const auto& r : results_)
            if (r.peer == peer && r.item_bytes == item_bytes && r.shape.producers == shape.producers
                && r.shape.consumers == shape.consumers && r.measured())
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
        return !shmlink::bench::selected(peer, options_.only);
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
        "  \"trials\": %zu,\n  \"throughput\": [",
        options_.quick ? "true" : "false", kProducerCpu, kConsumerCpu, kCapacity, kTrials);
    const char* separator = "\n";
    for (const auto& r : results_) {
        const std::optional<Summary> summary = r.measured() ? std::optional(r.items_per_s()) : std::nullopt;
        std::fprintf(out,
            "%s    {\"peer\": %s, \"item_bytes\": %zu, \"producers\": %u, \"consumers\": %u, \"items\": %llu, "
            "\"items_per_second\": %s, \"p10_items_per_second\": %s, \"p90_items_per_second\": %s, "
            "\"min_items_per_second\": %s, \"max_items_per_second\": %s, \"trials_items_per_second\": %s}",
            separator, json_string(r.peer).c_str(), r.item_bytes, r.shape.producers, r.shape.consumers,
            static_cast<unsigned long long>(r.items), json_field(summary, &Summary::median).c_str(),
            json_field(summary, &Summary::p10).c_str(), json_field(summary, &Summary::p90).c_str(),
            json_field(summary, &Summary::min).c_str(), json_field(summary, &Summary::max).c_str(),
            json_numbers(r.per_trial).c_str());
        separator = ",\n";
    }
    std::fprintf(out, "\n  ],\n  \"ratios\": [");
    separator = "\n";
    for (const auto& r : ratios_) {
        const std::optional<Summary> summary = r.value();
        std::fprintf(out,
            "%s    {\"name\": %s, \"value\": %s, \"p10\": %s, \"p90\": %s, \"trials\": %s, \"comparison\": %s, "
            "\"target\": %s, \"met\": %s}",
            separator, json_string(r.name).c_str(), json_field(summary, &Summary::median).c_str(),
            json_field(summary, &Summary::p10).c_str(), json_field(summary, &Summary::p90).c_str(),
            json_numbers(r.per_trial).c_str(), r.target ? "\">=\"" : "null", json_number(r.target).c_str(), r.target ? (r.met() ? "true" : "false") : "null");
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
/// trial, so every run starts from an empty queue.
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
    std::printf("\nratios of items/s, each taken within a trial: median of the trials [p10 .. p90]\n");
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
                "(2x2: two processes share each CPU),\n%zu trials, every peer once a trial in turn; M items/s: median of "
                "the trials [p10 .. p90]\n",
        kCapacity, kProducerCpu, kConsumerCpu, kTrials);
    std::printf("  %-30s %5s %4s %11s %11s  %-22s\n", "peer", "bytes", "PxC", "items", "M items/s", "[p10 .. p90]");
    std::fflush(stdout);
    for (const auto& g : groups)
        report.measure(g);
    print_ratios(report);
    std::printf("\n%.1f s in all%s\n", seconds_between(start, Clock::now()), options.quick ? " (--quick)" : "");
    if (!options.json_path.empty() && !report.write_json())
        return 1;
    return report.complete() ? 0 : 1;
}
