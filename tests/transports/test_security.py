"""Security: TLS and mTLS for both clients, credentials never shown, no unsafe deserialisation,
and a bundled server that survives hostile clients.

Certificates come from ``trustme`` (a throwaway CA); every connection goes to
127.0.0.1.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import pickle
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import urllib3

import aio_modes
import graphpipe_client as gp
from graphpipe_client.testing import GraphPipeServer, serve

trustme = pytest.importorskip("trustme")

KINDS = ["sync", "async"]
# The TLS tests, whose calls all go through call(), also run the fast path on uvloop.
TLS_KINDS = [*KINDS, "uvloop"]
SRC = Path(gp.__file__).resolve().parent
X = np.arange(16, dtype=np.float32)


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def call(kind: str, url: str, n: int = 1, **client_kwargs: Any) -> list[Any]:
    """``n`` calls of ``execute(X)`` on one client; each outcome is an array or the exception."""
    client_kwargs.setdefault("retries", gp.RetryPolicy(retries=2, backoff=0.01))
    client_kwargs.setdefault("timeout", 5)
    if kind == "sync":
        out: list[Any] = []
        with gp.Client(url, **client_kwargs) as client:
            for _ in range(n):
                try:
                    out.append(client.execute(X))
                except gp.GraphPipeError as exc:
                    out.append(exc)
        return out

    async def main() -> list[Any]:
        res: list[Any] = []
        async with gp.AsyncClient(url, **client_kwargs) as client:
            for _ in range(n):
                try:
                    res.append(await client.execute(X))
                except gp.GraphPipeError as exc:
                    res.append(exc)
        return res

    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


def ok(outcome: Any) -> bool:
    return isinstance(outcome, np.ndarray) and np.array_equal(outcome, X * 2)


# --------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture(scope="module")
def pki(ca: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA, a server certificate for 127.0.0.1, a client certificate, as files."""
    d = tmp_path_factory.mktemp("pki")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    client = ca.issue_cert("client@example.test")
    client.cert_chain_pems[0].write_to_path(str(d / "client.crt"))
    client.private_key_pem.write_to_path(str(d / "client.key"))
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    return {
        "ca": str(d / "ca.pem"),
        "cert": str(d / "client.crt"),
        "key": str(d / "client.key"),
        "pem": str(d / "client.pem"),
        "server_cert": ca.issue_cert("127.0.0.1"),
    }


