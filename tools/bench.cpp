// shmlink bench: runs bench/ring_bench, bench/mpmc_bench, bench/segment_bench
// and bench/topic_bench, shows their progress, prints their tables and ratios,
// and writes one JSON report and a plot. The measuring is theirs; this file
// only runs them and collects.
#include <shmlink/core/unique_fd.hpp>

#include "bench/report.hpp"
#include "tools/commands.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

extern char** environ;

namespace shmlink::tool {
namespace {

namespace fs = std::filesystem;

constexpr char kUsage[] = R"(usage: shmlink bench [--quick] [--rounds N] [--json FILE] [--plot FILE.svg|FILE.png]
                     [--only PEER]

Runs the benchmarks of bench/: ring_bench (shmlink's SPSC and MPSC rings
beside a pipe, a Unix socket, Boost.Interprocess message_queue and the
floors, in two processes pinned to CPUs 0 and 1), mpmc_bench (shmlink's
MPMC queue beside a bare Vyukov queue and Boost.Interprocess
message_queue, one and two producer and consumer processes), segment_bench
(create, attach, grow and refresh beside Boost.Interprocess), topic_bench
(publish/subscribe beside the SPSC ring: round trip 64 B to 4 MiB,
throughput, fan-out, the cost of a pool's grow), and where
the Python package was built python_bench.py (shmlink from Python beside
multiprocessing's Queue, Pipe and shared_memory). Shows a
progress bar on a terminal (plain lines otherwise), then prints the tables
and the ratios against the project's targets. ring_bench runs its peers
in short trials (8 a round) and takes each ratio within a trial: figures
and ratios are medians over the trials, with their [p10 .. p90]. A full
run takes a few minutes; --quick takes seconds.

  --quick      every count 20x smaller, 3 rounds of the ring peers (7 in a
               full run), small segments only (a smoke run)
  --rounds N   N rounds of the ring peers (1 to 1000)
  --json FILE  write every figure, the ratios and the machine to FILE
  --plot FILE  draw throughput by message size and latency percentiles per
               peer; FILE.svg is drawn directly, FILE.png is converted with
               rsvg-convert (Debian package librsvg2-bin)
  --only PEER  only the ring and MPMC peers whose name contains PEER; no
               segment_bench nor topic_bench

The benchmark programs are looked for in $SHMLINK_BENCH_DIR, beside this
program's build tree, then where they are installed.

Exit status: 0 every measurement ran (targets aside), 1 a benchmark failed
or a file could not be written, 2 bad usage, 130 interrupted (Ctrl-C).
)";

volatile sig_atomic_t g_interrupted = 0;
volatile pid_t g_child = 0; // the benchmark running now, to pass a SIGTERM on to

void on_interrupt(int signal) noexcept
{
    g_interrupted = 1;
    if (g_child > 0)
        ::kill(g_child, signal); // Ctrl-C reaches it anyway (one process group); SIGTERM may not
}

/// The benchmark programs, all in one directory.
constexpr const char* kPrograms[] = {"ring_bench", "mpmc_bench", "segment_bench", "topic_bench"};

struct Options {
    bool quick = false;
    std::string rounds; ///< passed on to ring_bench as it is, which checks it
    std::string json_path;
    std::string plot_path;
    std::string only;
};

/// Where the benchmark programs are, or empty.
fs::path find_bench_dir()
{
    std::vector<fs::path> candidates;
    if (const char* dir = std::getenv("SHMLINK_BENCH_DIR"))
        candidates.emplace_back(dir);
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec)
        candidates.push_back(self.parent_path().parent_path() / "bench"); // the build tree: build/tools/shmlink
    candidates.emplace_back(SHMLINK_INSTALLED_BENCH_DIR);
    for (const auto& dir : candidates)
        if (std::all_of(std::begin(kPrograms), std::end(kPrograms),
                [&](const char* program) { return ::access((dir / program).c_str(), X_OK) == 0; }))
            return dir;
    return {};
}

/// The command line of ring_bench or mpmc_bench: progress lines, a JSON
/// report to `json`, and the options passed on, --quick and --only.
std::vector<std::string> peer_bench_args(const fs::path& program, const fs::path& json, const Options& options)
{
    std::vector<std::string> args {program.string(), "--progress", "--json", json.string()};
    if (options.quick)
        args.emplace_back("--quick");
    if (!options.only.empty())
        args.insert(args.end(), {"--only", options.only});
    return args;
}

/// `program` as found in $PATH, or empty.
fs::path find_in_path(std::string_view program)
{
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
    for (std::string dir; std::getline(dirs, dir, ':');)
        if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0)
            return fs::path(dir) / program;
    return {};
}

/// Draws "what" as a bar on a terminal, or as a plain line at every tenth.
class Progress {
public:
    Progress(std::string stage, bool terminal) : stage_(std::move(stage)), terminal_(terminal) {}

