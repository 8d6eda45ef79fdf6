#include "bench/report.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>

namespace shmlink::bench {

std::string json_numbers(const std::vector<double>& values)
{
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i)
        out += (i == 0 ? "" : ", ") + json_number(values[i]);
    return out + "]";
}

Summary summarize(std::vector<double> values)
{
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    const double median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
    const auto rank = [&](std::size_t percent) { return values[(n - 1) * percent / 100]; };
    return {median, values.front(), values.back(), rank(10), rank(90)};
}

bool selected(std::string_view peer, std::string_view only) noexcept
{
    if (only.empty())
        return true;
    for (;;) {
        const std::size_t bar = only.find('|');
        if (peer.find(only.substr(0, bar)) != std::string_view::npos)
            return true;
        if (bar == std::string_view::npos)
            return false;
        only.remove_prefix(bar + 1);
    }
}

std::optional<std::size_t> parse_rounds(std::string_view text)
{
    std::size_t rounds = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), rounds);
    if (ec != std::errc() || end != text.data() + text.size() || rounds < 1 || rounds > 1000)
        return std::nullopt;
    return rounds;
}

std::string json_string(std::string_view text)
{
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string json_number(std::optional<double> value)
{
    if (!value || !std::isfinite(*value))
        return "null";
    char text[32];
    std::snprintf(text, sizeof(text), "%.6g", *value);
    return text;
}

namespace {

constexpr const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"};
constexpr double kWidth = 960;

std::string xml(std::string_view text)
{
    std::string out;
    for (const char c : text) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

std::string format(const char* pattern, auto... args)
{
    char text[512];
    std::snprintf(text, sizeof(text), pattern, args...);
    return text;
}

/// A logarithmic axis from the decade at or below `lo` to the one at or above `hi`,
/// mapped onto [from, to] pixels.
struct LogAxis {
    double lo_exp, hi_exp, from, to;

    LogAxis(double lo, double hi, double from_px, double to_px) : from(from_px), to(to_px)
    {
        lo_exp = std::floor(std::log10(lo));
        hi_exp = std::max(lo_exp + 1, std::ceil(std::log10(hi)));
    }
    [[nodiscard]] double at(double value) const
    {
        return from + (std::log10(value) - lo_exp) / (hi_exp - lo_exp) * (to - from);
    }
};

/// 8 B, 1 KiB, 64 KiB, 1 MiB; 2.5 GB/s; 850 ns, 12 µs.
std::string bytes_label(double bytes)
{
    if (bytes >= 1 << 20)
        return format("%g MiB", bytes / (1 << 20));
    if (bytes >= 1 << 10)
        return format("%g KiB", bytes / (1 << 10));
    return format("%g B", bytes);
}

std::string rate_label(double bytes_per_s)
{
    if (bytes_per_s >= 1e9)
        return format("%g GB/s", bytes_per_s / 1e9);
    if (bytes_per_s >= 1e6)
        return format("%g MB/s", bytes_per_s / 1e6);
    if (bytes_per_s >= 1e3)
        return format("%g kB/s", bytes_per_s / 1e3);
    return format("%g B/s", bytes_per_s);
}

std::string time_label(double ns)
{
    if (ns >= 1e9)
        return format("%g s", ns / 1e9);
    if (ns >= 1e6)
        return format("%g ms", ns / 1e6);
    if (ns >= 1e3)
        return format("%g \xc2\xb5s", ns / 1e3);
    return format("%g ns", ns);
}

/// Only finite, positive values go on a logarithmic axis.
bool drawable(double value)
{
    return std::isfinite(value) && value > 0;
}

bool is_shmlink(const std::string& peer)
{
    return peer.rfind("shmlink", 0) == 0;
}

/// Throughput against message size; answers the height used.
double throughput_panel(std::string& out, const Chart& chart, double top)
{
    std::set<double> sizes;
    double lo = 0;
    double hi = 0;
    for (const auto& series : chart.throughput)
        for (const auto& [size, rate] : series.points)
            if (drawable(size) && drawable(rate)) {
                sizes.insert(size);
                lo = lo == 0 ? rate : std::min(lo, rate);
                hi = std::max(hi, rate);
            }
    if (sizes.empty())
        return 0;
    constexpr double kLeft = 90;
    constexpr double kRight = 660;
    constexpr double kHeight = 330;
    const double bottom = top + kHeight;
    // Sizes on a log2 scale, with half a step of margin on each side.
    const double first = std::log2(*sizes.begin()) - 0.5;
    const double last = std::log2(*sizes.rbegin()) + 0.5;
    const auto x_at = [&](double size) { return kLeft + (std::log2(size) - first) / (last - first) * (kRight - kLeft); };
    const LogAxis y(lo, hi, bottom, top);

    out += format("<text x=\"%g\" y=\"%g\" class=\"h\">one-way throughput by message size (both axes logarithmic)</text>\n",
        kLeft, top - 12);
    out += format("<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"frame\"/>\n", kLeft, top, kRight - kLeft, kHeight);
    for (double e = y.lo_exp; e <= y.hi_exp; ++e) {
        const double py = y.at(std::pow(10, e));
        out += format("<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"grid\"/>\n", kLeft, py, kRight, py);
        out += format("<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"end\">%s</text>\n", kLeft - 6, py + 4,
            xml(rate_label(std::pow(10, e))).c_str());
    }
    for (const double size : sizes) {
        const double px = x_at(size);
        out += format("<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"grid\"/>\n", px, top, px, bottom);
        out += format("<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"middle\">%s</text>\n", px, bottom + 16,
            bytes_label(size).c_str());
    }
    out += format("<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"middle\">message size</text>\n",
        (kLeft + kRight) / 2, bottom + 34);

    double legend_y = top + 8;
    for (std::size_t i = 0; i < chart.throughput.size(); ++i) {
        const auto& series = chart.throughput[i];
        const char* colour = kColours[i % std::size(kColours)];
        const char* dash = is_shmlink(series.peer) ? "" : " stroke-dasharray=\"6 4\"";
        std::string points;
        for (const auto& [size, rate] : series.points)
            if (drawable(size) && drawable(rate)) {
                points += format("%.1f,%.1f ", x_at(size), y.at(rate));
                out += format("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"><title>%s, %s: %s</title></circle>\n",
                    x_at(size), y.at(rate), colour, xml(series.peer).c_str(), bytes_label(size).c_str(),
                    rate_label(rate).c_str());
            }
        // Not through format(): the list of points has no length limit.
        out += "<polyline points=\"" + points + format("\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", colour, dash);
        out += format("<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"%s\" stroke-width=\"2\"%s/>\n", kRight + 16,
            legend_y, kRight + 40, legend_y, colour, dash);
        out += format("<text x=\"%g\" y=\"%g\" class=\"legend\">%s</text>\n", kRight + 46, legend_y + 4,
            xml(series.peer).c_str());
        legend_y += 18;
    }
    return std::max(kHeight + 40, legend_y - top) + 40;
}

/// One row per peer: a line from its lowest to its highest percentile and a
/// marker at each; answers the height used.
double latency_panel(std::string& out, const Chart& chart, double top)
{
    double lo = 0;
    double hi = 0;
    for (const auto& row : chart.latency)
        for (const double ns : row.ns)
            if (drawable(ns)) {
                lo = lo == 0 ? ns : std::min(lo, ns);
                hi = std::max(hi, ns);
            }
    if (hi == 0)
        return 0;
    constexpr double kLeft = 250;
    constexpr double kRight = 900;
    constexpr double kRow = 22;
    const double height = kRow * static_cast<double>(chart.latency.size()) + 10;
    const double bottom = top + height;
    const LogAxis x(lo, hi, kLeft, kRight);

    out += format("<text x=\"%g\" y=\"%g\" class=\"h\">round-trip latency percentiles (logarithmic)</text>\n", 10.0, top - 12);
    double legend_x = kLeft + 300;
    for (std::size_t p = 0; p < chart.percentiles.size(); ++p) {
        out += format("<circle cx=\"%g\" cy=\"%g\" r=\"4.5\" fill=\"%s\"/>\n", legend_x, top - 16, kColours[p % std::size(kColours)]);
        out += format("<text x=\"%g\" y=\"%g\" class=\"legend\">%s</text>\n", legend_x + 8, top - 12,
            xml(chart.percentiles[p]).c_str());
        legend_x += 70;
    }
    out += format("<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" class=\"frame\"/>\n", kLeft, top, kRight - kLeft, height);
    for (double e = x.lo_exp; e <= x.hi_exp; ++e) {
        const double px = x.at(std::pow(10, e));
        out += format("<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" class=\"grid\"/>\n", px, top, px, bottom);
        out += format("<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"middle\">%s</text>\n", px, bottom + 16,
            xml(time_label(std::pow(10, e))).c_str());
    }
    for (std::size_t r = 0; r < chart.latency.size(); ++r) {
        const auto& row = chart.latency[r];
        const double py = top + 5 + kRow * (static_cast<double>(r) + 0.5);
        out += format("<text x=\"%g\" y=\"%g\" class=\"%s\" text-anchor=\"end\">%s</text>\n", kLeft - 8, py + 4,
            is_shmlink(row.peer) ? "legend strong" : "legend", xml(row.peer).c_str());
        double first = 0;
        double last = 0;
        for (const double ns : row.ns)
            if (drawable(ns)) {
                first = first == 0 ? ns : std::min(first, ns);
                last = std::max(last, ns);
            }
        if (last == 0)
            continue;
        out += format("<line x1=\"%.1f\" y1=\"%g\" x2=\"%.1f\" y2=\"%g\" stroke=\"#999\" stroke-width=\"2\"/>\n", x.at(first),
            py, x.at(last), py);
        for (std::size_t p = 0; p < row.ns.size() && p < chart.percentiles.size(); ++p)
            if (drawable(row.ns[p]))
                out += format("<circle cx=\"%.1f\" cy=\"%g\" r=\"4.5\" fill=\"%s\"><title>%s %s: %s</title></circle>\n",
                    x.at(row.ns[p]), py, kColours[p % std::size(kColours)], xml(row.peer).c_str(),
                    xml(chart.percentiles[p]).c_str(), xml(time_label(row.ns[p])).c_str());
    }
    return height + 40;
}

} // namespace

std::string svg(const Chart& chart)
{
    std::string body;
    double y = 100;
    y += throughput_panel(body, chart, y) + 30;
    y += latency_panel(body, chart, y);
    std::string out = format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\">\n",
        kWidth, y, kWidth, y);
    out += "<style>text{font-family:sans-serif;fill:#222}.h{font-size:15px;font-weight:bold}.tick{font-size:11px;fill:#555}"
           ".legend{font-size:12px}.strong{font-weight:bold}.frame{fill:none;stroke:#888}"
           ".grid{stroke:#ddd;stroke-width:1}</style>\n";
    out += format("<rect width=\"%g\" height=\"%g\" fill=\"white\"/>\n", kWidth, y);
    out += format("<text x=\"10\" y=\"30\" style=\"font-size:18px;font-weight:bold\">%s</text>\n", xml(chart.title).c_str());
    out += format("<text x=\"10\" y=\"52\" class=\"tick\">%s</text>\n", xml(chart.subtitle).c_str());
    return out + body + "</svg>\n";
}

} // namespace shmlink::bench
