"""The sync transport's one path (see ``_transports/sync.py``): what it writes, how it reads.

urllib3 only opens and pools the connections; the transport writes every
request and reads every response itself, on new and kept-alive connections
alike. A scripted server on loopback answers each request with bytes chosen
by the test, so that every framing the reader knows (length, chunks, up to
the close, gzip/deflate, 1xx interim responses, HTTP/1.0, lenient newlines)
is checked against the expected arrays, with whether the connection was kept
(the server counts its connections), and every way a response can be broken
gives a typed error. The at-most-once rule is checked by counting the requests
the server received. The async tests at the end cover what the async
transport does with bodies and with bytes that belong to no response.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import inspect
import os
import socket
import ssl
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import anyio
import httpcore
import httpx
import numpy as np
import pytest
import urllib3

import aio_modes
import graphpipe_client as gp
from graphpipe_client import codec
from graphpipe_client._http.exchange import SMALL_BODY, parse_endpoint
from graphpipe_client._transports import asynchronous as _transport_async
from graphpipe_client._transports import sync as _transport_sync

X = np.arange(10, dtype=np.float32).reshape(1, 10)
Y = np.arange(6, dtype=np.float64).reshape(2, 3)
Y_BODY = codec.encode_infer_response([Y]).tobytes()
STRAY = np.full(3, 666.0)  # a shape no call here expects: a stray answer, never ours
STRAY_BODY = codec.encode_infer_response([STRAY]).tobytes()

#: An action gets the socket and the request body; it returns whether to keep serving.
Action = Callable[[socket.socket, bytes], bool]
Reply = bytes | Action

FAST = gp.Timeout(connect=2, read=2)
NO_RETRY = gp.RetryPolicy(retries=0)


def ok(body: bytes = Y_BODY, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), extra) + body


def chunked(body: bytes, size: int = 7, extra: bytes = b"", trailer: bytes = b"") -> bytes:
    chunks = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n%s\r\n" % extra
        + chunks
        + b"0\r\n%s\r\n" % trailer
    )


class Scripted:
    """Answers the n-th request (over the whole server) with ``replies[n]``, then ``default``.

    Bytes are sent and the connection kept; an action decides. Every wait is
    bounded (socket timeouts, ``stopping``), and every socket is closed on exit.
    """

    def __init__(
        self,
        replies: list[Reply],
        default: Reply | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.replies = replies
        self.default: Reply = ok() if default is None else default
        self.ssl_context = ssl_context
        self.requests: list[bytes] = []  # each request's head and body
        self.connections = 0
        self.closed = 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.socks: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/model"
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self.threads.append(accept)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.changed:
                self.connections += 1
                self.socks.append(conn)
            th = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            th.start()
            self.threads.append(th)

    def _serve(self, conn: socket.socket) -> None:
        sock: socket.socket = conn
        try:
            conn.settimeout(5)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(conn, server_side=True)
            self._serve_requests(sock)
        except (OSError, ValueError):
            pass  # the client may reset the connection
        finally:
            sock.close()
            with self.changed:
                self.closed += 1
                self.changed.notify_all()

    def _serve_requests(self, conn: socket.socket) -> None:
        data = bytearray()
        while not self.stopping.is_set():
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                data += chunk
            end = data.index(b"\r\n\r\n")
            head = bytes(data[:end])
            del data[: end + 4]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            while len(data) < length:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                data += chunk
            body = bytes(data[:length])
            del data[:length]
            with self.changed:
                self.requests.append(head + b"\r\n\r\n" + body)
                n = len(self.requests) - 1
            reply = self.replies[n] if n < len(self.replies) else self.default
            if callable(reply):
                if not reply(conn, body):
                    return
            else:
                conn.sendall(reply)

    def wait_closed(self, n: int) -> None:
        """Until ``n`` connections were closed by the server (bounded)."""
        with self.changed:
            assert self.changed.wait_for(lambda: self.closed >= n, 5)

    def close(self) -> None:
        self.stopping.set()
        with self.changed:
            for s in self.socks:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        for th in self.threads:
            th.join(2)
        self.listener.close()


@contextmanager
def scripted(*replies: Reply, **kwargs: Any) -> Iterator[Scripted]:
    server = Scripted(list(replies), **kwargs)
    try:
        yield server
    finally:
        server.close()


def client(server: Scripted, **kwargs: Any) -> gp.Client:
    kwargs.setdefault("timeout", FAST)
    kwargs.setdefault("retries", NO_RETRY)
    return gp.Client(server.url, **kwargs)


def send_and_close(data: bytes) -> Action:
    def action(conn: socket.socket, body: bytes) -> bool:
        conn.sendall(data)
        return False

    return action


def close_now(conn: socket.socket, body: bytes) -> bool:
    conn.shutdown(socket.SHUT_RDWR)  # a FIN, after reading the whole request
    return False


def reset_now(conn: socket.socket, body: bytes) -> bool:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return False  # closed with SO_LINGER 0: a RST


def answer_then(how: Action) -> tuple[Action, threading.Event]:
    """Answer, then close the idle connection with ``how`` once the test sets the event.

    (Closing only after the client read the answer: a RST could discard it.)
    """
    go = threading.Event()

    def action(conn: socket.socket, body: bytes) -> bool:
        conn.sendall(ok())
        go.wait(5)
        return how(conn, body)

    return action, go


def stale_connections_look_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Disable the transport's idle check (and urllib3's, in ``_get_conn``, unused now).

    The client then writes on a connection the server already closed, as it
    does when the close arrives just after the checks.
    """
    monkeypatch.setattr(urllib3.connectionpool, "is_connection_dropped", lambda conn: False)
    monkeypatch.setattr(_transport_sync, "wait_for_read", lambda sock, timeout=None: False)


