"""The sync transport's fast paths (see ``_transport_sync``): what they send and how they read.

A scripted server on loopback answers each request with bytes chosen by the
test, so that every framing the fast path reads by itself (length, chunks,
up to the close, gzip, ``100 Continue``, HTTP/1.0) and every way it fails is
checked against what the urllib3 path does with the same bytes.
"""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import _transport_sync, codec
from graphpipe_client._core import parse_endpoint

X = np.arange(10, dtype=np.float32).reshape(1, 10)
Y = np.arange(6, dtype=np.float64).reshape(2, 3)
Y_BODY = codec.encode_infer_response([Y]).tobytes()

Reply = bytes | Callable[[socket.socket], None]


def ok(body: bytes = Y_BODY, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


class Scripted:
    """Answers the n-th request with ``replies[n]`` (bytes, or a function of the socket)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[bytes] = []  # each request's head and body
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/model"
        self.threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            th = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            th.start()
            self.threads.append(th)

    def _serve(self, conn: socket.socket) -> None:
        with conn, suppress(OSError):  # the client may reset the connection
            self._serve_requests(conn)

    def _serve_requests(self, conn: socket.socket) -> None:
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            while len(data) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests.append(head + b"\r\n\r\n" + data[:length])
            data = data[length:]
            reply = self.replies[len(self.requests) - 1]
            if callable(reply):
                reply(conn)
                return
            conn.sendall(reply)

    def close(self) -> None:
        self.listener.close()


@contextmanager
def scripted(*replies: Reply) -> Iterator[Scripted]:
    server = Scripted(list(replies))
    try:
        yield server
    finally:
        server.close()


def close_now(conn: socket.socket) -> None:
    conn.shutdown(socket.SHUT_RDWR)


def reset_now(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the requests that took the fast path."""
    calls: list[int] = []
    original = _transport_sync.SyncTransport._send_fast

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_transport_sync.SyncTransport, "_send_fast", counted)
    return calls


def test_the_fast_path_writes_the_head_urllib3_writes(fast_calls: list[int]) -> None:
    with (
        scripted(ok(), ok()) as server,
        gp.Client(server.url, headers={"X-Trace": "a b"}) as client,
    ):
        client.execute(X)  # a new connection: urllib3's path
        client.execute(X)  # kept alive: the fast path
    assert fast_calls == [1]
    assert server.connections == 1
    first, second = server.requests
    assert first == second
    assert first.startswith(b"POST /model HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)


def test_a_small_body_goes_out_with_the_head_in_one_gathered_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[list[object]] = []
    original = _transport_sync._send_gathered

    def record(sock, parts):  # type: ignore[no-untyped-def]
        sent.append(list(parts))
        return original(sock, parts)

    monkeypatch.setattr(_transport_sync, "_send_gathered", record)
    with scripted(ok(), ok()) as server, gp.Client(server.url) as client:
        client.execute(X)
        client.execute(X)
    assert len(sent) == 2  # urllib3's path and the fast path alike
    for parts in sent:
        assert bytes(parts[0]).startswith(b"POST /model HTTP/1.1\r\n")  # type: ignore[arg-type]
        # the tensor bytes are a view of the caller's array, not a copy
        assert any(
            isinstance(p, memoryview) and np.shares_memory(np.frombuffer(p, np.uint8), X)
            for p in parts
        )


def test_a_large_body_is_sent_uncopied_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.arange(1 << 18, dtype=np.float32)  # 1 MiB: over SMALL_BODY
    sent: list[object] = []
    original = _transport_sync._Connection.send

    def record(self, data):  # type: ignore[no-untyped-def]
        sent.append(data)
        return original(self, data)

    monkeypatch.setattr(_transport_sync._Connection, "send", record)
    with scripted(ok(), ok()) as server, gp.Client(server.url) as client:
        client.execute(x)
        sent.clear()
        client.execute(x)  # the fast path
    chunks = [
        c
        for c in sent
        if isinstance(c, memoryview) and np.shares_memory(np.frombuffer(c, np.uint8), x)
    ]
    assert len(chunks) == 1 and chunks[0].nbytes == x.nbytes


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (Y_BODY[:7], Y_BODY[7:]))
            + b"0\r\nX-Trailer: 1\r\n\r\n",
            id="chunked",
        ),
        pytest.param(ok(gzip.compress(Y_BODY), b"Content-Encoding: gzip\r\n"), id="gzip"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), id="100-continue"),
        pytest.param(
            ok(extra=b"X-Folded: a\r\n b\r\nX-Dup: 1\r\nX-Dup: 2\r\n"),
            id="folded-and-repeated-headers",
        ),
        pytest.param(ok().replace(b"\r\n", b"\n", 3), id="bare-newlines"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(Y_BODY) + Y_BODY, id="http-1.0"
        ),
        pytest.param(ok(extra=b"Connection: close\r\n"), id="connection-close"),
    ],
)
def test_every_framing_reads_the_same_on_both_paths(reply: bytes, fast_calls: list[int]) -> None:
    with scripted(ok(), reply, ok()) as server, gp.Client(server.url) as client:
        client.execute(X)
        np.testing.assert_array_equal(client.execute(X), Y)  # the fast path reads `reply`
        np.testing.assert_array_equal(client.execute(X), Y)  # and the connection is still usable
    assert fast_calls
    if b"HTTP/1.0" in reply or b"close" in reply:
        assert server.connections == 2  # not kept alive
    else:
        assert server.connections == 1


