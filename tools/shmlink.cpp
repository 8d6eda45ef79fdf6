// The shmlink command-line tool: looks inside segments, cleans up after dead
// creators, and runs the benchmarks. Each subcommand is in a file of its own
// (tools/commands.hpp) and answers --help.
#include <shmlink/core/version.hpp>

#include "tools/commands.hpp"

#include <cstdio>
#include <string_view>

namespace {

constexpr char kUsage[] = R"(usage: shmlink COMMAND [ARGS...]

  inspect PATH|--fd N [--json]   a segment's header, directory and rings
  ls [DIR]                       the shmlink segments in DIR (default /dev/shm)
  gc [DIR] [--yes]               removes the segments whose creator is gone
  watch PATH [--interval S]      fill levels and rates, refreshed until Ctrl-C
  bench [--quick] [--json FILE] [--plot FILE.svg|.png]
                                 the benchmarks of bench/, with ratios and a plot

  --version                      the version of the shmlink libraries it runs with

`shmlink COMMAND --help` tells more. inspect, ls and watch only read.
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
