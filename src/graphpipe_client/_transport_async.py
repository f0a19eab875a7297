"""The async transport: one POST over a pooled ``httpx.AsyncClient``.

This is the only module that knows httpx. What it relies on, each covered by
``tests/test_transport_async.py``:

1. A request body given as an async iterator of ``memoryview`` slices with an
   explicit ``Content-Length`` is sent as is (no chunked encoding). h11 joins
   each chunk into new bytes, so the segments are sliced to at most
   :data:`BODY_SLICE` bytes: the copy stays small and bounded. A body of at
   most :data:`SMALL_BODY` bytes is given joined instead (one send after the
   head instead of one per segment).
2. ``Response.aiter_raw()`` yields the body as it arrives; it is copied once
   into a buffer sized from ``Content-Length``. The stream is always drained
   to its end, or httpcore would drop the connection instead of reusing it.
3. An ``httpx.AsyncClient`` and its connections belong to the event loop they
   were used in. The transport keeps one per running loop, and closes it when
   that loop shuts down (``asyncio.run`` and ``loop.shutdown_asyncgens()``
   close async generators; the pool's keeper is one), so a client reused
   across loops (repeated ``asyncio.run``, notebooks) never hands a
   connection of one loop to another.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Final, cast

import httpx

from ._config import ClientConfig, make_ssl_context
from ._core import (
    ERROR_BODY_BYTES,
    HEAD_BYTES,
    SMALL_BODY,
    PreparedRequest,
    RawResponse,
    check_size,
    content_length,
    new_receive_buffer,
)
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    GraphPipeError,
    ReadTimeout,
    TLSError,
    TransportError,
)
from ._messages import EncodedMessage

__all__ = ["BODY_SLICE", "AsyncTransport"]

#: Largest piece of the request body handed to httpx at once.
BODY_SLICE: Final = 1 << 20


async def _body(segments: tuple[bytes | bytearray | memoryview, ...]) -> AsyncIterator[memoryview]:
    for segment in segments:
        view = memoryview(segment).cast("B")
        for start in range(0, len(view), BODY_SLICE):
            yield view[start : start + BODY_SLICE]


def _content(body: EncodedMessage) -> bytes | AsyncIterator[bytes]:
    """What httpx gets as the request body.

    A small body is joined into one ``bytes`` (a copy of at most
    ``SMALL_BODY``): h11 then writes it with a single send after the head,
    where it would write each segment with its own (and an async iterator
    costs more per call than the copy). A larger body streams its segments'
    views, sliced to ``BODY_SLICE``.
    """
    if body.nbytes <= SMALL_BODY:
        return body.tobytes()
    return cast("AsyncIterator[bytes]", _body(body.segments))  # memoryviews pass through


async def _keeper(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Holds a loop's pool; closed by the loop's ``shutdown_asyncgens``."""
    try:
        yield None
        await asyncio.Event().wait()  # pragma: no cover - never resumed
    finally:
        await client.aclose()


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
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )

    async def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            size = self._config.pool_size
            client = httpx.AsyncClient(
                verify=self._ssl,
                limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                follow_redirects=False,
                trust_env=False,
            )
            keeper = _keeper(client)
            await keeper.__anext__()  # registers it with the loop's async generators
            pool = self._pools[loop] = _LoopPool(client, keeper)
        return pool.client

    async def aclose(self) -> None:
        """Close the pool of the running loop (pools of loops already shut down are closed)."""
        loop = asyncio.get_running_loop()
        pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.keeper.aclose()

    async def send(self, req: PreparedRequest) -> RawResponse:
        """Send ``req`` (a POST, or a GET probe); map every failure to a :class:`GraphPipeError`."""
        where = req.endpoint.redacted
        t = req.timeout
        client = await self._client()
        request = client.build_request(
            req.method,
            req.endpoint.url,
            content=_content(req.body) if req.body.nbytes or req.method == "POST" else None,
            headers=req.headers,
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=None),
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectTimeout as exc:
            raise ConnectTimeout(f"connecting to {where} timed out", url=where) from exc
        except httpx.ConnectError as exc:
            raise _connect_error(exc, where) from exc
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout) as exc:
            raise ReadTimeout(
                f"no response from {where} within the read timeout of {t.read} s", url=where
            ) from exc
        except httpx.RemoteProtocolError as exc:
            raise TransportError(
                f"the connection to {where} was closed before a response arrived "
                f"(a GraphPipe server drops the connection on a request it cannot parse): {exc}",
                url=where,
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            raise TransportError(
                f"request to {where} failed: {str(exc) or type(exc).__name__}", url=where
            ) from exc

        try:
            return await self._read(response, req)
        except GraphPipeError:
            raise
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

    async def _read(self, response: httpx.Response, req: PreparedRequest) -> RawResponse:
        status = response.status_code
        headers = response.headers
        reason = response.reason_phrase
        retry_after = headers.get("Retry-After")
        if status != 200:
            data = bytearray()
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > ERROR_BODY_BYTES:
                    break  # aclose() drops the connection rather than drain a huge body
            return RawResponse(status, reason, retry_after, bytes(data[:ERROR_BODY_BYTES]))

        n = content_length(headers.get("Content-Length"), req.max_response_bytes, req.endpoint)
        encoded = headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if n is None or encoded:
            return RawResponse(
                status, reason, retry_after, await self._read_slow(response, req, encoded)
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
                    buf = memoryview(new_receive_buffer(n, head))  # type: ignore[arg-type]
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
        self, response: httpx.Response, req: PreparedRequest, encoded: bool
    ) -> bytearray:
        data = bytearray()
        chunks = response.aiter_bytes() if encoded else response.aiter_raw()
        async for chunk in chunks:
            data += chunk
            check_size(len(data), req.max_response_bytes, req.endpoint)
        return data


def _connect_error(exc: httpx.ConnectError, where: str) -> ConnectError:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return TLSError(f"TLS with {where} failed: {cause}", url=where)
        cause = cause.__cause__ or cause.__context__
    return ConnectError(f"cannot connect to {where}: {str(exc) or type(exc).__name__}", url=where)
