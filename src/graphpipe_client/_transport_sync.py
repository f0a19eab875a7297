"""The sync transport: one POST over a pooled urllib3 connection, no copy of the body.

This is the only module that knows urllib3, and the only place that reaches
below its public API. It relies on three properties, each covered by
``tests/test_transport_sync.py`` so that an upgrade of urllib3 that changes
them fails loudly:

1. ``HTTPConnection.request`` sends an iterable body chunk by chunk with
   ``sendall`` (no join, no chunked encoding) when ``Content-Length`` is set.
2. ``HTTPResponse._fp`` is the standard library's ``http.client.HTTPResponse``,
   whose ``readinto`` fills a caller's buffer straight from the socket
   (urllib3's own ``readinto`` reads into a temporary and copies).
3. A pool's ``ConnectionCls`` can be replaced, which lets us tell whether a
   failed request went out on a reused keep-alive connection.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from typing import Any, cast

import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ._config import ClientConfig, make_ssl_context
from ._core import (
    ERROR_BODY_BYTES,
    HEAD_BYTES,
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

__all__ = ["SyncTransport"]

_local = threading.local()


class _TrackReuse:
    """Mixin: notes, per thread, whether a request reuses a kept-alive connection."""

    _gp_requests = 0

    def request(self, *args: Any, **kwargs: Any) -> None:
        _local.reused = self._gp_requests > 0
        self._gp_requests += 1
        super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_TrackReuse, urllib3.connection.HTTPConnection):
    pass


class _TLSConnection(_TrackReuse, urllib3.connection.HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _StaleConnectionError(Exception):
    """A reused keep-alive connection failed before any response byte arrived."""

    def __init__(self, error: TransportError) -> None:
        self.error = error


def _readinto_full(fp: http.client.HTTPResponse, view: memoryview, total: int, done: int) -> None:
    """Fill ``view`` from ``fp``; a short body is a dropped connection."""
    got = 0
    size = len(view)
    while got < size:
        n = fp.readinto(view[got:])
        if not n:
            raise http.client.IncompleteRead(b"", total - done - got)
        got += n


class SyncTransport:
    """Sends :class:`PreparedRequest` objects; one urllib3 pool per host, keep-alive."""

    def __init__(self, config: ClientConfig) -> None:
        kwargs: dict[str, Any] = {"maxsize": config.pool_size, "block": False, "retries": False}
        kwargs["ssl_context"] = make_ssl_context(config.verify, config.cert)
        if config.verify is False:
            kwargs["cert_reqs"] = "CERT_NONE"
            kwargs["assert_hostname"] = False
        self._manager = urllib3.PoolManager(num_pools=32, **kwargs)
        self._manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def close(self) -> None:
        """Close every pooled connection."""
        self._manager.clear()

    def send(self, req: PreparedRequest) -> RawResponse:
        """POST ``req``; map every failure to a :class:`GraphPipeError`.

        A request that fails on a reused keep-alive connection before any
        byte of a response arrives (the server closed the idle connection) is
        sent once more on a new connection.
        """
        try:
            return self._send_once(req)
        except _StaleConnectionError:
            pass
        try:
            return self._send_once(req)
        except _StaleConnectionError as stale:
            raise stale.error from stale.error.__cause__

    def _send_once(self, req: PreparedRequest) -> RawResponse:
        ep = req.endpoint
        where = ep.redacted
        timeout = urllib3.Timeout(connect=req.timeout.connect, read=req.timeout.read)
        pool = self._manager.connection_from_host(ep.host, ep.port, ep.scheme)
        _local.reused = False
        try:
            resp = pool.urlopen(
                "POST",
                ep.target,
                body=cast("list[bytes]", req.body.segments),  # any buffers: sent with sendall
                headers=req.headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
                preload_content=False,
                release_conn=False,
                decode_content=False,
            )
        except (ConnectTimeoutError, NewConnectionError, SSLError) as exc:
            raise _connect_error(exc, where) from exc
        except ReadTimeoutError as exc:
            raise ReadTimeout(
                f"no response from {where} within the read timeout of {req.timeout.read} s",
                url=where,
            ) from exc
        except ProtocolError as exc:
            error = TransportError(
                f"the connection to {where} was closed before a response arrived "
                f"(a GraphPipe server drops the connection on a request it cannot parse): {_reason(exc)}",
                url=where,
            )
            error.__cause__ = exc
            if getattr(_local, "reused", False) and _reset_unread(exc):
                raise _StaleConnectionError(error) from exc
            raise error from exc
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            raise TransportError(f"request to {where} failed: {_reason(exc)}", url=where) from exc

        try:
            return self._read(resp, req)
        except GraphPipeError:
            resp.close()
            raise
        except (TimeoutError, ReadTimeoutError) as exc:
            resp.close()
            raise ReadTimeout(
                f"the response from {where} stalled for longer than the read timeout of "
                f"{req.timeout.read} s",
                url=where,
            ) from exc
        except (HTTPError, OSError, http.client.HTTPException, ValueError) as exc:
            resp.close()
            raise TransportError(
                f"the connection to {where} broke while reading the response: {_reason(exc)}",
                url=where,
            ) from exc

    def _read(self, resp: urllib3.BaseHTTPResponse, req: PreparedRequest) -> RawResponse:
        ep = req.endpoint
        status = resp.status
        headers = resp.headers
        retry_after = headers.get("Retry-After")
        if status != 200:
            error_body = resp.read(ERROR_BODY_BYTES, decode_content=True)
            if resp.read(1, decode_content=False):
                resp.close()  # a huge error body: do not drain it
            else:
                resp.release_conn()
            return RawResponse(status, resp.reason or "", retry_after, error_body)

        fp = getattr(resp, "_fp", None)
        n = content_length(headers.get("Content-Length"), req.max_response_bytes, ep)
        encoded = headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if n is None or encoded or not isinstance(fp, http.client.HTTPResponse) or fp.chunked:
            return RawResponse(status, resp.reason or "", retry_after, self._read_slow(resp, req))

        # Head first, to place the buffer so the largest tensor is aligned;
        # then the rest straight from the socket into that buffer.
        head = bytearray(min(n, HEAD_BYTES))
        _readinto_full(fp, memoryview(head), n, 0)
        if n <= HEAD_BYTES:
            body: bytearray | memoryview = head
        else:
            buf = new_receive_buffer(n, head)
            view = memoryview(buf)  # type: ignore[arg-type]
            _readinto_full(fp, view[len(head) :], n, len(head))
            body = view
        resp.release_conn()
        return RawResponse(status, resp.reason or "", retry_after, body)

    def _read_slow(self, resp: urllib3.BaseHTTPResponse, req: PreparedRequest) -> bytearray:
        # Chunked, encoded or unannounced length: accumulate under the limit.
        data = bytearray()
        while True:
            chunk = resp.read(1 << 20, decode_content=True)
            if not chunk:
                break
            data += chunk
            check_size(len(data), req.max_response_bytes, req.endpoint)
        resp.release_conn()
        return data


def _reset_unread(exc: BaseException) -> bool:
    """Whether the connection was reset (not closed cleanly) before any response byte.

    A server that closes a kept-alive connection without reading the request
    that arrives on it makes its kernel answer with a reset: the request never
    reached the server, and sending it again is safe. A clean close after the
    request was sent (``RemoteDisconnected``) is not: the server may have read
    and run it (a GraphPipe server drops the connection on a request it cannot
    parse, or its model crashed).
    """
    inner = _innermost(exc)
    return isinstance(inner, (ConnectionResetError, BrokenPipeError)) and not isinstance(
        inner, http.client.RemoteDisconnected
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NewConnectionError) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__
    inner = _innermost(exc)
    text = str(inner) or type(inner).__name__
    if isinstance(inner, http.client.IncompleteRead):
        text = f"the body ended {inner.expected} bytes early" if inner.expected else "the body ended early"
    return text


def _innermost(exc: BaseException) -> BaseException:
    # urllib3 nests the interesting error in args (e.g. ProtocolError('Connection
    # aborted.', RemoteDisconnected(...))): find the innermost cause.
    inner: BaseException = exc
    while True:
        nested = [a for a in getattr(inner, "args", ()) if isinstance(a, BaseException)]
        if nested:
            inner = nested[-1]
        elif getattr(inner, "reason", None) is not None and isinstance(inner.reason, BaseException):  # type: ignore[attr-defined]
            inner = inner.reason  # type: ignore[attr-defined]
        else:
            break
    return inner


def _connect_error(exc: HTTPError, where: str) -> ConnectError:
    if isinstance(exc, SSLError) or isinstance(getattr(exc, "__cause__", None), ssl.SSLError):
        return TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where)
    if isinstance(exc, NewConnectionError):
        return ConnectError(f"cannot connect to {where}: {_reason(exc)}", url=where)
    return ConnectTimeout(f"connecting to {where} timed out", url=where)
