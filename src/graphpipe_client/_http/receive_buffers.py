"""Large receive buffers, used again once nothing views them.

Why: a response body is received straight into a new buffer, which the
output arrays then view (zero copy). A buffer of a few MiB is fresh memory
whenever the allocator has given the last one back to the kernel, and the
kernel zeroes every fresh page before the socket's copy overwrites it.
glibc gives memory back when the top of its heap holds more than twice its
mmap threshold free, which several large calls at once in one thread (an
event loop's) hit on most calls: five tasks of 128-row calls (12.8 MB
answers) on one ``AsyncClient`` took 108-339 page faults and 25.8-33.6 ms of
the client's CPU per call, against 1-18 and 24.7-28.8 ms with glibc's
trimming turned off to measure it. With this pool the five tasks went from
0.91x to 0.96x the raw-socket floor's rows/s (median of 18 paired rounds;
docs/performance.md, "Receive buffers used again"). Threads each have an
allocator arena of their own, where the same buffer comes back without
this pool; the sync client gains less.

How: a transport keeps the buffers it made, between :data:`MIN_BYTES` and
:data:`POOL_BYTES` each and at most :data:`POOL_BYTES` in all. A buffer is
free when nothing but the pool refers to it. CPython's reference count says
so exactly: an output array, a memoryview or any other view of the buffer
holds a reference to it, directly or through the view it was made from.
A free buffer is handed out again for a body at most twice smaller than it,
so that a small answer never keeps a much larger buffer alive. Its old
bytes are never read: the body is received into the first ``total`` bytes
before anything parses them, and nothing past them is looked at. Where the
reference count is not CPython's with the GIL, every buffer is new.

What a free buffer's count reads is not assumed: it is measured on every
:meth:`ReceiveBuffers.take`, in the same loop as the pooled ones, on an empty
array that only the pool's list holds (the last one), so anything that counts
a loop's references differently shifts both alike. Measured once at import,
it was wrong whenever the import ran under a Python trace function
(``sys.settrace``: a debugger, ``trace``, a pure-Python coverage tracer), which
keeps one more reference to the loop variable on Python 3.12 and older: a
buffer one output array still viewed then read as free, once the tracing
stopped or in another thread.

After ``fork`` the child gets a new lock per pool (another thread may have held
one at the fork); the buffers stay, as busy or as free as the child's own
references make them.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
import weakref
from typing import Final

import numpy as np

__all__ = ["MIN_BYTES", "POOL_BYTES", "ReceiveBuffers"]

#: Smaller buffers are always new: the allocator reuses small blocks by itself.
MIN_BYTES: Final = 1 << 20

#: Most bytes of buffers one transport keeps (busy and free together).
POOL_BYTES: Final = 64 << 20


def _counts(items: list[np.ndarray]) -> list[int]:
    """``sys.getrefcount`` of each of ``items``, as read from this loop."""
    counts = []
    for item in items:
        counts.append(sys.getrefcount(item))
    return counts


#: Reference counts are exact and stable under the GIL only (not free-threaded builds).
_COUNTS_REFS: Final = sys.implementation.name == "cpython" and not sysconfig.get_config_var(
    "Py_GIL_DISABLED"
)


class ReceiveBuffers:
    """The large receive buffers of one transport; thread-safe."""

    __slots__ = ("__weakref__", "_buffers", "_held", "_lock")

    def __init__(self) -> None:
        self._buffers: list[np.ndarray] = []
        self._held = 0  # bytes of self._buffers
        self._lock = threading.Lock()
        _pools.add(self)

    def take(self, nbytes: int) -> np.ndarray:
        """A uint8 array of at least ``nbytes`` bytes, uninitialised: a free pooled
        buffer when one fits, else a new one (kept when there is room)."""
        if nbytes < MIN_BYTES or nbytes > POOL_BYTES or not _COUNTS_REFS:
            return np.empty(nbytes, dtype=np.uint8)
        with self._lock:
            best: int | None = None
            size = 0
            spare: list[int] = []  # free buffers that do not fit
            # The probe, last: an array nothing but the list refers to, counted in the same loop.
            self._buffers.append(np.empty(0, dtype=np.uint8))
            counts = _counts(self._buffers)
            del self._buffers[-1]
            free = counts.pop()
            for i, count in enumerate(counts):
                if count != free:
                    continue
                buf = self._buffers[i]
                if nbytes <= buf.nbytes <= 2 * nbytes:
                    if best is None or buf.nbytes < size:
                        best, size = i, buf.nbytes
                else:
                    spare.append(i)
            if best is not None:
                return self._buffers[best]
            # Room for a new one: give back free buffers that do not fit, largest first.
            spare.sort(key=lambda i: -self._buffers[i].nbytes)
            drop: set[int] = set()
            for i in spare:
                if self._held + nbytes <= POOL_BYTES:
                    break
                drop.add(i)
                self._held -= self._buffers[i].nbytes
            if drop:
                self._buffers = [b for i, b in enumerate(self._buffers) if i not in drop]
            new = np.empty(nbytes, dtype=np.uint8)
            if self._held + nbytes <= POOL_BYTES:
                self._buffers.append(new)
                self._held += nbytes
            return new

    def held(self) -> int:
        """Bytes of the buffers kept (in use or free)."""
        return self._held

    def clear(self) -> None:
        """Forget every buffer (the transport closes): memory goes back as the views die."""
        with self._lock:
            self._buffers = []
            self._held = 0


_pools: weakref.WeakSet[ReceiveBuffers] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Another thread may have been in take() at the fork: its lock would stay held forever.
    for pool in list(_pools):
        pool._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
