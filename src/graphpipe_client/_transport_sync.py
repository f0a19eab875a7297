"""The sync transport: one POST over a pooled urllib3 connection, no copy of the body.

This is the only module that knows urllib3, and the only place that reaches
below its public API. It relies on these properties, each covered by
``tests/test_transport_sync.py`` or ``tests/test_transport_perf_paths.py`` so
that an upgrade of urllib3 that changes them fails loudly:

1. ``HTTPConnection.request`` sends an iterable body chunk by chunk with
   ``sendall`` (no join, no chunked encoding) when ``Content-Length`` is set.
2. ``HTTPResponse._fp`` is the standard library's ``http.client.HTTPResponse``,
   whose ``readinto`` fills a caller's buffer straight from the socket
   (urllib3's own ``readinto`` reads into a temporary and copies).
3. A pool's ``ConnectionCls`` can be replaced, which lets us tell whether a
   failed request went out on a reused keep-alive connection, and send a
   small body together with the request head (one system call).
4. ``pool._get_conn()``/``pool._put_conn()`` hand out and take back pooled
   connections, whose ``sock`` is the open (TLS) socket: a kept-alive
   connection takes the fast path (see "The fast path" below), which writes
   the request and reads the response itself, without ``urlopen`` and
   http.client's header parser, at a fraction of their cost per call.
"""

from __future__ import annotations

import errno
import http.client
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

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
    SMALL_BODY,
    Endpoint,
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

__all__ = ["SyncTransport"]

_local = threading.local()


def _send_gathered(sock: Any, parts: list[bytes | bytearray | memoryview]) -> None:
    """Write ``parts`` one after the other in as few system calls as possible.

    On a plain socket, one ``sendmsg`` writes all the buffers (scatter/gather:
    no join, no copy). TLS sockets have no ``sendmsg``: the parts of a small
    request are joined, a copy of at most ``SMALL_BODY`` plus the head, and sent
    with one ``sendall``.
    """
    if isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):
        sock.sendall(b"".join(parts))
        return
    views = [v for v in (memoryview(p).cast("B") for p in parts) if v.nbytes]
    while views:
        sent = sock.sendmsg(views)
        while sent:
            n = views[0].nbytes
            if sent >= n:
                sent -= n
                del views[0]
            else:
                views[0] = views[0][sent:]
                sent = 0


class _TrackReuse:
    """Mixin: notes, per thread, whether a request reuses a kept-alive connection;
    sends a small body together with the request head.

    A POST whose body is an :class:`EncodedMessage` of at most ``SMALL_BODY``
    bytes is written with one system call instead of one for the head and one
    per segment: urllib3 builds the head as usual (given ``body=None`` and our
    explicit ``Content-Length`` it adds no framing of its own), :meth:`send`
    captures it instead of writing it, and :func:`_send_gathered` writes head
    and segments together. Larger bodies take urllib3's own path (one
    ``sendall`` per segment, tensor bytes straight from the caller's array).
    """

    _gp_requests = 0
    _gp_head: list[bytes] | None = None

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        _local.reused = self._gp_requests > 0
        self._gp_requests += 1
        if not isinstance(body, EncodedMessage):
            super().request(method, url, body=body, headers=headers, **kwargs)  # type: ignore[misc]
            return
        head: list[bytes] = []
        self._gp_head = head
        try:
            super().request(method, url, body=None, headers=headers, **kwargs)  # type: ignore[misc]
        finally:
            self._gp_head = None
        conn = cast(http.client.HTTPConnection, self)
        if conn.sock is None:  # as http.client's send() does before writing
            if not conn.auto_open:
                raise http.client.NotConnected()
            conn.connect()
        _send_gathered(conn.sock, [*head, *body.segments])

    def send(self, data: Any) -> None:
        head = self._gp_head
        if head is None:
            super().send(data)  # type: ignore[misc]
        else:
            head.append(data)


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


# --------------------------------------------------------------------------
# The fast path: a POST on a kept-alive connection, written and read here.
#
# urllib3 (``urlopen``) and http.client (``getresponse``, whose headers go
# through the email parser) cost about 130 us of CPU per call on a 2-core
# server: ten times a loopback round trip. On a connection that urllib3 has
# already opened (TLS included), the fast path writes the request head
# (built once per endpoint and headers) and the body in one system call, and
# parses the response head itself. New connections, and endpoints whose URL or
# headers it does not write exactly as urllib3 would, take urllib3's path.

#: Longest response head (status line and headers) accepted.
MAX_RESPONSE_HEAD: Final = 64 * 1024

# Paths urllib3 sends as they are (no percent-encoding to add or normalise).
_PLAIN_TARGET = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*").fullmatch


