"""``is_ready``, ``is_alive`` and ``wait_until_ready`` on both clients, over real sockets."""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import codec
from graphpipe_client.testing import GraphPipeServer, serve

META = gp.ModelMetadata(name="bare", inputs=(gp.IOMetadata("x"),), outputs=(gp.IOMetadata("y"),))


class _Bare(http.server.BaseHTTPRequestHandler):
    """A GraphPipe server without /control routes: GETs get ``status``; POSTs the metadata."""

    protocol_version = "HTTP/1.1"
    status = 404
    metadata_status = 200
    paths: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.paths.append(("GET", self.path))
        self._reply(self.status, b"no such route")

    def do_POST(self) -> None:
        self.paths.append(("POST", self.path))
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.metadata_status != 200:
            self._reply(self.metadata_status, b"broken")
        else:
            self._reply(200, codec.encode_metadata_response(META).tobytes())


@pytest.fixture
def bare() -> Iterator[tuple[str, type[_Bare]]]:
    handler = type("Handler", (_Bare,), {"paths": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[GraphPipeServer]:
    with serve(lambda x: x) as s:
        yield s


@pytest.fixture
def closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def both(url: str, method: str, **kwargs: Any) -> tuple[Any, Any]:
    """The sync and the async client's answer to the same probe."""
    with gp.Client(url, retries=0) as client:
        sync = getattr(client, method)(**kwargs)

    async def main() -> Any:
        async with gp.AsyncClient(url, retries=0) as aclient:
            return await getattr(aclient, method)(**kwargs)

    return sync, asyncio.run(main())


def test_ready_and_alive(server: GraphPipeServer) -> None:
    assert both(server.url, "is_ready") == (True, True)
    assert both(server.url, "is_alive") == (True, True)


def test_not_ready_is_still_alive(server: GraphPipeServer) -> None:
    server.ready = False
    assert both(server.url, "is_ready") == (False, False)
    assert both(server.url, "is_alive") == (True, True)


def test_nothing_listening_is_false_not_an_exception(closed_url: str) -> None:
    assert both(closed_url, "is_ready") == (False, False)
    assert both(closed_url, "is_alive") == (False, False)


def test_probes_are_gets_of_the_control_routes(bare: tuple[str, type[_Bare]]) -> None:
    url, handler = bare
    with gp.Client(url + "/models/m") as client:
        client.is_ready()
        client.is_alive()
    assert handler.paths[0] == ("GET", "/models/m/control/is_ready")
    assert ("GET", "/models/m/control/is_alive") not in handler.paths  # 404 remembered


@pytest.mark.parametrize("status", [404, 405])
def test_without_control_routes_fall_back_to_metadata(
    bare: tuple[str, type[_Bare]], status: int
) -> None:
    url, handler = bare
    handler.status = status
    assert both(url, "is_ready") == (True, True)
    assert both(url, "is_alive") == (True, True)
    assert ("POST", "/") in handler.paths
    handler.metadata_status = 500
    assert both(url, "is_ready") == (False, False)
    assert both(url, "is_alive") == (True, True)  # it answered: alive


def test_the_missing_route_is_asked_once_per_client(bare: tuple[str, type[_Bare]]) -> None:
    url, handler = bare
    with gp.Client(url) as client:
        for _ in range(3):
            assert client.is_ready()
    assert [m for m, _ in handler.paths] == ["GET", "POST", "POST", "POST"]


def test_wait_until_ready_returns_once_ready(server: GraphPipeServer) -> None:
    server.ready = False
    timer = threading.Timer(0.3, setattr, (server, "ready", True))
    timer.start()
    try:
        started = time.monotonic()
        with gp.Client(server.url) as client:
            client.wait_until_ready(5)
        assert 0.25 < time.monotonic() - started < 2.0
    finally:
        timer.cancel()
    server.ready = False

    async def main() -> None:
        async with gp.AsyncClient(server.url) as client:
            await client.wait_until_ready(5)

    threading.Timer(0.2, setattr, (server, "ready", True)).start()
    asyncio.run(main())


def test_wait_until_ready_times_out_with_the_reason(
    server: GraphPipeServer, closed_url: str
) -> None:
    server.ready = False
    with gp.Client(server.url) as client:
        started = time.monotonic()
        with pytest.raises(
            gp.TimeoutError, match=r"not ready within 0.3 s; the last probe got: HTTP 503"
        ):
            client.wait_until_ready(0.3)
        assert time.monotonic() - started < 1.5

    async def main() -> None:
        async with gp.AsyncClient(closed_url) as client:
            await client.wait_until_ready(0.3)

    with pytest.raises(gp.TimeoutError, match=r"ConnectError|ConnectTimeout"):
        asyncio.run(main())


def test_credentials_are_sent_and_never_shown(server: GraphPipeServer) -> None:
    server.ready = False
    url = server.url.replace("http://", "http://user:secret@")
    with gp.Client(url) as client, pytest.raises(gp.TimeoutError) as info:
        client.wait_until_ready(0.2)
    assert "secret" not in str(info.value) and "***@" in str(info.value)


def test_probes_leave_the_client_usable(server: GraphPipeServer) -> None:
    with gp.Client(server.url) as client:
        assert client.is_ready()
        np.testing.assert_array_equal(client.execute(np.ones(2)), np.ones(2))
        assert client.is_alive()
        np.testing.assert_array_equal(client.execute(np.ones(2)), np.ones(2))