def double(conn: socket.socket, body: bytes) -> bool:
    """The correct answer: ``x * 2`` for the request's own input."""
    x = codec.decode_request(body).inputs[0]
    conn.sendall(ok(codec.encode_infer_response([x * 2]).tobytes()))
    return True


# --------------------------------------------------------------------------
# What is written


def test_every_request_is_written_by_the_transport_never_by_urlopen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_urlopen(*args: object, **kwargs: object) -> None:
        raise AssertionError("urllib3's urlopen is not used")

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", no_urlopen)
    with scripted() as server, client(server, headers={"X-Trace": "a b"}) as c:
        for _ in range(3):  # a new connection, then kept alive: one path
            np.testing.assert_array_equal(c.execute(X), Y)
    assert server.connections == 1
    first, *others = server.requests
    assert all(r == first for r in others)
    head, _, body = first.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /model HTTP/1.1"
    assert lines[1] == b"Host: 127.0.0.1:%d" % server.port
    assert lines[-1] == b"Content-Length: %d" % len(body)  # always the last header
    assert b"X-Trace: a b" in lines
    assert b"Accept-Encoding: identity" in lines
    assert [k for k in lines if k.lower().startswith(b"content-length")] == [lines[-1]]
    assert body == codec.encode_infer_request([X]).tobytes()


@pytest.mark.parametrize(
    ("url", "headers", "expected"),
    [
        ("http://127.0.0.1:9000", {}, b"POST / HTTP/1.1\r\nHost: 127.0.0.1:9000"),
        ("http://[::1]:9000/a?b=c", {}, b"POST /a?b=c HTTP/1.1\r\nHost: [::1]:9000"),
        ("http://h.example:8080/m", {}, b"POST /m HTTP/1.1\r\nHost: h.example:8080"),
        ("http://h.example:80/", {}, b"POST / HTTP/1.1\r\nHost: h.example"),
        ("https://h.example/", {}, b"POST / HTTP/1.1\r\nHost: h.example"),
        ("https://h.example:80/", {}, b"POST / HTTP/1.1\r\nHost: h.example:80"),
        ("http://h/%7e?q=%41", {}, b"POST /%7e?q=%41 HTTP/1.1\r\nHost: h"),  # kept as given
        ("http://h/caf\u00e9?q=\u00e9", {}, b"POST /caf%C3%A9?q=%C3%A9 HTTP/1.1\r\nHost: h"),
        ("http://b\u00fccher.example/", {}, b"POST / HTTP/1.1\r\nHost: xn--bcher-kva.example"),
        (
            "http://B\u00dcCHER.example:8080/",
            {},
            b"POST / HTTP/1.1\r\nHost: xn--bcher-kva.example:8080",
        ),
        ("http://h/", {"Host": "other:1"}, b"POST / HTTP/1.1\r\nHost: other:1"),
        (
            "http://h/",
            {"X-A": "1", "Content-Length": "999", "X-B": "t\tu"},
            b"POST / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B: t\tu",
        ),
    ],
)
def test_request_head(url: str, headers: dict[str, str], expected: bytes) -> None:
    head = _transport_sync.request_head("POST", parse_endpoint(url), headers)
    assert head == expected + b"\r\nContent-Length: "
    assert head.count(b"Host:") + head.count(b"host:") == 1


def test_request_head_percent_encodes_what_cannot_go_in_a_target() -> None:
    # parse_endpoint refuses spaces and control characters; the head is safe anyway.
    ep = dataclasses.replace(parse_endpoint("http://h/"), target='/a b/"<x>"\r\nX: 1')
    head = _transport_sync.request_head("POST", ep, {})
    assert head.split(b"\r\n")[0] == b"POST /a%20b/%22%3Cx%3E%22%0D%0AX:%201 HTTP/1.1"


