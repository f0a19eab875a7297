"""The sync transport: one request over a pooled urllib3 connection, no copy of the body.

urllib3 opens the connections (TCP, TLS, certificates, host names) and
pools them; this module writes each request and reads each response
itself, on every connection, new or kept alive, under the rules of
:mod:`._http11`. That one path is what makes the guarantees checkable:

- The request head is built once per endpoint and headers, and head and body
  go out in one system call (``sendmsg``: no join, no copy) on a plain
  socket; a large body goes out segment by segment, straight from the
  caller's arrays.
- The response head is parsed here (1xx interim responses skipped), and the
  body is received straight into the buffer the arrays will view.
- A connection goes back to the pool only when provably clean (see
  :mod:`._http11`); a request is sent a second time only when the first
  attempt provably did not reach the server in full (see :meth:`SyncTransport.send`).
- Every wait is bounded by the read timeout and by the call's deadline.

This is the only module that knows urllib3, and the only place that reaches
below its public API. It relies on these properties of urllib3, each covered
by ``tests/transports/test_transport_sync.py`` so that an upgrade that changes them
fails loudly:

1. ``PoolManager.connection_from_host()`` returns a pool whose ``pool`` is a
   queue of idle connections (``None`` for a free slot), whose ``_new_conn()``
   makes a connection that is not open yet, and whose ``_put_conn()`` takes
   one back (see :func:`_checkout`).
2. ``conn.connect()`` opens the connection (TLS handshake and host name
   check included) under ``conn.timeout`` and leaves the socket in
   ``conn.sock``; ``conn.close()`` closes it and sets ``conn.sock`` to
   ``None``, so the pool opens a new one next time; ``conn.is_verified`` says
   whether the TLS peer was verified.
3. Through a proxy: ``ProxyManager.connection_from_host()`` of an ``http``
   target is a pool of connections to the proxy (we write absolute-form
   requests); of an ``https`` target, a pool whose connections go to the
   proxy, which ``conn.set_tunnel(host, port, headers, scheme)`` before
   ``connect()`` turns into a ``CONNECT`` tunnel with TLS to the target.
"""

from __future__ import annotations

import errno
import functools
import os
import queue
import select
import socket
import ssl
import threading
import time
import weakref
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote

import urllib3
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    SSLError,
)
from urllib3.util.wait import wait_for_read

from .._exceptions import (
    ConnectError,
    ConnectTimeout,
    GraphPipeError,
    ReadTimeout,
    TLSError,
    TransportError,
)
from .._http import http11 as h11
from .._http.abandon import Abandon
from .._http.config import ClientConfig
from .._http.exchange import (
    ERROR_BODY_BYTES,
    HEAD_BYTES,
    SMALL_BODY,
    Endpoint,
    PreparedRequest,
    RawResponse,
    check_size,
    deadline_error,
    decoded_too_large,
    new_receive_buffer,
    no_response_error,
)
from .._http.keepalive import KEEPS, Peer, idle_limit
from .._http.proxy import Proxy, ProxyChooser
from .._http.receive_buffers import ReceiveBuffers
from .._http.small_calls import Attempt, SmallCall
from .._observe.log import debug_enabled, log_exchange, log_failure, logger
from .._observe.metrics import watch_pools
from .tls import make_ssl_context, warn_unverified

__all__ = ["SyncTransport"]

#: Largest piece of a request body handed to ``sendall`` at once, so that the
#: write timeout bounds each wait for the peer, not the whole upload.
SEND_SLICE: Final = 4 << 20

#: Largest piece of a chunked, encoded or unannounced body received at once.
RECV_SLICE: Final = 1 << 20

#: Largest read straight from the socket into a buffer of its own (chunked or
#: encoded bodies), so that a server sending a byte at a time costs no large
#: allocation per byte.
DIRECT_READ: Final = 256 << 10

#: Pools (origins) each urllib3 manager keeps; as many are remembered per transport.
_NUM_POOLS: Final = 32

#: Most buffers one ``sendmsg`` takes (Linux: 1024).
IOV_MAX: Final = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


def _set_timeout(sock: Any, timeout: float | None) -> None:
    """``sock.settimeout(timeout)``, which costs a system call, only when it changes."""
    if sock.gettimeout() != timeout:
        sock.settimeout(timeout)


