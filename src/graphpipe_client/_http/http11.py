"""HTTP/1.1 responses, sans I/O: heads, body framing, content decoding, connection reuse.

Both transports read responses with these rules, so that they agree on
what a response is and, above all, on when a connection is clean enough to
carry the next request (RFC 9112). A connection is reused only when the
response was complete, framed by its ``Content-Length`` or its chunked
terminator, no byte arrived beyond it, and nothing went wrong; anything
else closes it, so that a misbehaving server can spoil one call, never the
answer of the next one.

- :func:`find_head_end` and :func:`parse_head` read a status line and its
  header fields; :func:`is_interim` tells the 1xx responses to skip.
- :func:`framing` says how the body of a response is delimited.
- :func:`parse_chunk_size` reads a chunk-size line.
- :func:`keep_alive_timeout` reads the idle time a server promises in its
  ``Keep-Alive: timeout=N`` header.
- :class:`BoundedDecoder` inflates a ``gzip`` or ``deflate`` body without
  ever producing more than a limit (a few MB on the wire can inflate to
  GiBs).
- :class:`ResponseTracker` follows the responses on a connection from the
  bytes read off it, for a transport whose HTTP parser is a library's (the
  async one): it tells when bytes arrived that belong to no response.

Every failure raises :class:`ProtocolViolation`, which the transports turn
into a :class:`~graphpipe_client.TransportError`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "MAX_HEAD_BYTES",
    "BodyRules",
    "BoundedDecoder",
    "Framing",
    "ProtocolViolation",
    "ResponseHead",
    "ResponseTracker",
    "Truncated",
    "body_rules",
    "find_head_end",
    "framing",
    "is_interim",
    "keep_alive_timeout",
    "parse_chunk_size",
    "parse_head",
    "parse_head_once",
]

#: Longest response head (status line and header fields) accepted.
MAX_HEAD_BYTES: Final = 64 * 1024

#: Longest chunk-size line (with extensions) accepted.
MAX_CHUNK_LINE: Final = 4096


class ProtocolViolation(Exception):
    """The peer broke HTTP/1.1 framing; the connection must be closed."""


class Truncated(ProtocolViolation):
    """The connection ended before the end of the response."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed status line and header fields (names lower-cased, repeats joined by ``, ``)."""

    status: int
    reason: str
    version: int  # 10 or 11
    headers: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        """Whether the server lets the connection carry another request."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == 10:
            return "keep-alive" in tokens and "close" not in tokens
        return "close" not in tokens


def find_head_end(buf: bytes | bytearray, start: int, end: int) -> tuple[int, int] | None:
    """Where the head that begins at ``start`` ends in ``buf[:end]``: ``(index, terminator size)``.

    The head ends at the first empty line, lines ending in ``\\r\\n`` or a
    bare ``\\n`` (as h11 and http.client accept): at the first ``\\n\\n`` or
    ``\\n\\r\\n``. ``buf[start:index]`` is the head without its last line
    ending; ``None`` if the head has not been received in full yet.
    """
    lf = buf.find(b"\n\n", start, end)
    crlf = buf.find(b"\n\r\n", start, end)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        return lf, 2
    if crlf >= 0:
        return crlf, 3
    return None


_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch


def parse_head(data: bytes) -> ResponseHead:
    """Parse a response head (without its terminating empty line).

    Raises:
        ProtocolViolation: not an HTTP/1.x status line, or a malformed field.
    """
    lines = data.split(b"\n")
    first = lines[0].rstrip(b"\r")
    parts = first.split(None, 2)
    if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit():
        raise ProtocolViolation(f"not an HTTP status line: {first[:80]!r}")
    if parts[0] == b"HTTP/1.1":
        version = 11
    elif parts[0] == b"HTTP/1.0":
        version = 10
    else:
        raise ProtocolViolation(f"not an HTTP/1.x response: {first[:80]!r}")
    status = int(parts[1])
    if status < 100:
        raise ProtocolViolation(f"invalid status {status}")
    reason = parts[2].strip().decode("latin-1") if len(parts) > 2 else ""
    headers: dict[str, str] = {}
    last = ""
    for raw in lines[1:]:
        line = raw.rstrip(b"\r")
        if not line:
            continue
        if line[0] in b" \t":  # an obsolete folded line continues the previous field
            if not last:
                raise ProtocolViolation("a folded header line with no field before it")
            headers[last] += " " + line.strip().decode("latin-1")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN(name):
            raise ProtocolViolation(f"malformed header line: {line[:80]!r}")
        last = name.lower().decode("ascii")
        text = value.strip().decode("latin-1")
        headers[last] = f"{headers[last]}, {text}" if last in headers else text
    return ResponseHead(status, reason, version, headers)


#: Longest ``Keep-Alive`` header value read; past it the header is ignored.
MAX_KEEP_ALIVE_CHARS: Final = 1024

_KEEP_ALIVE_SEPARATORS: Final = re.compile(r"[,;]")


def keep_alive_timeout(head: ResponseHead) -> float | None:
    """Seconds the server keeps the connection open while idle, from ``Keep-Alive: timeout=N``.

    ``Keep-Alive: timeout=5, max=100`` (RFC 2068 §19.7.1.1, as Apache,
    Node.js and many proxies send it) gives ``5.0``; ``None`` when the header
    is absent or says nothing readable about the timeout. Parameters are
    separated by commas (or semicolons), names compared without case, a
    value may be quoted; the smallest of several timeouts counts. The header
    is untrusted: an unreadable parameter is ignored, never an error, and a
    value longer than :data:`MAX_KEEP_ALIVE_CHARS` is not read at all.
    """
    value = head.headers.get("keep-alive")
    if not value or len(value) > MAX_KEEP_ALIVE_CHARS:
        return None
    found: float | None = None
    for item in _KEEP_ALIVE_SEPARATORS.split(value):
        name, sep, text = item.partition("=")
        if not sep or name.strip().lower() != "timeout":
            continue
        text = text.strip().strip('"').strip()
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            continue
        seconds = float(int(text))
        if found is None or seconds < found:
            found = seconds
    return found


#: Heads remembered by :func:`parse_head_once` (then all forgotten at once).
MAX_REMEMBERED_HEADS: Final = 64

_HEADS: dict[bytes, ResponseHead] = {}


def parse_head_once(data: bytes) -> ResponseHead:
    """:func:`parse_head`, done once for each distinct head: equal bytes, equal parse.

    A server answers the same head bytes call after call (same status,
    headers and length). A head whose bytes equal one that already passed
    every check of :func:`parse_head` gets that parse again; any other head
    is parsed and checked in full (and one that fails is not remembered).
    The result is shared: its ``headers`` must be read, never changed.
    """
    head = _HEADS.get(data)
    if head is None:
        head = parse_head(data)
        if len(_HEADS) >= MAX_REMEMBERED_HEADS:
            _HEADS.clear()
        _HEADS[data] = head
    return head


def is_interim(status: int) -> bool:
    """A 1xx response other than 101: skipped, the final response follows (RFC 9110 §15.2)."""
    return 100 <= status < 200 and status != 101


@dataclass(frozen=True, slots=True)
class Framing:
    """How a response body is delimited (RFC 9112 §6.3).

    ``kind`` is ``"none"`` (no body), ``"length"`` (``length`` bytes),
    ``"chunked"`` or ``"close"`` (up to the end of the stream: the
    connection cannot be reused). ``reusable`` is ``False`` when the framing
    itself forbids reuse, whatever the server says.
    """

    kind: Literal["none", "length", "chunked", "close"]
    length: int = 0
    reusable: bool = True


def framing(head: ResponseHead, method: str = "POST") -> Framing:
    """The framing of the body of ``head``, a final response to ``method``.

    Raises:
        ProtocolViolation: an unreadable or contradictory ``Content-Length``,
            or a ``Transfer-Encoding`` other than chunked.
    """
    status = head.status
    if 100 <= status < 200 or status in (204, 304) or method == "HEAD":
        return Framing("none")
    te = head.headers.get("transfer-encoding")
    cl = head.headers.get("content-length")
    if te is not None:
        codings = [c.strip().lower() for c in te.split(",") if c.strip()]
        if not codings or codings[-1] != "chunked" or any(c != "chunked" for c in codings):
            raise ProtocolViolation(f"unsupported Transfer-Encoding {te[:40]!r}")
        # Both headers: a smuggling vector (RFC 9112 §6.3): read it chunked, then close.
        return Framing("chunked", reusable=cl is None and head.version == 11)
    if cl is not None:
        values = {v.strip() for v in cl.split(",")}
        if len(values) != 1:
            raise ProtocolViolation(f"conflicting Content-Length values {cl[:40]!r}")
        value = values.pop()
        if not value.isdigit() or not value.isascii() or len(value) > 19:
            raise ProtocolViolation(f"invalid Content-Length {value[:40]!r}")
        return Framing("length", int(value))
    return Framing("close", reusable=False)


@dataclass(frozen=True, slots=True)
class BodyRules:
    """What a final response's head says about its body and its connection.

    ``retry_after`` is the raw ``Retry-After`` value; ``encoding`` the
    ``Content-Encoding``, stripped and lower-cased (``""`` when absent).
    """

    frame: Framing
    keep_alive: bool
    retry_after: str | None
    encoding: str


_RULES: dict[tuple[int, str], tuple[ResponseHead, BodyRules]] = {}


def body_rules(head: ResponseHead, method: str = "POST") -> BodyRules:
    """:func:`framing` and the rest of :class:`BodyRules` for ``head``, worked out once per head.

    The heads of :func:`parse_head_once` are one object for equal bytes:
    their rules are remembered by that object (held, so that it stays the
    same object). A head whose framing is refused raises every time.

    Raises:
        ProtocolViolation: as :func:`framing`.
    """
    key = (id(head), method)
    known = _RULES.get(key)
    if known is not None and known[0] is head:
        return known[1]
    headers = head.headers
    rules = BodyRules(
        framing(head, method),
        head.keep_alive,
        headers.get("retry-after"),
        headers.get("content-encoding", "").strip().lower(),
    )
    if len(_RULES) >= MAX_REMEMBERED_HEADS:
        _RULES.clear()
    _RULES[key] = (head, rules)
    return rules


def parse_chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (extensions after ``;`` ignored).

    Raises:
        ProtocolViolation: not a hexadecimal size.
    """
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in text):
        raise ProtocolViolation(f"invalid chunk size line {line[:40]!r}")
    return int(text, 16)