def test_a_small_body_goes_out_with_the_head_in_one_gathered_writev(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One writev on the descriptor: sendmsg on a socket with a timeout would poll first.
    calls: list[tuple[str, list[memoryview]]] = []
    me = threading.get_ident()
    real_sendmsg, real_sendall = socket.socket.sendmsg, socket.socket.sendall
    real_writev = os.writev

    def writev(fd: int, buffers: list[Any]) -> int:
        if threading.get_ident() == me:
            calls.append(("writev", list(buffers)))
        return real_writev(fd, buffers)

    def sendmsg(self: socket.socket, buffers: list[Any], *args: Any) -> int:
        if threading.get_ident() == me:
            calls.append(("sendmsg", list(buffers)))
        return real_sendmsg(self, buffers, *args)

    def sendall(self: socket.socket, data: Any, *args: Any) -> None:
        if threading.get_ident() == me:
            calls.append(("sendall", [memoryview(data)]))
        return real_sendall(self, data, *args)

    monkeypatch.setattr(socket.socket, "sendmsg", sendmsg)
    monkeypatch.setattr(socket.socket, "sendall", sendall)
    monkeypatch.setattr(os, "writev", writev)
    message = codec.encode_infer_request([X])
    assert message.nbytes <= SMALL_BODY
    with scripted() as server, client(server) as c:
        c.execute(X)  # a new connection
        c.execute(X)  # kept alive: the same path
    assert server.connections == 1
    assert [name for name, _ in calls] == ["writev", "writev"]  # one system call each
    for _, buffers in calls:
        assert bytes(buffers[0]).startswith(b"POST /model HTTP/1.1\r\n")
        assert bytes(buffers[0]).endswith(b"Content-Length: %d\r\n\r\n" % message.nbytes)
        assert b"".join(bytes(b) for b in buffers[1:]) == message.tobytes()
        # the tensor bytes are a view of the caller's array, not a copy
        assert any(np.shares_memory(np.frombuffer(b, np.uint8), X) for b in buffers)


def test_a_small_body_of_many_segments_is_sent() -> None:
    """600 one-element inputs: 1200 segments, a 60 KB body (under SMALL_BODY)."""
    xs = [np.full(1, i, np.float32) for i in range(600)]
    message = codec.encode_infer_request(xs)
    assert message.nbytes <= SMALL_BODY and len(message.segments) > 1024
    with scripted() as server, client(server) as c:
        np.testing.assert_array_equal(c.execute_multi(xs)[0], Y)
    assert server.requests[0].endswith(message.tobytes())


# --------------------------------------------------------------------------
# Every framing reads the same


def read_to_close(conn: socket.socket, body: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + Y_BODY)
    return False


FRAMINGS: list[Any] = [
    pytest.param(ok(), True, id="content-length"),
    pytest.param(chunked(Y_BODY, trailer=b"X-Trailer: 1\r\n"), True, id="chunked"),
    pytest.param(chunked(Y_BODY, size=1), True, id="chunked-1-byte-chunks"),
    pytest.param(ok(gzip.compress(Y_BODY), b"Content-Encoding: gzip\r\n"), True, id="gzip"),
    pytest.param(
        chunked(gzip.compress(Y_BODY), extra=b"Content-Encoding: gzip\r\n"), True, id="gzip-chunked"
    ),
    pytest.param(ok(zlib.compress(Y_BODY), b"Content-Encoding: deflate\r\n"), True, id="deflate"),
    pytest.param(ok(Y_BODY, b"Content-Encoding: identity\r\n"), True, id="identity"),
    pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), True, id="100-continue"),
    pytest.param(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + ok(), True, id="103"
    ),
    pytest.param(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(),
        True,
        id="100-and-103",
    ),
    pytest.param(
        ok(extra=b"X-Folded: a\r\n b\r\n\tc\r\nX-Dup: 1\r\nX-Dup: 2\r\n"),
        True,
        id="folded-and-repeated-headers",
    ),
    pytest.param(ok(extra=b"Content-Length: %d\r\n" % len(Y_BODY)), True, id="repeated-length"),
    pytest.param(ok().replace(b"\r\n", b"\n", 3), True, id="bare-newlines"),
    pytest.param(ok().replace(b"\r\n", b"\n", 1), True, id="mixed-newlines"),
    pytest.param(ok(extra=b"content-LENGTH-x: 1\r\ncOnNeCtIoN: keep-alive\r\n"), True, id="cases"),
    pytest.param(ok().replace(b"HTTP/1.1", b"HTTP/1.0"), False, id="http-1.0"),
    pytest.param(
        ok(extra=b"Connection: keep-alive\r\n").replace(b"HTTP/1.1", b"HTTP/1.0"),
        True,
        id="http-1.0-keep-alive",
    ),
    pytest.param(ok(extra=b"Connection: close\r\n"), False, id="connection-close"),
    pytest.param(ok(extra=b"Connection: foo, Close\r\n"), False, id="connection-close-token"),
    pytest.param(chunked(Y_BODY, extra=b"Content-Length: 3\r\n"), False, id="length-and-chunked"),
    pytest.param(read_to_close, False, id="read-to-close"),
    pytest.param(ok() + b"junk", False, id="bytes-after-the-body"),
    pytest.param(ok() + ok(STRAY_BODY), False, id="a-stray-second-response"),
]