def request_head_prefix(ep: Endpoint, headers: dict[str, str]) -> bytes | None:
    """The request head as urllib3 writes it, up to the value of ``Content-Length``.

    ``None`` when the fast path should not write this request: a path or host
    that urllib3 would encode, a ``Host`` header of the caller's, a header that
    is not latin-1. ``Content-Length`` is always the last header (see
    ``_core._headers``).
    """
    if not _PLAIN_TARGET(ep.target) or any(k.lower() == "host" for k in headers):
        return None
    try:
        host = ep.host.encode("ascii")
        lines = [b"POST " + ep.target.encode("ascii") + b" HTTP/1.1"]
        if b":" in host:
            host = b"[" + host + b"]"
        if ep.port != (443 if ep.scheme == "https" else 80):
            host += b":%d" % ep.port
        lines.append(b"Host: " + host)
        for key, value in headers.items():
            if key.lower() != "content-length":
                lines.append(key.encode("ascii") + b": " + value.encode("latin-1"))
    except UnicodeEncodeError:
        return None
    return b"\r\n".join(lines) + b"\r\nContent-Length: "


class _FastResponse:
    """Reads one response from a socket: head parsed here, body into the caller's buffers."""

    __slots__ = ("buf", "filled", "headers", "pos", "reason", "sock", "status", "version")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = bytearray(HEAD_BYTES + 4096)
        self.filled = 0  # bytes in buf
        self.pos = 0  # bytes of buf consumed
        self.status = 0
        self.reason = ""
        self.version = 11
        self.headers: dict[str, str] = {}

    def _fill(self) -> int:
        """Receive more into ``buf`` (grown when full); the count, 0 at the end of the stream."""
        if self.filled == len(self.buf):
            if self.pos:
                del self.buf[: self.pos]
                self.filled -= self.pos
                self.pos = 0
            else:
                self.buf.extend(bytes(len(self.buf)))
        with memoryview(self.buf) as view:
            n: int = self.sock.recv_into(view[self.filled :])
        self.filled += n
        return n

    def read_head(self) -> None:
        """Read the status line and headers (skipping ``100 Continue``), as http.client does."""
        while True:
            while True:
                end = self.buf.find(b"\n\r\n", self.pos, self.filled)
                alt = self.buf.find(b"\n\n", self.pos, self.filled)
                if alt >= 0 and (end < 0 or alt < end):
                    end, size = alt, 2
                else:
                    size = 3
                if end >= 0:
                    if end - self.pos > MAX_RESPONSE_HEAD:
                        raise http.client.LineTooLong("response head")
                    break
                if self.filled - self.pos > MAX_RESPONSE_HEAD:
                    raise http.client.LineTooLong("response head")
                if not self._fill():
                    if self.filled == self.pos:
                        raise http.client.RemoteDisconnected(
                            "Remote end closed connection without response"
                        )
                    raise http.client.BadStatusLine(
                        repr(bytes(self.buf[self.pos : self.filled][:80]))
                    )
            lines = bytes(self.buf[self.pos : end]).split(b"\n")
            self.pos = end + size
            self._parse(lines)
            if self.status != 100:
                return

    def _parse(self, lines: list[bytes]) -> None:
        first = lines[0].rstrip(b"\r")
        parts = first.split(None, 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise http.client.BadStatusLine(repr(first[:80]))
        if parts[0] == b"HTTP/1.0":
            self.version = 10
        elif parts[0].startswith(b"HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(parts[0].decode("latin-1"))
        self.status = int(parts[1])
        if self.status < 100:
            raise http.client.BadStatusLine(repr(first[:80]))
        self.reason = parts[2].strip().decode("latin-1") if len(parts) > 2 else ""
        headers: dict[str, str] = {}
        last = ""
        for raw in lines[1:]:
            line = raw.rstrip(b"\r")
            if not line:
                continue
            if line[0] in b" \t" and last:  # an obsolete folded line
                headers[last] += " " + line.strip().decode("latin-1")
                continue
            name, sep, value = line.partition(b":")
            if not sep:
                continue  # not a header line: http.client's parser skips it too
            last = name.strip().lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            # Repeated headers are joined, as urllib3's HTTPHeaderDict does.
            headers[last] = f"{headers[last]}, {text}" if last in headers else text
        self.headers = headers

    @property
    def will_close(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == 10:
            return "keep-alive" not in connection
        return "close" in connection

    @property
    def chunked(self) -> bool:
        return self.headers.get("transfer-encoding", "").lower() == "chunked"

    def buffered(self) -> int:
        return self.filled - self.pos

    def read_into(self, view: memoryview, expected: int) -> None:
        """Fill ``view``: buffered bytes first, then straight from the socket."""
        got = min(self.buffered(), len(view))
        view[:got] = self.buf[self.pos : self.pos + got]
        self.pos += got
        size = len(view)
        sock = self.sock
        while got < size:
            n = sock.recv_into(view[got:])
            if not n:
                raise http.client.IncompleteRead(b"", expected - got)
            got += n

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes (b"" at the end of the stream)."""
        if self.pos == self.filled and not self._fill():
            return b""
        n = min(limit, self.filled - self.pos)
        data = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        if self.pos == self.filled:
            self.pos = self.filled = 0
        return data

    def read_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.read_some(n - len(out))
            if not chunk:
                raise http.client.IncompleteRead(bytes(out), n - len(out))
            out += chunk
        return bytes(out)

    def read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n", self.pos, self.filled)
            if end >= 0:
                line = bytes(self.buf[self.pos : end + 1])
                self.pos = end + 1
                return line
            if self.filled - self.pos > 65536:
                raise http.client.LineTooLong("chunk size")
            if not self._fill():
                raise http.client.IncompleteRead(bytes(self.buf[self.pos : self.filled]))

    def body_chunks(self, length: int | None) -> Iterator[bytes]:
        """The body as it arrives: by ``length``, by chunks, or up to the end of the stream."""
        if self.chunked:
            while True:
                line = self.read_line().split(b";", 1)[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    raise http.client.IncompleteRead(b"") from None
                if size == 0:
                    while self.read_line().strip():  # trailers
                        pass
                    return
                while size:
                    chunk = self.read_exact(min(size, 1 << 20))
                    size -= len(chunk)
                    yield chunk
                if self.read_exact(2) != b"\r\n":
                    raise http.client.IncompleteRead(b"")
        elif length is not None:
            left = length
            while left:
                chunk = self.read_some(min(left, 1 << 20))
                if not chunk:
                    raise http.client.IncompleteRead(b"", left)
                left -= len(chunk)
                yield chunk
        else:
            while chunk := self.read_some(1 << 20):
                yield chunk


def _decoder(encoding: str) -> Callable[[bytes], bytes] | None:
    """The decompressor urllib3 would use for ``encoding``, or ``None`` for identity."""
    if encoding.lower() in ("", "identity"):
        return None
    from urllib3.response import _get_decoder  # what urllib3 itself decodes with

    return cast("Callable[[bytes], bytes]", _get_decoder(encoding.lower()).decompress)


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
        # Request heads of the fast path, per endpoint and headers (None: not eligible).
        self._prefixes: dict[tuple[Endpoint, tuple[tuple[str, str], ...]], bytes | None] = {}

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
        try:
            pool = self._manager.connection_from_host(ep.host, ep.port, ep.scheme)
            prefix = self._prefix(req) if req.method == "POST" else None
            if prefix is not None:
                conn = pool._get_conn()
                if getattr(conn, "sock", None) is not None:  # kept alive: the fast path
                    return self._send_fast(pool, conn, req, prefix)
                pool._put_conn(conn)  # a new connection: urllib3 opens it
        except (HTTPError, OSError) as exc:  # e.g. a closed pool
            raise TransportError(f"request to {where} failed: {_reason(exc)}", url=where) from exc
        timeout = urllib3.Timeout(connect=req.timeout.connect, read=req.timeout.read)
        _local.reused = False
        try:
            # A small body is sent with the head in one system call (see
            # _TrackReuse); a larger one segment by segment with sendall.
            body = req.body if req.body.nbytes <= SMALL_BODY else req.body.segments
            resp = pool.urlopen(
                req.method,
                ep.target,
                body=cast("list[bytes]", body) if req.body.nbytes or req.method == "POST" else None,
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
        except (HTTPError, OSError, http.client.HTTPException, ValueError, RuntimeError) as exc:
            resp.close()
            raise TransportError(
                f"the connection to {where} broke while reading the response: {_reason(exc)}",
                url=where,
            ) from exc

    def _prefix(self, req: PreparedRequest) -> bytes | None:
        key = (req.endpoint, tuple(req.headers.items())[:-1])
        try:
            return self._prefixes[key]
        except KeyError:
            pass
        if len(self._prefixes) > 256:
            self._prefixes.clear()
        prefix = self._prefixes[key] = request_head_prefix(req.endpoint, req.headers)
        return prefix

    def _send_fast(
        self, pool: HTTPConnectionPool, conn: Any, req: PreparedRequest, prefix: bytes
    ) -> RawResponse:
        """POST ``req`` on ``conn``, a kept-alive connection of ``pool``.

        Failures map to the same errors as urllib3's path: a reset before any
        response byte is a stale connection (sent once more on a new one), a
        clean close is not.
        """
        ep = req.endpoint
        where = ep.redacted
        _local.reused = True
        keep = False
        try:
            sock = conn.sock
            body = req.body
            head = prefix + b"%d\r\n\r\n" % body.nbytes
            try:
                sock.settimeout(req.timeout.connect)  # urllib3 sends under the connect timeout
                if body.nbytes <= SMALL_BODY:
                    _send_gathered(sock, [head, *body.segments])
                else:
                    conn.send(head)
                    for segment in body.segments:
                        conn.send(segment)  # sendall, straight from the caller's array
            except BrokenPipeError:
                pass  # the server may have answered already (e.g. 413): read it
            except OSError as exc:
                if exc.errno != errno.ECONNRESET:
                    raise
            sock.settimeout(req.timeout.read)
            resp = _FastResponse(sock)
            try:
                resp.read_head()
            except TimeoutError as exc:
                raise ReadTimeout(
                    f"no response from {where} within the read timeout of {req.timeout.read} s",
                    url=where,
                ) from exc
        except GraphPipeError:
            conn.close()
            pool._put_conn(conn)
            raise
        except ssl.SSLError as exc:
            conn.close()
            pool._put_conn(conn)
            raise TLSError(f"TLS with {where} failed: {_reason(exc)}", url=where) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            pool._put_conn(conn)
            error = TransportError(
                f"the connection to {where} was closed before a response arrived "
                f"(a GraphPipe server drops the connection on a request it cannot parse): {_reason(exc)}",
                url=where,
            )
            error.__cause__ = exc
            if _reset_unread(exc):
                raise _StaleConnectionError(error) from exc
            raise error from exc

        try:
            raw, keep = self._read_fast(resp, req)
            return raw
        except GraphPipeError:
            raise
        except TimeoutError as exc:
            raise ReadTimeout(
                f"the response from {where} stalled for longer than the read timeout of "
                f"{req.timeout.read} s",
                url=where,
            ) from exc
        except (HTTPError, OSError, http.client.HTTPException, ValueError, RuntimeError) as exc:
            raise TransportError(
                f"the connection to {where} broke while reading the response: {_reason(exc)}",
                url=where,
            ) from exc
        finally:
            if not keep:
                conn.close()
            pool._put_conn(conn)

    def _read_fast(self, resp: _FastResponse, req: PreparedRequest) -> tuple[RawResponse, bool]:
        """The body of ``resp``, as :meth:`_read` reads it; and whether the connection may be kept."""
        ep = req.endpoint
        headers = resp.headers
        status = resp.status
        retry_after = headers.get("retry-after")
        length = None
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        elif not resp.chunked and status != 200:
            value = headers.get("content-length", "").strip()
            length = int(value) if value.isdigit() else None  # else: up to the end of the stream
        decode = _decoder(headers.get("content-encoding", ""))
        framed = resp.chunked or length is not None
        if status != 200:
            data = bytearray()
            chunks = resp.body_chunks(length)
            for chunk in chunks:
                data += decode(chunk) if decode else chunk
                if len(data) > ERROR_BODY_BYTES:
                    return RawResponse(
                        status, resp.reason, retry_after, data[:ERROR_BODY_BYTES]
                    ), False
            return RawResponse(
                status, resp.reason, retry_after, data
            ), framed and not resp.will_close

        n = (
            None
            if resp.chunked
            else content_length(headers.get("content-length"), req.max_response_bytes, ep)
        )
        if n is None or decode is not None:
            # Chunked, encoded or unannounced length: accumulate under the limit.
            data = bytearray()
            for chunk in resp.body_chunks(n):
                data += decode(chunk) if decode else chunk
                check_size(len(data), req.max_response_bytes, ep)
            framed = resp.chunked or n is not None
            return RawResponse(
                status, resp.reason, retry_after, data
            ), framed and not resp.will_close

        # Head first, to place the buffer so the largest tensor is aligned;
        # then the rest straight from the socket into that buffer.
        head = bytearray(min(n, HEAD_BYTES))
        resp.read_into(memoryview(head), n)
        if n <= HEAD_BYTES:
            body: bytearray | memoryview = head
        else:
            view = memoryview(new_receive_buffer(n, head))  # type: ignore[arg-type]
            resp.read_into(view[len(head) :], n - len(head))
            body = view
        # Bytes past the body would be a broken server: do not reuse the connection.
        return RawResponse(
            status, resp.reason, retry_after, body
        ), not resp.will_close and not resp.buffered()

    def _read(self, resp: urllib3.BaseHTTPResponse, req: PreparedRequest) -> RawResponse:
        ep = req.endpoint
        status = resp.status
        headers = resp.headers
        retry_after = headers.get("Retry-After")
        if status != 200:
            error_body = resp.read(ERROR_BODY_BYTES, decode_content=True)
            if resp.read(1, decode_content=True):
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
        text = (
            f"the body ended {inner.expected} bytes early"
            if inner.expected
            else "the body ended early"
        )
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
