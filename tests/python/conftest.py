"""Fixtures of the Python suite: fresh socket and segment paths (removed
afterwards), and helper processes with a bounded life. The suite runs from
meson (suite python) with PYTHONPATH at build/python and SHMLINK_ENDPOINT
naming the C++ helper tests/helpers/endpoint."""

import itertools
import os
import select
import subprocess
import sys
import time

import pytest

PEER = os.path.join(os.path.dirname(__file__), "peer.py")
_counter = itertools.count()


def _path(directory, tag, suffix=""):
    return os.path.join(directory, f"shmlink-test-{os.getpid()}-py-{tag}-{next(_counter)}{suffix}")


@pytest.fixture
def socket_path():
    path = _path("/tmp", "sock", ".sock")
    yield path
    if os.path.lexists(path):
        os.unlink(path)


@pytest.fixture
def shm_path():
    path = _path("/dev/shm", "seg")
    yield path
    if os.path.lexists(path):
        os.unlink(path)


class Peer:
    """A helper process (tests/python/peer.py, or the C++ endpoint) whose
    lines are read with a timeout; killed at the end of the test."""

    def __init__(self, argv, **kwargs):
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kwargs)
        self.pending = b""  # read from the pipe, not yet returned: stdout's own buffers are never used

    def line(self, timeout=30):
        """The next line, without its newline ("" once the peer closed its
        stdout with none left). Lines come from our own buffer: a peer that
        writes two lines at once must not leave the second unseen behind a
        wait for the pipe."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError(f"{self.process.args}: no line in {timeout} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                rest, self.pending = self.pending, b""
                return rest.decode().strip()
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode().strip()

    def say(self, text):
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def wait(self, timeout=30):
        return self.process.wait(timeout)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def peers():
    started = []

    def start(*args, python=False, **kwargs):
        argv = [sys.executable, PEER, *args] if python else [os.environ["SHMLINK_ENDPOINT"], *args]
        peer = Peer([str(a) for a in argv], **kwargs)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


def serve(host, until, timeout=30.0):
    """The host's loop: echoes every message to its lane until `until()`."""
    import time

    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the host's loop timed out"
        host.poll()
        message = host.inbox.pop(timeout=0.005)
        if message:
            lane, data = message
            host.send(lane, data)