@pytest.mark.parametrize(("reply", "reused"), FRAMINGS)
def test_every_framing_reads_the_same(reply: Reply, reused: bool) -> None:
    with scripted(ok(), reply, ok()) as server, client(server) as c:
        np.testing.assert_array_equal(c.execute(X), Y)
        np.testing.assert_array_equal(c.execute(X), Y)  # reads `reply`
        np.testing.assert_array_equal(c.execute(X), Y)  # never a leftover of `reply`
    assert len(server.requests) == 3
    assert server.connections == (1 if reused else 2)


def test_a_large_chunked_response_reads_whole() -> None:
    big = np.arange(1 << 18, dtype=np.float64)  # 2 MiB
    body = codec.encode_infer_response([big]).tobytes()
    with scripted(chunked(body, size=300_000), ok()) as server, client(server) as c:
        np.testing.assert_array_equal(c.execute(X), big)
        np.testing.assert_array_equal(c.execute(X), Y)
    assert server.connections == 1


def test_error_statuses_come_back_and_huge_error_bodies_drop_the_connection() -> None:
    big = b"x" * (200 * 1024)
    with (
        scripted(
            ok(),
            ok(b"no such", b"Content-Type: text/plain\r\n", b"400 Bad Request"),
            ok(big, status=b"500 Oops"),
            ok(),
        ) as server,
        client(server) as c,
    ):
        c.execute(X)
        with pytest.raises(gp.HTTPStatusError, match=r"HTTP 400 Bad Request .*: no such") as e400:
            c.execute(X)
        assert e400.value.status_code == 400
        with pytest.raises(gp.HTTPStatusError, match="HTTP 500 Oops") as e500:
            c.execute(X)  # a huge error body: cut, and the connection dropped
        assert len(e500.value.body) == 64 * 1024
        np.testing.assert_array_equal(c.execute(X), Y)
    assert server.connections == 2  # kept after the 400, dropped after the 500


def test_a_503_with_retry_after_is_retried() -> None:
    busy = b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 4\r\n\r\nbusy"
    with (
        scripted(ok(), busy, ok()) as server,
        client(server, retries=gp.RetryPolicy(retries=2, backoff=0.01)) as c,
    ):
        c.execute(X)
        np.testing.assert_array_equal(c.execute(X), Y)
    assert len(server.requests) == 3
    assert server.connections == 1


# --------------------------------------------------------------------------
# Broken responses: a TransportError with a clear message, never another exception


MALFORMED: list[Any] = [
    pytest.param(b"SPDY/3 200 OK\r\n\r\n", "not an HTTP/1.x response", id="not-http"),
    pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP status line", id="bad-status"),
    pytest.param(b"HTTP/1.1 099 Low\r\n\r\n", "invalid status", id="status-under-100"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        "invalid Content-Length",
        id="bad-length",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length", id="negative"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "conflicting Content-Length",
        id="conflicting-lengths",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "unsupported Transfer-Encoding",
        id="bad-transfer-encoding",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line", id="bad-header"
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n", "folded header line", id="fold-first"
    ),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Le", "middle of the response head", id="head-cut"),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n" + Y_BODY,
        "closed before the end of the response: the body ended",
        id="short-body",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(Y_BODY) + 9) + Y_BODY,
        "the body ended 9 bytes early",
        id="short-small-body",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "invalid chunk size line",
        id="bad-chunk",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
        "chunk is longer than its size",
        id="chunk-too-long",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        "closed in the middle of a chunk",
        id="chunk-cut",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 20000,
        "too long",
        id="huge-chunk-line",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * 5000 + b"\r\nab",
        "too long",
        id="chunk-line-over-4-KiB-received-at-once",
    ),
    pytest.param(ok(extra=b"X-Long: " + b"a" * 70_000 + b"\r\n"), "over 64 KiB", id="huge-head"),
    pytest.param(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols", id="101"),
    pytest.param(
        ok(b"not gzip at all", b"Content-Encoding: gzip\r\n"),
        "compressed body is corrupt",
        id="corrupt-gzip",
    ),
    pytest.param(
        ok(gzip.compress(Y_BODY)[:-12], b"Content-Encoding: gzip\r\n"),
        "compressed body ended early",
        id="cut-gzip",
    ),
    pytest.param(
        ok(Y_BODY, b"Content-Encoding: br\r\n"), "unsupported Content-Encoding", id="brotli"
    ),
]


