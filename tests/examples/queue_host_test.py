#!/usr/bin/env python3
"""The main demo runs end to end and prints what the README shows of it.

    queue_host_test.py QUEUE_HOST MESSAGES_PER_GUEST

Runs examples/queue_host (which starts its guests from beside itself) and
checks that it exits with 0, that the rings' line counts every message, and
that the pipes' line follows it with the pipes' count (a quarter of the
rings'), a rate and a positive ratio that agrees with the two
rates it is made of. How large any number is, is not checked: timing
belongs to the benchmarks.
"""

import re
import subprocess
import sys

GUESTS = 3
PIPE_SHARE = 4  # examples/queue_host.cpp kPipeShare
NUMBER = r"(\d+(?:\.\d+)?)"
RINGS = re.compile(rf"^host: (\d+) messages of 64 bytes from 3 guests in {NUMBER} s: {NUMBER} M messages/s, "
                   rf"{NUMBER} MB/s, every guest's messages in order$")
PIPES = re.compile(rf"^host: the same 64-byte messages through pipes, (\d+) from 3 guests in {NUMBER} s: "
                   rf"{NUMBER} M messages/s; shmlink's rings did {NUMBER}x that$")


def main(queue_host, per_guest):
    per_guest = int(per_guest)
    failures = []
    try:
        run = subprocess.run([queue_host, str(per_guest)], capture_output=True, text=True, timeout=150)
        code, stdout, stderr = run.returncode, run.stdout, run.stderr
    except subprocess.TimeoutExpired as e:
        code, stdout, stderr = None, e.stdout or "", f"timed out after {e.timeout} s"
        stdout = stdout if isinstance(stdout, str) else stdout.decode(errors="replace")
    lines = stdout.splitlines()
    if code != 0:
        failures.append(f"queue_host exited with {code}")

    rings = [m for m in map(RINGS.match, lines) if m]
    pipes = [m for m in map(PIPES.match, lines) if m]
    if len(rings) != 1:
        failures.append(f"{len(rings)} lines of the rings' messages/s, not 1")
    if len(pipes) != 1:
        failures.append(f"{len(pipes)} lines of the pipes' messages/s, not 1")
    if len(rings) == 1 and len(pipes) == 1:
        messages, rings_rate = int(rings[0].group(1)), float(rings[0].group(3))
        pipe_messages, pipes_rate, ratio = int(pipes[0].group(1)), float(pipes[0].group(3)), float(pipes[0].group(4))
        if messages != GUESTS * per_guest:
            failures.append(f"the rings carried {messages} messages, not {GUESTS * per_guest}")
        if pipe_messages != GUESTS * (per_guest // PIPE_SHARE):
            failures.append(f"the pipes carried {pipe_messages} messages, not {GUESTS * (per_guest // PIPE_SHARE)}")
        # The rates are printed to two decimals: a slow machine's pipes may print 0.00.
        if not pipes_rate >= 0 or not ratio > 0:
            failures.append(f"the pipes' rate {pipes_rate} must not be negative and the ratio {ratio} must be positive")
        # Printed rounded: the ratio need agree only roughly, and only where the rates have digits enough.
        elif pipes_rate >= 0.1 and rings_rate >= 0.1:
            expected = rings_rate / pipes_rate
            if abs(ratio - expected) > 0.1 * expected + 0.05:
                failures.append(f"the ratio {ratio} is not the rings' {rings_rate} over the pipes' {pipes_rate}")
        if lines.index(pipes[0].group(0)) != lines.index(rings[0].group(0)) + 1:
            failures.append("the pipes' line does not follow the rings' line")
    if not lines or lines[-1] != "host: done":
        failures.append("the last line is not 'host: done'")

    if failures:
        print("\n".join(failures))
        print("--- output ---\n" + stdout + stderr)
        return 1
    print(f"{len(lines)} lines checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
