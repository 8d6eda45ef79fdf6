#!/usr/bin/env python3
"""A consumer of a shmlink SPSC ring, written from docs/layout.md alone.

    ring_reader.py PATH RING COUNT

Attaches to the segment at PATH, checks its header and directory as the
"Rules for a reader" say, finds the SPSC ring named RING, and pops COUNT
messages from it while a producer in another process fills it, releasing
space and waking a producer that sleeps on a full ring. Standard library
only. Prints one line: "ok key=value ..." or "error: reason" (exit 1).

The messages it expects are the test's: message i has (i * 37) % 300 bytes,
byte j of it is (i + j) & 0xff, and messages of 8 bytes or more start with
i as a little-endian u64.

Atomic fields are read and written as aligned 8- and 4-byte values through
ctypes, so each is one load or store. Their ordering relies on x86-64
(loads are not reordered with loads, stores not with stores); elsewhere a
reader needs real acquire and release. The reader cannot do the atomic
read-modify-write the docs' wake-up handshake asks for, so it takes the
documented fallback of a waker that does not track sleepers: after every
release it bumps the futex word and calls FUTEX_WAKE (a wasted syscall when
nobody sleeps, never a lost wake-up).
"""

import ctypes
import mmap
import os
import platform
import struct
import sys
import time

MAGIC = 0x004B4E494C4D4853
ABI_TAG = (256 << 32) | (64 << 16) | 0x1234
HEADER = struct.Struct("<QIIQQQQQQIIIIQ")  # SegmentHeader up to data_used_bytes
ENTRY_FIELDS = struct.Struct("<HHIQQ")     # DirectoryEntry after the 40-byte name
RECORD = struct.Struct("<II")              # record header: length, type
SPSC_KIND = 0x0101
CONTROL_BYTES = 384
TAIL, HEAD, WRITABLE = 128, 256, 264       # offsets in SpscRingControl
MESSAGE, PADDING = 1, 2
FUTEX_WAKE = 1
SYS_FUTEX = 202  # x86-64: the only architecture whose ordering this reader relies on


class Corrupt(Exception):
    pass


def attach(path):
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    file_size = os.fstat(fd).st_size
    if file_size < 4096:
        raise Corrupt(f"{path}: {file_size} bytes, shorter than a header")
    (magic, version, header_bytes, abi, max_size, size, generation, _nonce, _start, creator,
     directory_offset, directory_capacity, directory_count, used) = HEADER.unpack(os.pread(fd, HEADER.size, 0))
    if magic != MAGIC:
        raise Corrupt(f"{path}: not a shmlink segment (bad magic)")
    if version != 1 or abi != ABI_TAG:
        raise Corrupt(f"{path}: layout version {version}, abi tag {abi:#x}: not the layout this reader knows")
    if (header_bytes, directory_offset, directory_capacity) != (4096, 256, 60):
        raise Corrupt(f"{path}: placement fields {header_bytes}, {directory_offset}, {directory_capacity}")
    if max_size % 4096 or max_size > 1 << 40:
        raise Corrupt(f"{path}: maximum size {max_size}")
    if size % 4096 or size < 4096 or size > max_size or size > file_size or directory_count > 60:
        raise Corrupt(f"{path}: size {size} of {max_size}, file {file_size}, {directory_count} entries")
    if not header_bytes <= used <= size:
        raise Corrupt(f"{path}: data_used_bytes {used} outside [{header_bytes}, {size}]")
    segment = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)  # the mapping keeps the file
    objects = {}
    for i in range(directory_count):
        at = directory_offset + 64 * i
        raw_name = bytes(segment[at:at + 40])
        if b"\0" not in raw_name or raw_name[0] == 0:
            raise Corrupt(f"directory entry {i}: bad name")
        kind, object_version, state, offset, length = ENTRY_FIELDS.unpack_from(segment, at + 40)
        if state != 1 or length < 1 or offset % 8 or offset < 4096 or offset + length > size:
            raise Corrupt(f"directory entry {i}: state {state}, [{offset}, +{length})")
        objects[raw_name.split(b"\0")[0].decode()] = (kind, object_version, offset, length)
    return segment, {"size": size, "generation": generation, "creator": creator}, objects