def test_a_response_up_to_the_close_is_read_and_the_connection_dropped(
    fast_calls: list[int],
) -> None:
    def until_close(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + Y_BODY)

    with scripted(ok(), until_close, ok()) as server, gp.Client(server.url) as client:
        client.execute(X)
        np.testing.assert_array_equal(client.execute(X), Y)
        client.execute(X)
    assert server.connections == 2


def test_errors_come_back_as_on_urllib3s_path(fast_calls: list[int]) -> None:
    big = b"x" * (200 * 1024)
    with (
        scripted(
            ok(),
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nno such",
            b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % len(big) + big,
            ok(),
        ) as server,
        gp.Client(server.url) as client,
    ):
        client.execute(X)
        with pytest.raises(gp.HTTPStatusError, match=r"HTTP 400 Bad Request .*: no such") as e400:
            client.execute(X)
        assert e400.value.status_code == 400
        with pytest.raises(gp.HTTPStatusError, match="HTTP 500 Oops") as e500:
            client.execute(X)  # a huge error body: cut, and the connection dropped
        assert len(e500.value.body) == 64 * 1024
        client.execute(X)
    assert server.connections == 2


def test_a_503_with_retry_after_is_retried_on_the_fast_path(fast_calls: list[int]) -> None:
    with (
        scripted(
            ok(), b"HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n", ok()
        ) as server,
        gp.Client(server.url) as client,
    ):
        client.execute(X)
        np.testing.assert_array_equal(client.execute(X), Y)
    assert len(server.requests) == 3


def test_a_clean_close_before_the_response_is_not_resent(fast_calls: list[int]) -> None:
    with scripted(ok(), close_now, ok()) as server, gp.Client(server.url, retries=0) as client:
        client.execute(X)
        with pytest.raises(gp.TransportError, match="closed before a response arrived"):
            client.execute(X)
    assert len(server.requests) == 2  # the server may have run it: not sent again


def test_a_reset_before_the_response_is_resent_on_a_new_connection(fast_calls: list[int]) -> None:
    with scripted(ok(), reset_now, ok()) as server, gp.Client(server.url, retries=0) as client:
        client.execute(X)
        np.testing.assert_array_equal(client.execute(X), Y)
    assert server.connections == 2


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", gp.TransportError, "closed before a response arrived"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", gp.TransportError, "closed before a response arrived"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
            gp.TransportError,
            "invalid Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n" + Y_BODY,
            gp.TransportError,
            "broke while reading",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            gp.TransportError,
            "broke while reading",
        ),
        (
            ok(extra=b"X-Long: " + b"a" * 70_000 + b"\r\n"),
            gp.TransportError,
            "closed before a response arrived",
        ),
    ],
    ids=["not-http", "bad-status", "bad-length", "short-body", "bad-chunk", "huge-head"],
)
def test_malformed_responses_fail_cleanly(
    reply: bytes, error: type[Exception], match: str, fast_calls: list[int]
) -> None:
    def send_and_close(conn: socket.socket) -> None:
        conn.sendall(reply)

    with scripted(ok(), send_and_close, ok()) as server, gp.Client(server.url, retries=0) as client:
        client.execute(X)
        with pytest.raises(error, match=match):
            client.execute(X)
        np.testing.assert_array_equal(client.execute(X), Y)  # a new connection works
    assert fast_calls


