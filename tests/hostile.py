"""Small hostile HTTP/1.1 servers over raw sockets, and a wrong-data detector.

Used by ``tests/transports/test_hostile.py`` (issue 10). Everything here listens on
127.0.0.1 only, runs in daemon threads that stop themselves (every wait is
bounded by :data:`LIFETIME` and by socket timeouts) and closes every socket.

The wrong-data detector: every call sends its own request-specific input
(:func:`unique_x`), a correct server answers ``x * 2`` *for that x*
(:func:`answer`), and stray or hostile responses carry arrays of a shape that
no call ever expects (:func:`stray_answer`). A call that returns anything but
its own ``x * 2`` has returned another request's answer, or garbage.

A :class:`Server` reads each request on each connection, logs it
(:class:`Seen`: which connection, which input, which headers) and hands it to
the action that its *script* names for that request number (counted over the
whole server, from 0); requests without an entry are answered correctly. An
action returns ``True`` to keep serving the connection, ``False`` to close it
(cleanly, with a FIN); :meth:`Conn.reset` closes with a RST instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import codec

#: No server thread lives longer than this (seconds), whatever its script says.
LIFETIME = 8.0

#: The default client timeouts of the campaign: short, so that a client that
#: waits for bytes that never come fails fast (and typed) instead of hanging.
TIMEOUT = gp.Timeout(connect=2, read=1.5)

#: Two quick retries, no jitter: a retry shows at the server as a second
#: request with the same input.
RETRY = gp.RetryPolicy(retries=2, backoff=0.01, jitter=False)


# --------------------------------------------------------------------------
# The wrong-data detector

_ids = itertools.count(1)


def unique_x() -> np.ndarray:
    """An input no other call sends: 5 float32 holding a fresh id and the process id.

    (The process id keeps inputs unique across ``fork()``, where the counter is copied.)
    """
    k = float(next(_ids))
    return np.array([k, k + 0.25, -k, 1e6 + k, float(os.getpid())], dtype=np.float32)


def key(x: np.ndarray) -> bytes:
    """How a request's input is recognised at the server."""
    return np.ascontiguousarray(x, dtype=np.float32).tobytes()


def answer(x: np.ndarray) -> bytes:
    """The correct InferResponse body for input ``x``: ``x * 2``."""
    return codec.encode_infer_response([np.asarray(x) * 2]).tobytes()


_stray_ids = itertools.count(1)


def stray_answer() -> bytes:
    """A valid InferResponse that no call ever expects (3 elements, negative ids)."""
    k = float(next(_stray_ids))
    return codec.encode_infer_response([np.array([-k, -1e7, -k], dtype=np.float32)]).tobytes()


def is_own(outcome: object, x: np.ndarray) -> bool:
    """Whether ``outcome`` is exactly the answer to ``x``."""
    return (
        isinstance(outcome, np.ndarray)
        and outcome.dtype == np.float32
        and outcome.shape == x.shape
        and np.array_equal(outcome, x * 2)
    )


def check_own(outcome: object, x: np.ndarray) -> None:
    """Assert that ``outcome`` is the correct answer to ``x`` (not an error, not another answer)."""
    assert is_own(outcome, x), f"not this call's answer: {outcome!r} (expected {x * 2!r})"


def check_own_or_typed(
    outcome: object,
    x: np.ndarray,
    allowed: type[BaseException] | tuple[type[BaseException], ...] = gp.GraphPipeError,
) -> None:
    """The answer to ``x``, or an error of ``allowed``: never another answer, never garbage."""
    if isinstance(outcome, np.ndarray | list):
        check_own(outcome, x)
    else:
        assert isinstance(outcome, allowed), f"expected {allowed} or the answer, got {outcome!r}"


# --------------------------------------------------------------------------
# HTTP bytes


