#!/usr/bin/env python3
"""shmlink as another project uses it: installs the build into a temporary
prefix (meson install --destdir), then

  - compiles every installed header on its own with -Wall -Wextra -Werror;
  - builds tests/install/consumer.cpp with pkg-config, shared and static
    (the static libraries in the order pkg-config prints), with CMake
    find_package (shared and static), and as a meson project with a copy of
    this tree as its subproject, which must build the libraries only;
  - runs each consumer (a host and a guest process exchanging messages)
    without LD_LIBRARY_PATH, and the installed tool (`shmlink --version`).

  - imports the installed Python package, when PYTHON (the build's) is given.

  install_test.py SOURCE_ROOT BUILD_ROOT [PYTHON]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE, BUILD = sys.argv[1], sys.argv[2]
PYTHON = sys.argv[3] if len(sys.argv) > 3 else None
HERE = os.path.join(SOURCE, "tests", "install")
STRICT = ["-std=c++20", "-Wall", "-Wextra", "-Werror"]
failures = []


def run(cmd, timeout=600, env=None, cwd=None):
    """Runs cmd; returns its stdout, or records a failure and returns None."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if result.returncode != 0:
        failures.append(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return None
    return result.stdout


def check(condition, what):
    if not condition:
        failures.append(what)
    print(("ok   " if condition else "FAIL ") + what, flush=True)


def no_library_path():
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    return env


def needed(binary):
    out = run(["readelf", "-d", binary]) or ""
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def run_consumer(binary, tmp, tag):
    out = run([binary, os.path.join(tmp, tag + ".sock"), "200"], timeout=60, env=no_library_path())
    check(out is not None and out.startswith("ok echoed=200 version="), f"{tag}: host and guest exchanged 200 messages")


def option(options, name):
    return next(o["value"] for o in options if o["name"] == name)


def main():
    tmp = tempfile.mkdtemp(prefix=f"shmlink-test-{os.getpid()}-install-", dir="/tmp")
    try:
        options = json.loads(run(["meson", "introspect", BUILD, "--buildoptions"]))
        dest = os.path.join(tmp, "dest")
        run(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", dest])
        prefix = dest + option(options, "prefix")
        libdir = os.path.join(prefix, option(options, "libdir"))
        includedir = os.path.join(prefix, option(options, "includedir"))

        # The installed tool finds its libraries through its RUNPATH.
        out = run([os.path.join(prefix, "bin", "shmlink"), "--version"], env=no_library_path())
        check(out is not None and out.startswith("shmlink "), "the installed shmlink runs without LD_LIBRARY_PATH")

        # Bash completion, where bash-completion loads it from.
        completion = os.path.join(prefix, option(options, "datadir"), "bash-completion", "completions", "shmlink")
        check(os.path.isfile(completion) and "complete -F _shmlink shmlink" in open(completion).read(),
              "the bash completion is installed as share/bash-completion/completions/shmlink")

        # Every installed header compiles on its own.
        headers = sorted(os.path.relpath(os.path.join(d, f), includedir)
                         for d, _, fs in os.walk(os.path.join(includedir, "shmlink")) for f in fs if f.endswith(".hpp"))
        bad = [h for h in headers
               if subprocess.run(["c++", *STRICT, "-fsyntax-only", "-I", includedir, "-x", "c++", "-"],
                                 input=f"#include <{h}>\n", capture_output=True, text=True).returncode != 0]
        check(len(headers) > 20 and not bad, f"each of the {len(headers)} installed headers compiles alone"
              + (f" (not: {', '.join(bad)})" if bad else ""))

        # pkg-config, shared: RUNPATH to the prefix only, as a user would link.
        # The files are under dest, as if dest were the root.
        pc_env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"), PKG_CONFIG_SYSROOT_DIR=dest)
        flags = run(["pkg-config", "--cflags", "--libs", "shmlink"], env=pc_env)
        if flags is not None:
            binary = os.path.join(tmp, "consumer-pkgconfig")
            if run(["c++", *STRICT, os.path.join(HERE, "consumer.cpp"), "-o", binary, *flags.split(),
                    f"-Wl,-rpath,{libdir}"]) is not None:
                run_consumer(binary, tmp, "pkg-config")
        # pkg-config --static: the static libraries, in the order it prints them.
        libs = run(["pkg-config", "--static", "--libs", "shmlink"], env=pc_env)
        cflags = run(["pkg-config", "--cflags", "shmlink"], env=pc_env)
        if libs is not None and cflags is not None:
            order = [a for a in libs.split() if a.startswith("-lshmlink-")]
            check(order[:3] == ["-lshmlink-transport", "-lshmlink-ipc", "-lshmlink-core"],
                  "pkg-config --static lists transport, ipc, core in that order: " + " ".join(order))
            static_libs = [os.path.join(libdir, "lib" + a[2:] + ".a") if a.startswith("-lshmlink-") else a
                           for a in libs.split()]
            binary = os.path.join(tmp, "consumer-static")
            if run(["c++", *STRICT, os.path.join(HERE, "consumer.cpp"), "-o", binary, *cflags.split(),
                    *static_libs]) is not None:
                check(not any("shmlink" in n for n in needed(binary)), "the static consumer needs no libshmlink")
                run_consumer(binary, tmp, "pkg-config-static")

        # CMake: find_package(shmlink CONFIG) and shmlink::shmlink.
        for variant, extra in (("shared", []), ("static", ["-Dshmlink_USE_STATIC_LIBS=ON"])):
            cmake_build = os.path.join(tmp, "cmake-" + variant)
            if run(["cmake", "-S", HERE, "-B", cmake_build, "-DCMAKE_PREFIX_PATH=" + prefix, *extra]) is None:
                continue
            if run(["cmake", "--build", cmake_build]) is None:
                continue
            binary = os.path.join(cmake_build, "consumer")
            if variant == "static":
                check(not any("shmlink" in n for n in needed(binary)), "the CMake static consumer needs no libshmlink")
            run_consumer(binary, tmp, "cmake-" + variant)

        if PYTHON:
            packages = [d for d, _, fs in os.walk(prefix) if os.path.basename(d) == "shmlink" and "__init__.py" in fs]
            check(len(packages) == 1, "the Python package is installed once: " + ", ".join(packages))
            if packages:
                out = run([PYTHON, "-c", "import shmlink; s = shmlink.Segment.create_anonymous(1 << 20); "
                           "r = shmlink.SpscRing.create(s, 'r', 4096); r.try_push(b'hi'); "
                           "print(shmlink.__file__, r.try_pop().decode(), shmlink.version)"],
                          env=dict(no_library_path(), PYTHONPATH=os.path.dirname(packages[0]), PYTHONDONTWRITEBYTECODE="1"),
                          cwd=tmp)
                check(out is not None and out.split()[0].startswith(packages[0]) and out.split()[1] == "hi",
                      f"import shmlink works from the installed prefix: {out!r}")

        meson_subproject(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("\n".join(["", "FAILURES:"] + failures), file=sys.stderr)
        return 1
    return 0


def copy_tree(target):
    """This source tree as a user vendors it: its files, no build directories."""
    listed = subprocess.run(["git", "-C", SOURCE, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            source = os.path.join(SOURCE, name)
            if os.path.isfile(source):
                os.makedirs(os.path.join(target, os.path.dirname(name)), exist_ok=True)
                shutil.copy2(source, os.path.join(target, name))
    else:
        shutil.copytree(SOURCE, target, ignore=shutil.ignore_patterns("build*", ".git"))


def meson_subproject(tmp):
    project = os.path.join(tmp, "meson-user")
    os.makedirs(os.path.join(project, "subprojects"))
    shutil.copy(os.path.join(HERE, "subproject", "meson.build"), project)
    shutil.copy(os.path.join(HERE, "consumer.cpp"), project)
    copy_tree(os.path.join(project, "subprojects", "shmlink"))
    build = os.path.join(project, "build")
    prefix = os.path.join(tmp, "meson-prefix")
    if run(["meson", "setup", build, project, "--prefix", prefix, "-Dbuildtype=debug"]) is None:
        return
    targets = json.loads(run(["meson", "introspect", build, "--targets"]) or "[]")
    names = sorted({t["name"] for t in targets})
    check(names == ["consumer", "shmlink-core", "shmlink-ipc", "shmlink-transport"],
          "as a subproject, shmlink builds its three libraries only: " + ", ".join(names))
    tests = json.loads(run(["meson", "introspect", build, "--tests"]) or "[]")
    check(tests == [], f"as a subproject, shmlink adds no tests to its parent ({len(tests)})")
    if run(["ninja", "-C", build]) is None:
        return
    run_consumer(os.path.join(build, "consumer"), tmp, "meson-subproject")
    if run(["meson", "install", "-C", build, "--quiet"]) is None:
        return
    installed = sorted(os.path.relpath(os.path.join(d, f), prefix) for d, _, fs in os.walk(prefix) for f in fs)
    extra = [f for f in installed if not (f == "bin/consumer" or f.startswith("include/shmlink/")
                                          or "/libshmlink-" in f or "/pkgconfig/shmlink" in f
                                          or "/cmake/shmlink/" in f)]
    check(installed and not extra, "as a subproject, shmlink installs only what a library user needs"
          + (f" (also: {', '.join(extra)})" if extra else ""))


if __name__ == "__main__":
    sys.exit(main())
