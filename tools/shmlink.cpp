// The shmlink command-line tool: looks inside segments, cleans up after dead
// creators, and runs the benchmarks. Each subcommand is in a file of its own
// (tools/commands.hpp) and answers --help.
#include <shmlink/core/version.hpp>

#include "tools/commands.hpp"

#include <cstdio>
#include <string_view>

namespace {

constexpr char kUsage[] = R"(usage: shmlink COMMAND [ARGS...]

  inspect PATH|--fd N [--json]   a segment's header, directory, rings and lanes (with
                                 each guest's pid), read-only
      --json                     one JSON object instead of text
      --fd N                     an inherited fd instead of a path
  ls [DIR]                       the segments in DIR (default /dev/shm): owner, size,
                                 creator, guests attached, and whether the creator is
                                 alive and why
  gc [DIR] [--yes]               removes the segments whose creator is gone, and the
                                 stale sockets their hosts left; "nothing to remove"
      --yes                      remove without asking
  watch PATH [--interval S | --on-input] [--count N]
                                 fill levels, bytes/s and messages/s per ring and lane,
                                 refreshed until Ctrl-C
      --interval S               seconds between refreshes (default 1)
      --on-input                 refresh on each line of standard input, until its end
      --count N                  stop after N refreshes
  bench [--quick] [--rounds N] [--json FILE] [--plot FILE.svg|FILE.png] [--only PEER]
                                 the benchmarks of bench/, with ratios and a plot
      --quick                    every count 20x smaller (a smoke run)
      --rounds N                 rounds of 8 trials of the ring peers (default 7)
      --json FILE                every figure as JSON
      --plot FILE                throughput and latency plot, .svg or .png
      --only PEER                only the ring and MPMC peers whose name contains PEER

  --version                      the version of the shmlink libraries it runs with
  --help                         this text

`shmlink COMMAND --help` tells more. inspect, ls and watch only read.
Bash completion comes installed as share/bash-completion/completions/shmlink.
Exit status: 0 done, 1 a file could not be read or written or a benchmark
failed (the message says which and why), 2 bad usage.
)";

struct Command {
    std::string_view name;
    int (*run)(int, char**);
};

constexpr Command kCommands[] = {
    {"inspect", shmlink::tool::inspect},
    {"ls", shmlink::tool::ls},
    {"gc", shmlink::tool::gc},
    {"watch", shmlink::tool::watch},
    {"bench", shmlink::tool::bench},
};

} // namespace

int main(int argc, char** argv)
{
    const std::string_view name = argc > 1 ? argv[1] : "";
    for (const Command& command : kCommands)
        if (command.name == name)
            return command.run(argc, argv);
    if (name == "--help" || name == "-h" || name == "help") {
        std::fputs(kUsage, stdout);
        return shmlink::tool::kDone;
    }
    if (name == "--version") {
        std::printf("shmlink %.*s\n", static_cast<int>(shmlink::version().size()), shmlink::version().data());
        return shmlink::tool::kDone;
    }
    if (!name.empty())
        std::fprintf(stderr, "shmlink: no command \"%.*s\"\n", static_cast<int>(name.size()), name.data());
    std::fputs(kUsage, stderr);
    return shmlink::tool::kBadUsage;
}
