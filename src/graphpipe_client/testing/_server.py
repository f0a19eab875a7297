"""The bundled GraphPipe server: ``http.server`` on loopback, in background threads.

Layout: a :class:`GraphPipeServer` owns one ``ThreadingHTTPServer`` (which
binds and listens) and an accept thread that runs its ``handle_request`` loop
until woken by a socket pair. Each accepted connection gets its own daemon
thread, which does the TLS handshake if any and then runs a
``BaseHTTPRequestHandler`` over the connection (HTTP/1.1, keep-alive) until
either side closes it. Every open connection is tracked, so that
:meth:`GraphPipeServer.close_connections` and :meth:`GraphPipeServer.stop`
can shut them down from outside.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import io
import logging
import selectors
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self
from urllib.parse import unquote, urlsplit

import numpy as np
import numpy.typing as npt

from .._exceptions import DecodeError, EncodeError
from .._version import __version__
from .._wire.decode import REQ_INFER, REQ_METADATA, decode_request
from .._wire.dtypes import DataType, type_of_dtype
from .._wire.encode import encode_infer_response, encode_metadata_response
from .._wire.messages import InferRequest, IOMetadata, MetadataRequest, ModelMetadata
from ._faults import Faults
from ._model import ModelAdapter, RequestError, ResultError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["GraphPipeServer", "ServeFactory", "serve"]

logger = logging.getLogger("graphpipe_client.testing")

_TEXT: Final = "text/plain; charset=utf-8"
_OCTETS: Final = "application/octet-stream"
_JSON: Final = "application/json"

#: Seconds a client gets to complete its TLS handshake.
_HANDSHAKE_TIMEOUT: Final = 10.0
#: After refusing a body (411, 413), read and discard what the client still
#: sends, for at most this long and this many bytes, so that it sees our
#: answer instead of a connection reset.
_LINGER_SECONDS: Final = 2.0
_LINGER_BYTES: Final = 64 << 20
#: Buffers handed to one ``sendmsg`` call (IOV_MAX is 1024 on Linux).
_IOV_BATCH: Final = 512
#: On TLS, buffers smaller than this are joined before sending.
_COALESCE_BYTES: Final = 16 << 10
#: A body that a GET or a control call does not use is read and dropped up to
#: this size (Go's server does the same, up to 256 KiB); a larger one closes
#: the connection.
_DISCARD_BYTES: Final = 256 << 10
#: The paths of graphpipe-go's lifecycle handlers (exact matches, any method).
_CONTROL: Final = frozenset(
    ("/control/is_ready", "/control/is_alive", "/control/client_count", "/control/shutdown")
)
#: The answer (503) to new work once ``/control/shutdown`` has begun.
_DRAINING_TEXT: Final = "shutting down"
#: TCP keep-alive probes on accepted connections, as Go's listener sets them.
_TCP_KEEPALIVE_SECONDS: Final = 180

Segment = bytes | bytearray | memoryview


class _Connection:
    """One accepted connection: its socket (replaced by the TLS socket once wrapped)."""

    __slots__ = ("linger", "sock", "thread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.linger = False
        self.thread: threading.Thread | None = None


# --------------------------------------------------------------------------
# Sending


def _views(segments: Sequence[Segment]) -> list[memoryview]:
    views = [memoryview(s).cast("B") for s in segments]
    return [v for v in views if v.nbytes]


def _send_segments(sock: socket.socket, segments: Sequence[Segment]) -> None:
    """Write the buffers one after the other, without joining them.

    On a plain socket, ``sendmsg`` writes many buffers per system call
    (scatter/gather). A TLS socket has no ``sendmsg``: small buffers are
    coalesced into one TLS record, large ones sent as they are.
    """
    views = _views(segments)
    if isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):
        small: list[memoryview] = []
        for v in views:
            if v.nbytes < _COALESCE_BYTES:
                small.append(v)
                continue
            if small:
                sock.sendall(b"".join(small))
                small = []
            sock.sendall(v)
        if small:
            sock.sendall(b"".join(small))
        return
    i = 0
    while i < len(views):
        sent = sock.sendmsg(views[i : i + _IOV_BATCH])
        while sent > 0:
            n = views[i].nbytes
            if sent >= n:
                sent -= n
                i += 1
            else:
                views[i] = views[i][sent:]
                sent = 0


def _head(segments: Sequence[Segment], limit: int) -> list[memoryview]:
    """The first ``limit`` bytes of the concatenated segments, as views."""
    out = []
    for v in _views(segments):
        if limit <= 0:
            break
        out.append(v[:limit])
        limit -= min(limit, v.nbytes)
    return out


def _nbytes(segments: Sequence[Segment]) -> int:
    return sum(memoryview(s).nbytes for s in segments)


class _GatherWriter(io.BufferedIOBase):
    """The handler's ``wfile``: keeps what is written until ``flush()``, then sends it at once.

    ``http.server`` writes the status line and headers in one ``write`` (from
    ``end_headers``); our body segments follow as views. ``flush()`` sends
    them all with one ``sendmsg`` (one packet for a small response, no
    copy of a large one). ``handle_one_request`` and ``finish`` flush too.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._pending: list[Segment] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        if self.closed:
            raise ValueError("write to a closed connection writer")
        view = memoryview(data)
        self._pending.append(view)
        return view.nbytes

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            _send_segments(self._sock, pending)

    def close(self) -> None:
        try:
            if not self.closed:
                self.flush()
        finally:
            self._pending = []
            super().close()


