#!/usr/bin/env python3
"""A guest of a shmlink host, written from docs/protocol.md and docs/layout.md alone.

    python_guest.py SOCKET COUNT [MODE]

Connects to the host listening at SOCKET, says hello, attaches the segment
whose fd comes with the welcome, checks its header and directory, takes the
lane of host.inbox the welcome holds for it (its own file description, the
lane byte's lock, the owner word), says joined, and then sends COUNT
messages into its lane and reads each one's echo from its ring guest.<lane>,
following every grown frame meanwhile. Then it leaves as the docs say:
lane to draining, lock released, goodbye, close. Standard library only.
Prints one line: "ok key=value ..." or "error: reason" (exit 1).

MODE "wrong-token" tries the held lane with a token that is not the
welcome's, finds that the lane is not its own (and leaves it alone, as the
docs say), says joined anyway, and expects the host to drop it: the docs
promise that a joined from a guest that did not take its lane drops it.

Message i has (i * 37) % (largest + 1) bytes, largest being the largest
message both its lane and guest.<lane> take; byte j of it is (i + j) & 0xff.

Shared fields are read and written through ctypes as single aligned loads
and stores, whose ordering relies on x86-64 (loads are not reordered with
loads, stores not with stores: every load is an acquire, every store a
release). The read-modify-writes the docs ask for are the kernel's
(FUTEX_WAKE_OP), as "Waiting words" describes for a side without atomics;
the owner word is written with plain stores while the lane's lock is held,
as "Lane ownership" allows.
"""

import array
import ctypes
import errno
import fcntl
import os
import platform
import select
import socket
import stat
import struct
import sys
import time

# docs/protocol.md
FRAME_MAGIC = 0x50434C53
PROTOCOL_VERSION = 4
FRAME_HEADER = struct.Struct("<IHHII")  # magic, version, type, body_bytes, fd_count
MAX_BODY = 4096 - FRAME_HEADER.size
HELLO, WELCOME, GROWN, GOODBYE, ERROR, JOINED = 1, 2, 3, 4, 5, 6
WELCOME_FIXED = struct.Struct("<IIQQQI")  # lane, token, size, max size, generation, entry count: 36 bytes
WELCOME_ENTRY = struct.Struct("<40sHHIQQ")  # name, kind, object version, reserved, offset, length

# docs/layout.md
SEGMENT_MAGIC = 0x004B4E494C4D4853
ABI_TAG = (256 << 32) | (64 << 16) | 0x1234
HEADER = struct.Struct("<QIIQQQQQQIIIIQ")  # SegmentHeader up to data_used_bytes
SIZE_BYTES, DIRECTORY_COUNT = 32, 76        # atomic header fields
ENTRY_FIELDS = struct.Struct("<HHIQQ")     # DirectoryEntry after its 40-byte name
SPSC_KIND, MPSC_KIND = 0x0101, 0x0102
SPSC_CONTROL, MPSC_CONTROL, LANE_CONTROL = 384, 256, 512
# In an SpscRingControl: the producer's block, then the consumer's.
CAPACITY, TAIL, READABLE_SEQ, READABLE_SLEEPERS = 0, 128, 136, 140
HEAD, WRITABLE_SEQ, WRITABLE_SLEEPERS = 256, 264, 268
MPSC_READABLE_SEQ = 128  # in the MpscRingControl: the consumer's one futex word
MPSC_LANES_TAKEN = 132   # and the count of lanes ever taken, bumped after each take
LANE_RING = 128          # a lane's SpscRingControl, after its owner word's block
FREE, OWNED, DRAINING, HELD = 0, 1, 2, 3
RECORD = struct.Struct("<II")  # length, type
MESSAGE, PADDING = 1, 2

