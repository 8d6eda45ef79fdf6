"""shmlink: shared-memory IPC for processes on one Linux host.

A host creates a segment and listens on a Unix socket; guests join through
the socket (the segment's fd comes with the welcome) or attach by path, and
exchange messages through lock-free rings inside the segment::

    import shmlink
    with shmlink.Host("/tmp/demo.sock") as host:
        while True:
            host.poll()                          # accepts and welcomes guests
            message = host.inbox.pop(timeout=0.1)
            if message:
                lane, data = message
                host.send(lane, data)            # echo, never waits

    with shmlink.Guest.connect("/tmp/demo.sock", name="py") as guest:
        guest.send(b"hello", timeout=1)
        print(guest.receive(timeout=1))

Zero copy: ``ring.peek()`` is a read-only memoryview of a message in place
(``numpy.frombuffer`` takes it without a copy) until ``ring.release()``;
``ring.reserve(n)`` a writable one until ``ring.commit()``. A released view
raises on use; release() raises BufferError while something still views the
message. Timeouts are in seconds (None waits for good, interruptible by
Ctrl-C); blocking calls release the GIL. Every object closes what it opened
with close() or a with block. docs/python.md tells more.
"""

import builtins as _builtins


class Error(Exception):
    """Base of every error shmlink raises. ``category`` is "shmlink" for the
    library's own codes (then ``code`` is one of them) or "system"/"generic"
    for an errno, in which case the error is also an OSError subclass and
    ``errno`` is set."""

    category = None
    code = None


_classes = {}


def _error_class(base):
    """Error combined with a builtin exception class, made once per base."""
    if base not in _classes:
        _classes[base] = type(base.__name__, (Error, base), {"__module__": __name__})
    return _classes[base]


def _make_error(errno, category, code, kind, message):
    """Called by the native module: the exception object for one error."""
    if errno is not None:
        base = type(_builtins.OSError(errno, message))  # FileNotFoundError, PermissionError, ...
        error = _error_class(base)(errno, message)
    elif kind == "timeout":
        error = _error_class(_builtins.TimeoutError)(message)
    elif kind == "connection":
        error = _error_class(_builtins.ConnectionError)(message)
    else:
        error = Error(message)
    error.category = category
    error.code = code
    return error


from ._native import (  # noqa: E402  (the errors above must exist first)
    Guest,
    Host,
    MpmcQueue,
    MpscProducer,
    MpscRing,
    Segment,
    SpscRing,
    version,
)

__version__ = version
__all__ = ["Error", "Guest", "Host", "MpmcQueue", "MpscProducer", "MpscRing", "Segment", "SpscRing", "version"]