class BoundedDecoder:
    """Inflates a ``gzip``/``deflate`` body, never producing more than ``limit`` bytes.

    GraphPipe servers do not compress (the clients ask for ``identity``), but
    a proxy might. Each :meth:`feed` inflates at most what is left under the
    limit (plus one byte, to detect the overflow), so a bomb costs at most
    ``limit`` bytes of memory, not its inflated size.
    """

    __slots__ = ("_gzip", "_wbits", "_z", "limit", "produced")

    def __init__(self, encoding: str, limit: int | None) -> None:
        enc = encoding.strip().lower()
        if enc in ("gzip", "x-gzip"):
            wbits = 16 + zlib.MAX_WBITS
        elif enc == "deflate":
            wbits = zlib.MAX_WBITS  # RFC 9110: zlib-wrapped deflate
        else:
            raise ProtocolViolation(
                f"unsupported Content-Encoding {encoding[:40]!r} (the client asked for identity)"
            )
        self._gzip = wbits > zlib.MAX_WBITS
        self._wbits = wbits
        self._z = zlib.decompressobj(wbits)
        self.limit = limit
        self.produced = 0

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Inflate ``data``; raise :class:`OverLimit` once the output passes the limit.

        A gzip body may hold several members one after the other (RFC 1952),
        each inflated in turn; bytes after the end of a deflate stream are an
        error.
        """
        pieces: list[bytes] = []
        chunk: bytes | bytearray | memoryview = data
        try:
            while chunk:
                if self._z.eof:
                    if not self._gzip:
                        raise ProtocolViolation("bytes after the end of the compressed body")
                    self._z = zlib.decompressobj(self._wbits)
                room = 0 if self.limit is None else self.limit - self.produced + 1
                out = self._z.decompress(chunk, room)
                self.produced += len(out)
                pieces.append(out)
                if self.limit is not None and self.produced > self.limit:
                    raise OverLimit(self.produced)
                chunk = self._z.unconsumed_tail or self._z.unused_data
        except zlib.error as exc:
            raise ProtocolViolation(f"the compressed body is corrupt: {exc}") from None
        return b"".join(pieces)

    def finish(self) -> bytes:
        """The rest of the output; raise if the compressed stream was cut short."""
        if not self._z.eof:
            raise Truncated("the compressed body ended early")
        return b""


class OverLimit(Exception):
    """Decoded output passed the decoder's limit (``produced`` bytes so far)."""

    def __init__(self, produced: int) -> None:
        super().__init__(produced)
        self.produced = produced