def _send_gathered(
    sock: Any, parts: list[bytes | bytearray | memoryview], total: int | None = None
) -> None:
    """Write ``parts`` (``total`` bytes, when known) one after the other in as few system calls as possible.

    On a plain socket, one ``writev`` writes all the buffers (scatter/gather:
    no join, no copy). TLS sockets have no ``sendmsg``: the parts of a small
    request are joined, a copy of at most ``SMALL_BODY`` plus the head, and sent
    with one ``sendall``.
    """
    if isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):
        sock.sendall(b"".join(parts))
        return
    # First one writev straight on the descriptor: a socket with a timeout is
    # non-blocking underneath, and sendmsg would poll before writing; a small
    # request almost always fits in the socket's buffer at once. What is left
    # (EAGAIN, a partial write) goes through sendmsg and its timeout.
    sent = 0
    if len(parts) <= IOV_MAX:
        try:
            sent = os.writev(sock.fileno(), parts)
        except BlockingIOError:
            sent = 0
        if sent == total:
            return
    _send_rest(sock, parts, sent)


def _send_rest(sock: Any, parts: list[bytes | bytearray | memoryview], sent: int) -> None:
    """Write what is left of ``parts`` after their first ``sent`` bytes (``sendmsg``, its timeout)."""
    views = [v for v in (memoryview(p).cast("B") for p in parts) if v.nbytes]
    while sent:
        n = views[0].nbytes
        if sent >= n:
            sent -= n
            del views[0]
        else:
            views[0] = views[0][sent:]
            sent = 0
    while views:
        sent = sock.sendmsg(views[:IOV_MAX])
        while sent:
            n = views[0].nbytes
            if sent >= n:
                sent -= n
                del views[0]
            else:
                views[0] = views[0][sent:]
                sent = 0


# Characters sent as they are in a request target; anything else is percent-encoded.
_TARGET_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"


def request_head(
    method: str, ep: Endpoint, headers: dict[str, str], forward: Proxy | None = None
) -> bytes:
    """The request head up to the value of ``Content-Length`` (always the last header).

    With ``forward`` (an HTTP proxy that forwards the request), the target is
    the absolute URL and the proxy's credentials go in ``Proxy-Authorization``.
    Header names and values were validated when the client was configured
    (tokens; ASCII values without control characters), so this cannot fail.
    """
    target = quote(ep.target, safe=_TARGET_SAFE)
    if forward is not None:
        target = quote(ep.url.split("#", 1)[0], safe=_TARGET_SAFE)
        headers = {**forward.headers, **headers}
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    if not any(k.lower() == "host" for k in headers):
        host = f"[{ep.host}]" if ":" in ep.host else ep.host
        if ep.port != (443 if ep.scheme == "https" else 80):
            host += f":{ep.port}"
        lines.append(b"Host: " + host.encode("idna" if not host.isascii() else "ascii"))
    for key, value in headers.items():
        if key.lower() != "content-length":
            lines.append(key.encode("ascii") + b": " + value.encode("latin-1"))
    return b"\r\n".join(lines) + b"\r\nContent-Length: "


class _DeadlinePassed(Exception):
    """The call's total deadline passed while waiting on the socket."""


class _Clock:
    """The timeouts of one attempt: per wait, and the call's deadline (monotonic seconds).

    :meth:`wait` gives the timeout of the next wait and notes whether the
    deadline cut it short, so that a wait that then times out is reported as
    the deadline it was (:class:`DeadlineExceeded`), not as a read timeout.
    """

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