def server_context(
    ca: Any, pki: dict[str, Any], *, require_client_cert: bool = False
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki["server_cert"].configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


@pytest.mark.parametrize("kind", TLS_KINDS)
def test_unknown_ca_fails_cleanly_and_is_not_retried(
    kind: str, ca: Any, pki: dict[str, Any]
) -> None:
    # verify=True (the default) trusts the system CAs only.
    with serve(double, ssl_context=server_context(ca, pki)) as server:
        (out,) = call(kind, server.url)
        assert server.connections_accepted == 1  # one handshake: TLSError is never retried
        assert server.requests_served == 0
    assert isinstance(out, gp.TLSError), repr(out)
    assert "CERTIFICATE_VERIFY_FAILED" in str(out)
    assert out.url == server.url + "/"


@pytest.mark.parametrize("kind", TLS_KINDS)
def test_wrong_host_name_is_a_tls_error(kind: str, ca: Any, tmp_path: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("graphpipe.example.test").configure_cert(ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    with serve(double, ssl_context=ctx) as server:
        (out,) = call(kind, server.url, verify=str(tmp_path / "ca.pem"))
        assert server.connections_accepted == 1
    assert isinstance(out, gp.TLSError), repr(out)


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest.mark.parametrize("how", ["path", "context"])
def test_custom_ca_bundle_or_context_verifies(
    kind: str, how: str, ca: Any, pki: dict[str, Any]
) -> None:
    if how == "path":
        verify: str | ssl.SSLContext = pki["ca"]
    else:
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
    with serve(double, ssl_context=server_context(ca, pki)) as server:
        outs = call(kind, server.url, 3, verify=verify)
        assert server.connections_accepted == 1  # TLS connections are pooled too
    assert all(ok(o) for o in outs), outs


@pytest.mark.parametrize("kind", TLS_KINDS)
@pytest.mark.parametrize("form", ["pair", "single-pem"])
def test_mtls_client_certificate(kind: str, form: str, ca: Any, pki: dict[str, Any]) -> None:
    cert = (pki["cert"], pki["key"]) if form == "pair" else pki["pem"]
    with serve(double, ssl_context=server_context(ca, pki, require_client_cert=True)) as server:
        outs = call(kind, server.url, 2, verify=pki["ca"], cert=cert)
    assert all(ok(o) for o in outs), outs


@pytest.mark.parametrize("kind", TLS_KINDS)
def test_mtls_without_a_client_certificate_fails_cleanly(
    kind: str, ca: Any, pki: dict[str, Any]
) -> None:
    # With TLS 1.3 the server checks the client certificate after the client
    # has finished its handshake, and says so with an alert: both clients
    # read it and raise TLSError. Never retried.
    with serve(double, ssl_context=server_context(ca, pki, require_client_cert=True)) as server:
        (out,) = call(kind, server.url, verify=pki["ca"])
        assert server.requests_served == 0
        assert server.connections_accepted == 1
    assert not isinstance(out, gp.TimeoutError)
    if kind == "uvloop" and type(out) is gp.TransportError:
        # The server closes with the request unread, so its kernel resets the connection.
        # When the reset beats the alert to uvloop's write (seen on a loaded machine), the
        # failed write closes the transport before the alert is read: a clean transport
        # error, as the client cannot tell the refusal from any reset.
        assert "Broken pipe" in str(out) or "reset" in str(out), repr(out)
        return
    assert isinstance(out, gp.TLSError), repr(out)
    assert "certificate required" in str(out)


@pytest.mark.parametrize("kind", TLS_KINDS)
def test_verify_false_skips_verification(kind: str, ca: Any, pki: dict[str, Any]) -> None:
    # Not recommended, and every client says so, as urllib3 does, on each new connection.
    with (
        serve(double, ssl_context=server_context(ca, pki)) as server,
        pytest.warns(urllib3.exceptions.InsecureRequestWarning, match="Unverified HTTPS"),
    ):
        (out,) = call(kind, server.url, verify=False)
    assert ok(out)


@pytest.mark.parametrize("mode", aio_modes.MODES)
def test_verify_false_warns_on_every_async_path(mode: str, ca: Any, pki: dict[str, Any]) -> None:
    """The asyncio fast path and the httpx path (asyncio, trio) warn once per new connection."""

    async def main() -> list[np.ndarray]:
        async with gp.AsyncClient(url, verify=False, timeout=5) as client:
            return [await client.execute(X) for _ in range(3)]

    with serve(double, ssl_context=server_context(ca, pki)) as server:
        url = server.url
        with pytest.warns(urllib3.exceptions.InsecureRequestWarning) as record:
            outs = aio_modes.run_in(mode, main)
        assert server.connections_accepted == 1
    assert len(record) == 1  # one connection, one warning
    assert str(record[0].message).startswith("Unverified HTTPS request to ")
    assert "127.0.0.1" in str(record[0].message)
    assert all(ok(o) for o in outs)


# --------------------------------------------------------------------------
# Credentials never shown: messages, reprs, tracebacks, pickles, logs

SECRETS = ["s3cr3t-pass", "alice-user", "tok3n-bearer", "k3y-api", "YWxpY2UtdXNlcjpzM2NyM3QtcGFzcw"]
HEADERS = {"Authorization": "Bearer tok3n-bearer", "X-Api-Key": "k3y-api"}


def _userinfo(url: str) -> str:
    return url.replace("://", "://alice-user:s3cr3t-pass@", 1)


def _texts(obj: Any) -> str:
    parts = [str(obj), repr(obj)]
    if isinstance(obj, BaseException):
        parts += traceback.format_exception(obj)
        parts.append(repr(pickle.loads(pickle.dumps(obj))))
        parts.append(str(getattr(obj, "url", "")))
        parts.append(obj._repr_html_() if isinstance(obj, gp.GraphPipeError) else "")
    return "\n".join(parts)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    names = ["", "urllib3", "httpx", "httpcore", "hpack", "graphpipe_client", "asyncio"]
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(caplog.at_level(logging.DEBUG, logger=name))
        yield caplog


def _failing_calls(kind: str, server: GraphPipeServer) -> list[Any]:
    url = _userinfo(server.url)
    outs: list[Any] = []
    for faults in [{"status": 401, "body": "who are you?"}, {"drop": True}, {"delay": 1.0}, {}]:
        server.set_faults(**faults)
        outs += call(kind, url, retries=0, headers=HEADERS, timeout=gp.Timeout(connect=2, read=0.3))
    server.clear_faults()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outs += call(kind, _userinfo(f"http://127.0.0.1:{port}"), retries=1, headers=HEADERS)
    return outs


@pytest.mark.parametrize("kind", KINDS)
def test_credentials_never_appear_in_errors_reprs_or_debug_logs(
    kind: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    with serve(double) as server:
        outs = _failing_calls(kind, server)
        # the server did receive them (user-info as Basic auth, the headers as given)
        assert server.requests_served >= 4
    kinds = [type(o) for o in outs]
    assert kinds[0] is gp.HTTPStatusError and kinds[1] is gp.TransportError
    assert kinds[2] is gp.ReadTimeout and kinds[4] is gp.ConnectError, kinds
    assert ok(outs[3])
    texts = [_texts(o) for o in outs]
    client = gp.Client(_userinfo("http://127.0.0.1:9"), headers=HEADERS)
    texts += [repr(client), repr(client.config), str(client.config)]
    client.close()
    logs = "\n".join(
        [r.getMessage() for r in debug_logs.records] + [repr(r.args) for r in debug_logs.records]
    )
    assert debug_logs.records, "no DEBUG log record captured: the check would prove nothing"
    for secret in SECRETS:
        for text in texts:
            assert secret not in text, (secret, text[:500])
        assert secret not in logs, secret
    assert "***@127.0.0.1" in texts[0]


def test_the_server_received_the_credentials() -> None:
    # The other side of the coin: they are sent, as Basic auth and headers.
    seen: dict[str, str] = {}

    def spy(x: np.ndarray) -> np.ndarray:
        return x

    with serve(spy) as server:
        import http.server

        original = http.server.BaseHTTPRequestHandler.parse_request

        def parse(self: http.server.BaseHTTPRequestHandler) -> bool:
            result = original(self)
            seen.update(self.headers.items())
            return result

        http.server.BaseHTTPRequestHandler.parse_request = parse  # type: ignore[method-assign]
        try:
            with gp.Client(_userinfo(server.url), headers={"X-Api-Key": "k3y-api"}) as client:
                client.execute(X)
        finally:
            http.server.BaseHTTPRequestHandler.parse_request = original  # type: ignore[method-assign]
    assert seen["Authorization"] == "Basic YWxpY2UtdXNlcjpzM2NyM3QtcGFzcw=="
    assert seen["X-Api-Key"] == "k3y-api"


# --------------------------------------------------------------------------
# No unsafe deserialisation anywhere in the package

UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "marshal",
    "shelve",
    "dill",
    "cloudpickle",
    "jsonpickle",
}
UNSAFE_CALLS = {"eval", "exec", "compile", "__import__"}


def test_no_pickle_eval_exec_or_marshal_in_the_package() -> None:
    findings = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                findings += [
                    f"{where} import {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] in UNSAFE_MODULES
                ]
            elif (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] in UNSAFE_MODULES
            ):
                findings.append(f"{where} from {node.module} import")
            elif isinstance(node, ast.Call):
                func = node.func
                # eval(...), builtins.eval(...); not re.compile(...) and the like
                if (isinstance(func, ast.Name) and func.id in UNSAFE_CALLS) or (
                    isinstance(func, ast.Attribute)
                    and func.attr in UNSAFE_CALLS
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "builtins"
                ):
                    findings.append(f"{where} {ast.unparse(func)}()")
                for kw in node.keywords:  # np.load(..., allow_pickle=True) and the like
                    if kw.arg == "allow_pickle" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        findings.append(f"{where} allow_pickle={ast.unparse(kw.value)}")
            elif isinstance(node, ast.Attribute) and node.attr in {"loads", "load"}:
                base = node.value
                if isinstance(base, ast.Name) and base.id in UNSAFE_MODULES:
                    findings.append(f"{where} {base.id}.{node.attr}")
    assert findings == []


def test_decoded_strings_are_data_never_objects() -> None:
    # String tensors come back as object arrays of bytes: nothing is unpickled
    # or evaluated, whatever the bytes say.
    payload = pickle.dumps(print)
    wire = gp.codec.encode_infer_response([np.array([payload, b"__import__('os')"], dtype=object)])
    out = gp.codec.decode_infer_response(wire.tobytes()).outputs[0]
    assert out.tolist() == [payload, b"__import__('os')"]
    assert all(type(v) is bytes for v in out.tolist())


# --------------------------------------------------------------------------
# The bundled server against hostile clients


def _exchange(server: GraphPipeServer, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def _still_serves(server: GraphPipeServer) -> bool:
    with gp.Client(server.url, retries=0, timeout=5) as client:
        return ok(client.execute(X))


@pytest.mark.parametrize("kind", KINDS)
def test_request_over_the_servers_limit_is_a_413_for_the_client(kind: str) -> None:
    big = np.zeros(300_000, np.float32)  # 1.2 MB
    with serve(double, max_request_bytes=1 << 20) as server:
        if kind == "sync":
            with gp.Client(server.url) as client, pytest.raises(gp.HTTPStatusError) as info:
                client.execute(big)
        else:

            async def main() -> None:
                async with gp.AsyncClient(server.url) as client:
                    await client.execute(big)

            with pytest.raises(gp.HTTPStatusError) as info:
                asyncio.run(main())
        assert server.requests_served == 1  # 413 is not retried
        assert _still_serves(server)
    assert info.value.status_code == 413
    assert "exceeds this server's limit" in info.value.body


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",
            b"400",
        ),  # a TLS hello
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", b"413"),
        (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"400"),
        (
            b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 8\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff",
            b"400",
        ),
        (b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (b"POST / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", b"431"),
    ],
    ids=[
        "tls-hello",
        "garbage",
        "huge-length",
        "negative-length",
        "bad-body",
        "empty-body",
        "long-header",
        "many-headers",
    ],
)
def test_server_rejects_malformed_requests_and_survives(data: bytes, status: bytes) -> None:
    with serve(double) as server:
        answer = _exchange(server, data)
        # an HTTP/1.x status line, or for a request line that is not HTTP at
        # all, http.server's HTTP/0.9-style bare error text
        assert answer.startswith((b"HTTP/1.1 " + status, status)), answer[:200]
        assert _still_serves(server)


def test_server_drops_slowloris_clients_after_client_timeout() -> None:
    partial_body = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"\0" * 10
    partial_head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Le"
    with serve(double, client_timeout=0.5) as server:
        socks = [socket.create_connection((server.host, server.port), timeout=5) for _ in range(20)]
        try:
            for i, s in enumerate(socks):
                s.sendall(partial_body if i % 2 else partial_head)
            start = time.monotonic()
            assert _still_serves(server)  # while they hang, others are served
            for s in socks:
                assert s.recv(1) == b""  # closed by the server, without an answer
            elapsed = time.monotonic() - start
        finally:
            for s in socks:
                s.close()
        assert elapsed < 3
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.open_connections == 0  # their threads are gone too


@pytest.mark.parametrize("kind", KINDS)
def test_idle_connections_closed_by_client_timeout_are_replaced(kind: str) -> None:
    with serve(double, client_timeout=0.3) as server:

        def later() -> None:
            time.sleep(0.6)

        if kind == "sync":
            with gp.Client(server.url, retries=0) as client:
                first = client.execute(X)
                later()
                second = client.execute(X)
        else:

            async def main() -> tuple[Any, Any]:
                async with gp.AsyncClient(server.url, retries=0) as client:
                    a = await client.execute(X)
                    await asyncio.sleep(0.6)
                    return a, await client.execute(X)

            first, second = asyncio.run(main())
        assert ok(first) and ok(second)
        assert server.requests_served == 2 and server.connections_accepted == 2


def test_client_timeout_validation() -> None:
    with pytest.raises(ValueError, match="client_timeout"):
        GraphPipeServer(double, client_timeout=0)
    assert GraphPipeServer(double).client_timeout is None


def test_without_client_timeout_a_stalled_client_holds_only_its_own_thread() -> None:
    # The default (None) waits forever, as before: a stalled client does not
    # block anyone else, and stop() still ends its thread.
    with serve(double) as server:
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
            assert _still_serves(server)
            threads = threading.active_count()
        assert threads >= 2