_TrackerState = Literal[
    "head", "length", "chunk-size", "chunk-data", "chunk-crlf", "trailer", "close"
]


class ResponseTracker:
    """Follows the responses on one connection from the bytes read off it.

    For a transport whose HTTP parser belongs to a library (httpx's h11),
    which keeps bytes received past the end of a response and reads them as
    the *next* response. Call :meth:`request_sent` when a request is
    written and :meth:`feed` with every byte read; :attr:`poisoned` turns
    ``True`` as soon as a byte arrives that belongs to no response
    requested (or the stream stops making sense), and stays so: the
    connection must then not be reused.
    """

    __slots__ = (
        "_buf",
        "_expected",
        "_left",
        "_method",
        "_state",
        "keep_alive",
        "poisoned",
        "requests",
    )

    def __init__(self) -> None:
        self.poisoned = False
        self.requests = 0  # requests written on the connection
        self.keep_alive: float | None = None  # the last final response's Keep-Alive timeout
        self._expected = 0  # responses requested and not yet complete
        self._state: _TrackerState = "head"
        self._buf = bytearray()
        self._left = 0
        self._method = "POST"

    @property
    def idle(self) -> bool:
        """No response is pending: the next byte written starts a new request."""
        return self._expected == 0

    def request_sent(self, method: str = "POST") -> None:
        """A new request went out on the connection."""
        self._expected += 1
        self.requests += 1
        self._method = method

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Account for ``data``, the next bytes read off the connection."""
        if self.poisoned or not data:
            return
        try:
            self._feed(memoryview(data).cast("B"))
        except ProtocolViolation:
            self.poisoned = True

    def _feed(self, view: memoryview) -> None:
        pos = 0
        n = len(view)
        while pos < n:
            state = self._state
            if state == "close":
                return  # up to the end of the stream: never reused anyway
            if self._expected == 0:
                raise ProtocolViolation("bytes after the last response")
            if state in ("length", "chunk-data"):
                take = min(self._left, n - pos)
                self._left -= take
                pos += take
                if not self._left:
                    if state == "length":
                        self._done()
                    else:
                        self._state = "chunk-crlf"
                continue
            # A head or a line: gather at most its bound, find its end.
            old = len(self._buf)
            bound = MAX_HEAD_BYTES + 4 if state == "head" else MAX_CHUNK_LINE + 2
            self._buf += view[pos : pos + max(0, bound - old)]
            if state == "head":
                found = find_head_end(self._buf, 0, len(self._buf))
                if found is None:
                    if len(self._buf) >= bound:
                        raise ProtocolViolation("response head too long")
                    return  # all of view is in _buf
                end, size = found
                pos += end + size - old
                self._on_head(parse_head(bytes(self._buf[:end])))
            else:
                end = self._buf.find(b"\n")
                if end < 0:
                    if len(self._buf) >= bound:
                        raise ProtocolViolation("chunk line too long")
                    return
                pos += end + 1 - old
                self._on_line(bytes(self._buf[:end]))
            self._buf.clear()

    def _on_head(self, head: ResponseHead) -> None:
        if is_interim(head.status):
            return  # the final response follows
        self.keep_alive = keep_alive_timeout(head)
        frame = framing(head, self._method)
        if not frame.reusable or not head.keep_alive:
            # The connection must not carry another request, whatever the
            # library's parser makes of the rest: report it as spoiled now.
            self._state = "close"
            self.poisoned = True
        elif frame.kind == "length" and frame.length:
            self._state, self._left = "length", frame.length
        elif frame.kind == "chunked":
            self._state = "chunk-size"
        else:
            self._done()

    def _on_line(self, line: bytes) -> None:
        if self._state == "chunk-size":
            size = parse_chunk_size(line)
            if size:
                self._state, self._left = "chunk-data", size
            else:
                self._state = "trailer"
        elif self._state == "chunk-crlf":
            if line.strip():
                raise ProtocolViolation("chunk data longer than its size")
            self._state = "chunk-size"
        elif not line.strip():  # the empty line that ends the trailer section
            self._done()

    def _done(self) -> None:
        self._expected -= 1
        self._state = "head"