@pytest.mark.parametrize(("reply", "match"), MALFORMED)
def test_malformed_responses_fail_cleanly(reply: bytes, match: str) -> None:
    with scripted(ok(), send_and_close(reply), ok()) as server, client(server) as c:
        c.execute(X)
        with pytest.raises(gp.TransportError, match=match) as info:
            c.execute(X)
        assert type(info.value) is gp.TransportError
        assert server.url.removesuffix("/model") in str(info.value)
        np.testing.assert_array_equal(c.execute(X), Y)  # a new connection works
    assert server.connections == 2


def test_a_response_over_the_limit_is_refused_before_reading() -> None:
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 30) + b"\0" * 4096
    with (
        scripted(ok(), huge, ok()) as server,
        client(server, max_response_bytes=64 << 20) as c,
    ):
        c.execute(X)
        tracemalloc.start()
        try:
            with pytest.raises(gp.ResponseTooLargeError, match="1073741824 bytes"):
                c.execute(X)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, peak  # nothing near 1 GiB, nor even the limit, was allocated
        np.testing.assert_array_equal(c.execute(X), Y)
    assert server.connections == 2  # the unread body is never read as a response


@pytest.mark.parametrize("framed", ["length", "chunked"])
def test_a_gzip_bomb_is_cut_at_the_limit(framed: str) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), 1)  # 64 MiB inflated, ~64 KB on the wire
    reply = (
        ok(bomb, b"Content-Encoding: gzip\r\n")
        if framed == "length"
        else chunked(bomb, size=16384, extra=b"Content-Encoding: gzip\r\n")
    )
    with scripted(reply) as server, client(server, max_response_bytes=1 << 20) as c:
        tracemalloc.start()
        try:
            with pytest.raises(gp.ResponseTooLargeError):
                c.execute(X)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_a_chunked_response_over_the_limit_is_refused() -> None:
    body = b"\0" * (3 << 20)
    with (
        scripted(chunked(body, size=65536)) as server,
        client(server, max_response_bytes=1 << 20) as c,
        pytest.raises(gp.ResponseTooLargeError),
    ):
        c.execute(X)


# --------------------------------------------------------------------------
# Waits are bounded


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"])
def test_a_stalled_response_is_a_read_timeout(sent: bytes) -> None:
    stop = threading.Event()

    def stall(conn: socket.socket, body: bytes) -> bool:
        conn.sendall(sent)
        stop.wait(5)
        return False

    with scripted(ok(), stall) as server, client(server, timeout=(2, 0.2)) as c:
        c.execute(X)
        start = time.monotonic()
        with pytest.raises(gp.ReadTimeout):
            c.execute(X)
        assert time.monotonic() - start < 1.5
        stop.set()


def test_a_trickled_response_hits_the_total_deadline() -> None:
    stop = threading.Event()

    def trickle(conn: socket.socket, body: bytes) -> bool:
        for byte in ok():  # every byte within the read timeout, never the whole response
            conn.sendall(bytes([byte]))
            if stop.wait(0.05):
                break
        return False

    with (
        scripted(ok(), trickle) as server,
        client(server, timeout=gp.Timeout(connect=2, read=1, total=0.4)) as c,
    ):
        c.execute(X)
        start = time.monotonic()
        with pytest.raises(gp.DeadlineExceeded):
            c.execute(X)
        assert time.monotonic() - start < 1.5
        stop.set()


def test_endless_interim_responses_are_bounded_by_the_deadline() -> None:
    stop = threading.Event()

    def endless(conn: socket.socket, body: bytes) -> bool:
        while not stop.wait(0.01):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return False

    with (
        scripted(endless) as server,
        client(server, timeout=gp.Timeout(connect=2, read=0.5, total=0.4)) as c,
    ):
        with pytest.raises(gp.DeadlineExceeded):
            c.execute(X)
        stop.set()


# --------------------------------------------------------------------------
# At most once


def test_a_clean_close_after_the_request_was_read_is_not_resent() -> None:
    with (
        scripted(ok(), close_now, ok()) as server,
        client(server, retries=gp.RetryPolicy(retries=2, backoff=0.01)) as c,
    ):
        c.execute(X)
        with pytest.raises(gp.TransportError, match="closed before a response arrived"):
            c.execute(X)
    assert len(server.requests) == 2  # the server may have run it: not sent again


