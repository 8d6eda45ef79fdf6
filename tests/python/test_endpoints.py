"""Hosts and guests across processes: a C++ host with Python guests, a
Python host with C++ and Python guests, grow while attached, a killed
Python guest reclaimed."""

import concurrent.futures
import os
import signal
import time

import pytest

import shmlink
from conftest import serve


def test_cpp_host_python_guests_follow_a_grow(socket_path, peers):
    host = peers("host", socket_path, "-")
    assert host.line() == "ready"
    guests = [peers("guest", socket_path, f"py{i}", 400, 1, python=True) for i in range(2)]
    # Grow once both are attached (each waits for it before it answers).
    deadline = time.monotonic() + 30
    while True:
        host.say("guests")
        if host.line() == "ok guests=2":
            break
        assert time.monotonic() < deadline, "the guests did not join"
        time.sleep(0.01)
    host.say("grow 8388608")
    grown = host.line()
    assert grown.startswith("ok generation=1 size=8388608"), grown
    for guest in guests:
        answer = guest.line(60)
        assert answer.startswith("ok lane="), answer
        assert "echoed=400" in answer
        assert "size=8388608 generation=1" in answer, answer
        assert guest.wait() == 0
    host.say("guests")
    assert host.line() in ("ok guests=0", "ok guests=1", "ok guests=2")  # leaves may still be in flight
    host.say("quit")
    assert host.wait() == 0


def test_python_host_cpp_guests_across_a_grow(socket_path, peers):
    with shmlink.Host(socket_path, max_guests=2) as host:
        joined, left = [], []
        host.on_join = joined.append
        host.on_leave = left.append
        guests = [peers("guest", socket_path, f"cpp{i}", 1000) for i in range(2)]
        served = [0]

        def until():
            if served[0] == 300 and host.segment.generation == 0:
                host.grow(host.segment.size_bytes * 2)
            return len(left) == 2

        deadline = time.monotonic() + 60
        while not until():
            assert time.monotonic() < deadline
            host.poll()
            message = host.inbox.pop(timeout=0.005)
            if message:
                lane, data = message
                assert host.send(lane, data)
                served[0] += 1
        assert sorted(g["name"] for g in joined) == ["cpp0", "cpp1"]
        assert all(g["pid"] > 0 for g in joined)
        for guest in guests:
            answer = guest.line()
            assert "echoed=1000" in answer, answer
            assert f"generation=1 size={host.segment.size_bytes}" in answer, answer
        assert served[0] == 2000
        assert host.guest_count == 0


def test_python_host_and_python_guests_in_other_processes(socket_path, peers):
    host = peers("host", socket_path, 2, python=True)
    assert host.line() == "ready"
    guests = [peers("guest", socket_path, f"g{i}", 300, python=True) for i in range(2)]
    for guest in guests:
        assert "echoed=300" in guest.line(60)
    assert host.line(60) == "ok served=600"
    assert host.wait() == 0


def test_a_killed_python_guest_is_reclaimed_and_its_lane_reused(socket_path, peers):
    with shmlink.Host(socket_path, max_guests=1, reap_interval=0.05) as host:
        left = []
        host.on_leave = left.append
        holder = peers("hold", socket_path, python=True)
        serve(host, lambda: host.guest_count == 1 and host.inbox.stats()["producers"] == 1)
        line = holder.line()
        assert line == "joined lane=0", line
        os.kill(holder.process.pid, signal.SIGKILL)
        holder.wait()
        serve(host, lambda: left and host.inbox.stats()["producers"] == 0, timeout=10)
        assert host.inbox.stats()["dead_producers"] == 1
        # The one lane is free again: a new guest gets it.
        guest = peers("guest", socket_path, "next", 50, python=True)
        serve(host, lambda: len(left) == 2)
        assert "lane=0 echoed=50" in guest.line()


def connect_beside(host, socket_path, name):
    """A guest of `host` in this process: connect() waits for the welcome
    with the GIL released, in a thread, while this thread serves."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        joining = pool.submit(shmlink.Guest.connect, socket_path, name=name, timeout=5)
        serve(host, lambda: joining.done() and host.guest_count == 1)
        return joining.result()


def test_a_guest_sees_its_host_go(socket_path):
    host = shmlink.Host(socket_path)
    guest = connect_beside(host, socket_path, "watcher")
    host.close()
    with pytest.raises(ConnectionError) as gone:
        guest.receive(timeout=5)
    assert isinstance(gone.value, shmlink.Error)
    guest.close()


def test_zero_copy_through_a_guest(socket_path):
    np = pytest.importorskip("numpy")
    with shmlink.Host(socket_path) as host, connect_beside(host, socket_path, "zc") as guest:
        out = guest.outbox.reserve(4096)
        array = np.frombuffer(out, dtype=np.uint32)
        array[:] = np.arange(1024, dtype=np.uint32)  # written in place, in the segment
        del array
        guest.outbox.commit()
        lane, data = host.inbox.pop(timeout=5)
        assert lane == guest.lane
        assert np.array_equal(np.frombuffer(data, dtype=np.uint32), np.arange(1024, dtype=np.uint32))
        assert host.send(lane, b"reply")
        view = guest.inbox.peek(timeout=5)
        assert bytes(view) == b"reply"
        guest.inbox.release()
        with pytest.raises(ValueError):
            view[0]


def test_host_callbacks_may_close_it_and_a_host_in_a_cycle_is_collected(socket_path):
    import gc

    host = shmlink.Host(socket_path)
    host.on_join = lambda guest: host.close()  # a cycle: the callback refers to its host
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        joining = pool.submit(shmlink.Guest.connect, socket_path, name="closer", timeout=5)
        deadline = time.monotonic() + 10
        while not host.closed:
            assert time.monotonic() < deadline
            host.poll()
            time.sleep(0.001)
        guest = joining.result()
    assert not os.path.exists(socket_path)  # the closed host removed its socket
    with pytest.raises(ConnectionError):
        guest.receive(5)
    guest.close()
    # A host dropped in a cycle with its callback: the collector ends it, socket and all.
    cyclic = shmlink.Host(socket_path)
    cyclic.on_leave = lambda guest: cyclic.poll()
    del cyclic
    gc.collect()
    assert not os.path.exists(socket_path)


def test_endpoint_rings_expose_their_own_side_only(socket_path):
    with shmlink.Host(socket_path) as host, connect_beside(host, socket_path, "sides") as guest:
        with pytest.raises(RuntimeError):
            host.outbox(guest.lane).try_pop()
        with pytest.raises(RuntimeError):
            guest.inbox.try_push(b"into my own inbox")
        reserved = host.outbox(guest.lane).reserve(4)
        with pytest.raises(RuntimeError):
            host.send(guest.lane, b"over a reservation")
        reserved[:] = b"mine"
        del reserved
        host.outbox(guest.lane).commit()
        assert guest.receive(5) == b"mine"
