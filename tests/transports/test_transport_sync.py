"""What the sync transport relies on in urllib3, and what it guarantees at the socket.

urllib3 only opens and pools the connections (see ``_transports/sync.py``'s
docstring for the properties relied on: if an upgrade of urllib3 changes one
of them, :func:`test_urllib3_properties_the_transport_relies_on` fails loudly).
The transport writes the request segments straight from the caller's arrays
and receives a large response straight into the one numpy buffer that the
outputs view; both are checked here by recording what reaches the socket.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
import pytest
import urllib3
from test_transport_perf_paths import FAST, NO_RETRY, X, Y, ok, scripted
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

import graphpipe_client as gp
from graphpipe_client import codec
from graphpipe_client._http.exchange import HEAD_BYTES, SMALL_BODY
from graphpipe_client._transports import sync as _transport_sync


@contextmanager
def tls_listener(server_ctx: ssl.SSLContext) -> Iterator[int]:
    """Accepts connections on 127.0.0.1, does the TLS handshake, waits for the client to close."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, suppress(OSError):
                conn.settimeout(2)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        th.join(5)
        listener.close()


@pytest.fixture(scope="module")
def pki() -> dict[str, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    good = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(good)
    wrong_name = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(wrong_name)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    return {"server": good, "wrong-name": wrong_name, "client": trusting}


def test_urllib3_properties_the_transport_relies_on(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, ssl.SSLContext]
) -> None:
    timeouts: list[object] = []
    real_create = urllib3.util.connection.create_connection

    def create_connection(address: Any, timeout: Any = None, *args: Any, **kwargs: Any) -> Any:
        timeouts.append(timeout)
        return real_create(address, timeout, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)

    # 1. connection_from_host() gives a pool whose .pool queues idle connections
    #    (None for a free slot), whose _new_conn() makes an unopened connection, and
    #    whose _put_conn() takes one back: what _transport_sync._checkout uses.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with listener, gp.Client(f"http://127.0.0.1:{port}") as client:
        manager = client._transport._manager(None)
        assert isinstance(manager, urllib3.PoolManager)
        pool = manager.connection_from_host("127.0.0.1", port, "http")
        assert isinstance(pool, urllib3.HTTPConnectionPool)
        assert pool is manager.connection_from_host("127.0.0.1", port, "http")
        assert isinstance(pool.pool, queue.LifoQueue)
        assert pool.pool.get(block=False) is None  # a free slot
        pool.pool.put(None)
        conn = _transport_sync._checkout(pool)
        assert isinstance(conn, urllib3.connection.HTTPConnection)
        assert conn.sock is None  # not connected yet

        # 2. connect() opens under conn.timeout and leaves the socket in conn.sock ...
        conn.timeout = 1.25
        conn.connect()
        assert timeouts == [1.25]
        sock = conn.sock
        assert isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)
        assert sock.gettimeout() == 1.25
        assert conn.is_verified is False
        pool._put_conn(conn)
        again = _transport_sync._checkout(pool)
        assert again is conn and again.sock is sock  # kept alive, the same socket
        # ... and close() closes it and resets conn.sock, so the pool reconnects next time.
        conn.close()
        assert conn.sock is None
        assert sock.fileno() == -1
        pool._put_conn(conn)
        assert _transport_sync._checkout(pool) is conn
        conn.connect()
        assert conn.sock is not None and conn.sock is not sock
        conn.close()
        pool._put_conn(conn)

    # A refused connection is a NewConnectionError, which is a ConnectTimeoutError:
    # the transport catches it first to tell "refused" from "timed out".
    assert issubclass(NewConnectionError, ConnectTimeoutError)
    with gp.Client(f"http://127.0.0.1:{port}") as client:  # the listener is closed
        conn = _transport_sync._checkout(
            client._transport._manager(None).connection_from_host("127.0.0.1", port, "http")
        )
        conn.timeout = 1.0
        with pytest.raises(NewConnectionError):
            conn.connect()

    # TLS: connect() does the handshake and the host-name check; conn.is_verified says so.
    with tls_listener(pki["server"]) as tls_port:
        with gp.Client(f"https://127.0.0.1:{tls_port}", verify=pki["client"]) as client:
            pool = client._transport._manager(None).connection_from_host(
                "127.0.0.1", tls_port, "https"
            )
            conn = _transport_sync._checkout(pool)
            conn.timeout = 2.0
            conn.connect()
            assert isinstance(conn.sock, ssl.SSLSocket)
            assert conn.sock.gettimeout() == 2.0
            assert conn.is_verified is True
            conn.close()
            assert conn.sock is None
            pool._put_conn(conn)
        with gp.Client(f"https://127.0.0.1:{tls_port}", verify=False) as client:
            conn = _transport_sync._checkout(
                client._transport._manager(None).connection_from_host(
                    "127.0.0.1", tls_port, "https"
                )
            )
            conn.timeout = 2.0
            conn.connect()
            assert isinstance(conn.sock, ssl.SSLSocket)
            assert conn.is_verified is False  # the transport warns on it
            conn.close()
    with (
        tls_listener(pki["wrong-name"]) as tls_port,
        gp.Client(f"https://127.0.0.1:{tls_port}", verify=pki["client"]) as client,
    ):
        conn = _transport_sync._checkout(
            client._transport._manager(None).connection_from_host("127.0.0.1", tls_port, "https")
        )
        conn.timeout = 2.0
        with pytest.raises((urllib3.exceptions.SSLError, ssl.SSLError, ssl.CertificateError)):
            conn.connect()
        conn.close()

    # The idle check.
    assert callable(_transport_sync.wait_for_read)