def test_a_close_of_a_reused_connection_before_the_response_is_not_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server closed the idle connection (a FIN) but the client writes on it
    # anyway (the race the idle check narrows): the write succeeds, no response comes.
    stale_connections_look_alive(monkeypatch)
    action, go = answer_then(close_now)
    with scripted(action) as server, client(server) as c:
        c.execute(X)
        go.set()
        server.wait_closed(1)
        with pytest.raises(gp.TransportError, match="closed before a response arrived"):
            c.execute(X)
    assert len(server.requests) == 1
    assert server.connections == 1


def test_the_idle_check_drops_a_connection_the_server_closed() -> None:
    action, go = answer_then(close_now)
    with scripted(action) as server, client(server) as c:
        c.execute(X)
        go.set()
        server.wait_closed(1)
        time.sleep(0.02)
        np.testing.assert_array_equal(c.execute(X), Y)  # a new connection, never a failure
    assert len(server.requests) == 2
    assert server.connections == 2


@pytest.mark.parametrize("idempotent", [False, True])
def test_a_reset_after_the_request_was_written_is_resent_only_if_idempotent(
    idempotent: bool,
) -> None:
    with (
        scripted(ok(), reset_now, ok()) as server,
        client(server, idempotent=idempotent, retries=gp.RetryPolicy(retries=2, backoff=0.01)) as c,
    ):
        c.execute(X)
        if idempotent:
            np.testing.assert_array_equal(c.execute(X), Y)  # retried by the client's RetryState
        else:
            with pytest.raises(gp.TransportError, match="closed before a response arrived"):
                c.execute(X)
    assert len(server.requests) == (3 if idempotent else 2)


@pytest.mark.parametrize(
    "scheme",
    [
        "http",
        pytest.param(
            "https",
        ),
    ],
)
def test_a_request_not_written_on_a_stale_connection_is_resent_once(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, scheme: str
) -> None:
    kwargs: dict[str, Any] = {}
    verify: dict[str, Any] = {}
    if scheme == "https":
        server_ctx, client_ctx = request.getfixturevalue("tls")
        kwargs["ssl_context"], verify["verify"] = server_ctx, client_ctx
    stale_connections_look_alive(monkeypatch)
    attempts: list[bool] = []
    real = _transport_sync.SyncTransport._send_once

    def send_once(self: Any, req: Any, deadline: Any, *, may_resend: bool, **kw: Any) -> Any:
        attempts.append(may_resend)
        return real(self, req, deadline, may_resend=may_resend, **kw)

    monkeypatch.setattr(_transport_sync.SyncTransport, "_send_once", send_once)
    action, go = answer_then(reset_now)
    with scripted(action, **kwargs) as server, client(server, **verify) as c:
        c.execute(X)
        go.set()
        server.wait_closed(1)  # reset: the next write on that connection fails
        time.sleep(0.02)
        attempts.clear()
        np.testing.assert_array_equal(c.execute(X), Y)  # retries=0: the transport resent it
    assert attempts == [True, False]
    assert len(server.requests) == 2  # the failed write never reached the server
    assert server.connections == 2


