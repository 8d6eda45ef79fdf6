// What the benchmarks and the shmlink tool write besides their tables: JSON
// text and an SVG chart of throughput against message size and of latency
// percentiles, one line or row per peer. Plain text out, no dependencies.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace shmlink::bench {

/// `text` as a JSON string literal, quotes and control characters escaped.
std::string json_string(std::string_view text);

/// `value` as a JSON number, or `null` when empty or not finite.
std::string json_number(std::optional<double> value);

/// `text` as a count of rounds, from 1 to 1000 (--rounds), or nothing.
std::optional<std::size_t> parse_rounds(std::string_view text);

/// One peer's throughput: (message bytes, bytes per second), by size.
struct ThroughputSeries {
    std::string peer;
    std::vector<std::pair<double, double>> points;
};

/// One peer's round-trip latency at the percentiles of `Chart::percentiles`, in ns.
struct LatencyRow {
    std::string peer;
    std::vector<double> ns;
};

struct Chart {
    std::string title;
    std::string subtitle;
    std::vector<ThroughputSeries> throughput;
    std::vector<std::string> percentiles; ///< names of the columns of every LatencyRow ("p50", ...)
    std::vector<LatencyRow> latency;
};

/// A standalone SVG document: throughput against message size (both axes
/// logarithmic) above latency percentiles per peer (logarithmic time axis).
/// Peers whose name starts with "shmlink" are drawn solid, the others dashed.
std::string svg(const Chart& chart);

} // namespace shmlink::bench