# Linux x86-64
SYS_FUTEX = 202
SYS_MEMBARRIER = 324                 # x86-64, as SYS_FUTEX
MEMBARRIER_CMD_GLOBAL_EXPEDITED = 2
FUTEX_WAKE, FUTEX_WAKE_OP, FUTEX_WAIT_BITSET = 1, 5, 9
FUTEX_BITSET_MATCH_ANY = 0xFFFFFFFF
INT_MAX = 0x7FFFFFFF
ADD_ONE, SUBTRACT_ONE = 0x10001000, 0x10FFF000  # FUTEX_OP(FUTEX_OP_ADD, +1 / -1, FUTEX_OP_CMP_EQ, 0)
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE = 0x1, 0x2, 0x10, 0x20, 0x4000
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
FLOCK = struct.Struct("@hhqqi4x")  # struct flock: l_type, l_whence, l_start, l_len, l_pid

LANE_LOCK_TRIES = 500  # a millisecond apart, as the docs' "Taking the lane" says this library does
WATCH_SECONDS = 0.05   # how long one futex wait lasts before the socket is looked at again


class Refused(Exception):
    pass


class HungUp(Exception):
    pass


libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.syscall.restype = ctypes.c_long
MAP_FAILED = ctypes.c_void_p(-1).value


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def load32(address):
    return ctypes.c_uint32.from_address(address).value


def load64(address):
    return ctypes.c_uint64.from_address(address).value


def store32(address, value):
    ctypes.c_uint32.from_address(address).value = value & 0xFFFFFFFF


def store64(address, value):
    ctypes.c_uint64.from_address(address).value = value


def header_word(length, kind):
    """A record header as the one 64-bit word it is stored as."""
    return int.from_bytes(RECORD.pack(length, kind), "little")


def monotonic():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def futex(address, op, value, timeout, address2, value3):
    rc = libc.syscall(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_long(op), ctypes.c_long(value),
                      timeout, ctypes.c_void_p(address2), ctypes.c_long(value3))
    return 0 if rc >= 0 else ctypes.get_errno()


def kernel_add(address, operation):
    """An atomic add on a 32-bit word, done by the kernel (FUTEX_WAKE_OP); wakes nobody."""
    error = futex(address, FUTEX_WAKE_OP, 0, None, address, operation)
    if error:
        raise OSError(error, f"futex FUTEX_WAKE_OP: {os.strerror(error)}")


def sleeper_fence():
    """docs/layout.md, "Waiting words": the sleeper's half of the fence.
    A registered waker (the host) reads our count with a plain load after
    its store; membarrier makes that load see our increment, or our check
    see its store. Without it, sleep in short slices (as the library does)."""
    return libc.syscall(ctypes.c_long(SYS_MEMBARRIER), ctypes.c_long(MEMBARRIER_CMD_GLOBAL_EXPEDITED),
                        ctypes.c_long(0), ctypes.c_long(0)) == 0


def wake_all(address):
    futex(address, FUTEX_WAKE, INT_MAX, None, 0, 0)


class Waits:
    """Counts futex waits, and those that ended by a wake-up (0) rather than EAGAIN or the deadline."""
    slept = 0
    woken = 0


def wait_on(seq, sleepers, ready, deadline):
    """docs/layout.md, "Waiting words": sleeps on `seq` until ready() or the
    CLOCK_MONOTONIC `deadline`; returns ready()."""
    while not ready():
        if monotonic() >= deadline:
            return False
        seen = load32(seq)
        kernel_add(sleepers, ADD_ONE)  # a read-modify-write: ordered before the check below
        fenced = sleeper_fence()
        if ready():
            kernel_add(sleepers, SUBTRACT_ONE)
            return True
        until = deadline if fenced else min(deadline, monotonic() + 0.001)
        at = Timespec(int(until), int((until - int(until)) * 1e9))
        Waits.slept += 1
        rc = futex(seq, FUTEX_WAIT_BITSET, seen, ctypes.byref(at), 0, FUTEX_BITSET_MATCH_ANY)
        Waits.woken += rc == 0
        kernel_add(sleepers, SUBTRACT_ONE)
        if rc not in (0, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT):
            raise OSError(rc, f"futex FUTEX_WAIT_BITSET: {os.strerror(rc)}")
    return True


# ---- the control socket (docs/protocol.md) ----