def test_a_response_over_the_limit_is_refused_before_reading(fast_calls: list[int]) -> None:
    with (
        scripted(ok(), ok(np.zeros(4096).tobytes())) as server,
        gp.Client(server.url, max_response_bytes=len(Y_BODY)) as client,
    ):
        client.execute(X)
        with pytest.raises(gp.ResponseTooLargeError):
            client.execute(X)


def test_a_stalled_response_is_a_read_timeout(fast_calls: list[int]) -> None:
    stop = threading.Event()

    def stall(conn: socket.socket) -> None:
        stop.wait(5)

    with (
        scripted(ok(), stall) as server,
        gp.Client(server.url, timeout=(5, 0.2), retries=0) as client,
    ):
        client.execute(X)
        with pytest.raises(gp.ReadTimeout):
            client.execute(X)
        stop.set()


@pytest.mark.parametrize(
    ("url", "headers", "eligible"),
    [
        ("http://127.0.0.1:9000", {}, True),
        ("http://[::1]:9000/a?b=c", {}, True),
        ("https://h.example/", {}, True),
        ("http://h/a b", {}, False),  # urllib3 percent-encodes it
        ("http://h/%7e", {}, False),  # urllib3 normalises percent-encodings
        ("http://h/", {"Host": "other"}, False),
        ("http://h/", {"X": "\u20ac"}, False),  # not latin-1
    ],
)
def test_which_requests_take_the_fast_path(
    url: str, headers: dict[str, str], eligible: bool
) -> None:
    prefix = _transport_sync.request_head_prefix(
        parse_endpoint(url), {**headers, "Content-Length": "1"}
    )
    assert (prefix is not None) is eligible
    if prefix is not None:
        assert prefix.endswith(b"\r\nContent-Length: ")
        assert b"Host: " in prefix
        if "[::1]" in url:
            assert b"Host: [::1]:9000\r\n" in prefix
        if url.startswith("https://h.example/"):
            assert b"Host: h.example\r\n" in prefix  # default port left out


def test_tls_connections_take_the_fast_path_too(fast_calls: list[int]) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    from graphpipe_client.testing import serve

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    big = np.arange(1 << 17, dtype=np.float32)  # over SMALL_BODY
    with (
        serve(lambda x: x * 2, ssl_context=server_ctx) as server,
        gp.Client(server.url, verify=client_ctx) as client,
    ):
        for x in (X, X, big, big):  # new connection (urllib3), then kept alive (fast path)
            np.testing.assert_array_equal(client.execute(x), x * 2)
    assert len(fast_calls) == 3


# --------------------------------------------------------------------------
# The async transport: a small body is handed to httpx joined, a large one as views.


def test_async_small_bodies_are_joined_and_large_ones_streamed_as_views() -> None:
    import asyncio

    from graphpipe_client import _transport_async

    small = codec.encode_infer_request([X])
    content = _transport_async._content(small)
    assert isinstance(content, bytes) and content == small.tobytes()

    big = np.arange(1 << 19, dtype=np.float32)  # 2 MiB
    message = codec.encode_infer_request([big])
    stream = _transport_async._content(message)
    assert not isinstance(stream, bytes)

    async def collect() -> list[memoryview]:
        return [piece async for piece in stream]  # type: ignore[union-attr]

    pieces = asyncio.run(collect())
    assert all(
        isinstance(p, memoryview) and p.nbytes <= _transport_async.BODY_SLICE for p in pieces
    )
    assert sum(np.shares_memory(np.frombuffer(p, np.uint8), big) for p in pieces) == 2
    assert b"".join(pieces) == message.tobytes()


@pytest.mark.parametrize("x", [X, np.arange(1 << 17, dtype=np.float32)], ids=["small", "large"])
def test_async_round_trips_of_both_sizes(x: np.ndarray) -> None:
    import asyncio

    from graphpipe_client.testing import serve

    async def main(url: str) -> None:
        async with gp.AsyncClient(url) as client:
            for _ in range(2):
                np.testing.assert_array_equal(await client.execute(x), x + 1)

    with serve(lambda a: a + 1) as server:
        asyncio.run(main(server.url))
