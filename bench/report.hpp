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

/// `field` of `figures` (times `scale`) as a JSON number, or null without figures.
template <typename Figures>
std::string json_field(const std::optional<Figures>& figures, double Figures::*field, double scale = 1)
{
    return json_number(figures ? std::optional((*figures).*field * scale) : std::nullopt);
}

/// `values` as a JSON array of numbers.
std::string json_numbers(const std::vector<double>& values);

/// Trials' values: the median, the 10th and 90th percentiles (the spread
/// the benchmarks print), and the extremes.
struct Summary {
    double median = 0;
    double min = 0;
    double max = 0;
    double p10 = 0;
    double p90 = 0;
};

/// `values` summarized; not empty.
Summary summarize(std::vector<double> values);

/// Whether --only `only` selects `peer`: every peer when it is empty, else
/// a peer whose name contains it, or one of the alternatives of "A|B".
bool selected(std::string_view peer, std::string_view only) noexcept;

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