class Control:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.have = bytearray()
        self.need = FRAME_HEADER.size
        self.header = None
        self.fds = []

    def send(self, frame_type, body=b""):
        self.sock.sendall(FRAME_HEADER.pack(FRAME_MAGIC, PROTOCOL_VERSION, frame_type, len(body), 0) + body)

    def _fail(self, why):
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        raise Refused(f"malformed frame from the host: {why}")

    def receive(self, timeout):
        """The next whole frame as (type, body, fds), or None when none came within `timeout` seconds."""
        deadline = monotonic() + timeout
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        while True:
            left = deadline - monotonic()
            if not poller.poll(max(0, int(left * 1000))):
                if left <= 0:
                    return None
                continue
            # Only the bytes this frame still needs: the next frame's fds must not come with them.
            data, ancillary, flags, _ = self.sock.recvmsg(self.need - len(self.have), socket.CMSG_SPACE(4 * 4),
                                                          socket.MSG_CMSG_CLOEXEC)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
                    self.fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                self._fail("the kernel dropped fds that came with it (MSG_CTRUNC)")
            if not data:
                if self.have:
                    self._fail("the host hung up in the middle of a frame")
                raise HungUp()
            self.have += data
            if len(self.have) < self.need:
                continue
            if self.header is None:
                magic, version, frame_type, body_bytes, fd_count = FRAME_HEADER.unpack(self.have)
                if magic != FRAME_MAGIC:
                    self._fail("bad magic")
                if version != PROTOCOL_VERSION:
                    self._fail(f"protocol version {version}")
                if not HELLO <= frame_type <= JOINED or body_bytes > MAX_BODY:
                    self._fail(f"type {frame_type} of {body_bytes} bytes")
                if fd_count != (1 if frame_type == WELCOME else 0):
                    self._fail(f"type {frame_type} declares {fd_count} fds")
                self.header = (frame_type, fd_count)
                self.need += body_bytes
                if len(self.have) < self.need:
                    continue
            frame_type, fd_count = self.header
            if len(self.fds) != fd_count:
                self._fail(f"type {frame_type} came with {len(self.fds)} fds, not {fd_count}")
            frame = (frame_type, bytes(self.have[FRAME_HEADER.size:]), self.fds)
            self.have, self.need, self.header, self.fds = bytearray(), FRAME_HEADER.size, None, []
            return frame

    def close(self):
        self.sock.close()


def decode_welcome(body):
    if len(body) < WELCOME_FIXED.size:
        raise Refused(f"welcome of {len(body)} bytes")
    lane, token, size, max_size, generation, count = WELCOME_FIXED.unpack_from(body)
    if count > 60 or len(body) != WELCOME_FIXED.size + WELCOME_ENTRY.size * count:
        raise Refused(f"welcome of {len(body)} bytes with {count} entries")
    names = []
    for i in range(count):
        name, _kind, _version, reserved, _offset, _length = WELCOME_ENTRY.unpack_from(body, 36 + 64 * i)
        end = name.find(b"\0")
        if end <= 0 or name[end:].strip(b"\0") or reserved != 0:
            raise Refused(f"welcome entry {i}: bad name or non-zero reserved bytes")
        names.append(name[:end].decode())
    return {"lane": lane, "token": token, "size": size, "max_size": max_size, "generation": generation,
            "names": names}


# ---- the segment (docs/layout.md, "Rules for a reader") ----

