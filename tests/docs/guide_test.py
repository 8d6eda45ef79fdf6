#!/usr/bin/env python3
"""Keeps docs/guide.md true: its code is the examples' code, its commands run.

    guide_test.py GUIDE SOURCE_ROOT BUILD_ROOT

- A ```cpp (or ```cmake, ```meson, ```python) block must follow a line `<!-- code: FILE REGION -->` and equal,
  line for line (indentation removed), the lines of FILE (under SOURCE_ROOT)
  between `// guide: REGION` and `// guide: end` (`#` for cmake, meson and python).
- The ```sh blocks run in order, as one bash script with `set -e`, in a
  scratch directory where `build` is BUILD_ROOT; a block after
  `<!-- not run: why -->` is skipped (installing and building: CI does it).
  The guide's socket and segment paths are replaced by fresh ones.
- Every line of a ```text block after a command block must appear in what
  the commands printed; `...` matches anything and runs of blanks match any.
"""

import os
import re
import subprocess
import sys
import tempfile
import textwrap

FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(guide):
    """(language, lines, the comment line before it or "") for each fenced block."""
    lines = open(guide).read().split("\n")
    found, i, comment = [], 0, ""
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            found.append((opening.group(1), lines[i + 1:end], comment))
            i, comment = end + 1, ""
            continue
        if lines[i].startswith("<!--"):
            comment = lines[i]
        elif lines[i].strip():
            comment = ""
        i += 1
    return found


# Languages whose blocks are cut from a file, and how that file marks a region.
CODE = {"cpp": "//", "cmake": "#", "meson": "#", "python": "#"}


def region(path, name, comment="//"):
    lines = open(path).read().split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == f"{comment} guide: {name}")
    except StopIteration:
        raise AssertionError(f"{path} has no region '{comment} guide: {name}'")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == f"{comment} guide: end")
    return textwrap.dedent("\n".join(lines[start + 1:end])).split("\n")


def pattern(line):
    parts = [re.escape(p) for p in " ".join(line.split()).split("...")]
    return re.compile("^" + ".*".join(parts) + "$")


def main(guide, source_root, build_root):
    failures = []
    script, expected = [], []
    previous_was_command = False
    for language, lines, comment in blocks(guide):
        if language in CODE:
            marker = re.match(r"<!-- code: (\S+) (\S+) -->", comment)
            if not marker:
                failures.append(f"a {language} block without '<!-- code: FILE REGION -->': {lines[0]}")
                continue
            source = region(os.path.join(source_root, marker.group(1)), marker.group(2), CODE[language])
            if source != lines:
                failures.append(f"the block of {marker.group(1)} {marker.group(2)} differs from the code:\n"
                                + "\n".join(f"  guide: {a!r}\n  code:  {b!r}" for a, b in zip(lines, source) if a != b)
                                + ("" if len(lines) == len(source) else f"\n  {len(lines)} lines against {len(source)}"))
        elif language == "sh":
            previous_was_command = not comment.startswith("<!-- not run")
            if previous_was_command:
                script.extend(lines)
        elif language == "text" and previous_was_command:
            expected.extend(line for line in lines if line.strip())
        else:
            previous_was_command = False
        if language in CODE:
            previous_was_command = False

    scratch = tempfile.mkdtemp(prefix="shmlink-guide-")
    os.symlink(build_root, os.path.join(scratch, "build"))
    tag = f"shmlink-guide-test-{os.getpid()}"
    renames = {"/tmp/guide.sock": f"/tmp/{tag}.sock", "/dev/shm/shmlink-guide": f"/dev/shm/{tag}"}
    # A failed command must not leave the background host waiting for its guests.
    text = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + "\n".join(script)
    for old, new in renames.items():
        text = text.replace(old, new)
    try:
        run = subprocess.run(["bash", "-c", text], cwd=scratch, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        run = subprocess.CompletedProcess(e.cmd, -1, e.stdout or "", f"timed out after {e.timeout} s")
    finally:
        os.remove(os.path.join(scratch, "build"))
        os.rmdir(scratch)
    stdout = run.stdout if isinstance(run.stdout, str) else (run.stdout or b"").decode(errors="replace")
    output = [" ".join(line.split()) for line in stdout.split("\n")]
    for old, new in renames.items():
        output = [line.replace(new, old) for line in output]
    if run.returncode != 0:
        failures.append(f"the guide's commands exited with {run.returncode}:\n{run.stderr}")
    for line in expected:
        if not any(pattern(line).match(out) for out in output):
            failures.append(f"not in the commands' output: {line}")

    print(f"{len(script)} command lines run, {len(expected)} output lines checked")
    if failures:
        print("\n".join(failures))
        print("--- output ---\n" + stdout + str(run.stderr))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
