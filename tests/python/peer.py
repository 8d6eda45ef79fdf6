"""The Python side of the suite's cross-process tests, one job per run:

  peer.py guest SOCKET NAME COUNT [GENERATION]
                                    joins, sends COUNT messages, checks each echo, then (if
                                    given) waits up to 10 s for the host's grow to GENERATION;
                                    prints "ok lane=L echoed=N size=S generation=G"
  peer.py host SOCKET GUESTS        an echo host until GUESTS guests came and left;
                                    prints "ready", then "ok served=N"
  peer.py hold SOCKET               joins, sends one message, prints "joined lane=L", sleeps
  peer.py fd-reader FD NAME COUNT   attaches by the inherited FD, pops COUNT messages from
                                    SPSC ring NAME; prints "ok sum=S"
"""

import os
import sys
import time

import shmlink


def guest(socket_path, name, count, generation=0):
    with shmlink.Guest.connect(socket_path, name=name, timeout=5, wait_for_host=True) as g:
        for i in range(count):
            message = f"{name} {i} ".encode() * (1 + i % 7)
            if not g.send(message, timeout=10):
                print(f"error send {i} timed out", flush=True)
                return 1
            echo = g.receive(timeout=10)
            if echo != message:
                print(f"error echo {i}: {echo!r}", flush=True)
                return 1
        g.poll()  # the grown notices still queued
        deadline = time.monotonic() + 10
        while g.segment.generation < generation and time.monotonic() < deadline:
            time.sleep(0.01)
            g.poll()
        print(f"ok lane={g.lane} echoed={count} size={g.segment.size_bytes} generation={g.segment.generation}",
              flush=True)
    return 0


def host(socket_path, guests):
    served = 0
    left = []
    with shmlink.Host(socket_path, max_guests=4) as h:
        h.on_leave = left.append
        print("ready", flush=True)
        deadline = time.monotonic() + 60
        while len(left) < guests and time.monotonic() < deadline:
            h.poll()
            message = h.inbox.pop(timeout=0.005)
            if message:
                lane, data = message
                h.send(lane, data)
                served += 1
    print(f"ok served={served}", flush=True)
    return 0 if len(left) == guests else 1


def hold(socket_path):
    g = shmlink.Guest.connect(socket_path, name="holder", timeout=5)
    g.send(b"here", timeout=5)
    print(f"joined lane={g.lane}", flush=True)
    time.sleep(60)
    return 1


def fd_reader(fd, name, count):
    with shmlink.Segment.attach(fd) as segment:
        ring = shmlink.SpscRing.open(segment, name)
        total = 0
        for _ in range(count):
            message = ring.pop(timeout=10)
            if message is None:
                print("error timed out", flush=True)
                return 1
            total += int(message)
        print(f"ok sum={total}", flush=True)
    return 0


if __name__ == "__main__":
    job, args = sys.argv[1], sys.argv[2:]
    if job == "guest":
        sys.exit(guest(args[0], args[1], int(args[2]), int(args[3]) if len(args) > 3 else 0))
    if job == "host":
        sys.exit(host(args[0], int(args[1])))
    if job == "hold":
        sys.exit(hold(args[0]))
    if job == "fd-reader":
        sys.exit(fd_reader(int(args[0]), args[1], int(args[2])))
    sys.exit(f"peer.py: unknown job {job}")