class Segment:
    def __init__(self, fd):
        self.fd = fd
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("the welcome's fd is not a regular file")
        if st.st_size < 4096:
            raise Refused(f"the segment file has {st.st_size} bytes")
        (magic, version, header_bytes, abi, max_size, size, _generation, _nonce, _start, _creator,
         directory_offset, directory_capacity, directory_count, used) = HEADER.unpack(os.pread(fd, HEADER.size, 0))
        self.page = os.sysconf("SC_PAGESIZE")
        if magic != SEGMENT_MAGIC or version != 1 or abi != ABI_TAG:
            raise Refused(f"not a segment of layout 1 (magic {magic:#x}, version {version}, abi tag {abi:#x})")
        if (header_bytes, directory_offset, directory_capacity) != (4096, 256, 60):
            raise Refused("corrupt placement fields")
        if max_size % self.page or max_size > 1 << 40:
            raise Refused(f"maximum size {max_size}")
        if size % self.page or size < 4096 or size > max_size or size > st.st_size or directory_count > 60:
            raise Refused(f"size {size} of {max_size}, file {st.st_size}, {directory_count} entries")
        if not header_bytes <= used <= size:
            raise Refused(f"data_used_bytes {used} outside [{header_bytes}, {size}]")
        self.max_size = max_size
        # Address space for the largest the segment may grow to: its base never moves.
        self.base = libc.mmap(None, max_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if self.base in (None, MAP_FAILED):
            raise OSError(ctypes.get_errno(), "reserve the segment's address space")
        self.mapped = 0
        self._map(size)

    def _map(self, size):
        at = libc.mmap(self.base + self.mapped, size - self.mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                       self.fd, self.mapped)
        if at != self.base + self.mapped:
            raise OSError(ctypes.get_errno(), f"map [{self.mapped}, {size}) of the segment")
        self.mapped = size

    def follow_growth(self):
        """After a grown frame: maps up to the header's size_bytes, not the frame's."""
        size = load64(self.base + SIZE_BYTES)
        if size == self.mapped:
            return
        if size < self.mapped or size % self.page or size > self.max_size or size > os.fstat(self.fd).st_size:
            raise Refused(f"the header's size {size} cannot be followed from {self.mapped}")
        self._map(size)

    def objects(self):
        count = load32(self.base + DIRECTORY_COUNT)
        if count > 60:
            raise Refused(f"directory count {count}")
        found = {}
        for i in range(count):
            at = self.base + 256 + 64 * i
            state = load32(at + 44)  # before the other fields: they are final once it is 1
            raw = ctypes.string_at(at, 64)
            kind, version, _state, offset, length = ENTRY_FIELDS.unpack_from(raw, 40)
            end = raw.find(b"\0", 0, 40)
            if end <= 0 or state != 1 or length < 1 or offset % 8 or offset < 4096 or offset + length > self.mapped:
                raise Refused(f"directory entry {i}: state {state}, [{offset}, +{length})")
            found[raw[:end].decode()] = (kind, version, offset, length)
        return found

    def close(self):
        libc.munmap(ctypes.c_void_p(self.base), self.max_size)
        os.close(self.fd)


def valid_capacity(capacity):
    return 256 <= capacity <= 1 << 31 and capacity & (capacity - 1) == 0


def record_bytes(length):
    return (8 + length + 7) & ~7


# ---- guest.<lane>: an SPSC ring the host writes and this guest reads ----

class SpscConsumer:
    def __init__(self, segment, kind, version, offset, length):
        if (kind, version) != (SPSC_KIND, 2) or offset % 128 or length < SPSC_CONTROL:
            raise Refused(f"kind {kind:#x} version {version} at {offset}: not an SPSC ring")
        self.control = segment.base + offset
        self.capacity = load64(self.control + CAPACITY)
        if not valid_capacity(self.capacity) or length != SPSC_CONTROL + self.capacity:
            raise Refused(f"SPSC ring of {self.capacity} bytes in {length}")
        self.data = self.control + SPSC_CONTROL
        self.largest = self.capacity // 2 - 8
        self.head = load64(self.control + HEAD)
        tail = load64(self.control + TAIL)
        if not self.head <= tail <= self.head + self.capacity or self.head % 8 or tail % 8:
            raise Refused(f"SPSC positions head {self.head}, tail {tail}")

    def readable(self):
        return load64(self.control + TAIL) != self.head

    def pop_all(self):
        """The messages visible now, checked as the docs say, released with one store of head."""
        head, tail = self.head, load64(self.control + TAIL)
        if not head <= tail <= head + self.capacity or tail % 8:
            raise Refused(f"guest ring: head {head}, tail {tail}")
        messages = []
        while head != tail:
            index = head & (self.capacity - 1)
            if tail - head < 8:
                raise Refused(f"guest ring: a record header cut at {index}")
            length, kind = RECORD.unpack(ctypes.string_at(self.data + index, 8))
            if kind == PADDING:
                to_end = self.capacity - index
                if length != to_end - 8 or to_end >= tail - head:
                    raise Refused(f"guest ring: padding of {length} at {index}")
                head += to_end
                continue
            size = record_bytes(length)
            if kind != MESSAGE or length > self.largest or size > tail - head or index + size > self.capacity:
                raise Refused(f"guest ring: record type {kind} of {length} bytes at {index}")
            messages.append(ctypes.string_at(self.data + index + 8, length))
            head += size
        if messages:
            self.head = head
            store64(self.control + HEAD, head)
            # The host is the only one that sleeps on writable, and this guest
            # its only waker: a plain increment, and a wake every time.
            store32(self.control + WRITABLE_SEQ, load32(self.control + WRITABLE_SEQ) + 1)
            wake_all(self.control + WRITABLE_SEQ)
        return messages


# ---- a lane of host.inbox: this guest's MPSC producer ----

class NotOurs(Exception):
    pass


class LaneProducer:
    def __init__(self, segment, kind, version, offset, length, lane, token):
        if (kind, version) != (MPSC_KIND, 2) or offset % 128 or length < MPSC_CONTROL:
            raise Refused(f"kind {kind:#x} version {version} at {offset}: not an MPSC ring")
        self.control = segment.base + offset
        lanes = load32(self.control)
        self.capacity = load64(self.control + 8)
        if not 1 <= lanes <= 64 or not valid_capacity(self.capacity) \
                or length != MPSC_CONTROL + lanes * (LANE_CONTROL + self.capacity):
            raise Refused(f"MPSC ring of {lanes} lanes of {self.capacity} bytes in {length}")
        if lane >= lanes:
            raise Refused(f"the welcome's lane {lane} of {lanes}")
        self.lane = self.control + MPSC_CONTROL + lane * (LANE_CONTROL + self.capacity)
        self.ring = self.lane + LANE_RING
        self.data = self.lane + LANE_CONTROL
        self.largest = self.capacity // 2 - 8
        self.pid = os.getpid()
        # A description of our own, for the lane's lock: the welcome's fd is
        # shared with the host, and a lock on it would never look dead.
        self.lock_fd = os.open(f"/proc/self/fd/{segment.fd}", os.O_RDWR | os.O_CLOEXEC)
        self.lock_byte = offset + lane
        held = (token << 32) | HELD
        try:
            for attempt in range(LANE_LOCK_TRIES):
                if self._lock(fcntl.F_WRLCK):
                    break
                if load64(self.lane) != held:
                    raise NotOurs(f"lane {lane} is locked by another and not held for token {token:#x}")
                time.sleep(0.001)
            else:
                raise NotOurs(f"lane {lane} stayed locked by another")
            # Holding the lock, nobody else writes the word but the host
            # taking the lane back: a load and a store do the swap.
            owner = load64(self.lane)
            if owner != held:
                self._lock(fcntl.F_UNLCK)
                raise NotOurs(f"lane {lane}'s owner word is {owner:#x}, not held for token {token:#x}")
            store64(self.lane, (self.pid << 32) | OWNED)
            # Tell the consumer to look at the owner words again: lanes_taken
            # is every producer's, so the kernel increments it.
            error = futex(self.control + MPSC_LANES_TAKEN, FUTEX_WAKE_OP, 0, None,
                          self.control + MPSC_LANES_TAKEN, ADD_ONE)
            if error:
                raise OSError(error, f"futex FUTEX_WAKE_OP: {os.strerror(error)}")
        except BaseException:
            os.close(self.lock_fd)
            raise
        self.write = load64(self.ring + TAIL)
        self.head = load64(self.ring + HEAD)
        if not self.head <= self.write <= self.head + self.capacity or self.head % 8 or self.write % 8:
            raise Refused(f"lane positions head {self.head}, tail {self.write}")

    def _lock(self, lock_type):
        lock = FLOCK.pack(lock_type, os.SEEK_SET, self.lock_byte, 1, 0)
        try:
            fcntl.fcntl(self.lock_fd, F_OFD_SETLK, lock)
            return True
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise

    def _fits(self, need, pad):
        # and the 8 bytes after the record, zeroed before it is published
        return self.write + pad + need + 8 - self.head <= self.capacity

    def _room(self, length):
        need = record_bytes(length)
        to_end = self.capacity - (self.write & (self.capacity - 1))
        pad = to_end if need > to_end else 0
        if not self._fits(need, pad):
            self.head = load64(self.ring + HEAD)
            if self.head > self.write or self.write - self.head > self.capacity:
                raise Refused(f"lane head {self.head} against tail {self.write}")
        return need, pad

    def writable(self, length):
        need, pad = self._room(length)
        return self._fits(need, pad)

    def try_push(self, message):
        """docs/layout.md, the SPSC producer's steps; False when the lane is full."""
        if len(message) > self.largest:
            raise Refused(f"a message of {len(message)} bytes is larger than the lane takes")
        need, pad = self._room(len(message))
        if not self._fits(need, pad):
            return False
        start = at = self.write
        at += pad
        index = at & (self.capacity - 1)
        ctypes.memmove(self.data + index + 8, message, len(message))
        # The word after the record first, zero: a consumer that waits polls
        # the header at its read position, and must find nothing there until
        # the next record is published. Then the header, then the padding
        # header that leads to it: each one 8-byte store, in that order.
        store64(self.data + ((at + need) & (self.capacity - 1)), 0)
        store64(self.data + index, header_word(len(message), MESSAGE))
        if pad:
            store64(self.data + (start & (self.capacity - 1)), header_word(pad - 8, PADDING))
        self.write = at + need
        store64(self.ring + TAIL, self.write)
        # Wake the host: readable_seq is every producer's, so the kernel increments it.
        error = futex(self.control + MPSC_READABLE_SEQ, FUTEX_WAKE_OP, INT_MAX, None,
                      self.control + MPSC_READABLE_SEQ, ADD_ONE)
        if error:
            raise OSError(error, f"futex FUTEX_WAKE_OP: {os.strerror(error)}")
        return True

    def leave(self):
        """docs/protocol.md, "Leaving", steps 1 and 2: draining, then the lock goes."""
        store64(self.lane, (self.pid << 32) | DRAINING)
        os.close(self.lock_fd)


# ---- the guest ----

def message(i, largest):
    length = (i * 37) % (largest + 1)
    start = i & 0xFF
    return (PATTERN * (length // 256 + 2))[start:start + length]


PATTERN = bytes(range(256))


def join(path):
    control = Control(path)
    name = b"python-guest"
    control.send(HELLO, struct.pack("<IH", os.getpid(), len(name)) + name)
    frame = control.receive(5)
    if frame is None:
        raise Refused("no welcome within 5 s")
    frame_type, body, fds = frame
    if frame_type == ERROR:
        code, text_length = struct.unpack_from("<IH", body)
        raise Refused(f"refused with code {code}: {body[6:6 + text_length].decode(errors='replace')}")
    if frame_type != WELCOME:
        raise Refused(f"the host answered hello with type {frame_type}")
    try:
        welcome = decode_welcome(body)
    except Refused:
        os.close(fds[0])
        raise
    segment = Segment(fds[0])
    return control, welcome, segment


def handle_frames(control, segment, seen):
    """The control frames that arrived, without waiting: grown maps the new extent."""
    while (frame := control.receive(0)) is not None:
        frame_type, body, _fds = frame
        if frame_type == GROWN:
            size, generation = struct.unpack("<QQ", body)
            segment.follow_growth()
            seen["grown"] += 1
            seen["generation"] = generation
            if size > segment.mapped:
                raise Refused(f"grown to {size}, but the header says {segment.mapped}")
        elif frame_type == GOODBYE:
            raise Refused("the host said goodbye")
        else:
            raise Refused(f"the host sent a frame of type {frame_type} out of turn")


def run_wrong_token(control, welcome, segment):
    objects = segment.objects()
    try:
        LaneProducer(segment, *objects["host.inbox"], welcome["lane"], welcome["token"] ^ 0x5A5A5A5A)
        raise Refused("took a lane with a token the host did not give")
    except NotOurs:
        pass
    # Against the docs, on purpose: joined without the lane. The host must hang up.
    control.send(JOINED, struct.pack("<I", welcome["lane"]))
    try:
        frame = control.receive(5)
    except HungUp:
        return "ok dropped=1"
    raise Refused("the host did not hang up" if frame is None else f"the host answered with type {frame[0]}")


def run_echo(control, welcome, segment, count):
    objects = segment.objects()
    missing = [n for n in welcome["names"] if n not in objects]
    if missing:
        raise Refused(f"the welcome lists {missing}, which the segment's directory does not")
    lane = welcome["lane"]
    producer = LaneProducer(segment, *objects["host.inbox"], lane, welcome["token"])
    ring = SpscConsumer(segment, *objects[f"guest.{lane}"])
    control.send(JOINED, struct.pack("<I", lane))

    # An echo comes back as long as it went: the smaller ring sets the largest.
    largest = min(producer.largest, ring.largest)
    seen = {"grown": 0, "generation": welcome["generation"]}
    outstanding = []  # record bytes of the echoes not read yet, oldest first
    sent = received = total_bytes = 0
    deadline = monotonic() + 60
    while received < count:
        if monotonic() > deadline:
            raise Refused(f"timed out after {received} of {count} echoes")
        handle_frames(control, segment, seen)
        # At most as many echoes outstanding as guest.<lane> holds, padding
        # included, so that the host, which never waits for room, drops none.
        while sent < count and sum(outstanding) + record_bytes(len(message(sent, largest))) \
                + record_bytes(largest) <= ring.capacity:
            m = message(sent, largest)
            if not producer.try_push(m):
                # The host frees a lane's space only after its whole batch,
                # so the lane can be full even when every echo is in.
                if wait_on(producer.ring + WRITABLE_SEQ, producer.ring + WRITABLE_SLEEPERS,
                           lambda: producer.writable(len(m)), min(deadline, monotonic() + WATCH_SECONDS)):
                    continue
                break
            outstanding.append(record_bytes(len(m)))
            sent += 1
        echoes = ring.pop_all()
        for echo in echoes:
            expected = message(received, largest)
            if echo != expected:
                raise Refused(f"echo {received} differs: {len(echo)} bytes, {len(expected)} sent")
            outstanding.pop(0)
            received += 1
            total_bytes += len(echo)
        if not echoes:
            wait_on(ring.control + READABLE_SEQ, ring.control + READABLE_SLEEPERS, ring.readable,
                    min(deadline, monotonic() + WATCH_SECONDS))
    handle_frames(control, segment, seen)
    marker = load64(segment.base + segment.mapped - 8)

    producer.leave()
    control.send(GOODBYE, struct.pack("<I", 0))
    return (f"ok lane={lane} echoes={received} bytes={total_bytes} largest={largest} grown={seen['grown']} "
            f"mapped={segment.mapped} generation={seen['generation']} marker={marker:#x} slept={Waits.slept} "
            f"woken={Waits.woken}")


def main(path, count, mode):
    if platform.machine() != "x86_64":
        raise Refused(f"this guest relies on x86-64's memory ordering, not {platform.machine()}'s")
    control, welcome, segment = join(path)
    try:
        if mode == "wrong-token":
            return run_wrong_token(control, welcome, segment)
        return run_echo(control, welcome, segment, count)
    finally:
        control.close()
        segment.close()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and sys.argv[3] not in ("echo", "wrong-token")):
        sys.exit(__doc__.split("\n\n")[1])
    try:
        print(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else "echo"), flush=True)
    except (Refused, HungUp, NotOurs, OSError, ValueError, KeyError, struct.error) as e:
        print(f"error: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
