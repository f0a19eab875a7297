"""Proxies: ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``, ``proxy=`` and ``trust_env``.

Against a real proxy on 127.0.0.1, written here (:class:`LoopbackProxy`): it
forwards absolute-form requests (``http://`` URLs) and tunnels ``CONNECT``
(``https://`` URLs), checks ``Proxy-Authorization`` when asked to, and counts
what passes through it. Both clients, every case.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import serve

KINDS = ["sync", "async"]
X = np.arange(6, dtype=np.float32)


def _read_head(f: Any) -> list[bytes] | None:
    lines = []
    while True:
        line = f.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.rstrip(b"\r\n"))


def _header(lines: list[bytes], name: bytes) -> bytes | None:
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class LoopbackProxy:
    """A small HTTP proxy on 127.0.0.1: forwarding and ``CONNECT``, with optional Basic auth."""

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        self.expected = None
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.expected = f"Basic {token}".encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.forwarded: list[bytes] = []  # request lines forwarded
        self.tunnels: list[bytes] = []  # CONNECT targets
        self.refused = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> LoopbackProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        for t in self._threads:
            t.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _authorized(self, lines: list[bytes]) -> bool:
        return self.expected is None or _header(lines, b"proxy-authorization") == self.expected

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            f = client.makefile("rb")
            while True:
                lines = _read_head(f)
                if not lines:
                    return
                method, target, _ = lines[0].split(b" ", 2)
                if not self._authorized(lines):
                    self.refused += 1
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\n'
                        b"Content-Length: 24\r\nConnection: close\r\n\r\n"
                        b"proxy credentials needed"
                    )
                    return
                if method == b"CONNECT":
                    self.tunnels.append(target)
                    host, _, port = target.rpartition(b":")
                    upstream = socket.create_connection((host.decode(), int(port)), timeout=5)
                    with self._lock:
                        self._sockets.append(upstream)
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._pipe(f, client, upstream)
                    return
                # Forwarding: an absolute-form request.
                assert target.startswith(b"http://"), target
                self.forwarded.append(lines[0])
                rest = target[len(b"http://") :]
                hostport, _, path = rest.partition(b"/")
                host, _, port = hostport.rpartition(b":")
                if upstream is None:
                    upstream = socket.create_connection((host.decode(), int(port)), timeout=5)
                    with self._lock:
                        self._sockets.append(upstream)
                    up = upstream.makefile("rb")
                length = int(_header(lines, b"content-length") or b"0")
                body = f.read(length)
                kept = [
                    line
                    for line in lines[1:]
                    if not line.lower().startswith(b"proxy-authorization:")
                ]
                head = b"\r\n".join([method + b" /" + path + b" HTTP/1.1", *kept]) + b"\r\n\r\n"
                upstream.sendall(head + body)
                rlines = _read_head(up)
                if rlines is None:
                    return
                rlength = int(_header(rlines, b"content-length") or b"0")
                client.sendall(b"\r\n".join(rlines) + b"\r\n\r\n" + up.read(rlength))
        except (OSError, ValueError):
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()

    def _pipe(self, f: Any, client: socket.socket, upstream: socket.socket) -> None:
        pending = f.peek(0) if hasattr(f, "peek") else b""
        if pending:
            upstream.sendall(f.read(len(pending)))

        def up() -> None:
            with contextlib.suppress(OSError):
                while data := upstream.recv(65536):
                    client.sendall(data)
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=up, daemon=True)
        t.start()
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)
        t.join(5)


def call(kind: str, url: str, n: int = 1, **kwargs: Any) -> list[Any]:
    """``n`` calls on one client; each result (or the GraphPipeError)."""
    kwargs.setdefault("retries", 0)
    kwargs.setdefault("timeout", 5)
    xs = [X + i for i in range(n)]
    if kind == "sync":
        out: list[Any] = []
        with gp.Client(url, **kwargs) as client:
            for x in xs:
                try:
                    out.append(client.execute(x))
                except gp.GraphPipeError as exc:
                    out.append(exc)
        return out

    async def main() -> list[Any]:
        res: list[Any] = []
        async with gp.AsyncClient(url, **kwargs) as client:
            for x in xs:
                try:
                    res.append(await client.execute(x))
                except gp.GraphPipeError as exc:
                    res.append(exc)
        return res

    return asyncio.run(main())


def check(outs: list[Any]) -> None:
    for i, out in enumerate(outs):
        assert isinstance(out, np.ndarray), repr(out)
        np.testing.assert_array_equal(out, (X + i) * 2)


@pytest.fixture
def model() -> Iterator[Any]:
    with serve(lambda x: x * 2) as server:
        yield server


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_variables_are_honoured(
    kind: str, variable: str, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackProxy() as proxy:
        monkeypatch.setenv(variable, proxy.url)
        outs = call(kind, model.url, 3)
    check(outs)
    assert len(proxy.forwarded) == 3 and model.requests_served == 3
    assert all(line.startswith(b"POST http://127.0.0.1:") for line in proxy.forwarded)
    assert proxy.connections == 1  # kept alive through the proxy


@pytest.mark.parametrize("kind", KINDS)
def test_lower_case_wins_and_https_proxy_is_not_used_for_http(
    kind: str, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackProxy() as used, LoopbackProxy() as unused:
        monkeypatch.setenv("http_proxy", used.url)
        monkeypatch.setenv("HTTP_PROXY", unused.url)
        monkeypatch.setenv("HTTPS_PROXY", unused.url)
        check(call(kind, model.url, 2))
    assert len(used.forwarded) == 2 and unused.connections == 0


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*", "127.0.0.1:{port}"])
@pytest.mark.parametrize("kind", KINDS)
def test_no_proxy_goes_direct(
    kind: str, no_proxy: str, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy.format(port=model.port))
        check(call(kind, model.url, 2))
    assert proxy.connections == 0 and model.requests_served == 2


@pytest.mark.parametrize("kind", KINDS)
def test_no_proxy_for_another_host_still_proxies(
    kind: str, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", ".example.com,127.0.0.1:1")
        check(call(kind, model.url, 2))
    assert len(proxy.forwarded) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_the_proxy_option_overrides_the_environment(
    kind: str, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with LoopbackProxy() as proxy:
        check(call(kind, model.url, 2, proxy=proxy.url))
    assert len(proxy.forwarded) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_trust_env_false_ignores_the_environment(
    kind: str, model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        check(call(kind, model.url, 2, trust_env=False))
    assert proxy.connections == 0 and model.requests_served == 2


@pytest.mark.parametrize("kind", KINDS)
def test_proxy_credentials_are_sent_and_never_shown(kind: str, model: Any) -> None:
    with LoopbackProxy(auth=("alice", "s3cr3t")) as proxy:
        check(call(kind, model.url, 2, proxy=f"http://alice:s3cr3t@127.0.0.1:{proxy.port}"))
        assert len(proxy.forwarded) == 2 and proxy.refused == 0
        (out,) = call(kind, model.url, proxy=f"http://alice:wrong@127.0.0.1:{proxy.port}")
    assert isinstance(out, gp.HTTPStatusError) and out.status_code == 407
    assert proxy.refused == 1
    for text in (str(out), repr(out)):
        assert "wrong" not in text and "s3cr3t" not in text


@pytest.mark.parametrize("kind", KINDS)
def test_a_dead_proxy_is_a_connect_error(kind: str, model: Any) -> None:
    (out,) = call(kind, model.url, proxy="http://u:s3cr3t@127.0.0.1:9")
    assert isinstance(out, gp.ConnectError), repr(out)
    # The message names the proxy (credentials hidden), not only the model server.
    assert f"cannot connect to {model.url}/ through the proxy http://***@127.0.0.1:9" in str(out)
    assert "s3cr3t" not in str(out)
    assert model.requests_served == 0


@pytest.mark.parametrize(
    "proxy", ["socks5://127.0.0.1:1080", "ftp://p", "http://", "http://p:notaport"]
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_proxy_is_an_invalid_option(kind: str, proxy: str) -> None:
    cls = gp.Client if kind == "sync" else gp.AsyncClient
    with pytest.raises(gp.InvalidOption, match="prox"):
        cls("http://127.0.0.1:9000", proxy=proxy)


def test_a_bad_proxy_variable_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://u:s3cr3t@h:1080")
    with pytest.raises(gp.InvalidOption, match="HTTPS_PROXY") as info:
        gp.Client("http://127.0.0.1:9000")
    assert "s3cr3t" not in str(info.value)


# --------------------------------------------------------------------------
# https:// through CONNECT, TLS end to end


@pytest.fixture(scope="module")
def tls() -> dict[str, Any]:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return {"server": server_ctx, "client": client_ctx}


@pytest.mark.parametrize("auth", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_https_goes_through_a_connect_tunnel(
    kind: str, auth: bool, tls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        serve(lambda x: x * 2, ssl_context=tls["server"]) as model,
        LoopbackProxy(auth=("bob", "pw") if auth else None) as proxy,
    ):
        url = f"http://bob:pw@127.0.0.1:{proxy.port}" if auth else proxy.url
        monkeypatch.setenv("HTTPS_PROXY", url)
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # not for https:// URLs
        outs = call(kind, model.url, 3, verify=tls["client"])
        check(outs)
        assert proxy.tunnels == [f"127.0.0.1:{model.port}".encode()]  # one tunnel, kept alive
        assert proxy.forwarded == [] and model.requests_served == 3


@pytest.mark.parametrize("kind", KINDS)
def test_tls_through_the_tunnel_is_verified_with_the_model_server(
    kind: str, tls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        serve(lambda x: x * 2, ssl_context=tls["server"]) as model,
        LoopbackProxy() as proxy,
    ):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        (out,) = call(kind, model.url)  # the system CAs do not know the test CA
    assert isinstance(out, gp.TLSError), repr(out)
    assert len(proxy.tunnels) == 1 and model.requests_served == 0