def test_a_large_body_reaches_sendall_as_views_of_the_callers_array(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, Any]] = []
    me = threading.get_ident()
    real_sendall, real_sendmsg = socket.socket.sendall, socket.socket.sendmsg

    def sendall(self: socket.socket, data: Any, *args: Any) -> None:
        if threading.get_ident() == me:
            calls.append(("sendall", data))
        return real_sendall(self, data, *args)

    def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
        if threading.get_ident() == me:
            calls.append(("sendmsg", list(buffers)))
        return real_sendmsg(self, buffers, *args)

    monkeypatch.setattr(socket.socket, "sendall", sendall)
    monkeypatch.setattr(socket.socket, "sendmsg", sendmsg)
    x = np.arange(5 << 18, dtype=np.float32)  # 5 MiB: over SMALL_BODY and over SEND_SLICE
    message = codec.encode_infer_request([x])
    with scripted() as server, gp.Client(server.url, timeout=FAST, retries=NO_RETRY) as client:
        for _ in range(2):  # a new connection, then kept alive: the same path
            calls.clear()
            np.testing.assert_array_equal(client.execute(x), Y)
            assert {name for name, _ in calls} == {"sendall"}
            head = calls[0][1]
            assert isinstance(head, bytes) and head.startswith(b"POST /model HTTP/1.1\r\n")
            assert head.endswith(b"Content-Length: %d\r\n\r\n" % message.nbytes)
            pieces = [data for _, data in calls[1:]]
            assert all(isinstance(p, memoryview) for p in pieces)
            assert all(p.nbytes <= _transport_sync.SEND_SLICE for p in pieces)
            tensor = [p for p in pieces if np.shares_memory(np.frombuffer(p, np.uint8), x)]
            assert len(tensor) == 2  # 4 MiB + 1 MiB, straight from the array
            assert sum(p.nbytes for p in tensor) == x.nbytes
            assert b"".join(bytes(p) for p in pieces) == message.tobytes()
            assert not any(isinstance(p, bytes) and len(p) > SMALL_BODY for _, p in calls)
    assert server.connections == 1
    assert server.requests[1].endswith(message.tobytes())


