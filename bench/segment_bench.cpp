// Segment lifecycle costs for 1 MiB, 64 MiB and 1 GiB segments, in one run:
// create (allocating the backing, the default, and lazily), attach, grow by one page, and a guest's refresh after that grow,
// beside Boost.Interprocess doing the same with shared_memory_object and
// mapped_region (which must map the whole object again to grow, and moves).
// The point to read: shmlink's grow and refresh cost does not depend on the
// segment's size. Medians of repeated runs; ratios printed at the end.
//   segment_bench [--quick] [--json FILE] [--progress]
// --quick measures 1 MiB and 16 MiB only (a smoke run that fits a small
// /dev/shm); --json also writes the table to FILE; --progress prints
// "progress DONE TOTAL what" on stderr as each size starts.
#include <shmlink/core/segment.hpp>

#include "bench/report.hpp"

#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace bip = boost::interprocess;
using Clock = std::chrono::steady_clock;

namespace {

/// Median microseconds of `reps` runs of `body(i)`; `setup(i)` runs untimed before each.
double median_us(int reps, const std::function<void(int)>& setup, const std::function<void(int)>& body)
{
    std::vector<double> us;
    for (int i = 0; i < reps; ++i) {
        setup(i);
        const auto t0 = Clock::now();
        body(i);
        us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    std::nth_element(us.begin(), us.begin() + reps / 2, us.end());
    return us[reps / 2];
}

struct Row {
    std::size_t size;
    double create, create_lazy, attach, grow, refresh, bip_create, bip_attach, bip_grow;
};

Row measure(std::size_t size)
{
    const std::string path = "/dev/shm/shmlink-bench-" + std::to_string(::getpid());
    const std::string bip_name = "shmlink-bench-bip-" + std::to_string(::getpid());
    const int reps = size >= (std::size_t {1} << 30) ? 3 : 11;
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    constexpr int kGrows = 64;
    Row row {size, 0, 0, 0, 0, 0, 0, 0, 0};
    const auto unlink = [&](int) { ::unlink(path.c_str()); };

    row.create = median_us(reps, unlink, [&](int) { shmlink::Segment::create(path, size); });
    row.create_lazy = median_us(reps, unlink, [&](int) { shmlink::Segment::create(path, size, {.allocate_backing = false}); });
    row.attach = median_us(reps, [](int) {}, [&](int) { shmlink::Segment::attach(path); });
    ::unlink(path.c_str());

    shmlink::Segment host = shmlink::Segment::create(path, size,
        {.max_size_bytes = size + kGrows * page, .cleanup = shmlink::Cleanup::unlink_on_close});
    shmlink::Segment guest = shmlink::Segment::attach(path);
    row.grow = median_us(kGrows, [](int) {}, [&](int i) { host.grow(size + (i + 1) * page); });
    host = shmlink::Segment();
    guest = shmlink::Segment();
    host = shmlink::Segment::create(path, size,
        {.max_size_bytes = size + kGrows * page, .cleanup = shmlink::Cleanup::unlink_on_close});
    guest = shmlink::Segment::attach(path);
    row.refresh = median_us(kGrows, [&](int i) { host.grow(size + (i + 1) * page); }, [&](int) { guest.refresh(); });

    const auto bip_remove = [&](int) { bip::shared_memory_object::remove(bip_name.c_str()); };
    row.bip_create = median_us(reps, bip_remove, [&](int) {
        bip::shared_memory_object shm(bip::create_only, bip_name.c_str(), bip::read_write);
        shm.truncate(static_cast<bip::offset_t>(size));
        bip::mapped_region region(shm, bip::read_write);
    });
    row.bip_attach = median_us(reps, [](int) {}, [&](int) {
        bip::shared_memory_object shm(bip::open_only, bip_name.c_str(), bip::read_write);
        bip::mapped_region region(shm, bip::read_write);
    });
    {
        bip::shared_memory_object shm(bip::open_only, bip_name.c_str(), bip::read_write);
        bip::mapped_region region(shm, bip::read_write);
        row.bip_grow = median_us(kGrows, [](int) {}, [&](int i) {
            shm.truncate(static_cast<bip::offset_t>(size + (i + 1) * page));
            region = bip::mapped_region(shm, bip::read_write); // the only way to see the new extent: remap, base moves
        });
    }
    bip_remove(0);
    return row;
}

bool write_json(const std::string& path, const std::vector<Row>& rows, bool quick)
{
    std::FILE* out = std::fopen(path.c_str(), "w");
    if (out == nullptr) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    std::fprintf(out, "{\n  \"quick\": %s,\n  \"unit\": \"median microseconds\",\n  \"sizes\": [", quick ? "true" : "false");
    const char* separator = "\n";
    for (const Row& r : rows) {
        std::fprintf(out,
            "%s    {\"size_bytes\": %zu, \"shmlink\": {\"create\": %s, \"create_lazy\": %s, \"attach\": %s, "
            "\"grow_one_page\": %s, \"refresh\": %s}, \"boost_interprocess\": {\"create\": %s, \"attach\": %s, "
            "\"grow_one_page\": %s}}",
            separator, r.size, shmlink::bench::json_number(r.create).c_str(),
            shmlink::bench::json_number(r.create_lazy).c_str(), shmlink::bench::json_number(r.attach).c_str(),
            shmlink::bench::json_number(r.grow).c_str(), shmlink::bench::json_number(r.refresh).c_str(),
            shmlink::bench::json_number(r.bip_create).c_str(), shmlink::bench::json_number(r.bip_attach).c_str(),
            shmlink::bench::json_number(r.bip_grow).c_str());
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
            std::fputs("usage: segment_bench [--quick] [--json FILE] [--progress]\n", arg == "--help" ? stdout : stderr);
            return arg == "--help" ? 0 : 2;
        }
    }
    std::vector<std::size_t> sizes {std::size_t {1} << 20, std::size_t {64} << 20, std::size_t {1} << 30};
    if (quick)
        sizes = {std::size_t {1} << 20, std::size_t {16} << 20};

    std::printf("segment lifecycle, median microseconds (shmlink | Boost.Interprocess)\n");
    std::printf("%10s %10s %10s %10s %10s %10s | %10s %10s %10s\n", "size", "create", "lazy", "attach", "grow+1pg", "refresh",
        "create", "attach", "grow+1pg");
    std::fflush(stdout);
    std::vector<Row> rows;
    for (const std::size_t size : sizes) {
        if (progress) {
            std::fprintf(stderr, "progress %zu %zu segments of %zu MiB\n", rows.size() + 1, sizes.size(), size >> 20);
            std::fflush(stderr);
        }
        Row r {};
        try {
            r = measure(size);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "segment_bench: %zu MiB: %s\n", size >> 20, e.what());
            return 1;
        }
        rows.push_back(r);
        std::printf("%8zuMi %10.1f %10.1f %10.1f %10.1f %10.1f | %10.1f %10.1f %10.1f\n", r.size >> 20, r.create,
            r.create_lazy, r.attach, r.grow, r.refresh, r.bip_create, r.bip_attach, r.bip_grow);
        std::fflush(stdout);
    }
    const Row& small = rows.front();
    const Row& large = rows.back();
    const std::string large_name = std::to_string(large.size >> 20) + " MiB";
    std::printf("\nratios, %s over 1 MiB (1.0 = independent of size):\n", large_name.c_str());
    std::printf("  shmlink grow %.2fx, refresh %.2fx, attach %.2fx; Boost.Interprocess grow %.2fx\n",
        large.grow / small.grow, large.refresh / small.refresh, large.attach / small.attach,
        large.bip_grow / small.bip_grow);
    std::printf("ratios, shmlink over Boost.Interprocess at %s (below 1.0 = shmlink faster):\n", large_name.c_str());
    std::printf("  create %.2fx (lazy, as Boost; %.0fx allocating the backing up front), attach %.2fx, grow %.2fx\n",
        large.create_lazy / large.bip_create, large.create / large.bip_create, large.attach / large.bip_attach, large.grow / large.bip_grow);
    if (!json_path.empty() && !write_json(json_path, rows, quick))
        return 1;
    return 0;
}