# --------------------------------------------------------------------------
# The union tag, read as leniently as Go reads it


def _request_kind(buf: memoryview) -> int | None:
    """The ``Request.req_type`` byte, following only the offsets that lead to it.

    Go's server reads nothing else of a request before deciding that it is
    not an ``InferRequest`` (and answering it with the metadata). ``None``
    when even these offsets lead out of the buffer.

    Example:
        >>> from graphpipe_client import codec
        >>> _request_kind(memoryview(codec.encode_metadata_request().tobytes()))
        2
        >>> _request_kind(memoryview(b"\\xff" * 8)) is None
        True
    """
    mv = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
    n = mv.nbytes

    def fits(pos: int, size: int) -> bool:
        return pos >= 0 and pos + size <= n

    if not fits(0, 4):
        return None
    (root,) = struct.unpack_from("<I", mv, 0)
    if not fits(root, 4):
        return None
    vtable = root - struct.unpack_from("<i", mv, root)[0]
    if not fits(vtable, 4):
        return None
    (vt_size,) = struct.unpack_from("<H", mv, vtable)
    if vt_size < 6:
        return 0  # no req_type slot: the field is absent, NONE
    if not fits(vtable + 4, 2):
        return None
    (field,) = struct.unpack_from("<H", mv, vtable + 4)
    if field == 0:
        return 0
    if not fits(root + field, 1):
        return None
    return int(mv[root + field])


# --------------------------------------------------------------------------
# Metadata as JSON, the Go way


def _type_code(dtype: np.dtype[Any] | None) -> int:
    if dtype is None:
        return int(DataType.Null)
    dt = np.dtype(dtype)
    if dt.kind in "OUST":
        return int(DataType.String)
    code = type_of_dtype(dt)
    return int(code) if code is not None else int(DataType.Null)


def _io_json(io_: IOMetadata) -> dict[str, Any]:
    return {
        "Name": io_.name,
        "Description": io_.description,
        # Go marshals an unknown (nil) shape as null.
        "Shape": None if io_.shape is None else [-1 if d is None else d for d in io_.shape],
        "Type": _type_code(io_.dtype),
    }


def metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    """The metadata as the Go server's ``GET /`` renders it (capitalised keys).

    Example:
        >>> from graphpipe_client import ModelMetadata, IOMetadata
        >>> metadata_json(ModelMetadata(name="m", inputs=(IOMetadata("x", shape=(None, 2)),)))["Inputs"]
        [{'Name': 'x', 'Description': '', 'Shape': [-1, 2], 'Type': 0}]
    """
    return {
        "Name": metadata.name,
        "Version": metadata.version,
        "Server": metadata.server,
        "Description": metadata.description,
        "Inputs": [_io_json(i) for i in metadata.inputs],
        "Outputs": [_io_json(o) for o in metadata.outputs],
    }


