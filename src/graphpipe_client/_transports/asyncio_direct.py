"""The asyncio fast path of the async client: our own HTTP/1.1 on asyncio connections.

For a direct request (no proxy) under an asyncio event loop (the standard
one or uvloop), :class:`AsyncioTransport` does what the sync transport
does, with asyncio's protocol API instead of blocking sockets:

- Connections are opened with ``loop.create_connection`` (TLS with the
  client's ``SSLContext`` and the host name for SNI and verification) and
  pooled per event loop and per host: a LIFO of idle connections and a queue
  of waiting calls, bounded by ``pool_size``. Nothing scans the pool: taking
  and giving back a connection costs the same with 1 connection or 500.
- The request head and a small body go out in one ``transport.write``; a
  large body goes out as views of the caller's arrays, slice by slice,
  under the transport's flow control (``pause_writing``/``resume_writing``).
  While other calls share the loop, a body of 4 MiB or more on a plain
  TCP connection goes out from a thread of its own instead
  (:mod:`._send_thread`), so that the loop's thread stays free for the
  other connections' bytes.
- :class:`_Connection` is an ``asyncio.BufferedProtocol``: the response
  head is received into a small buffer of its own, and the body straight
  into the buffer the output arrays will view (no copy).
- The response is read under the same rules as the sync transport's
  (:mod:`._http11`): 1xx skipped, framing, bounded decoding; a connection is
  reused only when provably clean; a request is sent a second time only when
  it provably did not reach the server in full; every wait is bounded by the
  read timeout and by the call's deadline; errors map to the same exceptions
  with the same messages.

This module uses only asyncio's public API. It relies on these documented
properties, each checked by ``tests/transports/test_transport_asyncio.py`` (on the
standard loop and on uvloop) so that a change fails loudly:

1. A ``BufferedProtocol``'s ``get_buffer()`` is called before each receive
   and the bytes land in the buffer it returns (zero copy), for plain and TLS
   transports alike; ``buffer_updated(n)`` says how many did.
2. ``transport.write()`` never blocks; ``pause_writing()`` is called when the
   transport's buffer goes over the high-water mark and ``resume_writing()``
   when it drains to the low-water mark. With both set to 0
   (``set_write_buffer_limits(0, 0)``, plain TCP), ``resume_writing()`` means
   that every byte written was handed to the kernel.
3. ``transport.get_extra_info("socket")`` gives the connection's socket
   (the TCP one under TLS), whose ``fileno()`` can be polled for readability
   without reading: the idle check before reuse (see :meth:`_Connection.usable`).
4. A transport whose write failed is closing (``is_closing()``) by the time
   ``write()`` returns, and ``connection_lost(exc)`` follows with the error;
   a TLS failure after the handshake (TLS 1.3: a refused client certificate)
   comes as an ``ssl.SSLError`` there.
5. A plain TCP transport whose write buffer is empty writes nothing to its
   socket until the next ``write()``: bytes sent meanwhile on a duplicate of
   the socket (``os.dup`` of its ``fileno()``) go out in order, after what
   the transport handed over and before what it is given next. The
   duplicate shares the socket's non-blocking mode (one open file).
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any, Final

from .._exceptions import (
    ConnectError,
    ConnectTimeout,
    GraphPipeError,
    ReadTimeout,
    TLSError,
    TransportError,
)
from .._http import http11 as h11
from .._http.exchange import (
    ERROR_BODY_BYTES,
    HEAD_BYTES,
    SMALL_BODY,
    PreparedRequest,
    RawResponse,
    check_size,
    deadline_error,
    decoded_too_large,
    new_receive_buffer,
    no_response_error,
)
from .._http.keepalive import DEFAULT_KEEPALIVE_EXPIRY, KEEPS, Peer, idle_limit
from .._http.receive_buffers import ReceiveBuffers
from .._http.small_calls import Attempt, SmallCall
from .._observe.log import debug_enabled, log_exchange, log_failure, logger
from .send_thread import THREAD_SEND_BYTES, BodySender, claim_thread, free_thread
from .sync import request_head
from .tls import warn_unverified

__all__ = ["AsyncioTransport"]

#: Largest piece of a request body handed to ``transport.write`` at once.
SEND_SLICE: Final = 1 << 20

#: Largest piece of a chunked, encoded or unannounced body handed over at once.
RECV_SLICE: Final = 1 << 20

#: First size of a connection's own receive buffer (heads, chunk lines, small bodies).
BUFFER_BYTES: Final = 16 * 1024

#: Bytes buffered (not yet consumed) at which reading pauses: a server that
#: floods a connection costs at most this much memory.
READ_LIMIT: Final = 2 * h11.MAX_HEAD_BYTES + 8192


#: Calls on a connection of the fast path now, per event loop (every client's):
#: with more than one, the loop's thread is shared, and a large body goes out
#: from a thread of its own (:mod:`._send_thread`).
#: Keyed by the loop's ``id`` (a plain dict: no weak reference to make per call); an
#: entry is removed when its count returns to 0, so a later loop with the same id starts at 0.
_calls_on: dict[int, int] = {}


def _call_began(loop: asyncio.AbstractEventLoop) -> None:
    key = id(loop)
    _calls_on[key] = _calls_on.get(key, 0) + 1


def _call_ended(loop: asyncio.AbstractEventLoop) -> None:
    key = id(loop)
    left = _calls_on[key] - 1
    if left:
        _calls_on[key] = left
    else:
        del _calls_on[key]


#: What :meth:`_Connection.write_request` managed: nothing provably, part, all.
UNSENT: Final = 0
PARTLY: Final = 1
SENT: Final = 2


class _DeadlinePassed(Exception):
    """The call's deadline passed while waiting."""