    void update(std::size_t done, std::size_t total, std::string_view what)
    {
        if (total == 0)
            return;
        if (terminal_) {
            winsize size {};
            const std::size_t columns = ::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0 ? size.ws_col : 80;
            constexpr std::size_t kBar = 30;
            done = std::min(done, total); // a confused child must not break the bar
            const std::size_t filled = kBar * done / total;
            std::string line = stage_ + " [" + std::string(filled, '#') + std::string(kBar - filled, '-') + "] "
                + std::to_string(done) + "/" + std::to_string(total) + " " + std::string(what);
            if (line.size() >= columns)
                line.resize(columns - 1);
            std::fprintf(stderr, "\r\033[K%s", line.c_str());
            drawn_ = true;
        } else {
            done = std::min(done, total);
            const std::size_t tenth = 10 * done / total;
            if (tenth == last_tenth_ && done != 1)
                return;
            last_tenth_ = tenth;
            std::fprintf(stderr, "%s: %3zu%% (%zu/%zu) %.*s\n", stage_.c_str(), 100 * done / total, done, total,
                static_cast<int>(what.size()), what.data());
        }
        std::fflush(stderr);
    }

    /// Before any other line goes to stderr, and at the end.
    void clear()
    {
        if (drawn_)
            std::fputs("\r\033[K", stderr);
        drawn_ = false;
    }

private:
    std::string stage_;
    bool terminal_;
    bool drawn_ = false;
    std::size_t last_tenth_ = static_cast<std::size_t>(-1);
};

/// Runs `args` with stdout kept in memory and stderr read line by line:
/// "progress DONE TOTAL what" lines move the bar, the rest pass through.
/// Answers the exit status (or 128 + signal), and the program's stdout.
int run_program(const std::vector<std::string>& args, Progress& progress, std::string& out)
{
    out.clear();
    UniqueFd captured(::memfd_create("shmlink-bench-stdout", MFD_CLOEXEC));
    int pipe_fds[2];
    if (!captured || ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        std::fprintf(stderr, "shmlink bench: %s\n", std::strerror(errno));
        return -1;
    }
    UniqueFd read_end(pipe_fds[0]);
    UniqueFd write_end(pipe_fds[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, captured.get(), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDERR_FILENO);
    std::vector<char*> argv;
    for (const auto& arg : args)
        argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int spawned = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    write_end.reset();
    if (spawned != 0) {
        std::fprintf(stderr, "shmlink bench: cannot start %s: %s\n", args[0].c_str(), std::strerror(spawned));
        return -1;
    }
    // Ctrl-C (or SIGTERM) goes to the child; its end ends the loop below and
    // leaves this process to clean up (g_interrupted tells bench() so).
    g_child = pid;

    std::FILE* lines = ::fdopen(read_end.get(), "r");
    if (lines != nullptr)
        static_cast<void>(read_end.release()); // the FILE owns it now
    else
        read_end.reset(); // no reader: the child's stderr writes fail rather than block
    char line[1024];
    while (lines != nullptr && std::fgets(line, sizeof(line), lines) != nullptr) {
        std::size_t done = 0;
        std::size_t total = 0;
        int what = 0;
        if (std::sscanf(line, "progress %zu %zu %n", &done, &total, &what) == 2 && what > 0) {
            std::string_view text(line + what);
            while (!text.empty() && text.back() == '\n')
                text.remove_suffix(1);
            progress.update(done, total, text);
        } else {
            progress.clear();
            std::fputs(line, stderr);
        }
    }
    if (lines != nullptr)
        std::fclose(lines);
    progress.clear();

    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    g_child = 0;
    char chunk[4096];
    ssize_t n = 0;
    for (off_t at = 0; (n = ::pread(captured.get(), chunk, sizeof(chunk), at)) > 0; at += n)
        out.append(chunk, static_cast<std::size_t>(n));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::optional<std::string> read_file(const fs::path& path)
{
    std::ifstream in(path);
    if (!in)
        return std::nullopt;
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

bool write_file(const std::string& path, const std::string& text)
{
    std::ofstream out(path, std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
        std::fprintf(stderr, "shmlink bench: %s: %s\n", path.c_str(), std::strerror(errno));
        return false;
    }
    return true;
}

std::string machine_json()
{
    std::string cpu = "unknown";
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
        if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
            cpu = line.substr(line.find(':') + 2);
            break;
        }
    utsname name {};
    ::uname(&name);
    const std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return "{\"cpu\": " + bench::json_string(cpu) + ", \"cpus\": " + std::to_string(std::thread::hardware_concurrency())
        + ", \"kernel\": " + bench::json_string(name.release) + ", \"date\": " + bench::json_string(date) + "}";
}

/// A scratch directory for the benchmarks' own files, removed at the end
/// (also after Ctrl-C: bench() returns normally then).
struct ScratchDir {
    fs::path path;
    ScratchDir()
    {
        std::error_code ec;
        const fs::path temp = fs::temp_directory_path(ec); // a TMPDIR that does not exist is an error, not a crash
        std::string pattern = ((ec ? fs::path("/tmp") : temp) / "shmlink-bench-XXXXXX").string();
        if (::mkdtemp(pattern.data()) != nullptr)
            path = pattern;
    }
    ~ScratchDir()
    {
        std::error_code ec;
        if (!path.empty())
            fs::remove_all(path, ec);
    }
};

} // namespace

int bench(int argc, char** argv)
{
    Options options;
    for (int i = 2; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--quick") {
            options.quick = true;
        } else if (arg == "--rounds" && i + 1 < argc) {
            options.rounds = argv[++i];
            if (!bench::parse_rounds(options.rounds)) {
                std::fprintf(stderr, "shmlink bench: --rounds %s: a count from 1 to 1000\n", options.rounds.c_str());
                return kBadUsage;
            }
        } else if (arg == "--json" && i + 1 < argc) {
            options.json_path = argv[++i];
        } else if (arg == "--plot" && i + 1 < argc) {
            options.plot_path = argv[++i];
        } else if (arg == "--only" && i + 1 < argc) {
            options.only = argv[++i];
        } else if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return kDone;
        } else {
            std::fputs(kUsage, stderr);
            return kBadUsage;
        }
    }
    const std::string plot_type = fs::path(options.plot_path).extension().string();
    if (!options.plot_path.empty() && plot_type != ".svg" && plot_type != ".png") {
        std::fprintf(stderr, "shmlink bench: --plot %s: the file must end in .svg or .png\n", options.plot_path.c_str());
        return kBadUsage;
    }
    const fs::path converter = plot_type == ".png" ? find_in_path("rsvg-convert") : fs::path();
    if (plot_type == ".png" && converter.empty()) {
        std::fprintf(stderr, "shmlink bench: --plot %s: PNG needs rsvg-convert (Debian package librsvg2-bin); "
                             "an .svg needs nothing\n", options.plot_path.c_str());
        return kFailed;
    }
    const fs::path dir = find_bench_dir();
    if (dir.empty()) {
        std::fprintf(stderr, "shmlink bench: ring_bench, mpmc_bench, segment_bench and topic_bench not found (set "
                             "SHMLINK_BENCH_DIR to their directory)\n");
        return kFailed;
    }
    ScratchDir scratch;
    if (scratch.path.empty()) {
        std::fprintf(stderr, "shmlink bench: a scratch directory for the reports: %s\n", std::strerror(errno));
        return kFailed;
    }
    struct sigaction interrupt {};
    interrupt.sa_handler = on_interrupt;
    ::sigaction(SIGINT, &interrupt, nullptr);
    ::sigaction(SIGTERM, &interrupt, nullptr);

