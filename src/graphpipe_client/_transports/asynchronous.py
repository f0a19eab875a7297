"""The async transport: the asyncio fast path, or one POST over a pooled ``httpx.AsyncClient``.

A direct request under an asyncio loop (standard or uvloop) goes through
:mod:`._transport_asyncio` (our own HTTP/1.1 on asyncio connections); a
request through a proxy, or under trio, through httpx, as below.

This is the only module that knows httpx. What it relies on, each covered by
``tests/transports/test_transport_perf_paths.py``:

1. A request's ``stream``, set to an ``httpx.AsyncByteStream`` that yields
   ``memoryview`` slices, is sent as it is, under the explicit
   ``Content-Length`` of the headers (no chunked encoding). h11 joins each
   chunk into new bytes, so the segments are sliced to at most
   :data:`BODY_SLICE` bytes: the copy stays small and bounded. A body of at
   most :data:`SMALL_BODY` bytes is given joined instead (one send after the
   head instead of one per segment). See :class:`_RequestBody`.
2. ``Response.aiter_raw()`` yields the body as it arrives; it is copied once
   into a buffer sized from ``Content-Length``. The stream is always drained
   to its end, or httpcore would drop the connection instead of reusing it.
3. ``httpx.AsyncHTTPTransport._pool`` is httpcore's connection pool, and its
   ``_network_backend`` opens every connection; the pool does not hand out an
   idle connection whose stream reports ``get_extra_info("is_readable")``.
   Each connection's stream is wrapped in :class:`_TrackedStream`, which
   follows the responses with :class:`._http11.ResponseTracker` and reports
   a connection that received bytes belonging to no response (a second,
   unrequested response; the body of a 204) as readable, so that it is
   closed instead of being reused: h11 would read those bytes as the answer
   to the next request.
4. An ``httpx.AsyncClient`` and its connections belong to the event loop they
   were used in. The transport keeps one per running loop, and closes it when
   that loop shuts down (``asyncio.run`` and ``loop.shutdown_asyncgens()``
   close async generators; the pool's keeper is one), so a client reused
   across loops (repeated ``asyncio.run``, notebooks) never hands a
   connection of one loop to another.
5. httpcore writes a request through the connection's stream, in the
   caller's task (so a ``contextvars`` value set around ``client.send`` is
   seen there), and a failed write surfaces as an ``httpx.TransportError``
   (httpcore reads on after a ``WriteError``, for an early answer, and reports
   what the read finds). :class:`_TrackedStream` notes a failed *first* write
   of a request on a reused connection, and :meth:`AsyncTransport._send`
   then sends the request once more (covered under trio, where such a write
   fails at once).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import ssl
import sys
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from dataclasses import replace
from typing import Any, Final

import anyio
import httpcore
import httpx

from .._exceptions import (
    ConnectError,
    ConnectTimeout,
    GraphPipeError,
    ReadTimeout,
    TLSError,
    TransportError,
)
from .._http import http11 as h11
from .._http.config import ClientConfig
from .._http.exchange import (
    ERROR_BODY_BYTES,
    HEAD_BYTES,
    SMALL_BODY,
    PreparedRequest,
    RawResponse,
    check_size,
    content_length,
    deadline_error,
    decoded_too_large,
    new_receive_buffer,
    no_response_error,
)
from .._http.keepalive import Peer, idle_limit
from .._http.proxy import Proxy, ProxyChooser
from .._http.small_calls import Attempt, SmallCall
from .._observe.log import debug_enabled, log_exchange, log_failure, logger
from .._observe.metrics import watch_pools
from .._wire.messages import EncodedMessage
from .asyncio_direct import AsyncioTransport
from .tls import make_ssl_context, warn_unverified

__all__ = ["BODY_SLICE", "AsyncTransport"]

#: Largest piece of the request body handed to httpx at once.
BODY_SLICE: Final = 1 << 20

#: Whether direct requests under asyncio take the fast path
#: (:mod:`._transport_asyncio`); the tests turn it off to exercise httpx.
FAST_PATH = True


def _running_loop() -> object:
    """The running asyncio loop, or trio's token for the running ``trio.run``.

    (What ``sniffio`` would tell, without the dependency: httpx no longer
    brings it.) The pools of a loop are kept under it.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
    raise RuntimeError("AsyncClient needs a running asyncio event loop or trio.run()")


