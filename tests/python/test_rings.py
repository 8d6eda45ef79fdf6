"""Segments and rings from Python: fd passing to another process, zero-copy
views that raise instead of dangling, and bad input that raises instead of
crashing."""

import os
import subprocess
import time
import sys

import pytest

import shmlink
from conftest import PEER


def test_a_segment_passed_by_fd_to_another_process(peers):
    with shmlink.Segment.create_anonymous(1 << 20) as segment:
        ring = shmlink.SpscRing.create(segment, "numbers", 4096)
        fd = segment.fileno()
        reader = subprocess.Popen([sys.executable, PEER, "fd-reader", str(fd), "numbers", "2000"], pass_fds=[fd],
                                  stdout=subprocess.PIPE, text=True)
        try:
            for i in range(2000):
                assert ring.push(str(i).encode(), timeout=10)  # the ring wraps: the reader must keep up
            out, _ = reader.communicate(timeout=30)
        finally:
            reader.kill()
        assert out.strip() == f"ok sum={sum(range(2000))}"


def test_grow_is_seen_by_an_attached_segment(shm_path):
    with shmlink.Segment.create(shm_path, 1 << 20, max_size_bytes=16 << 20) as host:
        with shmlink.Segment.attach(shm_path) as guest:
            host.grow(4 << 20)
            assert guest.refresh()
            assert guest.size_bytes == 4 << 20
            assert guest.generation == host.generation == 1
            assert guest.info()["size_bytes"] == 4 << 20


def test_mpsc_producers_and_mpmc_items():
    with shmlink.Segment.create_anonymous(1 << 20) as segment:
        inbox = shmlink.MpscRing.create(segment, "in", 1024, 2)
        a = shmlink.MpscProducer.open(segment, "in")
        b = shmlink.MpscProducer.open(segment, "in")
        with pytest.raises(shmlink.Error):
            shmlink.MpscProducer.open(segment, "in")  # no free lane
        assert a.try_push(b"from a") and b.try_push(b"from b")
        got = {inbox.pop(timeout=1), inbox.pop(timeout=1)}
        assert got == {(a.lane, b"from a"), (b.lane, b"from b")}
        b.close()  # its lane comes back
        assert inbox.reap() == 1
        shmlink.MpscProducer.open(segment, "in").close()
        queue = shmlink.MpmcQueue.create(segment, "q", 8, 16)
        for i in range(8):
            assert queue.try_push(i.to_bytes(16, "little"))
        assert not queue.try_push(bytes(16))  # full
        assert [int.from_bytes(queue.pop(timeout=1), "little") for _ in range(8)] == list(range(8))
        assert queue.pop(timeout=0.01) is None


def test_views_raise_once_released_and_release_waits_for_numpy():
    np = pytest.importorskip("numpy")
    with shmlink.Segment.create_anonymous(1 << 20) as segment:
        ring = shmlink.SpscRing.create(segment, "r", 4096)
        ring.try_push(bytes(range(16)))
        view = ring.peek()
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1
        array = np.frombuffer(view, dtype=np.uint8)
        part = view[4:8]
        with pytest.raises(BufferError):
            ring.release()  # the array still reads the message in place
        del array
        with pytest.raises(BufferError):
            ring.release()  # and so does the slice
        del part
        ring.release()
        with pytest.raises(ValueError):
            view[0]
        assert ring.peek() is None
        # Closing the segment ends the loans first: refused while one is viewed.
        ring.try_push(b"x")
        held = np.frombuffer(ring.peek(), dtype=np.uint8)
        with pytest.raises(BufferError):
            segment.close()
        del held
    assert ring.closed
    with pytest.raises(ValueError):
        ring.try_pop()