# How Go's encoding/json writes a string: HTML-safe, U+2028/U+2029 escaped,
# other non-ASCII as UTF-8. (No lone surrogates: the metadata's strings must
# encode as UTF-8 for the FlatBuffers answer, so the server refuses them.)
_GO_STRING_ESCAPES: Final[dict[int, str]] = {
    **{c: f"\\u{c:04x}" for c in range(0x20)},
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    ord('"'): '\\"',
    ord("\\"): "\\\\",
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _go_json(value: Any, indent: str = "") -> str:
    """``value`` as Go's ``json.MarshalIndent(value, "", "    ")`` writes it.

    Example:
        >>> print(_go_json({"Name": "a<b", "Shape": [-1, 2], "Inputs": [], "X": None}))
        {
            "Name": "a\\u003cb",
            "Shape": [
                -1,
                2
            ],
            "Inputs": [],
            "X": null
        }
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.translate(_GO_STRING_ESCAPES) + '"'
    inner = indent + "    "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{inner}{_go_json(str(k))}: {_go_json(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + _go_json(v, inner) for v in value) + "\n" + indent + "]"
    raise TypeError(f"cannot write {type(value).__name__} as Go JSON")


# --------------------------------------------------------------------------
# The request handler


class _Handler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler for one connection."""

    protocol_version = "HTTP/1.1"
    server_version = f"graphpipe-client-testing/{__version__}"
    sys_version = ""
    error_content_type = _TEXT
    error_message_format = "%(code)d %(message)s: %(explain)s\n"

    def __init__(self, conn: _Connection, client_address: Any, server: _HTTPServer) -> None:
        self.conn = conn
        self.app = server.app
        super().__init__(conn.sock, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.wfile = _GatherWriter(self.connection)

    def version_string(self) -> str:
        return self.server_version

    # -- logging: silent unless log=True --------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        if self.app.log:
            super().log_message(format, *args)

    # -- sending ------------------------------------------------------------

    def _send(
        self,
        status: int,
        segments: Sequence[Segment],
        content_type: str,
        fault: Faults | None = None,
        *,
        close: bool = False,
        nosniff: bool = False,
    ) -> None:
        total = _nbytes(segments)
        if self.app._draining:
            close = True  # shutting down: no connection outlives its answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if nosniff:
            self.send_header("X-Content-Type-Options", "nosniff")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        if fault is not None and fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        chunked = fault is not None and fault.chunked
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            delta = fault.content_length_delta if fault is not None else 0
            self.send_header("Content-Length", str(max(0, total + delta)))
            if delta > 0:
                self.close_connection = True  # the promised bytes never come
        self.end_headers()  # into self.wfile, sent with the body
        if fault is None:
            self._write(segments)
            return
        if fault.stall_after_headers:
            self.wfile.flush()
            if not self.app._sleep(fault.stall_after_headers):
                self.close_connection = True
                return
        complete = True
        if fault.truncate_body is not None and fault.truncate_body < total:
            segments = _head(segments, fault.truncate_body)
            complete = False
            self.close_connection = True
        if chunked:
            framed: list[Segment] = []
            for v in _views(segments):
                framed += [f"{v.nbytes:x}\r\n".encode("ascii"), v, b"\r\n"]
            if complete:
                framed.append(b"0\r\n\r\n")
            segments = framed
        self._write(segments)

    def _write(self, segments: Sequence[Segment]) -> None:
        """Write the body after the pending headers, and send everything."""
        for segment in segments:
            self.wfile.write(segment)
        self.wfile.flush()

    def _send_error(
        self, status: int, text: str, fault: Faults | None = None, *, close: bool = False
    ) -> None:
        """An error answer as Go's ``http.Error`` writes it: the text, ``\\n``, nosniff."""
        body = (text + "\n").encode("utf-8", "backslashreplace")
        self._send(status, [body], _TEXT, fault, close=close, nosniff=True)

    def _send_ok(self, text: str) -> None:
        """A 200 text answer as Go's ``fmt.Fprintf(w, ...)`` gives it (the type sniffed)."""
        self._send(200, [text.encode("utf-8")], _TEXT)

    def _refuse(self, status: int, text: str) -> None:
        """Answer without reading the body, then close the connection."""
        self.conn.linger = True
        self._send_error(status, text, close=True)

    def _discard_body(self) -> None:
        """Read and drop the body of a request that does not use it (a GET, a control call).

        As Go's server does, so that the connection stays usable; a body it
        cannot frame (chunked) or a large one closes the connection instead.
        """
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True  # do not parse the body as the next request
            return
        values = self.headers.get_all("Content-Length") or []
        if not values:
            return
        text = values[0].strip()
        if len(set(values)) > 1 or not (text.isascii() and text.isdigit()):
            self.close_connection = True
            return
        left = int(text)
        if left > _DISCARD_BYTES:
            self.close_connection = True
            self.conn.linger = True  # so that the client reads our answer, not a reset
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 64 << 10))
            if not chunk:
                self.close_connection = True
                return
            left -= len(chunk)

    # -- reading ------------------------------------------------------------

    def _content_length(self) -> int | None:
        """The announced body size; ``None`` after refusing the request."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(
                411,
                "Transfer-Encoding is not supported: send the body with a Content-Length header",
            )
            return None
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self._refuse(411, "a POST needs a Content-Length header")
            return None
        text = values[0].strip()
        if len(set(values)) > 1 or not (text.isascii() and text.isdigit()):
            self._refuse(400, f"invalid Content-Length: {', '.join(values)!r}")
            return None
        n = int(text)
        limit = self.app.max_request_bytes
        if n > limit:
            self._refuse(
                413, f"the request body of {n} bytes exceeds this server's limit of {limit} bytes"
            )
            return None
        return n

    def handle_expect_100(self) -> bool:
        # Refuse a body we would refuse anyway before the client sends it.
        if self.command == "POST" and self._route() not in _CONTROL:
            if self.app._draining:
                self.app._count_request()
                self._refuse(503, _DRAINING_TEXT)
                return False
            if self._content_length() is None:
                self.app._count_request()
                return False
        ok = super().handle_expect_100()
        self.wfile.flush()  # the client waits for "100 Continue" before sending the body
        return ok

    def _read_body(self) -> npt.NDArray[np.uint8] | None:
        n = self._content_length()
        if n is None:
            return None
        # One buffer of exactly the body's size, not zeroed, filled in place.
        buf = np.empty(n, dtype=np.uint8)
        view = buf.data
        got = 0
        while got < n:
            k = self.rfile.readinto(view[got:])
            if not k:  # the client went away mid-body
                self.close_connection = True
                return None
            got += k
        return buf

    # -- methods ------------------------------------------------------------

    def _route(self) -> str:
        """The request's path, percent-decoded, as Go's ``ServeMux`` matches it."""
        return unquote(urlsplit(self.path).path)

    def do_POST(self) -> None:
        app = self.app
        app._count_request()
        if self._route() in _CONTROL:  # on the Go server, any method reaches them
            self._discard_body()
            self._control()
            return
        token = app._admit()
        if token is None:
            self._refuse(503, _DRAINING_TEXT)
            return
        try:
            self._infer_or_metadata()
        finally:
            app._release(token)

    def _infer_or_metadata(self) -> None:
        app = self.app
        body = self._read_body()
        if body is None:
            return
        fault = app.faults._take()
        if fault is not None:
            if fault.delay and not app._sleep(fault.delay):
                self.close_connection = True
                return
            if fault.drop:
                self.close_connection = True
                return
            if fault.status is not None:
                if isinstance(fault.body, str):
                    self._send(fault.status, [fault.body.encode("utf-8")], _TEXT, fault)
                else:
                    self._send(fault.status, [fault.body], _OCTETS, fault)
                return
            if fault.garbage is not None:
                self._send(200, [fault.garbage], _OCTETS, fault)
                return
        self._answer(body.data, fault)

    def _answer(self, body: memoryview, fault: Faults | None) -> None:
        app = self.app
        try:
            req = decode_request(body)
        except DecodeError as exc:
            kind = _request_kind(body)
            if kind is not None and kind != REQ_INFER:
                # Go reads nothing but the union tag of a request that is not
                # an InferRequest, and answers it with the metadata.
                app.last_request = MetadataRequest() if kind == REQ_METADATA else None
                self._send(200, [app._metadata_message], _OCTETS, fault)
                return
            self._send_error(400, str(exc), fault)
            return
        app.last_request = req
        if not isinstance(req, InferRequest):  # MetadataRequest, or an empty union
            self._send(200, [app._metadata_message], _OCTETS, fault)
            return
        try:
            outputs = app._adapter(req)
        except ResultError as exc:
            self._send_error(500, str(exc), fault)
            return
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            logger.info("the model failed: %s", text, exc_info=not isinstance(exc, RequestError))
            if not app.errors_as_response:
                self._send_error(400, text, fault)
                return
            code = getattr(exc, "code", None)
            if not isinstance(code, int) or isinstance(code, bool):
                code = 1
            try:
                msg = encode_infer_response(errors=[(code, text)])
            except EncodeError:  # a code beyond int64
                msg = encode_infer_response(errors=[(1, text)])
            self._send(200, msg.segments, _OCTETS, fault)
            return
        try:
            msg = encode_infer_response(outputs)
        except EncodeError as exc:
            self._send_error(500, f"cannot encode the model's outputs: {exc}", fault)
            return
        self._send(200, msg.segments, _OCTETS, fault)

    def do_GET(self) -> None:
        app = self.app
        app._count_request()
        self._discard_body()
        if self._route() in _CONTROL:
            self._control()
            return
        # Any other path: the metadata as JSON, as the Go server's GET handler.
        token = app._admit()
        if token is None:
            self._send_error(503, _DRAINING_TEXT, close=True)
            return
        try:
            self._send(200, [app._metadata_json], _JSON)
        finally:
            app._release(token)

    def _control(self) -> None:
        """``/control/...``: what graphpipe-go's lifecycle handlers answer."""
        app = self.app
        path = self._route()
        if path == "/control/is_ready":
            if app._shutting_down or app._draining or not app.ready:
                self._send_error(503, "not ready")
            else:
                self._send_ok("ok\n")
        elif path == "/control/is_alive":
            if app._shutting_down:
                self._send_error(503, "not alive")
            else:
                self._send_ok("ok\n")
        elif path == "/control/client_count":
            self._send_ok(f"{app.open_connections}\n")
        else:  # /control/shutdown
            token = app._drain()
            if token is None:  # stop() came first: the connection is closing
                self.close_connection = True
                return
            try:
                self._send_ok("shutdown\n")
            finally:
                app._drained_answer_sent(token)