class _ResponseReader:
    """Reads one response from a socket: head parsed here, body into the caller's buffers."""

    __slots__ = ("buf", "clock", "filled", "pending", "pos", "sock")

    def __init__(
        self,
        sock: Any,
        clock: _Clock,
        received: bytearray | None = None,
        pending: OSError | None = None,
    ) -> None:
        self.sock = sock
        self.clock = clock
        # ``received``: bytes already read from the socket (by the fast path);
        # ``pending``: the error its last read raised, raised again by the first read here.
        self.buf = bytearray(HEAD_BYTES + 4096) if received is None else received
        self.filled = 0 if received is None else len(received)  # bytes in buf
        self.pos = 0  # bytes of buf consumed
        self.pending = pending

    def _recv_into(self, view: memoryview) -> int:
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc
        clock = self.clock
        if clock.deadline is not None:
            _set_timeout(self.sock, clock.wait(clock.read))
        try:
            n: int = self.sock.recv_into(view)
        except TimeoutError:
            if clock.cut:
                raise _DeadlinePassed from None
            raise
        return n

    def _fill(self) -> int:
        """Receive more into ``buf`` (grown when full); the count, 0 at the end of the stream."""
        if self.pos:
            if self.pos == self.filled:
                self.pos = self.filled = 0
            elif self.filled == len(self.buf):
                del self.buf[: self.pos]
                self.filled -= self.pos
                self.pos = 0
        if self.filled == len(self.buf):
            self.buf.extend(bytes(len(self.buf)))
        with memoryview(self.buf) as view:
            n = self._recv_into(view[self.filled :])
        self.filled += n
        return n

    def buffered(self) -> int:
        return self.filled - self.pos

    def read_head(self) -> h11.ResponseHead:
        """The final response's head; interim 1xx responses are skipped (RFC 9110 §15.2)."""
        while True:
            while True:
                found = h11.find_head_end(self.buf, self.pos, self.filled)
                if found is not None:
                    break
                if self.filled - self.pos > h11.MAX_HEAD_BYTES:
                    raise h11.ProtocolViolation("the response head is over 64 KiB")
                if not self._fill():
                    if self.filled == self.pos:
                        raise _NoResponse
                    raise h11.Truncated("the connection closed in the middle of the response head")
            end, size = found
            if end - self.pos > h11.MAX_HEAD_BYTES:
                raise h11.ProtocolViolation("the response head is over 64 KiB")
            head = h11.parse_head_once(bytes(self.buf[self.pos : end]))
            self.pos = end + size
            if head.status == 101:
                raise h11.ProtocolViolation("the server switched protocols (101)")
            if not h11.is_interim(head.status):
                return head

    def read_into(self, view: memoryview) -> None:
        """Fill ``view``: buffered bytes first, then straight from the socket."""
        got = min(self.buffered(), len(view))
        view[:got] = self.buf[self.pos : self.pos + got]
        self.pos += got
        size = len(view)
        while got < size:
            n = self._recv_into(view[got:])
            if not n:
                raise h11.Truncated(f"the body ended {size - got} bytes early")
            got += n

    def read_some(self, limit: int) -> bytes | bytearray:
        """Up to ``limit`` bytes (empty at the end of the stream).

        Buffered bytes first; past them, a large read goes straight from the
        socket into a buffer of its own, not through the head buffer.
        """
        if self.pos == self.filled:
            if limit > len(self.buf):
                out = bytearray(min(limit, DIRECT_READ))
                with memoryview(out) as view:
                    n = self._recv_into(view)
                del out[n:]
                return out
            if not self._fill():
                return b""
        n = min(limit, self.filled - self.pos)
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return data

    def read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.pos, self.filled)
            if end >= 0:
                if end - self.pos > h11.MAX_CHUNK_LINE:
                    raise h11.ProtocolViolation("a chunk-size line is too long")
                line = bytes(self.buf[self.pos : end + 1])
                self.pos = end + 1
                return line
            if self.filled - self.pos > h11.MAX_CHUNK_LINE:
                raise h11.ProtocolViolation("a chunk-size line is too long")
            if not self._fill():
                raise h11.Truncated("the connection closed in the middle of a chunk")

    def body_chunks(self, frame: h11.Framing) -> Any:
        """The body as it arrives (a generator of ``bytes``), framed by ``frame``."""
        if frame.kind == "chunked":
            while True:
                size = h11.parse_chunk_size(self.read_line())
                if size == 0:
                    while self.read_line().strip():  # trailer fields
                        pass
                    return
                while size:
                    chunk = self.read_some(min(size, RECV_SLICE))
                    if not chunk:
                        raise h11.Truncated("the connection closed in the middle of a chunk")
                    size -= len(chunk)
                    yield chunk
                if self.read_line().strip():
                    raise h11.ProtocolViolation("a chunk is longer than its size")
        elif frame.kind == "length":
            left = frame.length
            while left:
                chunk = self.read_some(min(left, RECV_SLICE))
                if not chunk:
                    raise h11.Truncated(f"the body ended {left} bytes early")
                left -= len(chunk)
                yield chunk
        elif frame.kind == "close":
            while chunk := self.read_some(RECV_SLICE):
                yield chunk


def _shutdown(sock: Any) -> None:
    """End a connection in use on another thread: its blocked reads and writes return at once.

    ``socket.socket``'s own ``shutdown``, on a TLS socket too: ``SSLSocket``'s
    would tear its TLS state down under the reading thread.
    """
    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _NoResponse(Exception):
    """The connection ended cleanly before any byte of a response."""


class _Resume:
    """How far the fast path got with an exchange it hands to the general path:
    ``sent`` of the ``total`` bytes of ``parts`` written (``-1``: the write
    raised, nothing written), the bytes ``received`` since, and the error the
    last read raised (``pending``)."""

    __slots__ = ("parts", "pending", "received", "sent", "total")

    def __init__(
        self,
        parts: list[bytes | bytearray | memoryview],
        total: int,
        sent: int,
        received: bytearray | None = None,
        pending: OSError | None = None,
    ) -> None:
        self.parts = parts
        self.total = total
        self.sent = sent
        self.received = received
        self.pending = pending