    const bool terminal = ::isatty(STDERR_FILENO) == 1;
    const fs::path ring_json = scratch.path / "rings.json";
    const fs::path mpmc_json = scratch.path / "mpmc.json";
    const fs::path segment_json = scratch.path / "segments.json";
    const fs::path topic_json = scratch.path / "topics.json";
    const fs::path python_json = scratch.path / "python.json";
    const fs::path svg = scratch.path / "plot.svg";
    int result = kDone;
    std::string out;

    std::vector<std::string> ring_args = peer_bench_args(dir / "ring_bench", ring_json, options);
    if (!options.plot_path.empty())
        ring_args.insert(ring_args.end(), {"--plot", svg.string()});
    if (!options.rounds.empty())
        ring_args.insert(ring_args.end(), {"--rounds", options.rounds});
    Progress ring_progress("rings", terminal);
    const int ring_status = run_program(ring_args, ring_progress, out);
    std::fputs(out.c_str(), stdout);
    if (ring_status != 0) {
        std::fprintf(stderr, "shmlink bench: ring_bench exited with status %d\n", ring_status);
        result = kFailed;
    }

    if (g_interrupted) {
        std::fprintf(stderr, "shmlink bench: interrupted\n");
        return 128 + SIGINT; // the scratch directory goes with `scratch`
    }
    Progress mpmc_progress("mpmc", terminal);
    const int mpmc_status = run_program(peer_bench_args(dir / "mpmc_bench", mpmc_json, options), mpmc_progress, out);
    std::printf("\n%s", out.c_str());
    if (mpmc_status != 0) {
        std::fprintf(stderr, "shmlink bench: mpmc_bench exited with status %d\n", mpmc_status);
        result = kFailed;
    }