# --------------------------------------------------------------------------
# The listening server


def _cannot_listen(exc: OSError, host: str, port: int) -> OSError:
    """``exc`` (same type and errno) with a message that names the address and what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        reason += (
            " (another server holds that port): stop it, or pass port=0 for a free port "
            "(server.url then says which)"
        )
    return type(exc)(exc.errno, f"cannot listen on {where}: {reason}")


class _HTTPServer(http.server.ThreadingHTTPServer):
    """Binds and listens; hands each accepted socket to its :class:`GraphPipeServer`."""

    request_queue_size = 1024  # the default backlog of 5 drops SYNs under load
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False  # GraphPipeServer tracks and joins its own threads

    def __init__(self, app: GraphPipeServer, address: tuple[str, int], family: int) -> None:
        self.app = app
        self.address_family = family
        super().__init__(address, _Handler)  # (the handlers are built by _serve_connection)
        self.socket.setblocking(False)  # handle_request must never block in accept()

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.app._spawn(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.warning("cannot serve a connection from %s", client_address, exc_info=True)


class ServeFactory(Protocol):
    """The type of the ``graphpipe_serve`` pytest fixture: start a server, get it back.

    Example:
        >>> from graphpipe_client.testing import ServeFactory
        >>> def test_identity(graphpipe_serve: ServeFactory) -> None:
        ...     server = graphpipe_serve(lambda x: x)
        ...     assert server.url.startswith("http://127.0.0.1:")
    """

    def __call__(self, model: Callable[..., Any], **kwargs: Any) -> GraphPipeServer:
        """Start a :class:`GraphPipeServer` for ``model`` (stopped at teardown)."""
        ...


class GraphPipeServer:
    """A real GraphPipe HTTP/1.1 server for a Python callable, in background threads.

    Use it as a context manager (or through :func:`serve`), or call
    :meth:`start` and :meth:`stop`. See :func:`serve` for the parameters and
    for how the model is called.

    Attributes:
        errors_as_response: model errors come back as a 200 ``InferResponse``
            with an ``errors`` entry instead of an HTTP 400.
        max_request_bytes: larger bodies are refused with 413.
        client_timeout: seconds a connection may stay silent (idle
            keep-alive, a stalled request line, headers or body, a client
            that does not read its response) before the server closes it;
            ``None`` waits forever. Read when a connection is accepted.
        ssl_context: the server-side TLS context, or ``None``.
        log: print one line per request to stderr (``http.server`` style).
        ready: what ``GET /control/is_ready`` says (set ``False`` to simulate a
            server that is warming up: 503 ``not ready``).
        last_request: the most recent GraphPipe request decoded, as an
            :class:`~graphpipe_client.codec.InferRequest` or
            :class:`~graphpipe_client.codec.MetadataRequest` (``None`` before
            the first, or for an empty request union): lets a test check what
            a client sent.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client.testing import GraphPipeServer
        >>> with GraphPipeServer(lambda x: x * 2) as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        metadata: ModelMetadata | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        errors_as_response: bool = False,
        max_request_bytes: int = 1 << 30,
        ssl_context: ssl.SSLContext | None = None,
        faults: Faults | None = None,
        log: bool = False,
        client_timeout: float | None = None,
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (any free port) or a port number, not {port!r}")
        if not isinstance(max_request_bytes, int) or max_request_bytes < 0:
            raise ValueError(f"max_request_bytes must be an int >= 0, not {max_request_bytes!r}")
        if client_timeout is not None and not client_timeout > 0:
            raise ValueError(f"client_timeout must be > 0 seconds or None, not {client_timeout!r}")
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}"
            )
        if faults is not None and not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults object, not {type(faults).__name__}")
        self._adapter = ModelAdapter(model, metadata)
        meta = self._adapter.metadata
        # Both are fixed for the server's life: encode them once (and fail early).
        self._metadata_message: bytes = encode_metadata_response(meta).tobytes()
        self._metadata_json: bytes = _go_json(metadata_json(meta)).encode("utf-8")
        self._host = host
        self._port = port
        self.errors_as_response = errors_as_response
        self.max_request_bytes = max_request_bytes
        self.client_timeout = client_timeout
        self.ssl_context = ssl_context
        self.log = log
        self.ready = True
        self.last_request: InferRequest | MetadataRequest | None = None
        self._faults = faults if faults is not None else Faults()

        self._state_lock = threading.Lock()  # start / stop
        self._lock = threading.Lock()  # counters, connections, threads
        self._connections: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._connections_accepted = 0
        self._requests_served = 0
        self._httpd: _HTTPServer | None = None
        self._accept_thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._stopped = threading.Event()
        self._stopped.set()
        self._shutting_down = False  # stop() has begun
        # /control/shutdown: new work is refused while the requests in flight
        # finish; then the server stops itself. Per start(): the token of a
        # request or a drain is the _stopped event of the run it belongs to.
        self._draining = False
        self._in_flight = 0
        self._drain_waiters = 0
        self._drain_done = threading.Condition(self._lock)
        self._self_stopper: threading.Thread | None = None

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        """The host the server listens on, as given (``"127.0.0.1"`` by default)."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port: the one chosen by the system when ``port=0`` once started."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with an ``ssl_context``): give it to a client.

        Raises:
            RuntimeError: the server was never started with ``port=0``.
        """
        if not self._port:
            raise RuntimeError("the server has no port yet: start it first")
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    @property
    def metadata(self) -> ModelMetadata:
        """The model's metadata, as served to ``MetadataRequest`` and ``GET /``."""
        return self._adapter.metadata

    @property
    def running(self) -> bool:
        """Whether the server is accepting connections."""
        return self._httpd is not None

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections the server has accepted so far (across restarts).

        A client that reuses its connections makes many requests on few
        connections: compare with :attr:`requests_served`.
        """
        return self._connections_accepted

    @property
    def requests_served(self) -> int:
        """How many HTTP requests the server has received so far, whatever the outcome.

        Requests answered with an error status and requests hit by a fault
        (including ``drop``) count too.
        """
        return self._requests_served

    @property
    def open_connections(self) -> int:
        """How many connections are open right now."""
        with self._lock:
            return len(self._connections)

    @property
    def faults(self) -> Faults:
        """The live :class:`Faults`; change its knobs, or assign a new one, at any time."""
        return self._faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        if not isinstance(value, Faults):
            raise TypeError(f"faults must be a Faults object, not {type(value).__name__}")
        self._faults = value

    # -- faults -------------------------------------------------------------

    def set_faults(self, **knobs: Any) -> None:
        """Replace the faults with these knobs (the others off); see :class:`Faults`.

        Example:
            >>> from graphpipe_client.testing import GraphPipeServer
            >>> server = GraphPipeServer(lambda x: x)
            >>> server.set_faults(status=503, body="busy", times=1)
            >>> server.faults.status
            503
        """
        self._faults.set(**knobs)

    def clear_faults(self) -> None:
        """Turn every fault off.

        Example:
            >>> from graphpipe_client.testing import GraphPipeServer
            >>> server = GraphPipeServer(lambda x: x)
            >>> server.set_faults(drop=True)
            >>> server.clear_faults()
            >>> server.faults.active
            False
        """
        self._faults.clear()

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Self:
        """Bind, listen and serve in background threads; return ``self``.

        After a :meth:`stop`, starting again listens on the same port.

        Raises:
            RuntimeError: the server is already running.
            OSError: the address cannot be bound; of the type and ``errno`` the
                socket raised (``errno.EADDRINUSE`` for a port in use), its
                message naming the address and, for a port in use, saying
                that ``port=0`` picks a free one.

        Example:
            >>> from graphpipe_client.testing import GraphPipeServer
            >>> server = GraphPipeServer(lambda x: x).start()
            >>> server.running
            True
            >>> server.stop()
            >>> server.running
            False
        """
        with self._state_lock:
            if self._httpd is not None:
                raise RuntimeError("the server is already running")
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            try:
                httpd = _HTTPServer(self, (self._host, self._port), family)
            except OSError as exc:
                raise _cannot_listen(exc, self._host, self._port) from exc
            try:
                self._port = int(httpd.server_address[1])
                wake = socket.socketpair()
            except BaseException:
                httpd.server_close()
                raise
            self._wake = wake
            self._stopped = threading.Event()
            self._shutting_down = False
            with self._lock:
                self._draining = False
                self._in_flight = 0
                self._drain_waiters = 0
            self._httpd = httpd
            self._accept_thread = threading.Thread(
                target=self._accept_loop,
                args=(httpd, wake[0]),
                name=f"graphpipe-testing-accept:{self._port}",
                daemon=True,
            )
            self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: close the listening socket and every open connection, join the threads.

        Requests in progress are cut off (their responses fail to send). Waits
        up to ``timeout`` seconds for the connection threads (a model that
        never returns cannot be interrupted). Calling it again does nothing;
        so does calling it after ``/control/shutdown`` stopped the server
        (it only waits for that to finish).

        Example:
            >>> from graphpipe_client.testing import GraphPipeServer
            >>> server = GraphPipeServer(lambda x: x).start()
            >>> server.stop()
            >>> server.stop()  # again: nothing to do
        """
        with self._state_lock:
            self._stop_locked(timeout)
            stopper, self._self_stopper = self._self_stopper, None
        if stopper is not None and stopper is not threading.current_thread():
            stopper.join(timeout)  # the connection that answered /control/shutdown

    def _stop_locked(self, timeout: float) -> None:
        httpd, wake, accept = self._httpd, self._wake, self._accept_thread
        if httpd is None or wake is None or accept is None:
            return
        self._shutting_down = True
        self._stopped.set()  # wakes fault sleeps and drains
        with self._lock:
            self._drain_done.notify_all()
        wake[1].send(b"\0")
        accept.join()
        httpd.server_close()
        for s in wake:
            s.close()
        self._httpd = self._wake = self._accept_thread = None
        self.close_connections(timeout=0)
        self._join_threads(timeout)

    def restart(self) -> None:
        """Stop and start again on the same port: every connection is closed.

        Simulates a server restart (the clients' pooled connections go stale).
        Counters, faults and metadata are kept.

        Example:
            >>> from graphpipe_client.testing import serve
            >>> with serve(lambda x: x) as server:
            ...     port = server.port
            ...     server.restart()
            ...     server.port == port
            True
        """
        self.stop()
        self.start()

    def close_connections(self, timeout: float = 1.0) -> int:
        """Close every open connection from the server side; return how many.

        Each one gets a TCP FIN (as when a server restarts or an idle
        keep-alive connection times out): a client's next request on a pooled
        connection finds it closed. Waits up to ``timeout`` seconds for the
        connection threads to finish. The server keeps listening.

        Example:
            >>> import http.client
            >>> from graphpipe_client.testing import serve
            >>> with serve(lambda x: x) as server:
            ...     conn = http.client.HTTPConnection(server.host, server.port)
            ...     conn.request("GET", "/control/is_alive")
            ...     _ = conn.getresponse().read()
            ...     closed = server.close_connections()
            ...     eof = conn.sock.recv(1)
            ...     conn.close()
            >>> closed, eof
            (1, b'')
        """
        with self._lock:
            conns = list(self._connections)
            for c in conns:
                with contextlib.suppress(OSError):
                    # The plain socket's shutdown, also on a TLS socket: this
                    # only touches the file descriptor, safe from any thread.
                    socket.socket.shutdown(c.sock, socket.SHUT_RDWR)
        threads = [c.thread for c in conns if c.thread is not None]
        self._join_threads(timeout, threads)
        return len(conns)

    def _join_threads(self, timeout: float, threads: list[threading.Thread] | None = None) -> None:
        if threads is None:
            with self._lock:
                threads = list(self._threads)
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join(max(0.0, deadline - time.monotonic()))
        if timeout > 0 and any(t.is_alive() and t is not me for t in threads):
            logger.warning("some connection threads are still busy (a model that does not return?)")

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        state = "running" if self.running else "stopped"
        return f"<GraphPipeServer {self.metadata.name!r} {where} {state}>"

    # -- internals ----------------------------------------------------------

    def _count_request(self) -> None:
        with self._lock:
            self._requests_served += 1

    def _admit(self) -> threading.Event | None:
        """Count a new request in flight; ``None`` (refuse it) once draining."""
        with self._lock:
            if self._draining:
                return None
            self._in_flight += 1
            return self._stopped

    def _release(self, token: threading.Event) -> None:
        with self._lock:
            if token is self._stopped:  # not a request of an earlier run
                self._in_flight -= 1
                if not self._in_flight:
                    self._drain_done.notify_all()

    def _drain(self) -> threading.Event | None:
        """``/control/shutdown``: refuse new work, wait for the requests in flight.

        Returns the run's token once they are done, or ``None`` if
        :meth:`stop` came first.
        """
        with self._lock:
            token = self._stopped
            self._draining = True
            self._drain_waiters += 1
            while self._in_flight and not token.is_set():
                self._drain_done.wait()
            if token.is_set():
                self._drain_waiters -= 1
                return None
            return token

    def _drained_answer_sent(self, token: threading.Event) -> None:
        """After the last ``/control/shutdown`` caller has its answer: stop the server."""
        with self._lock:
            self._drain_waiters -= 1
            if self._drain_waiters or token is not self._stopped:
                return
        # stop() may be running in another thread: it sets the token first.
        while not token.is_set():
            if self._state_lock.acquire(timeout=0.05):
                try:
                    if token is self._stopped and not token.is_set():
                        self._self_stopper = threading.current_thread()
                        self._stop_locked(5.0)
                finally:
                    self._state_lock.release()
                return

    def _sleep(self, seconds: float) -> bool:
        """Sleep, unless the server stops meanwhile; return whether it still runs."""
        return not self._stopped.wait(seconds)

    def _accept_loop(self, httpd: _HTTPServer, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(httpd.socket, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is wake:
                        return
                    httpd.handle_request()  # accepts one connection; never blocks

    def _spawn(self, sock: socket.socket, client_address: Any, httpd: _HTTPServer) -> None:
        conn = _Connection(sock)
        with self._lock:
            self._connections_accepted += 1
            number = self._connections_accepted
            self._connections.add(conn)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(conn, client_address, httpd),
            name=f"graphpipe-testing-conn:{self._port}#{number}",
            daemon=True,
        )
        conn.thread = thread
        with self._lock:
            # A thread stays listed until it has ended, so that stop() joins
            # it even when its connection is already closed: drop the ended.
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads.discard(thread)
                self._connections.discard(conn)
            sock.close()
            raise

    def _serve_connection(self, conn: _Connection, client_address: Any, httpd: _HTTPServer) -> None:
        try:
            raw = conn.sock
            raw.setblocking(True)  # on some systems accept() inherits O_NONBLOCK
            raw.settimeout(self.client_timeout)  # a silent client is dropped (None: never)
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with contextlib.suppress(OSError):
                # As Go's listener: keep-alive probes every 3 minutes.
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
                    if hasattr(socket, name):
                        opt = getattr(socket, name)
                        raw.setsockopt(socket.IPPROTO_TCP, opt, _TCP_KEEPALIVE_SECONDS)
            if self.ssl_context is not None:
                raw.settimeout(_HANDSHAKE_TIMEOUT)
                with self._lock:
                    tls = self.ssl_context.wrap_socket(
                        raw, server_side=True, do_handshake_on_connect=False
                    )
                    conn.sock = tls
                try:
                    tls.do_handshake()
                except (OSError, ValueError) as exc:
                    logger.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
                tls.settimeout(self.client_timeout)
            _Handler(conn, client_address, httpd)
        except (OSError, ValueError) as exc:
            # The client went away (reset, broken pipe), or close_connections()
            # shut the socket: routine for a test server.
            logger.debug("connection from %s ended: %r", client_address, exc)
        except Exception:
            logger.exception("unexpected error serving %s", client_address)
        finally:
            with self._lock:
                self._connections.discard(conn)
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        sock = conn.sock
        try:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_WR)
            if conn.linger:
                # Let the client finish sending what we refused, so that it
                # reads our answer instead of a reset.
                deadline = time.monotonic() + _LINGER_SECONDS
                budget = _LINGER_BYTES
                scratch = bytearray(64 << 10)
                with contextlib.suppress(OSError, ValueError):
                    while budget > 0 and not self._stopped.is_set():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        sock.settimeout(min(left, 0.25))
                        try:
                            n = sock.recv_into(scratch)
                        except TimeoutError:
                            continue
                        if not n:
                            break
                        budget -= n
        finally:
            sock.close()