def response(
    body: bytes = b"",
    status: int = 200,
    reason: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    *,
    length: int | str | None = -1,
    chunked: bool = False,
    chunk_size: int = 64 * 1024,
) -> bytes:
    """One HTTP/1.1 response.

    ``length=-1`` writes the true Content-Length, ``None`` none, an int or a
    str exactly that value. ``chunked`` frames the body in chunks (and writes
    no Content-Length unless ``length`` is given explicitly).
    """
    reasons = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request"}
    reasons |= {503: "Service Unavailable", 100: "Continue", 102: "Processing"}
    reasons |= {103: "Early Hints", 101: "Switching Protocols"}
    if reason is None:
        reason = reasons.get(status, "Whatever")
    lines = [f"HTTP/1.1 {status} {reason}".encode()]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    if chunked:
        if length != -1 and length is not None:
            lines.append(b"Content-Length: %s" % str(length).encode())
        lines.append(b"Transfer-Encoding: chunked")
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + chunk_size]), body[i : i + chunk_size])
            for i in range(0, len(body), chunk_size)
        )
        return b"\r\n".join(lines) + b"\r\n\r\n" + framed + b"0\r\n\r\n"
    if length == -1:
        lines.append(b"Content-Length: %d" % len(body))
    elif length is not None:
        lines.append(b"Content-Length: %s" % str(length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def interim(status: int, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A 1xx response: a head only."""
    return response(status=status, headers=headers, length=None)


# --------------------------------------------------------------------------
# The server


@dataclass
class Seen:
    """One request as the server read it."""

    n: int  # request number over the whole server, from 0
    conn: int  # connection number, from 0
    x: np.ndarray | None  # the first input (None for a metadata request)
    headers: dict[str, str]  # lower-case names

    @property
    def key(self) -> bytes | None:
        return None if self.x is None else key(self.x)


@dataclass
class Request:
    seen: Seen
    body: bytes


class Conn:
    """One accepted connection: buffered reads of whole requests, and the ways to end it."""

    def __init__(self, sock: socket.socket, index: int, server: Server) -> None:
        self.sock = sock
        self.index = index
        self.server = server
        self.buf = b""
        self.requests = 0  # on this connection
        self.sent = 0  # bytes that went out in the last send()

    def read_request(self) -> Request | None:
        """Read one whole request (head and Content-Length body); ``None`` at EOF or on stop."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self._recv()
            if not chunk:
                return None
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = self._recv()
            if not chunk:
                return None
            rest += chunk
        body, self.buf = rest[:length], rest[length:]
        x = None
        with contextlib.suppress(gp.DecodeError):
            req = codec.decode_request(body)
            if isinstance(req, codec.InferRequest) and req.inputs:
                x = np.array(req.inputs[0], copy=True)
        seen = self.server._log(self.index, x, headers)
        self.requests += 1
        return Request(seen, body)

    def read_head_only(self) -> bool:
        """Read a request head and nothing of its body (not logged: the model does not run)."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self._recv()
            if not chunk:
                return False
            self.buf += chunk
        self.buf = b""
        return True

    def drain(self, seconds: float = 2.0) -> None:
        """Read and drop whatever the client sends, until it closes (bounded)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._recv():
            pass

    def _recv(self) -> bytes:
        while not self.server.stopping.is_set():
            try:
                return self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return b""

    def wait_readable(self, seconds: float = 2.0) -> bool:
        """Wait (bounded) until the client sends something (or closes); ``True`` if it did."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            try:
                self.sock.recv(1, socket.MSG_PEEK)  # b"" (the client closed) counts too
            except TimeoutError:
                continue
            except OSError:
                return False
            return True
        return False

    def send(self, data: bytes) -> bool:
        """Send all of ``data``; ``False`` when the client has gone.

        ``sent`` counts the bytes that went out (the client may close before
        the end of a long fault, having seen enough).
        """
        view = memoryview(data)
        self.sent = 0
        while view.nbytes:
            if self.server.stopping.is_set():
                return False
            try:
                n = self.sock.send(view[: 1 << 18])
            except TimeoutError:
                continue  # the client reads slowly: keep trying until the server stops
            except OSError:
                return False
            view = view[n:]
            self.sent += n
        return True

    def sleep(self, seconds: float) -> bool:
        """Sleep, unless the server stops; ``False`` if it stopped."""
        return not self.server.stopping.wait(seconds)

    def reset(self) -> None:
        """Close with a RST (SO_LINGER 0) instead of a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


#: ``action(conn, request) -> keep serving this connection?``
Action = Callable[[Conn, Request], bool]


def good(conn: Conn, req: Request) -> bool:
    """The correct answer."""
    x = req.seen.x
    if x is None:
        return conn.send(response(b"no input", 400))
    return conn.send(response(answer(x)))


class Server:
    """A raw HTTP/1.1 server on 127.0.0.1 driven by ``script`` (request number -> action).

    Requests the script does not name get ``default`` (the correct answer).
    ``handler(conn)``, when given, replaces the request loop for every
    connection. ``sent`` collects the names of the hostile actions that ran to
    the end (a test checks its fault really happened).
    """

    def __init__(
        self,
        script: Mapping[int, Action] | None = None,
        *,
        default: Action | None = None,
        handler: Callable[[Conn], None] | None = None,
        lifetime: float = LIFETIME,
    ) -> None:
        self.script = dict(script or {})
        self.default: Action = default or good
        self.handler = handler
        self.lifetime = lifetime
        self.seen: list[Seen] = []
        self.connections = 0
        self.sent: list[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # -- what happened

    def _log(self, conn: int, x: np.ndarray | None, headers: dict[str, str]) -> Seen:
        with self._lock:
            seen = Seen(len(self.seen), conn, x, headers)
            self.seen.append(seen)
            return seen

    def executions(self, x: np.ndarray) -> int:
        """How many times the request with input ``x`` was read whole (the model "ran")."""
        k = key(x)
        with self._lock:
            return sum(1 for s in self.seen if s.key == k)

    def requests_of(self, x: np.ndarray) -> list[Seen]:
        k = key(x)
        with self._lock:
            return [s for s in self.seen if s.key == k]

    def mark(self, name: str) -> None:
        with self._lock:
            self.sent.append(name)

    # -- life cycle

    def __enter__(self) -> Server:
        t = threading.Thread(target=self._accept_loop, name="hostile-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(5)
        with self._lock:
            for s in self._socks:
                s.close()
        self.listener.close()

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.02)
        end = time.monotonic() + self.lifetime
        while not self.stopping.is_set() and time.monotonic() < end:
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(0.05)  # every recv wakes up to look at ``stopping``
            with self._lock:
                self._socks.append(sock)
                index = self.connections
                self.connections += 1
            t = threading.Thread(
                target=self._serve, args=(sock, index), name=f"hostile-conn-{index}", daemon=True
            )
            self._threads.append(t)
            t.start()
        # Stop on our own: no connection thread outlives the lifetime either.
        self.stopping.set()

    def _serve(self, sock: socket.socket, index: int) -> None:
        conn = Conn(sock, index, self)
        try:
            if self.handler is not None:
                self.handler(conn)
                return
            while not self.stopping.is_set():
                req = conn.read_request()
                if req is None:
                    return
                action = self.script.get(req.seen.n, self.default)
                if not action(conn, req):
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()


# --------------------------------------------------------------------------
# Ready-made actions


def sends(name: str, make: Callable[[Request], bytes], *, then: str = "serve") -> Action:
    """An action that sends ``make(request)`` in one send, then ``then``
    (``name`` is added to ``server.sent`` once bytes of it went out):

    ``"serve"`` keeps serving this connection correctly (a client that reuses
    it reads whatever it left unread first), ``"close"`` closes it (FIN),
    ``"reset"`` resets it (RST), ``"hold"`` keeps it open, silent, until the
    server stops (bounded).
    """

    def action(conn: Conn, req: Request) -> bool:
        ok = conn.send(make(req))
        if conn.sent:  # the fault went out (all of it, or until the client stopped reading)
            conn.server.mark(name)
        if then == "serve":
            return ok
        if then == "reset":
            conn.reset()
            return False
        if then == "hold":
            conn.sleep(conn.server.lifetime)
        return False

    return action


def sends_split(
    name: str, first: Callable[[Request], bytes], second: Callable[[], bytes], delay: float
) -> Action:
    """Send ``first(request)`` then ``second()``: in one send when ``delay`` is 0, else
    ``delay`` seconds apart (the client has read the first part by then). Then keep serving."""

    def action(conn: Conn, req: Request) -> bool:
        a, b = first(req), second()
        ok = conn.send(a + b) if delay <= 0 else conn.send(a) and conn.sleep(delay) and conn.send(b)
        if ok:
            conn.server.mark(name)
        return ok

    return action


def own(req: Request) -> bytes:
    """The correct answer to ``req`` as a whole response."""
    assert req.seen.x is not None
    return response(answer(req.seen.x))


def body_of(req: Request) -> bytes:
    assert req.seen.x is not None
    return answer(req.seen.x)


# --------------------------------------------------------------------------
# Driving either client

#: No single call may take longer than this (seconds): see :func:`watchdog`.
CALL_BUDGET = 6.0


class Hung(BaseException):
    """A call outlived :data:`CALL_BUDGET`: the client hangs (or spins)."""


@contextlib.contextmanager
def watchdog(seconds: float = CALL_BUDGET) -> Iterator[None]:
    """Interrupt the main thread with :class:`Hung` after ``seconds``.

    A client that loops forever on hostile bytes (it happened: a negative
    chunk size) would otherwise hang the test run; the alarm's handler runs
    between bytecodes, so it ends a busy loop too. :class:`Hung` is a
    ``BaseException``, which no client mistakes for one of its own errors.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise Hung(f"a call took longer than {seconds} s: the client hangs")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Result:
    x: np.ndarray
    outcome: Any  # the answer, or the GraphPipeError raised
    elapsed: float


@dataclass
class Call:
    """One ``execute`` in a sequence: ``before`` runs first; ``timeout`` is the per-call one."""

    before: Callable[[], None] | None = None
    timeout: Any = gp.UNSET
    x: np.ndarray = field(default_factory=unique_x)


def run(kind: str, url: str, calls: int | list[Call], **client_kwargs: Any) -> list[Result]:
    """Make ``calls`` calls, one after the other, on ONE client of ``kind``.

    ``kind`` is "sync", "async" (the standard event loop) or "uvloop".

    Each call sends its own :func:`unique_x`. A :class:`GraphPipeError` is
    returned as the outcome; anything else propagates (an untyped error fails
    the test).
    """
    plan = [Call() for _ in range(calls)] if isinstance(calls, int) else calls
    client_kwargs.setdefault("retries", RETRY)
    client_kwargs.setdefault("timeout", TIMEOUT)
    results: list[Result] = []
    if kind == "sync":
        with gp.Client(url, **client_kwargs) as client:
            for c in plan:
                if c.before is not None:
                    c.before()
                start = time.monotonic()
                try:
                    with watchdog():
                        out: Any = client.execute(c.x, timeout=c.timeout)
                except gp.GraphPipeError as exc:
                    out = exc
                results.append(Result(c.x, out, time.monotonic() - start))
        return results

    async def main() -> None:
        async with gp.AsyncClient(url, **client_kwargs) as client:
            for c in plan:
                if c.before is not None:
                    c.before()
                start = time.monotonic()
                try:
                    with watchdog():
                        out: Any = await client.execute(c.x, timeout=c.timeout)
                except gp.GraphPipeError as exc:
                    out = exc
                results.append(Result(c.x, out, time.monotonic() - start))

    if kind == "uvloop":  # the fast path on uvloop's event loop
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        asyncio.run(main())
    return results


# --------------------------------------------------------------------------
# Compression bombs

# The checksums of 2**30 zero bytes (computed once with zlib.crc32 and
# zlib.adler32; zlib.decompressobj checks them when it reaches the end).
_CRC32_1GIB_ZEROS = 0x5B64C2B0
_ADLER32_1GIB_ZEROS = 0xC02D0001


def compression_bomb(encoding: str) -> bytes:
    """A ``gzip`` or ``deflate`` (zlib) body that inflates to 1 GiB of zeros: about 1 MB.

    Built in milliseconds: after a full flush, deflate starts afresh, so the
    block that compresses 1 MiB of zeros can be repeated 1024 times.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    body = block * 1024 + c.flush(zlib.Z_FINISH)
    if encoding == "gzip":
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        return header + body + struct.pack("<II", _CRC32_1GIB_ZEROS, 0)  # ISIZE: 2**30 mod 2**32
    assert encoding == "deflate"
    return b"\x78\xda" + body + struct.pack(">I", _ADLER32_1GIB_ZEROS)


def gzip(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()