def root_buffer(a: np.ndarray) -> np.ndarray:
    """The ndarray at the end of ``a``'s ``.base`` chain (through memoryviews)."""
    owner: Any = a
    while True:
        if isinstance(owner, memoryview):
            owner = owner.obj
        elif isinstance(owner, np.ndarray) and owner.base is not None:
            owner = owner.base
        else:
            return owner


def test_a_large_response_is_received_into_one_aligned_numpy_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[tuple[int, int]] = []  # (address written to, bytes received)
    me = threading.get_ident()
    real_recv_into = socket.socket.recv_into

    def recv_into(self: socket.socket, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        n = real_recv_into(self, buffer, nbytes, flags)
        if threading.get_ident() == me and n:
            view = np.frombuffer(buffer, np.uint8)
            received.append((view.ctypes.data, n))
            del view  # no export left behind (the reader resizes its own buffer)
        return n

    monkeypatch.setattr(socket.socket, "recv_into", recv_into)
    big = np.arange(1 << 20, dtype=np.float64)  # 8 MiB
    body = codec.encode_infer_response([big, np.arange(3, dtype=np.int8)]).tobytes()
    with (
        scripted(ok(body), ok(body), ok()) as server,
        gp.Client(server.url, timeout=FAST, retries=NO_RETRY) as client,
    ):
        for _ in range(2):  # a new connection, then kept alive
            received.clear()
            y, small = client.execute_multi([X])
            np.testing.assert_array_equal(y, big)
            np.testing.assert_array_equal(small, np.arange(3))
            root = root_buffer(y)
            assert isinstance(root, np.ndarray) and root.dtype == np.uint8
            assert root_buffer(small) is root  # both outputs view the one buffer
            assert np.shares_memory(y, root) and np.shares_memory(small, root)
            assert y.flags.writeable
            assert y.ctypes.data % 64 == 0  # aligned (our messages align tensor data to 64)
            start, end = root.ctypes.data, root.ctypes.data + root.nbytes
            direct = sum(n for addr, n in received if start <= addr < end)
            elsewhere = sum(n for addr, n in received if not start <= addr < end)
            # Only the response head and the first HEAD_BYTES go through another buffer.
            assert elsewhere <= HEAD_BYTES + 8192, elsewhere
            assert direct >= len(body) - HEAD_BYTES - 8192
        np.testing.assert_array_equal(client.execute(X), Y)
    assert server.connections == 1


def test_a_connection_goes_back_to_the_pool_only_when_clean() -> None:
    with (
        scripted(ok(), ok(extra=b"Connection: close\r\n"), ok() + b"junk", ok()) as server,
        gp.Client(server.url, timeout=FAST, retries=NO_RETRY) as client,
    ):
        pool = client._transport._manager(None).connection_from_host(
            "127.0.0.1", server.port, "http"
        )

        def pooled_socket() -> object:
            conn = _transport_sync._checkout(pool)
            sock = conn.sock
            pool._put_conn(conn)
            return sock

        client.execute(X)
        kept = pooled_socket()
        assert kept is not None
        client.execute(X)  # Connection: close
        assert pooled_socket() is None
        client.execute(X)  # a byte after the body
        assert pooled_socket() is None
        client.execute(X)
        assert pooled_socket() is not None
    assert server.connections == 3


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self/fd"), reason="needs /proc")
def test_close_closes_the_connections_at_once() -> None:
    # The transport remembers each origin's pool (no urllib3 lookup per call);
    # urllib3's clear() only drops its pools, so close() must close them itself.
    from graphpipe_client.testing import serve

    def sockets() -> int:
        import os

        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with suppress(OSError):
                n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        return n

    with serve(lambda x: x) as server:
        client = gp.Client(server.url)
        client.execute(np.ones(2, np.float32))
        held = [route[1] for route in client._transport._routes.values()]
        assert held  # remembered: the pool outlives urllib3's clear()
        before = sockets()
        client.close()
        assert all(pool.pool is None for pool in held)
        assert sockets() < before  # our side closed now, not when collected