@pytest.mark.parametrize("mode", ["httpx", "trio"])
def test_the_httpx_path_resends_a_request_not_written_on_a_stale_connection(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """As the fast path does (above): a first write that failed on a reused connection.

    Under trio the failed write raises. Under asyncio (httpx through a proxy), anyio
    hands the bytes to asyncio's transport, whose failure surfaces only at the read,
    where it cannot be told from a reset after the server read the request: that
    stays a TransportError, never a second send (docs/errors.md).
    """
    real = _transport_async._TrackedStream.get_extra_info

    def looks_alive(self: Any, info: str) -> Any:  # the close arrives after httpcore's check
        return False if info == "is_readable" else real(self, info)

    monkeypatch.setattr(_transport_async._TrackedStream, "get_extra_info", looks_alive)
    action, go = answer_then(reset_now)
    with scripted(action) as server:

        async def main() -> Any:
            async with gp.AsyncClient(server.url, timeout=FAST, retries=NO_RETRY) as c:
                await c.execute(X)
                go.set()
                server.wait_closed(1)  # reset: the next write on that connection fails
                await anyio.sleep(0.02)
                return await c.execute(X)  # retries=0: the transport sends it once more

        if mode == "httpx":
            with pytest.raises(gp.TransportError) as info:
                aio_modes.run_in(mode, main)
            assert not isinstance(info.value, (gp.ConnectError, gp.TimeoutError))
            assert len(server.requests) == 1 and server.connections == 1
            return
        y = aio_modes.run_in(mode, main)
    np.testing.assert_array_equal(y, Y)
    assert len(server.requests) == 2  # the failed write never reached the server
    assert server.connections == 2


def test_the_httpx_path_never_resends_a_request_that_was_written() -> None:
    """A reset *after* the request went out may follow a model run: a TransportError."""
    with scripted(double, reset_now) as server:  # the second request is read, then reset

        async def main() -> Any:
            async with gp.AsyncClient(server.url, timeout=FAST, retries=NO_RETRY) as c:
                await c.execute(X)
                return await c.execute(X)

        with aio_modes.fast_path(False), pytest.raises(gp.TransportError) as info:
            asyncio.run(main())
    assert not isinstance(info.value, (gp.ConnectError, gp.TimeoutError))
    assert len(server.requests) == 2 and server.connections == 1


# --------------------------------------------------------------------------
# TLS: the same path


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_tls_connections_take_the_same_path(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_urlopen(*args: object, **kwargs: object) -> None:
        raise AssertionError("urllib3's urlopen is not used")

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", no_urlopen)
    server_ctx, client_ctx = tls
    big = np.arange(1 << 18, dtype=np.float32)  # 1 MiB: over SMALL_BODY
    with (
        scripted(default=double, ssl_context=server_ctx) as server,
        client(server, verify=client_ctx) as c,
    ):
        for x in (X, X, big, big, X):
            np.testing.assert_array_equal(c.execute(x), x * 2)
    assert server.connections == 1  # kept alive over TLS too
    assert len(server.requests) == 5


FRAMING = {p.id: p for p in FRAMINGS}


@pytest.mark.parametrize(
    ("reply", "reused"),
    [
        FRAMING[k]
        for k in ("chunked", "gzip", "100-continue", "read-to-close", "bytes-after-the-body")
    ],
)
def test_framings_over_tls(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], reply: Reply, reused: bool
) -> None:
    server_ctx, client_ctx = tls
    with (
        scripted(ok(), reply, ok(), ssl_context=server_ctx) as server,
        client(server, verify=client_ctx) as c,
    ):
        for _ in range(3):
            np.testing.assert_array_equal(c.execute(X), Y)
    assert server.connections == (1 if reused else 2)


def test_tls_without_verification_warns_per_connection(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls
    with scripted(ssl_context=server_ctx) as server, client(server, verify=False) as c:
        with pytest.warns(urllib3.exceptions.InsecureRequestWarning, match="Unverified HTTPS"):
            c.execute(X)
        c.execute(X)  # kept alive: no new connection, no new warning
    assert server.connections == 1


def test_tls_with_an_untrusted_certificate_is_a_tls_error(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls
    with (
        scripted(ssl_context=server_ctx) as server,
        client(server) as c,  # system CAs
        pytest.raises(gp.TLSError, match="TLS with"),
    ):
        c.execute(X)
    assert server.requests == []


# --------------------------------------------------------------------------
# Threads share the pool


def test_threads_share_the_pool_and_each_gets_its_own_answer() -> None:
    errors: list[BaseException] = []

    with scripted(default=double) as server, client(server, pool_size=4) as c:

        def work(k: int) -> None:
            try:
                for i in range(10):
                    x = np.array([k, i], dtype=np.float32)
                    np.testing.assert_array_equal(c.execute(x), x * 2)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(20)
    assert not errors, errors
    assert len(server.requests) == 40
    assert server.connections <= 4


# --------------------------------------------------------------------------
# The async transport: a small body is handed to httpx joined, a large one as views;
# every connection's stream is tracked so that bytes of no response are never read
# as the answer to the next request.


def test_async_small_bodies_are_joined_and_large_ones_streamed_as_views() -> None:
    async def pieces_of(message: Any) -> list[Any]:
        body = _transport_async._RequestBody(message)
        assert isinstance(body, httpx.AsyncByteStream)
        pieces = body.__aiter__()
        assert not inspect.isasyncgen(pieces)  # nothing for trio to finalise (httpx#3686)
        return [piece async for piece in pieces]

    small = codec.encode_infer_request([X])
    assert asyncio.run(pieces_of(small)) == [small.tobytes()]

    big = np.arange(1 << 19, dtype=np.float32)  # 2 MiB
    message = codec.encode_infer_request([big])
    pieces = asyncio.run(pieces_of(message))
    assert all(
        isinstance(p, memoryview) and p.nbytes <= _transport_async.BODY_SLICE for p in pieces
    )
    assert sum(np.shares_memory(np.frombuffer(p, np.uint8), big) for p in pieces) == 2
    assert b"".join(pieces) == message.tobytes()
    assert asyncio.run(pieces_of(message)) == pieces  # each pass starts from the beginning


@pytest.mark.parametrize("x", [X, np.arange(1 << 17, dtype=np.float32)], ids=["small", "large"])
def test_async_round_trips_of_both_sizes(x: np.ndarray) -> None:
    async def main(url: str) -> None:
        async with gp.AsyncClient(url, timeout=FAST, retries=NO_RETRY) as c:
            for _ in range(2):
                np.testing.assert_array_equal(await c.execute(x), x * 2)

    with scripted(default=double) as server:
        asyncio.run(main(server.url))
    assert server.connections == 1


def test_async_transport_installs_the_tracking_backend_on_httpx_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_transport_async, "FAST_PATH", False)  # the httpx path

    async def main(url: str) -> None:
        async with gp.AsyncClient(url, timeout=FAST, retries=NO_RETRY) as c:
            await c.execute(X)
            httpx_client = await c._transport._client()
            router = httpx_client._transport  # type: ignore[attr-defined]
            assert isinstance(router, _transport_async._ProxyRouter)
            (transport,) = router._transports.values()  # direct: no proxy
            pool = transport._pool
            assert isinstance(pool._network_backend, _transport_async._TrackingBackend)
            (conn,) = pool.connections
            stream = conn._connection._network_stream
            assert isinstance(stream, _transport_async._TrackedStream)

    with scripted() as server:
        asyncio.run(main(server.url))


class FakeStream(httpcore.AsyncNetworkStream):
    """Reads what the test scripted; never readable by itself."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads
        self.written: list[bytes] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.reads.pop(0) if self.reads else b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.written.append(bytes(buffer))

    async def aclose(self) -> None:
        pass

    def get_extra_info(self, info: str) -> Any:
        return False if info == "is_readable" else None


@pytest.mark.parametrize(
    ("reads", "readable"),
    [
        ([ok()], False),
        ([ok()[:10], ok()[10:]], False),
        ([ok() + b"x"], True),  # a byte after a complete response
        ([ok(), b"x"], True),
        ([ok(), ok(STRAY_BODY)], True),
        ([b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody"], True),
        ([b"HTTP/1.1 100 Continue\r\n\r\n", ok()], False),
        ([chunked(Y_BODY) + b"\r\n"], True),
    ],
)
def test_a_tracked_stream_reports_bytes_after_a_complete_response_as_readable(
    reads: list[bytes], readable: bool
) -> None:
    async def main() -> None:
        inner = FakeStream(list(reads))
        stream = _transport_async._TrackedStream(inner)
        await stream.write(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n")
        await stream.write(b"abc")  # the body of the same request
        assert stream.get_extra_info("is_readable") is False
        for _ in reads:
            await stream.read(65536)
        assert stream.get_extra_info("is_readable") is readable
        assert stream.get_extra_info("other") is None

    asyncio.run(main())


FILLER = b"A: " + b"b" * (len(STRAY_BODY) - 3)  # a body that reads as a header field


@pytest.mark.parametrize(
    "replies",
    [
        pytest.param([ok() + ok(STRAY_BODY)], id="a-stray-second-response"),
        pytest.param([ok() + b"junk"], id="bytes-after-the-body"),
        pytest.param(
            [
                b"HTTP/1.1 204 No Content\r\nContent-Length: %d\r\n\r\n" % len(ok(STRAY_BODY))
                + ok(STRAY_BODY)
            ],
            id="a-204-with-a-body",
        ),
        pytest.param([ok(extra=b"Connection: close\r\n"), ok() + ok(STRAY_BODY)], id="close"),
        pytest.param(
            [b"HTTP/1.1 400 Bad\nContent-Length: %d\n\r\n" % len(FILLER) + FILLER + ok(STRAY_BODY)],
            id="lf-cr-lf-head-then-a-stray",
        ),
        pytest.param(
            [chunked(Y_BODY, extra=b"Content-Length: 3\r\n"), ok() + ok(STRAY_BODY)],
            id="length-and-chunked-then-a-stray",
        ),
    ],
)
def test_async_never_reads_a_stray_response_as_the_next_answer(replies: list[bytes]) -> None:
    outcomes: list[object] = []

    async def main(url: str) -> None:
        async with gp.AsyncClient(url, timeout=FAST, retries=NO_RETRY) as c:
            for _ in range(len(replies) + 1):
                try:
                    outcomes.append(await c.execute(X))
                except gp.GraphPipeError as exc:
                    outcomes.append(exc)

    with scripted(*replies) as server:
        asyncio.run(main(server.url))
    assert not any(isinstance(o, np.ndarray) and o.shape == STRAY.shape for o in outcomes)
    assert isinstance(outcomes[-1], np.ndarray), outcomes
    np.testing.assert_array_equal(outcomes[-1], Y)
    assert len(server.requests) == len(replies) + 1