def test_bad_input_raises(tmp_path_factory, shm_path):
    with open(shm_path, "wb") as foreign:
        foreign.write(b"not a segment" * 1000)
    with pytest.raises(shmlink.Error) as foreign_error:
        shmlink.Segment.attach(shm_path)
    assert "not a shmlink segment" in str(foreign_error.value) or foreign_error.value.category == "shmlink"
    with pytest.raises(FileNotFoundError):
        shmlink.Segment.attach("/dev/shm/shmlink-test-no-such-segment")
    null = os.open("/dev/null", os.O_RDONLY)
    with pytest.raises(shmlink.Error, match="character device"):
        shmlink.Segment.attach(null)  # never blocks on, nor maps, a file of another type
    os.close(null)
    with pytest.raises(shmlink.Error):
        shmlink.Guest.connect(shm_path, timeout=0.2)  # a regular file, not a socket
    with shmlink.Segment.create_anonymous(1 << 20) as segment:
        with pytest.raises(shmlink.Error):
            shmlink.SpscRing.create(segment, "odd", 1000)  # not a power of two
        ring = shmlink.SpscRing.create(segment, "r", 1024)
        with pytest.raises(ValueError):
            ring.try_push(bytes(2000))  # longer than the ring's largest message
        with pytest.raises(shmlink.Error):
            shmlink.MpscRing.open(segment, "r")  # an SPSC ring
        with pytest.raises(shmlink.Error):
            shmlink.MpmcQueue.create(segment, "q", 8, 24)  # no queue of 24-byte items from Python
        queue = shmlink.MpmcQueue.create(segment, "q", 8, 8)
        with pytest.raises(ValueError):
            queue.try_push(b"short")
        with pytest.raises(RuntimeError):
            ring.commit()  # nothing reserved
        with pytest.raises(TypeError):
            ring.try_push("text is not bytes")


def test_a_loan_survives_every_way_to_reach_its_bytes_twice():
    with shmlink.Segment.create_anonymous(1 << 20) as segment:
        ring = shmlink.SpscRing.create(segment, "r", 4096)
        ring.try_push(b"first message")
        part = ring.peek()[0:5]  # the memoryview dies, its slice lives on
        again = ring.peek()  # the same message, the same buffer under it
        with pytest.raises(BufferError):
            ring.release()
        assert bytes(part) == b"first"
        del part
        ring.release()
        with pytest.raises(ValueError):
            again[0]
        # A memoryview the user released themselves: peek() makes another.
        ring.try_push(b"second")
        with ring.peek() as view:
            assert bytes(view) == b"second"
        assert bytes(ring.peek()) == b"second"
        ring.release()
        # Producer and consumer sides lend separately, and a push never
        # reuses the bytes of a reservation that is not committed.
        reserved = ring.reserve(8)
        with pytest.raises(RuntimeError):
            ring.try_push(b"over it")
        assert ring.peek() is None
        reserved[:] = b"reserved"
        ring.commit()
        assert ring.pop(1.0) == b"reserved"


def test_closing_refuses_while_another_thread_waits_in_a_ring():
    import threading

    segment = shmlink.Segment.create_anonymous(1 << 20)
    ring = shmlink.SpscRing.create(segment, "r", 4096)
    started = threading.Event()
    got = []

    def wait():
        started.set()
        try:
            got.append(ring.pop(1.0))
        except ValueError as e:  # the segment was closed before the call began
            got.append(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    started.wait()
    time.sleep(0.05)  # most often the waiter is inside pop() by now; either order is checked below
    try:
        segment.close()
        closed_first = True
    except RuntimeError:  # refused: the waiter holds the ring inside pop()
        closed_first = False
    waiter.join()
    if closed_first:
        # Closed before pop() began: the call refuses instead of touching the unmapped ring.
        assert len(got) == 1 and isinstance(got[0], ValueError) and "closed" in str(got[0]), got
    else:
        segment.close()
        assert got == [None]


def test_a_segment_argument_that_is_not_a_segment():
    with pytest.raises(TypeError):
        shmlink.SpscRing.create(None, "r", 4096)
    with pytest.raises(TypeError):
        shmlink.MpscProducer.open(42, "r")
    with pytest.raises(ValueError):
        shmlink.SpscRing.create(shmlink.Segment.create_anonymous(1 << 20), "r", 4096).pop(float("nan"))