#: Whether this process was forked from one that had this module: then a
#: loop object inherited from the parent may look as if it were running.
_FORKED = False


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or ``None`` (under trio).

    On Python 3.11, ``asyncio.get_running_loop()`` makes a ``getpid()`` system
    call (against a loop inherited through ``fork``). A running asyncio loop
    (or uvloop) installs its own async-generator hooks in its thread: the
    loop they belong to, running, is this thread's running loop; after a fork
    (see ``_after_fork_in_child``) the check falls back to asyncio's.
    """
    loop = getattr(sys.get_asyncgen_hooks().firstiter, "__self__", None)
    if not _FORKED and isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running():
        return loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _under_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _RequestBody(httpx.AsyncByteStream):
    """The request body, as httpx sends it: ``request.stream``.

    A small body is joined into one ``bytes`` (a copy of at most
    ``SMALL_BODY``): h11 then writes it with a single send after the head,
    where it would write each segment with its own (and an async iterator
    costs more per call than the copy). A larger body streams its segments'
    views, sliced to ``BODY_SLICE``.

    Not an async generator (httpx's own ``ByteStream`` is one): a request
    cancelled while its body is going out (a deadline, or the other batches
    of a run after one failed) would leave a generator unfinished, which trio
    reports as a ``ResourceWarning`` when it is collected (encode/httpx#3686).
    An iterator object has no frame to finalise.
    """

    __slots__ = ("_body",)

    def __init__(self, body: EncodedMessage) -> None:
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _BodyPieces(self._body)


class _BodyPieces:
    """One pass over a :class:`_RequestBody`: its pieces, each ``bytes`` or a ``memoryview``."""

    __slots__ = ("_pieces",)

    def __init__(self, body: EncodedMessage) -> None:
        self._pieces: Iterator[bytes | memoryview]
        if body.nbytes <= SMALL_BODY:
            self._pieces = iter((body.tobytes(),))
        else:
            self._pieces = _slices(body.segments)

    def __aiter__(self) -> _BodyPieces:
        return self

    async def __anext__(self) -> bytes:
        try:
            piece = next(self._pieces)
        except StopIteration:
            raise StopAsyncIteration from None
        return piece  # type: ignore[return-value]  # memoryviews pass through h11


def _slices(segments: tuple[bytes | bytearray | memoryview, ...]) -> Iterator[memoryview]:
    for segment in segments:
        view = memoryview(segment).cast("B")
        for start in range(0, len(view), BODY_SLICE):
            yield view[start : start + BODY_SLICE]


async def _keeper(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Holds a loop's pool; closed by the loop's ``shutdown_asyncgens``."""
    try:
        yield None
        await asyncio.Event().wait()  # pragma: no cover - never resumed
    finally:
        await client.aclose()


#: For the request being sent in this task, on the httpx path: a list that
#: :class:`_TrackedStream` appends to when the request's first write failed on a
#: reused connection (a connection the server closed while idle).
_UNSENT: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "graphpipe_unsent", default=None
)


class _NotWritten(Exception):
    """The request's first write failed on a reused connection: it may be sent once more."""


class _TrackedStream(httpcore.AsyncNetworkStream):
    """A connection's stream that accounts for every byte read (see property 3 above).

    It also decides, as the fast path does, whether the connection may carry
    another request once idle (:mod:`.._http.keepalive`): httpcore asks
    ``get_extra_info("is_readable")`` before it reuses a connection, and the
    answer is "yes, readable: do not reuse" for one past its idle limit (the
    server's ``Keep-Alive: timeout=``; httpx's ``keepalive_expiry`` enforces
    the client's), or one the peer may close under it.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream, peer: Peer | None = None) -> None:
        self._inner = inner
        self._tracker = h11.ResponseTracker()
        self._peer = Peer() if peer is None else peer
        self._idle_since = 0.0  # time.monotonic() when the last response ended

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        tracker = self._tracker
        tracker.feed(data)
        if tracker.idle:
            self._idle_since = time.monotonic()
            if tracker.requests > 1:
                self._peer.answered()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        tracker = self._tracker
        first = tracker.idle  # no response pending: this write starts a new request
        if first:
            if tracker.requests:
                await self._settle()
            tracker.request_sent(bytes(buffer[:8]).split(b" ", 1)[0].decode("latin-1"))
        try:
            await self._inner.write(buffer, timeout)
        except Exception:
            if first and tracker.requests > 1:
                # The first write of a request on a reused connection: nothing of it left.
                # httpcore goes on to read a response, and reports what the read finds;
                # tell _send that this request provably never reached the server.
                unsent = _UNSENT.get()
                if unsent is not None:
                    unsent.append(True)
            raise

    async def _settle(self) -> None:
        """Before the first reuse towards a peer not known yet, wait a moment for its close.

        If it closes, nothing was written: :class:`_NotWritten` has the request
        sent on a fresh connection (once).
        """
        idle_for = time.monotonic() - self._idle_since
        wait = self._peer.settle(idle_for)
        if not wait:
            return
        unsent = _UNSENT.get()
        if unsent is None or unsent:
            return  # not resendable now: httpcore's checks stand
        await anyio.sleep(wait)
        if not self._peer.reusable(idle_for, bool(self._inner.get_extra_info("is_readable"))):
            unsent.append(True)
            raise _NotWritten

    def _readable(self) -> bool:
        """``is_readable``, as httpcore asks it before reusing the connection; see the class."""
        tracker = self._tracker
        if tracker.poisoned:
            return True
        readable = bool(self._inner.get_extra_info("is_readable"))
        if not tracker.idle or not tracker.requests:
            return readable
        idle_for = time.monotonic() - self._idle_since
        # The client's own limit is httpx's keepalive_expiry; here the server's.
        limit = idle_limit(None, tracker.keep_alive)
        if limit is not None and idle_for >= limit:
            return True
        return not self._peer.reusable(idle_for, readable)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # Bytes before TLS (a proxy's CONNECT) belong to another exchange.
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        if ssl_context.verify_mode == ssl.CERT_NONE:
            warn_unverified(server_hostname or "the server")
        return _TrackedStream(inner, self._peer)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self._readable()
        return self._inner.get_extra_info(info)


class _TrackingBackend(httpcore.AsyncNetworkBackend):
    """Opens connections with httpcore's own backend and wraps their streams.

    Keeps what each peer (host and port of the TCP connection: the proxy,
    through one) has shown about keeping connections open.
    """

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner
        self._peers: dict[tuple[object, object], Peer] = {}

    def _peer(self, key: tuple[object, object]) -> Peer:
        peer = self._peers.get(key)
        if peer is None:
            if len(self._peers) >= 256:
                self._peers.clear()
            peer = self._peers[key] = Peer()
        return peer

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(*args, **kwargs)
        return _TrackedStream(stream, self._peer((kwargs.get("host"), kwargs.get("port"))))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(*args, **kwargs)
        return _TrackedStream(stream, self._peer((kwargs.get("path"), None)))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _tracked_transport(**kwargs: Any) -> httpx.AsyncHTTPTransport:
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool
    pool._network_backend = _TrackingBackend(pool._network_backend)
    return transport


class _ProxyRouter(httpx.AsyncBaseTransport):
    """Sends each request direct or through its proxy, as :class:`._proxy.ProxyChooser` says.

    One tracked transport (pool) per proxy, made on first use; the sync client
    chooses with the same rules, so both agree on every URL.
    """

    def __init__(
        self, chooser: ProxyChooser, ssl_context: ssl.SSLContext, limits: httpx.Limits
    ) -> None:
        self._chooser = chooser
        self._ssl = ssl_context
        self._limits = limits
        self._transports: dict[Proxy | None, httpx.AsyncHTTPTransport] = {}

    def _transport(self, url: httpx.URL) -> httpx.AsyncHTTPTransport:
        port = url.port or (443 if url.scheme == "https" else 80)
        proxy = self._chooser.choose(url.scheme, url.host, port)
        transport = self._transports.get(proxy)
        if transport is None:
            kwargs: dict[str, Any] = {"verify": self._ssl, "limits": self._limits}
            if proxy is not None:
                kwargs["proxy"] = httpx.Proxy(proxy.url_with_credentials)
            transport = self._transports[proxy] = _tracked_transport(**kwargs)
        return transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in list(self._transports.values()):
            await transport.aclose()
        self._transports.clear()


_transports: weakref.WeakSet[AsyncTransport] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = True
    # Never speak on the parent's sockets: forget (do not close) its pools.
    for transport in list(_transports):
        transport._forget_pools()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _LoopPool:
    __slots__ = ("client", "keeper")

    def __init__(self, client: httpx.AsyncClient, keeper: AsyncGenerator[None, None]) -> None:
        self.client = client
        self.keeper = keeper


class AsyncTransport:
    """Sends :class:`PreparedRequest` objects with httpx; one pool per event loop."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._ssl: ssl.SSLContext = make_ssl_context(config.verify, config.cert)
        self._proxies = ProxyChooser(config.proxy, config.trust_env)
        self._pools: weakref.WeakKeyDictionary[object, _LoopPool] = weakref.WeakKeyDictionary()
        self._fast = AsyncioTransport(self._ssl, config.pool_size, config.keepalive_expiry)
        self._abandoned: list[object] = []
        _transports.add(self)
        watch_pools(self._fast)  # (httpx's pools, for proxies and trio, are not counted)

    def _forget_pools(self) -> None:
        self._abandoned.append(self._pools)
        self._abandoned.append(self._fast.forget())
        self._pools = weakref.WeakKeyDictionary()

    def _direct(self, req: PreparedRequest) -> bool:
        """Whether ``req`` goes to its server directly (through no proxy)."""
        ep = req.endpoint
        return self._proxies.choose(ep.scheme, ep.host, ep.port) is None

    async def sleep(self, seconds: float) -> None:
        """Sleep in whichever event loop runs (asyncio or trio)."""
        if _under_asyncio():
            await asyncio.sleep(seconds)
        else:
            await anyio.sleep(seconds)

    async def _client(self) -> httpx.AsyncClient:
        loop = _running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            size = self._config.pool_size
            limits = httpx.Limits(
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=self._config.keepalive_expiry,
            )
            client = httpx.AsyncClient(
                transport=_ProxyRouter(self._proxies, self._ssl, limits),
                follow_redirects=False,
                trust_env=False,  # the router reads the environment, as the sync client does
            )
            keeper = _keeper(client)
            await keeper.__anext__()  # registers it with the loop's async generators
            pool = self._pools[loop] = _LoopPool(client, keeper)
        return pool.client

    async def aclose(self) -> None:
        """Close the pools of the running loop (pools of loops already shut down are closed)."""
        pool = self._pools.pop(_running_loop(), None)
        if pool is not None:
            await pool.keeper.aclose()
        if _under_asyncio():
            await self._fast.aclose()

    def small_prefix(self, call: SmallCall) -> None:
        """Give ``call`` the fast path's request head, when it can carry such calls: a
        direct (no proxy) plain ``http`` request; under asyncio (checked per call)."""
        ep = call.req.endpoint
        if FAST_PATH and self._proxies.choose(ep.scheme, ep.host, ep.port) is None:
            self._fast.small_prefix(call)

    def send_small(
        self, call: SmallCall, views: list[memoryview]
    ) -> Coroutine[Any, Any, tuple[bytearray, int, int] | Attempt | None] | None:
        """A repeated small call on the asyncio fast path, to await
        (:meth:`.asyncio_direct.AsyncioTransport.send_small`, itself: no coroutine in
        between); ``None`` under trio (or with the fast path off): the caller takes the
        general path."""
        loop = _asyncio_loop() if FAST_PATH else None
        if loop is None:
            return None
        return self._fast.send_small(call, views, loop)

    async def send(self, req: PreparedRequest, deadline: float | None = None) -> RawResponse:
        """Send ``req``; map every failure to a :class:`GraphPipeError`.

        ``deadline`` (``time.monotonic()`` seconds) bounds the whole exchange.
        A direct request under asyncio goes through the fast path; any other
        (through a proxy, under trio) through httpx.
        """
        loop = _asyncio_loop() if FAST_PATH else None
        if loop is not None and self._direct(req):
            return await self._fast.send(req, deadline, loop)
        if not debug_enabled():
            return await self._send_within(req, deadline)
        started = time.perf_counter()
        try:
            raw = await self._send_within(req, deadline)
        except GraphPipeError as exc:
            log_failure(req, exc, started)
            raise
        log_exchange(req, raw, started)
        return raw

    async def _send_within(self, req: PreparedRequest, deadline: float | None) -> RawResponse:
        if deadline is None:
            return await self._send(req)
        left = deadline - time.monotonic()
        if left <= 0:
            raise deadline_error(req)
        try:
            if _under_asyncio():
                async with asyncio.timeout(left):
                    return await self._send(req)
            with anyio.fail_after(left):
                return await self._send(req)
        except TimeoutError as exc:  # the builtin: asyncio.timeout's (and anyio's) own
            raise deadline_error(req) from exc

    async def _send(self, req: PreparedRequest) -> RawResponse:
        """One exchange; sent once more, on another connection, only when the first attempt
        failed at its first write on a reused connection (as the fast path does)."""
        unsent: list[bool] = []
        token = _UNSENT.set(unsent)
        try:
            try:
                return await self._send_attempt(req, unsent)
            except _NotWritten:
                logger.debug(
                    "%s: the connection was closed; sending once more", req.endpoint.redacted
                )
                return await self._send_attempt(req, None)
        finally:
            _UNSENT.reset(token)

    async def _send_attempt(self, req: PreparedRequest, unsent: list[bool] | None) -> RawResponse:
        where = req.endpoint.redacted
        t = req.timeout
        client = await self._client()
        request = client.build_request(
            req.method,
            req.endpoint.url,
            headers=req.headers,  # with the body's Content-Length
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=None),
        )
        request.stream = _RequestBody(req.body)
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectTimeout as exc:
            via = self._via(req)
            raise ConnectTimeout(f"connecting to {via} timed out", url=where) from exc
        except httpx.ConnectError as exc:
            raise _connect_error(exc, self._via(req), where) from exc
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
            raise ReadTimeout(
                f"no response from {where} within the read timeout of {t.read} s", url=where
            ) from exc
        except httpx.RemoteProtocolError as exc:
            if unsent:
                raise _NotWritten from exc
            raise no_response_error(req, str(exc) or None) from exc
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            if unsent and isinstance(exc, httpx.TransportError):
                raise _NotWritten from exc
            raise TransportError(
                f"request to {where} failed: {str(exc) or type(exc).__name__}", url=where
            ) from exc

        try:
            raw = await self._read(response, req)
            if debug_enabled():
                stream = response.extensions.get("network_stream")
                if isinstance(stream, _TrackedStream):
                    raw = replace(raw, reused=stream._tracker.requests > 1)
            return raw
        except GraphPipeError:
            raise
        except h11.ProtocolViolation as exc:
            raise TransportError(f"{where} sent a malformed response: {exc}", url=where) from exc
        except h11.OverLimit as exc:
            raise decoded_too_large(req, exc.produced) from None
        except httpx.TimeoutException as exc:
            raise ReadTimeout(
                f"the response from {where} stalled for longer than the read timeout of {t.read} s",
                url=where,
            ) from exc
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:
            raise TransportError(
                f"the connection to {where} broke while reading the response: {str(exc) or type(exc).__name__}",
                url=where,
            ) from exc
        finally:
            await response.aclose()

    def _via(self, req: PreparedRequest) -> str:
        """The endpoint, and the proxy the request went through, for a connect error's message."""
        ep = req.endpoint
        proxy = self._proxies.choose(ep.scheme, ep.host, ep.port)
        return ep.redacted if proxy is None else f"{ep.redacted} through the proxy {proxy.redacted}"

    async def _read(self, response: httpx.Response, req: PreparedRequest) -> RawResponse:
        status = response.status_code
        headers = response.headers
        reason = response.reason_phrase
        retry_after = headers.get("Retry-After")
        encoding = headers.get("Content-Encoding", "").strip().lower()
        encoded = encoding not in ("", "identity")
        if status != 200:
            data = bytearray()
            decoder = h11.BoundedDecoder(encoding, ERROR_BODY_BYTES) if encoded else None
            try:
                async for chunk in response.aiter_raw():
                    data += decoder.feed(chunk) if decoder else chunk
                    if len(data) > ERROR_BODY_BYTES:
                        break  # aclose() drops the connection rather than drain a huge body
            except h11.OverLimit:
                pass
            return RawResponse(status, reason, retry_after, bytes(data[:ERROR_BODY_BYTES]))

        n = content_length(headers.get("Content-Length"), req.max_response_bytes, req.endpoint)
        if n is None or encoded:
            decoder = h11.BoundedDecoder(encoding, req.max_response_bytes) if encoded else None
            return RawResponse(
                status, reason, retry_after, await self._read_slow(response, req, decoder)
            )

        head = bytearray()
        buf: memoryview | None = None
        filled = 0
        async for chunk in response.aiter_raw():
            if buf is None:
                head += chunk
                if len(head) >= min(n, HEAD_BYTES) and n > HEAD_BYTES:
                    if len(head) > n:
                        break  # h11 enforces Content-Length; defensive
                    buf = memoryview(new_receive_buffer(n, head, self._fast.buffers))  # type: ignore[arg-type]
                    filled = len(head)
                continue
            end = filled + len(chunk)
            if end > n:
                raise TransportError(
                    f"the response from {req.endpoint.redacted} is longer than its Content-Length",
                    url=req.endpoint.redacted,
                )
            buf[filled:end] = chunk
            filled = end
        body: bytearray | memoryview = head if buf is None else buf
        got = len(head) if buf is None else filled
        if got != n:
            raise TransportError(
                f"the connection to {req.endpoint.redacted} closed after {got} of {n} bytes",
                url=req.endpoint.redacted,
            )
        return RawResponse(status, reason, retry_after, body)

    async def _read_slow(
        self, response: httpx.Response, req: PreparedRequest, decoder: h11.BoundedDecoder | None
    ) -> bytearray:
        """A chunked, encoded or unannounced body, accumulated under the limit.

        An encoded body is inflated by :class:`._http11.BoundedDecoder` from the
        raw bytes (not by httpx, whose decoders inflate each piece whole: a
        64 KiB piece of a gzip bomb becomes 64 MiB at once).
        """
        data = bytearray()
        async for chunk in response.aiter_raw():
            data += decoder.feed(chunk) if decoder else chunk
            check_size(len(data), req.max_response_bytes, req.endpoint)
        if decoder is not None:
            decoder.finish()
        return data


def _connect_error(exc: httpx.ConnectError, via: str, where: str) -> ConnectError:
    """``exc`` as ours; ``via`` names the endpoint (and the proxy), ``where`` the endpoint."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return TLSError(f"TLS with {via} failed: {cause}", url=where)
        cause = cause.__cause__ or cause.__context__
    return ConnectError(f"cannot connect to {via}: {str(exc) or type(exc).__name__}", url=where)