    if (g_interrupted) {
        std::fprintf(stderr, "shmlink bench: interrupted\n");
        return 128 + SIGINT;
    }
    if (options.only.empty()) {
        // The benchmarks with no peers to choose: each once, --quick passed on.
        for (const auto& [program, stage, json] :
            {std::tuple {"segment_bench", "segments", segment_json}, std::tuple {"topic_bench", "topics", topic_json}}) {
            if (g_interrupted)
                break;
            std::vector<std::string> args {(dir / program).string(), "--progress", "--json", json.string()};
            if (options.quick)
                args.emplace_back("--quick");
            Progress progress(stage, terminal);
            const int status = run_program(args, progress, out);
            std::printf("\n%s", out.c_str());
            if (status != 0) {
                std::fprintf(stderr, "shmlink bench: %s exited with status %d\n", program, status);
                result = kFailed;
            }
        }
        // The Python benchmark, where the Python package was built: beside
        // the others once installed, in build/python in the build tree.
        for (const fs::path& script : {dir / "python_bench.py", dir / ".." / "python" / "python_bench.py"}) {
            if (g_interrupted || ::access(script.c_str(), X_OK) != 0)
                continue;
            std::vector<std::string> python_args {script.string(), "--json", python_json.string()};
            if (options.quick)
                python_args.emplace_back("--quick");
            Progress python_progress("python", terminal);
            const int python_status = run_program(python_args, python_progress, out);
            std::printf("\n%s", out.c_str());
            if (python_status != 0) {
                std::fprintf(stderr, "shmlink bench: %s exited with status %d\n", script.c_str(), python_status);
                result = kFailed;
            }
            break;
        }
    }
    std::fflush(stdout);
    if (g_interrupted) {
        std::fprintf(stderr, "shmlink bench: interrupted\n");
        return 128 + SIGINT;
    }

    if (!options.json_path.empty()) {
        const auto rings = read_file(ring_json);
        const auto mpmc = read_file(mpmc_json);
        const auto segments = read_file(segment_json);
        const auto topics = read_file(topic_json);
        const auto python = read_file(python_json);
        const std::string report = "{\n\"machine\": " + machine_json() + ",\n\"rings\": " + rings.value_or("null\n")
            + ",\n\"mpmc\": " + mpmc.value_or("null\n") + ",\n\"segments\": " + segments.value_or("null\n")
            + ",\n\"topics\": " + topics.value_or("null\n") + ",\n\"python\": " + python.value_or("null\n") + "}\n";
        if (!write_file(options.json_path, report))
            result = kFailed;
    }
    if (!options.plot_path.empty()) {
        std::error_code ec;
        if (!fs::exists(svg)) {
            std::fprintf(stderr, "shmlink bench: ring_bench drew no plot\n");
            result = kFailed;
        } else if (plot_type == ".svg") {
            fs::copy_file(svg, options.plot_path, fs::copy_options::overwrite_existing, ec);
            if (ec) {
                std::fprintf(stderr, "shmlink bench: %s: %s\n", options.plot_path.c_str(), ec.message().c_str());
                result = kFailed;
            }
        } else {
            Progress quiet("plot", false);
            const int status = run_program({converter.string(), "-o", options.plot_path, svg.string()}, quiet, out);
            if (status != 0) {
                std::fprintf(stderr, "shmlink bench: rsvg-convert %s exited with status %d\n", options.plot_path.c_str(), status);
                result = kFailed;
            }
        }
    }
    return result;
}

} // namespace shmlink::tool