class _WaitTimedOut(Exception):
    """A wait lasted longer than the read timeout without progress."""


class _NoResponse(Exception):
    """The connection ended cleanly before any byte of a response."""


class _NotSent(Exception):
    """The request could not be written in full: the server cannot have run it."""


class _Clock:
    """The timeouts of one attempt: per wait (``read``), and the call's deadline (monotonic)."""

    __slots__ = ("cut", "deadline", "read")

    def __init__(self, read: float | None, deadline: float | None) -> None:
        self.read = read
        self.deadline = deadline
        self.cut = False

    def wait(self, per_wait: float | None) -> float | None:
        """The timeout of the next wait: ``per_wait``, cut to what is left of the deadline."""
        if self.deadline is None:
            return per_wait
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed
        self.cut = per_wait is None or left < per_wait
        return left if self.cut else per_wait


class _Connection(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection: receives into its buffer, or straight into a target view."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # set by connection_made
        self.buf = bytearray(BUFFER_BYTES)
        self.start = 0  # first byte of buf not consumed
        self.end = 0  # end of the bytes received into buf
        self.target: memoryview | None = None  # where the body goes, while set
        self.filled = 0  # bytes of target received
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.last = 0.0  # time.monotonic() of the last bytes received
        self.lost = False  # connection_lost was called (or eof)
        self.error: BaseException | None = None  # what connection_lost reported
        self.writing_paused = False
        self.drained = False  # resume_writing came since the last write
        self.reading_paused = False
        self.requests = 0
        self.poller: Any = None  # select.poll of the socket, for the idle check
        self.gone = False  # connection_lost was called
        self.on_gone: asyncio.Future[None] | None = None
        self.plain = False  # plain TCP, write limits at 0: a large body may go out from a thread
        self.idle_since = 0.0  # time.monotonic() when its last response ended
        self.idle_limit: float | None = None  # seconds it may stay idle (keepalive.idle_limit)
        self.pending: BaseException | None = None  # raised by the next wait (see send_small)
        self.due = 0.0  # time.monotonic() at which the current wait_read times out (0: none)
        self.alarm: asyncio.TimerHandle | None = None  # wait_read's timer, re-armed lazily

    # -- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # Its loop, once: on Python 3.11 each get_running_loop() is a getpid() system call.
        self.loop = asyncio.get_running_loop()

    def get_buffer(self, sizehint: int) -> memoryview:
        target = self.target
        if target is not None:
            return target[self.filled :]
        if self.end == len(self.buf):
            self._make_room()
        return memoryview(self.buf)[self.end :]

    def buffer_updated(self, nbytes: int) -> None:
        self.last = time.monotonic()
        if self.target is not None:
            self.filled += nbytes
            if self.filled == len(self.target):
                self.target = None
                self._wake()
            return
        self.end += nbytes
        if self.end - self.start >= READ_LIMIT and not self.reading_paused:
            self.reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.lost = True
        self._wake()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.gone = True
        if self.alarm is not None:
            self.alarm.cancel()
            self.alarm = None
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        if self.on_gone is not None and not self.on_gone.done():
            self.on_gone.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self.drained = True
        self._wake()

    # -- buffer ---------------------------------------------------------------

    def _make_room(self) -> None:
        # A new buffer each time (never resized in place: asyncio may still
        # hold a view of the old one).
        live = self.end - self.start
        size = len(self.buf)
        if live * 2 > size:
            size *= 2
        new = bytearray(size)
        new[:live] = self.buf[self.start : self.end]
        self.buf = new
        self.start, self.end = 0, live

    def buffered(self) -> int:
        return self.end - self.start

    def _consumed(self) -> None:
        if self.start == self.end:
            self.start = self.end = 0
        if self.reading_paused and self.end - self.start < READ_LIMIT // 2:
            self.reading_paused = False
            if self.transport is not None and not self.lost:
                self.transport.resume_reading()

    # -- waiting --------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, clock: _Clock) -> None:
        """Wait for the next event, at most the read timeout without progress or the deadline."""
        if self.pending is not None:  # what the fast path's wait raised, for the general path
            exc, self.pending = self.pending, None
            raise exc
        timeout = clock.wait(clock.read)  # raises once the deadline has passed
        loop = self.loop or asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiter = waiter
        if timeout is not None:
            began = time.monotonic()
            self.timer = loop.call_later(timeout, self._on_timer, waiter, clock, began)
        try:
            await waiter
        finally:
            self.waiter = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

    async def wait_read(self, read: float | None) -> None:
        """:meth:`wait` with no deadline, for the fast path: at most ``read`` seconds.

        Its timer is made once and re-armed only when it fires (at most once
        per ``read`` seconds of waits), not made and cancelled per wait: an
        asyncio timer costs more than the rest of a small call's wait. A wait
        that times out raises :class:`_WaitTimedOut`, as :meth:`wait` does.
        """
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc
        loop = self.loop or asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiter = waiter
        if read is not None:
            self.due = time.monotonic() + read
            if self.alarm is None:
                self.alarm = loop.call_later(read, self._on_alarm)
        try:
            await waiter
        finally:
            self.waiter = None
            self.due = 0.0

    def _on_alarm(self) -> None:
        self.alarm = None
        due = self.due
        if not due:
            return  # no wait_read in progress: armed again by the next one
        waiter = self.waiter
        now = time.monotonic()
        if now >= due:
            if waiter is not None and not waiter.done():
                waiter.set_exception(_WaitTimedOut())
            return
        loop = self.loop or asyncio.get_running_loop()
        self.alarm = loop.call_later(due - now, self._on_alarm)

    def _on_timer(self, waiter: asyncio.Future[None], clock: _Clock, began: float) -> None:
        if waiter.done():
            return
        now = time.monotonic()
        due = float("inf")
        if clock.read is not None:
            due = max(began, self.last) + clock.read
        if clock.deadline is not None and clock.deadline <= due:
            if now >= clock.deadline:
                waiter.set_exception(_DeadlinePassed())
                return
            due = clock.deadline
        elif now >= due:
            waiter.set_exception(_WaitTimedOut())
            return
        loop = self.loop or asyncio.get_running_loop()
        self.timer = loop.call_later(due - now, self._on_timer, waiter, clock, began)

    # -- use ----------------------------------------------------------------

    def usable(self, peer: Peer) -> bool:
        """Idle and clean: not past its idle limit, not closed, nothing arrived while idle.

        Also what the event loop has not seen yet (it may not have run since
        the connection went idle): a socket readable while idle holds stray
        bytes or the server's close, and is never reused. What ``peer`` (the
        pool's) has shown decides the rest (:class:`.._http.keepalive.Peer`).
        """
        idle_for = time.monotonic() - self.idle_since
        if self.idle_limit is not None and idle_for >= self.idle_limit:
            return False
        if (
            self.lost
            or self.start != self.end
            or self.transport is None
            or self.transport.is_closing()
        ):
            return peer.reusable(idle_for, closed=True)
        poller = self.poller
        if poller is None:
            sock = self.transport.get_extra_info("socket")
            if sock is None:
                return peer.reusable(idle_for, closed=False)
            poller = self.poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
        return peer.reusable(idle_for, closed=bool(poller.poll(0)))

    def abort(self) -> None:
        # Not once connection_lost has run: Python 3.11's selector transport,
        # closed by the peer while its write buffer was draining, has let go
        # of its loop by then without counting itself lost, and abort() fails.
        if self.transport is not None and not self.gone:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.gone:
            self.transport.close()

    async def closed(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the transport is gone (TLS: after its close_notify)."""
        if self.gone:
            return
        self.on_gone = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self.on_gone, timeout)
        except TimeoutError:
            self.abort()

    def _ended(self, message: str) -> BaseException:
        """What to raise when the connection ended before ``message``'s bytes came."""
        if isinstance(self.error, OSError):  # a reset, a TLS alert
            return self.error
        return h11.Truncated(message)

    async def write_request(
        self,
        head: bytes,
        segments: tuple[Any, ...],
        nbytes: int,
        clock: _Clock,
        *,
        shared: bool = False,
    ) -> int:
        """Write a request: :data:`SENT` (provably handed over in full), :data:`PARTLY`, :data:`UNSENT`.

        ``UNSENT``: the connection failed at the first write, the one of a small
        request or of a large one's head. ``PARTLY``: it failed after part of a
        large request went out (the server may have answered early, a 413,
        and the answer been lost with the connection).
        """
        transport = self.transport
        assert transport is not None
        if self.lost or transport.is_closing():
            return UNSENT
        self.requests += 1
        self.drained = False
        if nbytes <= SMALL_BODY:
            transport.write(b"".join((head, *segments)))
        else:
            transport.write(head)
            if transport.is_closing():
                return UNSENT
            if shared and self.plain and nbytes >= THREAD_SEND_BYTES and claim_thread():
                return await self._write_from_thread(segments, clock)
            for segment in segments:
                view = memoryview(segment).cast("B")
                for begin in range(0, view.nbytes, SEND_SLICE):
                    while self.writing_paused and not self.lost:
                        await self.wait(clock)
                    if self.lost or transport.is_closing():
                        return PARTLY
                    self.drained = False
                    transport.write(view[begin : begin + SEND_SLICE])  # straight from the array
        return await self.handed_over(nbytes, clock)

    async def handed_over(self, nbytes: int, clock: _Clock) -> int:
        """Once a request of ``nbytes`` is given to the transport: wait until it is
        handed to the kernel; :data:`SENT`, :data:`PARTLY` or :data:`UNSENT` (as
        :meth:`write_request`)."""
        transport = self.transport
        assert transport is not None
        while self.writing_paused and not self.lost:
            await self.wait(clock)
        if self.lost or transport.is_closing():
            if self.drained and not self.writing_paused:
                return SENT
            return UNSENT if nbytes <= SMALL_BODY else PARTLY
        return SENT

    async def _write_from_thread(self, segments: tuple[Any, ...], clock: _Clock) -> int:
        """Write a large body from a thread (the head went out already); as :meth:`write_request`.

        The loop thread stays free for the other connections' bytes meanwhile
        (:mod:`._send_thread` says why and what it measured).
        """
        transport = self.transport
        assert transport is not None
        try:
            while self.writing_paused and not self.lost:  # the head, handed over in full
                await self.wait(clock)
            sock = None if self.lost else transport.get_extra_info("socket")
        except BaseException:
            free_thread()
            raise
        if sock is None or transport.is_closing():
            free_thread()
            return PARTLY
        sender = BodySender(
            asyncio.get_running_loop(),
            sock.fileno(),
            segments,
            lambda: clock.wait(clock.read),
            lambda: _DeadlinePassed() if clock.cut else _WaitTimedOut(),
        )
        try:
            sent = await sender.done
        except BaseException:
            sender.stop()  # cancelled, or a timeout: the connection is thrown away
            raise
        if not sent:
            if self.error is None:
                self.error = sender.error
            return PARTLY
        return SENT

    async def read_head(self, clock: _Clock) -> h11.ResponseHead:
        """The final response's head; interim 1xx responses are skipped (RFC 9110 §15.2)."""
        while True:
            while True:
                found = h11.find_head_end(self.buf, self.start, self.end)
                if found is not None:
                    break
                if self.end - self.start > h11.MAX_HEAD_BYTES:
                    raise h11.ProtocolViolation("the response head is over 64 KiB")
                if self.lost:
                    if self.start == self.end:
                        if isinstance(self.error, OSError):
                            raise self.error
                        raise _NoResponse
                    raise self._ended("the connection closed in the middle of the response head")
                await self.wait(clock)
            end, size = found
            if end - self.start > h11.MAX_HEAD_BYTES:
                raise h11.ProtocolViolation("the response head is over 64 KiB")
            head = h11.parse_head_once(bytes(self.buf[self.start : end]))
            self.start = end + size
            self._consumed()
            if head.status == 101:
                raise h11.ProtocolViolation("the server switched protocols (101)")
            if not h11.is_interim(head.status):
                return head

    async def read_into(self, view: memoryview, clock: _Clock) -> None:
        """Fill ``view``: buffered bytes first, then straight from the connection."""
        size = len(view)
        got = min(self.buffered(), size)
        view[:got] = self.buf[self.start : self.start + got]
        self.start += got
        self._consumed()
        if got == size:
            return
        self.filled = got
        self.target = view
        try:
            while self.target is not None:
                if self.lost:
                    raise self._ended(f"the body ended {size - self.filled} bytes early")
                await self.wait(clock)
        finally:
            self.target = None

    async def read_some(self, limit: int, clock: _Clock) -> bytes:
        """Up to ``limit`` bytes (empty at the end of the stream)."""
        while self.start == self.end:
            if self.lost:
                if isinstance(self.error, OSError):
                    raise self.error
                return b""
            await self.wait(clock)
        n = min(limit, self.end - self.start)
        data = bytes(self.buf[self.start : self.start + n])
        self.start += n
        self._consumed()
        return data

    async def read_line(self, clock: _Clock) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.start, self.end)
            if end >= 0:
                if end - self.start > h11.MAX_CHUNK_LINE:
                    raise h11.ProtocolViolation("a chunk-size line is too long")
                line = bytes(self.buf[self.start : end + 1])
                self.start = end + 1
                self._consumed()
                return line
            if self.end - self.start > h11.MAX_CHUNK_LINE:
                raise h11.ProtocolViolation("a chunk-size line is too long")
            if self.lost:
                raise self._ended("the connection closed in the middle of a chunk")
            await self.wait(clock)

    async def read_framed(
        self, frame: h11.Framing, clock: _Clock, take: Callable[[bytes], bool]
    ) -> bool:
        """Hand the body, framed by ``frame``, to ``take`` piece by piece.

        ``take`` returns ``True`` to stop early; the result says whether it did.
        """
        if frame.kind == "chunked":
            while True:
                size = h11.parse_chunk_size(await self.read_line(clock))
                if size == 0:
                    while (await self.read_line(clock)).strip():  # trailer fields
                        pass
                    return False
                while size:
                    chunk = await self.read_some(min(size, RECV_SLICE), clock)
                    if not chunk:
                        raise h11.Truncated("the connection closed in the middle of a chunk")
                    size -= len(chunk)
                    if take(chunk):
                        return True
                if (await self.read_line(clock)).strip():
                    raise h11.ProtocolViolation("a chunk is longer than its size")
        elif frame.kind == "length":
            left = frame.length
            while left:
                chunk = await self.read_some(min(left, RECV_SLICE), clock)
                if not chunk:
                    raise h11.Truncated(f"the body ended {left} bytes early")
                left -= len(chunk)
                if take(chunk):
                    return True
        elif frame.kind == "close":
            while chunk := await self.read_some(RECV_SLICE, clock):
                if take(chunk):
                    return True
        return False


class _HostPool:
    """The connections to one host in one event loop: idle ones (LIFO) and waiting calls."""

    __slots__ = ("closed", "count", "idle", "peer", "size", "waiters")

    def __init__(self, size: int) -> None:
        self.size = size
        self.peer = Peer()  # what the host has shown about keeping connections open
        self.count = 0  # connections open or being opened (idle included)
        self.idle: list[_Connection] = []
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self.closed = False

    async def acquire(self) -> _Connection | None:
        """An idle connection (newest first), or ``None``: a slot to open a new one."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.usable(self.peer):
                return conn
            conn.abort()
            self.count -= 1
        if self.count < self.size:
            self.count += 1
            return None
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result(), keep=True)  # handed over as we were cancelled
            raise

    def release(self, conn: _Connection | None, keep: bool) -> None:
        """Give back ``conn`` (``None``: give back a slot), kept for reuse or closed."""
        if conn is not None and not keep:
            conn.abort()
            conn = None
        elif conn is not None and self.closed:
            conn.close()
            conn = None
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self.count -= 1
        else:
            self.idle.append(conn)

    def close(self) -> list[_Connection]:
        """Close the idle connections (and any given back later); the ones closed."""
        self.closed = True
        closed = self.idle
        for conn in closed:
            conn.close()
        self.count -= len(closed)
        self.idle = []
        return closed


class _LoopPools:
    """The pools of one event loop, per host; closed when the loop shuts down."""

    __slots__ = ("hosts", "keeper")

    def __init__(self) -> None:
        self.hosts: dict[tuple[str, str, int], _HostPool] = {}
        self.keeper: AsyncGenerator[None, None] | None = None

    async def aclose(self) -> None:
        """Close every idle connection, and wait (briefly) until they are gone."""
        closed = [conn for pool in self.hosts.values() for conn in pool.close()]
        self.hosts.clear()
        for conn in closed:
            await conn.closed(1.0)


async def _keeper(pools: _LoopPools) -> AsyncGenerator[None, None]:
    """Holds a loop's pools; closed by the loop's ``shutdown_asyncgens`` (as ``asyncio.run`` does)."""
    try:
        yield None
        await asyncio.Event().wait()  # pragma: no cover - never resumed
    finally:
        await pools.aclose()


class AsyncioTransport:
    """Sends :class:`PreparedRequest` objects on asyncio connections; one pool per loop and host."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        pool_size: int,
        keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY,
    ) -> None:
        self._ssl = ssl_context
        #: Large response bodies' buffers, used again (the httpx path takes them here too).
        self.buffers = ReceiveBuffers()
        self._size = pool_size
        self._expiry = keepalive_expiry
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPools] = (
            weakref.WeakKeyDictionary()
        )
        self._heads: dict[tuple[str, Any, tuple[tuple[str, str], ...]], bytes] = {}
        # The loop and pools of the last small call (weakly: a loop that ends is let go).
        self._recent: tuple[weakref.ref[asyncio.AbstractEventLoop], _LoopPools] | None = None

    def connection_counts(self) -> list[tuple[str, int, str, int]]:
        """``(host, port, state, count)`` of the connections of every loop, for the metrics.

        ``idle``: open and waiting in a pool; ``active``: opening, or in an
        exchange. Read from another thread without a lock: a snapshot.
        """
        out = []
        for pools in list(self._loops.values()):
            for (_, host, port), pool in list(pools.hosts.items()):
                idle = len(pool.idle)
                out.append((host, port, "idle", idle))
                out.append((host, port, "active", max(0, pool.count - idle)))
        return out

    def forget(self) -> object:
        """Forget every connection without closing it (after ``fork()``, in the child).

        Returns what was forgotten, for the caller to keep referenced: collected,
        it would close the child's copies of the parent's sockets.
        """
        old = list(self._loops.values())  # strong references: a loop may be collected
        self._loops = weakref.WeakKeyDictionary()
        self._recent = None
        return old

    async def _pools(self, loop: asyncio.AbstractEventLoop) -> _LoopPools:
        pools = self._loops.get(loop)
        if pools is None:
            pools = self._loops[loop] = _LoopPools()
            keeper = _keeper(pools)
            await keeper.__anext__()  # registers it with the loop's async generators
            pools.keeper = keeper
        return pools

    async def aclose(self) -> None:
        """Close the connections of the running loop."""
        self._recent = None
        self.buffers.clear()
        pools = self._loops.pop(asyncio.get_running_loop(), None)
        if pools is not None and pools.keeper is not None:
            await pools.keeper.aclose()

    async def send(
        self,
        req: PreparedRequest,
        deadline: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> RawResponse:
        """Send ``req``; map every failure to a :class:`GraphPipeError`.

        ``deadline`` (``time.monotonic()`` seconds) bounds every wait; ``loop``
        is the running loop, when the caller has it already. A
        request is sent a second time, on a new connection, only when the first
        attempt was on a reused connection and provably did not reach the
        server in full (as :meth:`SyncTransport.send
        <graphpipe_client._transports.sync.SyncTransport.send>`).
        """
        if loop is None:
            loop = asyncio.get_running_loop()
        if not debug_enabled():
            try:
                return await self._send_once(req, deadline, loop, may_resend=True)
            except _NotSent:
                return await self._send_once(req, deadline, loop, may_resend=False)
        started = time.perf_counter()
        try:
            try:
                raw = await self._send_once(req, deadline, loop, may_resend=True)
            except _NotSent:
                logger.debug(
                    "%s: the connection was closed; sending once more", req.endpoint.redacted
                )
                raw = await self._send_once(req, deadline, loop, may_resend=False)
        except GraphPipeError as exc:
            log_failure(req, exc, started)
            raise
        log_exchange(req, raw, started)
        return raw

    async def _send_once(
        self,
        req: PreparedRequest,
        deadline: float | None,
        loop: asyncio.AbstractEventLoop,
        *,
        may_resend: bool,
        held: tuple[_Connection, _HostPool, int] | None = None,
    ) -> RawResponse:
        ep = req.endpoint
        clock = _Clock(req.timeout.read, deadline)
        conn: _Connection | None
        given = None
        if held is not None:  # a kept-alive connection the fast path gave the request to
            conn, pool, given = held
        else:
            pools = self._loops.get(loop) or await self._pools(loop)
            key = (ep.scheme, ep.host, ep.port)
            found = pools.hosts.get(key)
            if found is None:
                found = pools.hosts[key] = _HostPool(self._size)
            pool = found
            conn = await self._acquire(pool, req, clock)
        reused = conn is not None
        _call_began(loop)
        try:
            if conn is None:
                conn = await self._connect(req, clock, loop)
            raw, keep = await self._exchange(conn, req, clock, reused and may_resend, loop, given)
        except BaseException:
            pool.release(conn, keep=False)
            raise
        finally:
            _call_ended(loop)
        if keep:
            conn.idle_since = time.monotonic()
            if reused:
                pool.peer.answered()
        pool.release(conn, keep)
        return replace(raw, reused=reused) if debug_enabled() else raw

    def small_prefix(self, call: SmallCall) -> None:
        """Give ``call`` this transport's request head: plain ``http``, a body of at most
        ``SMALL_BODY`` (written joined to the head, as the general path writes it); TLS
        and larger bodies (views of the arrays, from a thread when the loop is shared)
        take the general path."""
        if call.req.endpoint.scheme == "http" and call.nbytes <= SMALL_BODY:
            call.set_prefix(self._head(call.req) + b"%d\r\n\r\n" % call.nbytes)

    async def send_small(
        self, call: SmallCall, views: list[memoryview], loop: asyncio.AbstractEventLoop
    ) -> tuple[bytearray, int, int] | Attempt | None:
        """One call of ``call``'s kind with the data ``views``, on a kept-alive connection of ``loop``.

        As :meth:`SyncTransport.send_small
        <graphpipe_client._transports.sync.SyncTransport.send_small>`: the
        common case in one coroutine (an idle connection to a peer known to
        keep connections open, checked as :meth:`_Connection.usable` checks
        it; the request given to the transport at once; one wait for an
        answer whose head has the bytes of one already accepted, received in
        full). Returns the body ``(buffer, start, stop)``; ``None`` when
        nothing was sent; or the :class:`Attempt` the general path finished
        from where this stopped (``_exchange``'s ``given``).
        """
        recent = self._recent
        if recent is not None and recent[0]() is loop:
            pools: _LoopPools | None = recent[1]
        else:
            pools = self._loops.get(loop)
            if pools is not None:
                self._recent = (weakref.ref(loop), pools)
        ep = call.req.endpoint
        pool = None if pools is None else pools.hosts.get((ep.scheme, ep.host, ep.port))
        if pool is None or not pool.idle or pool.peer.state != KEEPS:
            return None
        conn = pool.idle.pop()
        transport = conn.transport
        poller = conn.poller
        limit = conn.idle_limit
        if (
            transport is None
            or poller is None
            or conn.lost
            or conn.start != conn.end
            or transport.is_closing()
            or (limit is not None and time.monotonic() - conn.idle_since >= limit)
            or poller.poll(0)
        ):
            pool.idle.append(conn)  # as it was: the general path decides
            return None
        calls = _calls_on
        key = id(loop)
        calls[key] = calls.get(key, 0) + 1
        body = None  # the answer's body, once received in full; else the general path goes on
        written = UNSENT  # (not known yet: the general path checks, as after its own write)
        try:
            conn.requests += 1
            conn.drained = False
            transport.write(b"".join(call.parts(views)))
            if not (conn.writing_paused or conn.lost or transport.is_closing()):
                written = SENT  # handed to the kernel in full: never sent again
                # One answer whose head is the accepted one (learnt from a first plain
                # answer), received in full; anything else is left, unconsumed, to the general path.
                learnt = call.answer
                answer = None  # this answer's head, once its bytes are all here and checked
                buf = conn.buf
                while True:
                    start = conn.start
                    have = conn.end - start
                    if answer is None:
                        if (
                            learnt is not None
                            and have >= len(learnt[0])
                            and buf.startswith(learnt[0], start)
                        ):
                            answer = learnt
                        elif have:  # another head (or part of one): read as it is, once whole
                            found = h11.find_head_end(buf, start, conn.end)
                            if found is not None:
                                end = found[0] + found[1]
                                answer = call.accept(
                                    bytes(buf[start:end]), found[0] - start, self._expiry
                                )
                                if answer is None:
                                    break  # not a plain answer
                            elif have > h11.MAX_HEAD_BYTES:
                                break  # (the general path says what is wrong)
                    if answer is not None and have >= len(answer[0]) + answer[1]:
                        body = buf[start + len(answer[0]) : start + len(answer[0]) + answer[1]]
                        conn.start = start + len(answer[0]) + answer[1]
                        conn._consumed()
                        break
                    # Closed, or reading paused (a full buffer: a head over 64 KiB, or an
                    # answer larger than READ_LIMIT): nothing more comes until it is consumed.
                    if conn.lost or conn.reading_paused:
                        break
                    try:
                        await conn.wait_read(call.req.timeout.read)
                    except _WaitTimedOut as exc:
                        conn.pending = exc  # raised by the general path's first wait
                        break
                    buf = conn.buf  # (a new one if it had to grow)
        except BaseException:  # cancelled: the connection's state is unknown
            _call_ended(loop)
            pool.release(conn, keep=False)
            raise
        left = calls[key] - 1
        if left:
            calls[key] = left
        else:
            del calls[key]
        if body is None:
            req = call.request(views)
            try:
                try:
                    raw = await self._send_once(
                        req, None, loop, may_resend=True, held=(conn, pool, written)
                    )
                except _NotSent:
                    raw = await self._send_once(req, None, loop, may_resend=False)
            except GraphPipeError as exc:
                return Attempt(req, None, exc)
            finally:
                conn.pending = None  # (not raised if the general path did not wait)
            return Attempt(req, raw, None)
        assert answer is not None
        if conn.start == conn.end and not conn.lost:  # (a byte past the body: not reused)
            conn.idle_limit = answer[2]
            conn.idle_since = time.monotonic()
            pool.release(conn, True)
        else:
            pool.release(conn, False)
        return body, 0, len(body)

    async def _acquire(
        self, pool: _HostPool, req: PreparedRequest, clock: _Clock
    ) -> _Connection | None:
        # From the idle list, acquire() checked it; handed over by a waiter, it did not.
        checked = bool(pool.idle)
        if checked or pool.count < pool.size or clock.deadline is None:
            conn = await pool.acquire()
        else:
            try:
                async with asyncio.timeout(clock.wait(None)):
                    conn = await pool.acquire()
            except _DeadlinePassed:
                raise deadline_error(req) from None
            except TimeoutError:
                raise deadline_error(req) from None
        if conn is not None:
            # Towards a peer not known yet, the first reuse waits a moment for a close.
            wait = pool.peer.settle(time.monotonic() - conn.idle_since)
            if wait:
                try:
                    await asyncio.sleep(wait)
                except BaseException:  # cancelled: give the slot back
                    pool.release(conn, keep=False)
                    raise
            # acquire() checked a connection from the idle list; check again after a
            # wait, and check one handed over by a waiter.
            if (wait or not checked) and not conn.usable(pool.peer):
                conn.abort()  # closed, bytes arrived while idle, too old: never reused
                conn = None
        return conn

    async def _connect(
        self, req: PreparedRequest, clock: _Clock, loop: asyncio.AbstractEventLoop
    ) -> _Connection:
        ep = req.endpoint
        where = ep.redacted
        tls = ep.scheme == "https"
        try:
            timeout = clock.wait(req.timeout.connect)
            async with asyncio.timeout(timeout):
                transport, conn = await loop.create_connection(
                    _Connection,
                    ep.host,
                    ep.port,
                    ssl=self._ssl if tls else None,
                    server_hostname=ep.host if tls else None,
                )
        except _DeadlinePassed:
            raise deadline_error(req) from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
        except TimeoutError as exc:
            if clock.cut:
                raise deadline_error(req) from exc
            raise ConnectTimeout(f"connecting to {where} timed out", url=where) from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {where}: {_reason(exc)}", url=where) from exc
        if not tls:
            transport.set_write_buffer_limits(0, 0)  # resume_writing: all handed to the kernel
            conn.plain = True
        else:
            if self._ssl.verify_mode == ssl.CERT_NONE:
                warn_unverified(where)
            # A TLS 1.3 server that refuses the client's certificate says so
            # (an alert) just after the handshake, and closes. Let the loop
            # read it before the request goes out: a write after the close
            # would fail first, and the transport would drop the alert unread.
            for _ in range(3):
                await asyncio.sleep(0)
        return conn

    def _head(self, req: PreparedRequest) -> bytes:
        key = (req.method, req.endpoint, tuple(req.headers.items()))
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 256:
                self._heads.clear()
            head = self._heads[key] = request_head(req.method, req.endpoint, req.headers)
        return head

    async def _exchange(
        self,
        conn: _Connection,
        req: PreparedRequest,
        clock: _Clock,
        may_resend: bool,
        loop: asyncio.AbstractEventLoop,
        given: int | None = None,
    ) -> tuple[RawResponse, bool]:
        """Write ``req`` on ``conn`` and read the response; and whether ``conn`` may be kept.

        ``given``: the fast path gave the request to the transport already (see
        :meth:`send_small`), and found it :data:`SENT` right after, or :data:`UNSENT`
        (not known yet: checked now, as after a write here); the exchange goes on from
        there, under the same rules.
        """
        where = req.endpoint.redacted
        body = req.body
        started = False
        sent = True
        try:
            try:
                if given is not None:
                    written = SENT if given == SENT else await conn.handed_over(body.nbytes, clock)
                else:
                    head = self._head(req) + b"%d\r\n\r\n" % body.nbytes
                    # Another call on this loop's thread: a large body goes out from a thread.
                    written = await conn.write_request(
                        head, body.segments, body.nbytes, clock, shared=_calls_on[id(loop)] > 1
                    )
            except _WaitTimedOut as exc:
                raise TimeoutError from exc
            sent = written == SENT
            write_error = None if sent else (conn.error or ConnectionResetError("closed"))
            # Sent once more only when the first write failed: part of a large
            # request may have drawn an early answer that the reset then lost.
            may_resend = may_resend and written == UNSENT
            try:
                response = await conn.read_head(clock)
            except (
                _NoResponse,
                ConnectionResetError,
                BrokenPipeError,
                ConnectionAbortedError,
            ) as exc:
                if write_error is not None:
                    if may_resend:
                        raise _NotSent from exc
                    raise TransportError(
                        f"the connection to {where} was closed while the request was being "
                        f"sent: {_reason(write_error)}",
                        url=where,
                    ) from write_error
                reason = None if isinstance(exc, _NoResponse) else _reason(exc)
                raise no_response_error(req, reason) from exc
            except _WaitTimedOut as exc:
                if write_error is not None:
                    raise TransportError(
                        f"the connection to {where} was closed while the request was being "
                        f"sent: {_reason(write_error)}",
                        url=where,
                    ) from write_error
                raise ReadTimeout(
                    f"no response from {where} within the read timeout of {req.timeout.read} s",
                    url=where,
                ) from exc
            except ssl.SSLError as exc:
                if write_error is not None and may_resend:
                    raise _NotSent from exc
                # e.g. a TLS 1.3 server refusing the client certificate after the handshake.
                raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
            started = True
            conn.idle_limit = idle_limit(self._expiry, h11.keep_alive_timeout(response))
            return await self._read_body(conn, response, req, clock, sent)
        except _DeadlinePassed:
            raise deadline_error(req) from None
        except h11.Truncated as exc:
            raise TransportError(
                f"the connection to {where} closed before the end of the response: {exc}",
                url=where,
            ) from exc
        except h11.ProtocolViolation as exc:
            raise TransportError(f"{where} sent a malformed response: {exc}", url=where) from exc
        except h11.OverLimit as exc:
            raise decoded_too_large(req, exc.produced) from None
        except GraphPipeError:
            raise
        except (TimeoutError, _WaitTimedOut) as exc:
            raise ReadTimeout(
                f"the response from {where} stalled for longer than the read timeout of "
                f"{req.timeout.read} s",
                url=where,
            ) from exc
        except ssl.SSLError as exc:
            raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
        except (OSError, ValueError) as exc:
            state = "while reading the response" if started else "before a response arrived"
            raise TransportError(
                f"the connection to {where} broke {state}: {_reason(exc)}", url=where
            ) from exc

    async def _read_body(
        self,
        conn: _Connection,
        head: h11.ResponseHead,
        req: PreparedRequest,
        clock: _Clock,
        sent: bool,
    ) -> tuple[RawResponse, bool]:
        """The body of the response ``head``; and whether the connection may be kept."""
        ep = req.endpoint
        status = head.status
        rules = h11.body_rules(head, req.method)
        retry_after = rules.retry_after
        frame = rules.frame
        encoding = rules.encoding
        decoder = None
        if encoding not in ("", "identity"):
            limit = req.max_response_bytes if status == 200 else ERROR_BODY_BYTES
            decoder = h11.BoundedDecoder(encoding, limit)
        clean = sent and frame.reusable and rules.keep_alive
        data = bytearray()

        if status != 200:

            def take_error(chunk: bytes) -> bool:
                data.extend(decoder.feed(chunk) if decoder else chunk)
                return len(data) > ERROR_BODY_BYTES  # a huge error body: do not drain it

            try:
                if await conn.read_framed(frame, clock, take_error):
                    return RawResponse(
                        status, head.reason, retry_after, data[:ERROR_BODY_BYTES]
                    ), False
            except h11.OverLimit:
                return RawResponse(status, head.reason, retry_after, data[:ERROR_BODY_BYTES]), False
            keep = clean and not conn.buffered() and not conn.lost
            return RawResponse(status, head.reason, retry_after, data), keep

        if frame.kind == "length":
            check_size(frame.length, req.max_response_bytes, ep)
        if frame.kind != "length" or decoder is not None:

            def take(chunk: bytes) -> bool:
                data.extend(decoder.feed(chunk) if decoder else chunk)
                check_size(len(data), req.max_response_bytes, ep)
                return False

            await conn.read_framed(frame, clock, take)
            if decoder is not None:
                decoder.finish()
            keep = clean and not conn.buffered() and not conn.lost
            return RawResponse(status, head.reason, retry_after, data), keep

        # Head first, to place the buffer so the largest tensor is aligned;
        # then the rest straight from the connection into that buffer.
        n = frame.length
        first = bytearray(min(n, HEAD_BYTES))
        await conn.read_into(memoryview(first), clock)
        if n <= HEAD_BYTES:
            body: bytearray | memoryview = first
        else:
            view = memoryview(new_receive_buffer(n, first, self.buffers))  # type: ignore[arg-type]
            await conn.read_into(view[len(first) :], clock)
            body = view
        # A byte past the body belongs to no request: do not reuse the connection.
        keep = clean and not conn.buffered() and not conn.lost
        return RawResponse(status, head.reason, retry_after, body), keep


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    return str(exc) or type(exc).__name__
