#!/usr/bin/env python3
"""Runs one libFuzzer target for a bounded time from the checked-in corpus.

    run_fuzzer.py TARGET CORPUS SECONDS

New inputs go to a scratch directory (the checked-in corpus is only read);
a crash leaves its input in the current directory (crash-*) and fails.
Prints the executions done, for docs/reliability.md.
"""

import re
import shutil
import subprocess
import sys
import tempfile


def main(target, corpus, seconds):
    scratch = tempfile.mkdtemp(prefix="shmlink-fuzz-")
    try:
        run = subprocess.run(
            [target, f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1",
             "-max_len=20000", scratch, corpus],
            capture_output=True, text=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    executions = re.search(r"stat::number_of_executed_units:\s*(\d+)", run.stderr)
    print(f"{target}: exit {run.returncode}, "
          f"{executions.group(1) if executions else 'unknown'} executions in {seconds} s")
    if run.returncode != 0:
        print(run.stderr[-20000:])
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