class _NotSent(Exception):
    """The request could not be written in full: the server cannot have run it."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause)
        self.cause = cause


_transports: weakref.WeakSet[SyncTransport] = weakref.WeakSet()
_transports_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # The child must never speak on the parent's sockets: forget them. They are
    # not closed (no shutdown, no TLS close_notify): the parent keeps using them.
    global _transports_lock
    _transports_lock = threading.Lock()
    for transport in list(_transports):
        transport._forget_connections()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncTransport:
    """Sends :class:`PreparedRequest` objects; one urllib3 pool per host (and proxy), keep-alive."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._ssl = make_ssl_context(config.verify, config.cert)
        self._proxies = ProxyChooser(config.proxy, config.trust_env)
        # One manager for direct connections (None) and one per proxy.
        self._managers: dict[Proxy | None, urllib3.PoolManager] = {}
        self._managers_lock = threading.Lock()
        # Request heads, per method, endpoint, headers and proxy.
        self._heads: dict[tuple[str, Endpoint, tuple[tuple[str, str], ...], bool], bytes] = {}
        # The proxy and pool of each (scheme, host, port) (see _route).
        self._routes: dict[tuple[str, str, int], tuple[Proxy | None, Any]] = {}
        self._abandoned: list[object] = []
        self._buffers = ReceiveBuffers()  # large response bodies' buffers, used again
        with _transports_lock:
            _transports.add(self)
        watch_pools(self)

    def _manager(self, proxy: Proxy | None) -> urllib3.PoolManager:
        manager = self._managers.get(proxy)
        if manager is not None:
            return manager
        with self._managers_lock:
            manager = self._managers.get(proxy)
            if manager is None:
                manager = self._managers[proxy] = self._new_manager(proxy)
            return manager

    def _route(self, key: tuple[str, str, int]) -> tuple[Proxy | None, Any]:
        """The proxy (if any) and the pool for ``(scheme, host, port)``, remembered.

        urllib3 normalises a pool key on every lookup. A remembered pool that
        is closed (``pool.pool is None``) is looked up again. Its manager may
        let go of it meanwhile (more than ``num_pools`` origins): no second
        pool is made for the origin while it is remembered, and :meth:`close`
        closes the remembered pools too. At most ``num_pools`` are remembered.
        """
        scheme, host, port = key
        proxy = self._proxies.choose(scheme, host, port)
        pool = self._manager(proxy).connection_from_host(host, port, scheme)
        if len(self._routes) >= _NUM_POOLS:
            self._routes.clear()
        self._routes[key] = (proxy, pool)
        return proxy, pool

    def _new_manager(self, proxy: Proxy | None) -> urllib3.PoolManager:
        config = self._config
        kwargs: dict[str, Any] = {"maxsize": config.pool_size, "block": False, "retries": False}
        kwargs["ssl_context"] = self._ssl
        if config.verify is False:
            kwargs["cert_reqs"] = "CERT_NONE"
            kwargs["assert_hostname"] = False
        if proxy is None:
            return urllib3.PoolManager(num_pools=_NUM_POOLS, **kwargs)
        return urllib3.ProxyManager(
            proxy.url, num_pools=_NUM_POOLS, proxy_headers=proxy.headers, **kwargs
        )

    def _forget_connections(self) -> None:
        # Kept referenced, so that garbage collection does not even close the
        # child's copies of the parent's file descriptors behind its back.
        self._abandoned.append(self._managers)
        self._abandoned.append(self._routes)
        self._managers = {}
        self._routes = {}
        self._managers_lock = threading.Lock()  # another thread may have held it at fork

    def close(self) -> None:
        """Close every pooled connection."""
        routes, self._routes = self._routes, {}
        self._buffers.clear()
        for manager in list(self._managers.values()):
            manager.clear()
        for _, pool in routes.values():
            pool.close()  # (urllib3's clear() leaves closing its pools to the garbage collector)

    def connection_counts(self) -> list[tuple[str, int, str, int]]:
        """``(host, port, state, count)`` of the pooled connections, for the metrics.

        ``idle``: open connections waiting in a pool; ``active``: connections
        taken out of a pool by a request (connecting, or in an exchange).
        A connection opened beyond ``pool_size`` is not counted. Read from
        another thread without a lock: a snapshot, possibly a request off.
        """
        out = []
        for manager in list(self._managers.values()):
            for key in manager.pools.keys():  # noqa: SIM118 - the container's own locked copy
                pool: Any = manager.pools.get(key)
                slots = None if pool is None else pool.pool
                if slots is None:
                    continue
                queued = list(slots.queue)
                idle = sum(1 for c in queued if c is not None and c.sock is not None)
                out.append((pool.host, pool.port, "idle", idle))
                out.append((pool.host, pool.port, "active", max(0, slots.maxsize - len(queued))))
        return out

    def send(
        self, req: PreparedRequest, deadline: float | None = None, abandon: Abandon | None = None
    ) -> RawResponse:
        """Send ``req``; map every failure to a :class:`GraphPipeError`.

        ``deadline`` (``time.monotonic()`` seconds) bounds every wait.
        ``abandon`` (a hedged call's attempt) lets another thread end the
        exchange: its socket is shut down, and the connection closed, not pooled.

        A request is sent once more, on a new connection, only when the first
        attempt was on a reused keep-alive connection and provably did not
        reach the server in full: writing it failed (the server had closed the
        idle connection), or the connection ended before any response byte
        arrived while the request was still being written. A request that
        was written in full is never sent again here: the server may have run
        it (see ``RetryPolicy`` and ``idempotent`` for the opt-in).
        """
        if not debug_enabled():
            try:
                return self._send_once(req, deadline, may_resend=True, abandon=abandon)
            except _NotSent:
                return self._send_once(req, deadline, may_resend=False, abandon=abandon)
        started = time.perf_counter()
        try:
            try:
                raw = self._send_once(req, deadline, may_resend=True, abandon=abandon)
            except _NotSent:
                logger.debug(
                    "%s: the connection was closed; sending once more", req.endpoint.redacted
                )
                raw = self._send_once(req, deadline, may_resend=False, abandon=abandon)
        except GraphPipeError as exc:
            log_failure(req, exc, started)
            raise
        log_exchange(req, raw, started)
        return raw

    def small_prefix(self, call: SmallCall) -> None:
        """Give ``call`` this transport's request head, when the fast path can carry it.

        It can on a plain ``http`` connection with no proxy: the others (TLS,
        proxies) take the general path, as does every call while debug
        logging, tracing or metrics are on (the client checks those).
        """
        req = call.req
        ep = req.endpoint
        if ep.scheme != "http" or self._proxies.choose(ep.scheme, ep.host, ep.port) is not None:
            return
        call.set_prefix(self._head(req, None) + b"%d\r\n\r\n" % call.nbytes)

    def send_small(
        self, call: SmallCall, views: list[memoryview]
    ) -> tuple[bytearray, int, int] | Attempt | None:
        """One call of ``call``'s kind with the data ``views``, on a kept-alive connection.

        The general path's exchange in one function, for the common case: an
        idle connection to a peer known to keep connections open, within its
        idle limit and not readable (neither closed nor holding stray bytes),
        the request written with one ``writev``, and an answer whose head has
        the bytes of one already accepted (:func:`.._http.small_calls.plain_head`).
        Returns the answer's body: ``(buffer, start, stop)``, a buffer of its
        own. Anything
        else: ``None`` when nothing was sent (the caller takes the general
        path), or the :class:`Attempt` the general path finished from where
        this one stopped, under its rules (``_exchange``'s ``resume``).
        """
        ep = call.req.endpoint
        route = self._routes.get((ep.scheme, ep.host, ep.port))
        if route is None or route[0] is not None:
            return None
        pool = route[1]
        slots = pool.pool
        peer = getattr(pool, "gp_peer", None)
        if slots is None or peer is None or peer.state != KEEPS:
            return None
        with (
            slots.mutex
        ):  # the queue's get and put, as its own code makes them (no waiter: block=False)
            idle = slots.queue
            if not idle or idle[-1] is None:
                return None  # no idle connection: the general path opens one
            conn = idle.pop()
        sock = conn.sock
        limit = getattr(conn, "gp_idle_limit", None)
        poller = getattr(conn, "gp_poller", None)
        if poller is None or poller[0] is not sock:
            poller = None if sock is None else _poller(conn, sock)
        if (
            poller is None
            or type(sock) is not socket.socket
            or (
                limit is not None
                and time.monotonic() - getattr(conn, "gp_idle_since", 0.0) >= limit
            )
            or poller[1].poll(0)
        ):
            _put_back(pool, slots, conn)  # as it was: the general path decides
            return None
        try:
            got = self._small_exchange(sock, call, views)
        except BaseException:  # (an interrupt: the connection's state is unknown)
            conn.close()
            _put_back(pool, slots, conn)
            raise
        if isinstance(got, _Resume):
            return self._resume_small(conn, pool, call, views, got)
        buf, start, stop, keep_for = got
        if keep_for is _STRAY:
            conn.close()  # a byte past the body belongs to no request: not reused
        else:
            conn.gp_idle_limit = keep_for
            conn.gp_idle_since = time.monotonic()
        _put_back(pool, slots, conn)
        return buf, start, stop

    def _small_exchange(
        self, sock: Any, call: SmallCall, views: list[memoryview]
    ) -> tuple[bytearray, int, int, Any] | _Resume:
        """:meth:`send_small`'s exchange: the answer's ``(buffer, start, stop)`` and the
        connection's idle limit (:data:`_STRAY`: not to be reused), or where it stopped."""
        read = call.req.timeout.read
        if sock.gettimeout() != read:
            sock.settimeout(read)
        parts = call.parts(views)
        total = call.wire
        try:
            sent = os.writev(sock.fileno(), parts)
        except OSError:
            sent = -1  # nothing written: the general path writes it, and sees what fails
        if sent != total:
            return _Resume(parts, total, sent)
        answer = call.answer
        pad = 0 if answer is None else answer[4]
        buf = bytearray(HEAD_BYTES if answer is None else pad + len(answer[0]) + answer[1] + 64)
        view = memoryview(buf)
        try:
            filled = pad + sock.recv_into(view[pad:])
        except OSError as exc:
            return _Resume(parts, total, total, None, exc)
        if answer is None or not buf.startswith(answer[0], pad):
            found = h11.find_head_end(buf, pad, filled)
            if found is not None:
                answer = call.accept(
                    bytes(buf[pad : found[0] + found[1]]),
                    found[0] - pad,
                    self._config.keepalive_expiry,
                )
            if found is None or answer is None:
                return _Resume(parts, total, total, buf[pad:filled])
        head, length, idle_limit_, _, _ = answer
        start = pad + len(head)
        stop = start + length
        if stop > len(buf):  # (a new head, and a body longer than the first read's buffer)
            return _Resume(parts, total, total, buf[pad:filled])
        while filled < stop:
            try:
                n = sock.recv_into(view[filled:stop])
            except OSError as exc:
                return _Resume(parts, total, total, buf[pad:filled], exc)
            if not n:
                return _Resume(parts, total, total, buf[pad:filled])
            filled += n
        return buf, start, stop, idle_limit_ if filled == stop else _STRAY

    def _resume_small(
        self, conn: Any, pool: Any, call: SmallCall, views: list[memoryview], resume: _Resume
    ) -> Attempt:
        """The general path, on from where :meth:`send_small` stopped: the attempt's outcome."""
        req = call.request(views)
        try:
            try:
                raw = self._send_once(req, None, may_resend=True, held=(conn, pool, resume))
            except _NotSent:
                raw = self._send_once(req, None, may_resend=False)
        except GraphPipeError as exc:
            return Attempt(req, None, exc)
        return Attempt(req, raw, None)

    def _send_once(
        self,
        req: PreparedRequest,
        deadline: float | None,
        *,
        may_resend: bool,
        abandon: Abandon | None = None,
        held: tuple[Any, Any, _Resume] | None = None,
    ) -> RawResponse:
        ep = req.endpoint
        where = ep.redacted
        clock = _Clock(req.timeout.read, deadline)
        if held is not None:  # a kept-alive connection the fast path began an exchange on
            conn, pool, resume = held
            proxy = None
            reused = True
        else:
            resume = None
            try:
                key = (ep.scheme, ep.host, ep.port)
                route = self._routes.get(key)
                if route is None or route[1].pool is None:  # new, or closed
                    route = self._route(key)
                proxy, pool = route
                conn = _checkout(pool)
            except (HTTPError, OSError) as exc:  # e.g. a closed pool
                raise TransportError(
                    f"request to {where} failed: {_reason(exc)}", url=where
                ) from exc
            reused = conn.sock is not None
        try:
            if resume is None and reused and not self._idle_usable(conn, pool):
                conn.close()  # closed by the peer, stray bytes, too old, or an untrusted peer's
                reused = False
            if not reused:
                self._connect(conn, req, clock, proxy)
            if abandon is not None:
                abandon.watch(functools.partial(_shutdown, conn.sock))
            forward = proxy is not None and ep.scheme == "http"
            raw, keep = self._exchange(
                conn, req, clock, reused and may_resend, forward, proxy, resume
            )
        except BaseException:
            if abandon is not None:
                abandon.release()
            conn.close()
            pool._put_conn(conn)
            raise
        if abandon is not None and abandon.release():
            keep = False  # the loser of a hedged call: never pooled
        if not keep:
            conn.close()
        else:
            conn.gp_idle_since = time.monotonic()
            if reused:
                _peer(pool).answered()
        pool._put_conn(conn)
        return replace(raw, reused=reused) if debug_enabled() else raw

    def _idle_usable(self, conn: Any, pool: Any) -> bool:
        """Whether ``conn``, open and idle in ``pool``, may carry a request (:mod:`.._http.keepalive`).

        Not past its idle limit, and not readable (closed by the peer, or
        stray bytes) when polled: at once, or, towards a peer not known yet,
        within a few milliseconds of its last response. A peer seen closing
        connections right after their responses gets fresh connections.
        """
        idle_for = time.monotonic() - getattr(conn, "gp_idle_since", 0.0)
        limit = getattr(conn, "gp_idle_limit", None)
        if limit is not None and idle_for >= limit:
            return False
        peer = _peer(pool)
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return peer.reusable(idle_for, closed=True)  # stray bytes, already decrypted
        return peer.reusable(idle_for, wait_for_read(sock, timeout=peer.settle(idle_for)))

    def _connect(self, conn: Any, req: PreparedRequest, clock: _Clock, proxy: Proxy | None) -> None:
        ep = req.endpoint
        where = ep.redacted
        if proxy is not None:
            where = f"{where} through the proxy {proxy.redacted}"
        connect = req.timeout.connect
        try:
            conn.timeout = clock.wait(connect)
            if proxy is not None and ep.scheme == "https":
                # CONNECT to the model server, then TLS with it end to end.
                conn.set_tunnel(ep.host, ep.port, headers=proxy.headers, scheme=proxy.scheme)
            conn.connect()
            if conn.is_verified is False and req.endpoint.scheme == "https":
                warn_unverified(where)
        except _DeadlinePassed:
            raise deadline_error(req) from None
        except NewConnectionError as exc:  # (a subclass of ConnectTimeoutError)
            raise ConnectError(f"cannot connect to {where}: {_reason(exc)}", url=where) from exc
        except (ConnectTimeoutError, TimeoutError) as exc:
            if clock.cut:
                raise deadline_error(req) from exc
            raise ConnectTimeout(f"connecting to {where} timed out", url=where) from exc
        except (SSLError, ssl.SSLError, ssl.CertificateError) as exc:
            raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
        except (HTTPError, OSError) as exc:
            if isinstance(exc.__context__, ssl.SSLError):
                raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
            raise ConnectError(f"cannot connect to {where}: {_reason(exc)}", url=where) from exc

    def _head(self, req: PreparedRequest, forward: Proxy | None) -> bytes:
        key = (req.method, req.endpoint, tuple(req.headers.items()), forward is not None)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) > 256:
                self._heads.clear()
            head = self._heads[key] = request_head(req.method, req.endpoint, req.headers, forward)
        return head

    def _write(self, sock: Any, req: PreparedRequest, clock: _Clock, forward: Proxy | None) -> None:
        try:
            self._write_all(sock, req, clock, forward)
        except TimeoutError:
            if clock.cut:
                raise _DeadlinePassed from None
            raise

    def _write_all(
        self, sock: Any, req: PreparedRequest, clock: _Clock, forward: Proxy | None
    ) -> None:
        body = req.body
        head = self._head(req, forward) + b"%d\r\n\r\n" % body.nbytes
        _set_timeout(sock, clock.wait(req.timeout.read))
        if body.nbytes <= SMALL_BODY:
            _send_gathered(sock, [head, *body.segments], len(head) + body.nbytes)
            return
        sock.sendall(head)
        for segment in body.segments:
            view = memoryview(segment).cast("B")
            for start in range(0, view.nbytes, SEND_SLICE):
                if clock.deadline is not None:
                    _set_timeout(sock, clock.wait(req.timeout.read))
                sock.sendall(view[start : start + SEND_SLICE])  # straight from the array

    def _exchange(
        self,
        conn: Any,
        req: PreparedRequest,
        clock: _Clock,
        may_resend: bool,
        forward: bool = False,
        proxy: Proxy | None = None,
        resume: _Resume | None = None,
    ) -> tuple[RawResponse, bool]:
        """Write ``req`` on ``conn`` and read the response; and whether ``conn`` may be kept.

        ``forward``: ``conn`` goes to the HTTP proxy ``proxy``, which forwards
        the request (written in absolute form). ``resume``: the fast path
        began the exchange (see :meth:`SyncTransport.send_small`); it goes on
        from there, under the same rules.
        """
        where = req.endpoint.redacted
        sock = conn.sock
        write_error: OSError | None = None
        started = False
        try:
            try:
                if resume is None:
                    self._write(sock, req, clock, proxy if forward else None)
                elif resume.sent < resume.total:
                    _set_timeout(sock, req.timeout.read)
                    _send_rest(sock, resume.parts, max(resume.sent, 0))
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
                # The server closed the connection. It may have answered first
                # (e.g. a 413 to a body it refuses): read what it sent.
                write_error = exc
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
                write_error = exc  # the TLS peer closed: as a broken pipe
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET) or isinstance(
                    exc, ssl.SSLError
                ):
                    raise
                write_error = exc
            reader = (
                _ResponseReader(sock, clock)
                if resume is None
                else _ResponseReader(sock, clock, resume.received, resume.pending)
            )
            if clock.deadline is None:
                _set_timeout(sock, req.timeout.read)
            try:
                head = reader.read_head()
            except (
                _NoResponse,
                ConnectionResetError,
                BrokenPipeError,
                ConnectionAbortedError,
            ) as exc:
                if write_error is not None:
                    if may_resend:
                        raise _NotSent(write_error) from exc
                    raise TransportError(
                        f"the connection to {where} was closed while the request was being "
                        f"sent: {_reason(write_error)}",
                        url=where,
                    ) from write_error
                reason = None if isinstance(exc, _NoResponse) else _reason(exc)
                raise no_response_error(req, reason) from exc
            except TimeoutError as exc:
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
                    raise _NotSent(write_error) from exc
                # e.g. a TLS 1.3 server refusing the client certificate after the handshake.
                raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
            started = True
            conn.gp_idle_limit = idle_limit(
                self._config.keepalive_expiry, h11.keep_alive_timeout(head)
            )
            return self._read_body(reader, head, req, write_error is None)
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
        except TimeoutError as exc:
            raise ReadTimeout(
                f"the response from {where} stalled for longer than the read timeout of "
                f"{req.timeout.read} s",
                url=where,
            ) from exc
        except (OSError, ValueError) as exc:
            state = "while reading the response" if started else "before a response arrived"
            raise TransportError(
                f"the connection to {where} broke {state}: {_reason(exc)}", url=where
            ) from exc

    def _read_body(
        self, reader: _ResponseReader, head: h11.ResponseHead, req: PreparedRequest, sent: bool
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

        if status != 200:
            data = bytearray()
            try:
                for chunk in reader.body_chunks(frame):
                    data += decoder.feed(chunk) if decoder else chunk
                    if len(data) > ERROR_BODY_BYTES:  # a huge error body: do not drain it
                        return RawResponse(
                            status, head.reason, retry_after, data[:ERROR_BODY_BYTES]
                        ), False
            except h11.OverLimit:
                return RawResponse(status, head.reason, retry_after, data[:ERROR_BODY_BYTES]), False
            keep = clean and not reader.buffered()
            return RawResponse(status, head.reason, retry_after, data), keep

        if frame.kind == "length":
            check_size(frame.length, req.max_response_bytes, ep)
        if frame.kind != "length" or decoder is not None:
            # Chunked, encoded or delimited by the end of the stream: accumulate under the limit.
            data = bytearray()
            for chunk in reader.body_chunks(frame):
                data += decoder.feed(chunk) if decoder else chunk
                check_size(len(data), req.max_response_bytes, ep)
            if decoder is not None:
                decoder.finish()
            keep = clean and not reader.buffered()
            return RawResponse(status, head.reason, retry_after, data), keep

        # Head first, to place the buffer so the largest tensor is aligned;
        # then the rest straight from the socket into that buffer.
        n = frame.length
        first = bytearray(min(n, HEAD_BYTES))
        reader.read_into(memoryview(first))
        if n <= HEAD_BYTES:
            body: bytearray | memoryview = first
        else:
            view = memoryview(new_receive_buffer(n, first, self._buffers))  # type: ignore[arg-type]
            reader.read_into(view[len(first) :])
            body = view
        # A byte past the body belongs to no request: do not reuse the connection.
        return RawResponse(status, head.reason, retry_after, body), clean and not reader.buffered()


def _checkout(pool: Any) -> Any:
    """A connection of ``pool``: an idle one (newest first), or a new one (not yet open).

    What ``pool._get_conn()`` does, without its liveness check (the transport
    makes its own, just before use) and so without its misleading DEBUG log
    ("Resetting dropped connection") for every connection that was never open.
    """
    queue_ = pool.pool
    if queue_ is None:
        raise ClosedPoolError(pool, "Pool is closed.")
    try:
        conn = queue_.get(block=False)
    except queue.Empty:
        conn = None
    return conn or pool._new_conn()


#: :meth:`SyncTransport._small_exchange`'s mark of an answer followed by stray bytes.
_STRAY: Final = object()


def _put_back(pool: Any, slots: Any, conn: Any) -> None:
    """Return ``conn`` to ``slots``, the queue of ``pool`` it came from; closed if the pool closed meanwhile."""
    if pool.pool is slots:
        with slots.mutex:
            slots.queue.append(conn)
    else:
        conn.close()


def _poller(conn: Any, sock: Any) -> tuple[Any, Any]:
    """A ``poll`` object for ``sock``, kept on ``conn`` (registered once, not per check)."""
    poll = select.poll()
    poll.register(sock, select.POLLIN)
    poller = conn.gp_poller = (sock, poll)
    return poller


def _peer(pool: Any) -> Peer:
    """What the peer of ``pool`` (its endpoint, through its proxy) has shown, kept on the pool."""
    peer: Peer | None = getattr(pool, "gp_peer", None)
    if peer is None:
        peer = pool.gp_peer = Peer()
    return peer


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NewConnectionError) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__
    inner: BaseException = exc
    # urllib3 nests the interesting error (e.g. NewConnectionError(conn, "...: [Errno 111] ...")).
    while isinstance(getattr(inner, "reason", None), BaseException):
        inner = inner.reason  # type: ignore[attr-defined]
    if isinstance(inner, socket.gaierror):
        return f"cannot resolve the host name ({inner.strerror or inner})"
    return str(inner) or type(inner).__name__