class SpscConsumer:
    def __init__(self, segment, kind, version, offset, length):
        if (kind, version) != (SPSC_KIND, 2):
            raise Corrupt(f"kind {kind:#x} version {version}: not an SPSC ring")
        self.capacity = struct.unpack_from("<Q", segment, offset)[0]
        if self.capacity < 256 or self.capacity > 1 << 31 or self.capacity & (self.capacity - 1):
            raise Corrupt(f"capacity {self.capacity}")
        if length != CONTROL_BYTES + self.capacity:
            raise Corrupt(f"length {length} for a ring of {self.capacity} bytes")
        self.segment = segment
        self.data = offset + CONTROL_BYTES
        self.largest = self.capacity // 2 - 8
        self.tail = ctypes.c_uint64.from_buffer(segment, offset + TAIL)
        self.head = ctypes.c_uint64.from_buffer(segment, offset + HEAD)
        self.writable_seq = ctypes.c_uint32.from_buffer(segment, offset + WRITABLE)
        self.libc = ctypes.CDLL(None, use_errno=True)

    def pop_all(self):
        """The messages visible now, released with one store of head."""
        head, tail = self.head.value, self.tail.value
        if not head <= tail <= head + self.capacity or head % 8 or tail % 8:
            raise Corrupt(f"positions head {head}, tail {tail}")
        messages = []
        while head != tail:
            index = head & (self.capacity - 1)
            length, kind = RECORD.unpack_from(self.segment, self.data + index)
            if kind == PADDING:
                if length != self.capacity - index - 8 or head + length + 8 >= tail:
                    raise Corrupt(f"padding of {length} at {index}")
                head += length + 8
                continue
            size = 8 + ((length + 7) & ~7)
            if kind != MESSAGE or length > self.largest or head + size > tail or index + size > self.capacity:
                raise Corrupt(f"record type {kind} of {length} bytes at {index}")
            start = self.data + index + 8
            messages.append(bytes(self.segment[start:start + length]))
            head += size
        if messages:
            self.head.value = head
            self.wake_producer()
        return messages

    def wake_producer(self):
        self.writable_seq.value = (self.writable_seq.value + 1) & 0xFFFFFFFF
        self.libc.syscall(SYS_FUTEX, ctypes.c_void_p(ctypes.addressof(self.writable_seq)), FUTEX_WAKE,
                          0x7FFFFFFF, None, None, 0)


def expected(i):
    body = bytes((i + j) & 0xFF for j in range((i * 37) % 300))
    return struct.pack("<Q", i) + body[8:] if len(body) >= 8 else body


def main(path, ring_name, count):
    if platform.machine() != "x86_64":
        raise Corrupt(f"this reader relies on x86-64's memory ordering, not {platform.machine()}'s")
    segment, header, objects = attach(path)
    if ring_name not in objects:
        raise Corrupt(f"no object named {ring_name} (there are {sorted(objects)})")
    ring = SpscConsumer(segment, *objects[ring_name])
    received = total_bytes = 0
    deadline = time.monotonic() + 60
    while received < count:
        messages = ring.pop_all()
        if not messages:
            if time.monotonic() > deadline:
                raise Corrupt(f"timed out after {received} of {count} messages")
            time.sleep(0.0002)
            continue
        for message in messages:
            if message != expected(received):
                raise Corrupt(f"message {received} differs: {len(message)} bytes")
            received += 1
            total_bytes += len(message)
    print(f"ok messages={received} bytes={total_bytes} size={header['size']} generation={header['generation']} "
          f"creator={header['creator']} objects={','.join(sorted(objects))} capacity={ring.capacity}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    try:
        main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    except (Corrupt, OSError, ValueError) as e:
        print(f"error: {e}", flush=True)
        sys.exit(1)