@contextlib.contextmanager
def serve(
    model: Callable[..., Any],
    *,
    metadata: ModelMetadata | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    errors_as_response: bool = False,
    max_request_bytes: int = 1 << 30,
    ssl_context: ssl.SSLContext | None = None,
    faults: Faults | None = None,
    log: bool = False,
    client_timeout: float | None = None,
) -> Iterator[GraphPipeServer]:
    """Serve ``model`` over GraphPipe on loopback for the duration of a ``with`` block.

    The server listens on ``host:port`` (``port=0``: a free port, see
    ``server.url``), answers in background threads, and on exit closes every
    connection and joins its threads.

    How the model is called: ``model(*inputs, **extras)``.

    - Inputs are ordered by the model's input names (from ``metadata``, or
      ``input0``, ``input1``, ... by default): the request's
      ``input_names[i]`` says which position tensor ``i`` takes, and a
      missing or empty name means position ``i``. An unknown name is an
      error (``no input named 'x'``), as on the Go server.
    - Inputs are numpy arrays that are zero-copy, *writable* views into the
      request's own receive buffer (one buffer per request, never reused, so
      writing to them is safe and keeping them is fine); string tensors are
      object arrays of ``bytes``. Tensors that an old client wrote misaligned
      are copied to aligned memory.
    - ``extras`` holds ``config`` (a ``str``: the request's config, UTF-8
      decoded with ``errors="surrogateescape"``) and ``output_names`` (a
      ``list[str]``, as requested) only when the callable accepts a keyword
      parameter of that name (or ``**kwargs``).
    - The model returns one array, a tuple or list of arrays (``output0``,
      ``output1``, ... or the metadata's output names), or a dict of name ->
      array. Requested output names select and order the outputs (an unknown
      one is an error: ``no output named 'y'``); none requested means all, in
      order.
    - The model may run concurrently in several threads (one per connection).

    Default metadata (``metadata=None``): the name of the callable, the server
    ``"graphpipe-client testing server"``, the first line of its docstring,
    inputs ``input0..input{k-1}`` for its ``k`` positional parameters
    (``*args`` accepts any number) and one output ``output0``; shapes and
    types unknown.

    Answers: an ``InferRequest`` gets a 200 ``InferResponse``; a
    ``MetadataRequest`` or an empty request union the ``MetadataResponse``. A
    model exception gets HTTP 400 ``text/plain`` with the exception's text
    (like the Go server), or with ``errors_as_response=True`` a 200
    ``InferResponse`` whose ``errors`` entry holds the exception's ``code``
    attribute (if an ``int``, else 1) and text. A malformed body gets 400
    with the decoder's precise message; outputs that cannot be encoded (a
    ``bool`` array, ``None``) get 500. A body over ``max_request_bytes`` gets
    413 and a POST without ``Content-Length`` (chunked) 411, without reading
    the body, and the connection is closed. Error texts end with ``\\n`` and
    come with ``X-Content-Type-Options: nosniff``, as Go's ``http.Error``
    writes them. A ``GET`` on any path answers the metadata as JSON (Go's
    shape and layout), except the control paths, which answer any method
    as graphpipe-go does: ``/control/is_ready`` and ``/control/is_alive``
    ``ok\\n`` (503 ``not ready\\n`` / ``not alive\\n`` once shutting
    down), ``/control/client_count`` the number of open connections, and
    ``/control/shutdown`` drains the server and stops it (see
    ``docs/testing.md``).

    Args:
        model: any callable; see above.
        metadata: what the server says about the model, and the names it
            accepts; built from the callable when ``None``.
        host: the address to listen on; keep the default loopback.
        port: the TCP port; 0 picks a free one. A port in use raises
            :class:`OSError` (``errno.EADDRINUSE``) naming the address and
            saying so.
        errors_as_response: report model errors as a 200 ``InferResponse``
            with ``errors`` instead of HTTP 400.
        max_request_bytes: refuse larger request bodies with 413.
        ssl_context: a server-side :class:`ssl.SSLContext` to serve HTTPS (the
            handshake happens in the connection's thread).
        faults: a :class:`Faults` to start with (``server.faults`` changes it
            later).
        log: print one line per request to stderr.
        client_timeout: close a connection after this many seconds without a
            byte from the client (or without progress sending it a response):
            an idle keep-alive connection, or a stalled request line, header
            or body (slowloris). It bounds each wait, not the whole request.
            ``None`` (the default) waits forever.

    Example:
        >>> import http.client
        >>> import numpy as np
        >>> from graphpipe_client import codec
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x * 2) as server:
        ...     conn = http.client.HTTPConnection(server.host, server.port)
        ...     conn.request("POST", "/", codec.encode_infer_request([np.arange(3.0)]).tobytes())
        ...     out = codec.decode_infer_response(conn.getresponse().read()).outputs[0]
        ...     conn.close()
        >>> out
        array([0., 2., 4.])
    """
    server = GraphPipeServer(
        model,
        metadata=metadata,
        host=host,
        port=port,
        errors_as_response=errors_as_response,
        max_request_bytes=max_request_bytes,
        ssl_context=ssl_context,
        faults=faults,
        log=log,
        client_timeout=client_timeout,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
