"""A large request body written by a thread of its own, off the event loop's thread.

Why: an event loop runs on one thread, and on the asyncio fast path that
thread makes every copy of every connection's bytes into and out of the
kernel. One call of 128 images (77 MB out, 12.8 MB back) already keeps it
about 90% busy, so five such calls at once on the loop's thread gave about
the rows/s of one (0.95x-1.11x). With their bodies written by threads while
the loop's thread receives, five calls gave 1.12x-1.38x the rows/s of the
same five with every body from the loop on the standard loop, and
0.93x-1.19x (about even) on uvloop (four benchmark runs on the 2-core
benchmark machine, instant server and 5 ms model; docs/performance.md). ``socket.send`` releases the
GIL while the kernel copies, so the copies of several calls run on several
cores. A call alone on its loop does not use a thread: there the loop's
thread has nothing else to do, and one call's figures stay as they were.

How: the thread writes on a duplicate (``os.dup``) of the connection's
socket, one slice at a time, waiting with ``poll`` for room in the kernel's
buffer. Each wait is bounded by the call's timeouts, exactly as on the loop
(``next_wait`` says how long; a wait that ends with no room raises what the
loop would). The asyncio transport does not write while its buffer is
empty, so the bytes go out in order: the head through the transport (and
drained) first, then the body from the thread, and nothing on that
connection until the thread is done (property 5 in
:mod:`._transport_asyncio`, tested there). The duplicate shares the
socket's file status, non-blocking included; it is never made blocking,
since that would change the event loop's socket too.

:meth:`BodySender.stop` (a cancelled call) shuts the connection down, which
ends the thread's wait at once; the connection is thrown away anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

__all__ = ["THREAD_SEND_BYTES", "BodySender", "claim_thread", "free_thread"]

#: A request body at least this large is written by a thread (plain TCP only).
#: Below it the copy takes about a millisecond or less, and the loop writes it.
THREAD_SEND_BYTES: Final = 4 << 20

#: Most bodies written by threads at once in the process; a call beyond it writes
#: its body from the loop, as it would without threads (it never waits for a thread).
MAX_SEND_THREADS: Final = 8

#: Largest piece handed to one ``send``. Measured in the thread, one call alone:
#: 256 KiB slices cost a quarter of the rate; 1 to 64 MiB were alike.
SEND_SLICE: Final = 1 << 20

_SEND_FLAGS: Final = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE, never SIGPIPE

_HAS_POLL: Final = hasattr(select, "poll")

_busy = 0
_busy_lock = threading.Lock()


def claim_thread() -> bool:
    """Take one of the :data:`MAX_SEND_THREADS` places; ``False`` when all are taken.

    Also ``False`` where ``select.poll`` does not exist (Windows): the loop writes.
    """
    global _busy
    if not _HAS_POLL:
        return False
    with _busy_lock:
        if _busy >= MAX_SEND_THREADS:
            return False
        _busy += 1
        return True


def free_thread() -> None:
    """Give back a place taken by :func:`claim_thread` (when no :class:`BodySender` was made)."""
    global _busy
    with _busy_lock:
        _busy -= 1


def _after_fork() -> None:
    global _busy, _busy_lock
    _busy = 0  # the parent's threads do not exist in the child
    _busy_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class BodySender:
    """Writes ``segments`` on a duplicate of ``fileno`` from a new thread; :attr:`done` tells.

    Call :func:`claim_thread` first (and construct only when it gave a place):
    the place is freed when the thread ends. :attr:`done` gets ``True`` when
    every byte was handed to the kernel, ``False`` when the connection failed
    (the error is in :attr:`error`), or the exception ``next_wait`` raised
    (the deadline) or ``timed_out()`` made (no room within a wait).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fileno: int,
        segments: Sequence[Any],
        next_wait: Callable[[], float | None],
        timed_out: Callable[[], BaseException],
    ) -> None:
        self._loop = loop
        self._segments = segments
        self._next_wait = next_wait
        self._timed_out = timed_out
        self._lock = threading.Lock()  # between stop() and the thread's close
        self._closed = False
        self.error: OSError | None = None
        self.done: asyncio.Future[bool] = loop.create_future()
        try:
            self._sock = socket.socket(fileno=os.dup(fileno))
        except BaseException:
            free_thread()
            raise
        try:
            threading.Thread(target=self._run, name="graphpipe-send", daemon=True).start()
        except BaseException:
            self._sock.close()
            free_thread()
            raise

    def stop(self) -> None:
        """End the send now (the call was cancelled): shut the connection down."""
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):  # the connection is gone already
                    self._sock.shutdown(socket.SHUT_RDWR)

    def _run(self) -> None:
        outcome: bool | BaseException
        try:
            outcome = self._send()
        except BaseException as exc:
            outcome = exc
        finally:
            with self._lock:
                self._closed = True
                self._sock.close()
            free_thread()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._settle, outcome)

    def _settle(self, outcome: bool | BaseException) -> None:
        if self.done.done():  # cancelled
            return
        if isinstance(outcome, BaseException):
            self.done.set_exception(outcome)
        else:
            self.done.set_result(outcome)

    def _send(self) -> bool:
        sock = self._sock
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        for segment in self._segments:
            view = memoryview(segment).cast("B")
            pos, end = 0, view.nbytes
            while pos < end:
                try:
                    pos += sock.send(view[pos : pos + SEND_SLICE], _SEND_FLAGS)
                    continue
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    self.error = exc
                    return False
                timeout = self._next_wait()  # raises once the deadline has passed
                ms = -1 if timeout is None else max(1, int(timeout * 1000 + 0.999))
                if not poller.poll(ms):
                    raise self._timed_out()
        return True
