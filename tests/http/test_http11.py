"""The sans-I/O HTTP/1.1 rules both transports read responses with (``_http/http11.py``).

Unit tests of each function, and properties: a head written with any mix of
line endings parses to the same fields; a chunk size round-trips; the
decoder never produces more than its limit (a gzip bomb costs at most the
limit); and the :class:`ResponseTracker` reaches the same verdict whatever
the pieces the byte stream arrives in.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import tracemalloc
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphpipe_client._http import http11 as h
from graphpipe_client._http.http11 import (
    MAX_CHUNK_LINE,
    MAX_HEAD_BYTES,
    BoundedDecoder,
    Framing,
    ProtocolViolation,
    ResponseTracker,
    find_head_end,
    framing,
    is_interim,
    parse_chunk_size,
    parse_head,
)

# --------------------------------------------------------------------------
# Heads


def test_parse_head() -> None:
    head = parse_head(
        b"HTTP/1.1 200 Very OK\r\nContent-Length: 5\r\nX-Dup: 1\r\nx-dup:  2 \r\n"
        b"X-Folded: a\r\n  b\r\n\tc\r\nEmpty:\r\n"
    )
    assert head.status == 200
    assert head.reason == "Very OK"
    assert head.version == 11
    assert head.headers == {
        "content-length": "5",
        "x-dup": "1, 2",
        "x-folded": "a b c",
        "empty": "",
    }
    assert head.keep_alive


def test_parse_head_bare_newlines_and_no_reason() -> None:
    head = parse_head(b"HTTP/1.0 404\nA: b\r\nC: d")
    assert (head.status, head.reason, head.version) == (404, "", 10)
    assert head.headers == {"a": "b", "c": "d"}
    assert not head.keep_alive  # HTTP/1.0 closes unless asked


def test_parse_head_latin1_values() -> None:
    assert parse_head(b"HTTP/1.1 200 \xe9t\xe9\r\nX: caf\xe9").headers["x"] == "caf\u00e9"


@pytest.mark.parametrize(
    ("version", "connection", "keep"),
    [
        (b"HTTP/1.1", None, True),
        (b"HTTP/1.1", b"keep-alive", True),
        (b"HTTP/1.1", b"close", False),
        (b"HTTP/1.1", b"Upgrade, CLOSE", False),
        (b"HTTP/1.0", None, False),
        (b"HTTP/1.0", b"Keep-Alive", True),
        (b"HTTP/1.0", b"keep-alive, close", False),
    ],
)
def test_keep_alive(version: bytes, connection: bytes | None, keep: bool) -> None:
    extra = b"" if connection is None else b"\r\nConnection: " + connection
    assert parse_head(version + b" 200 OK" + extra).keep_alive is keep


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not an HTTP status line"),
        (b"garbage", "not an HTTP status line"),
        (b"HTTP/1.1 20 OK", "not an HTTP status line"),
        (b"HTTP/1.1 2000 OK", "not an HTTP status line"),
        (b"HTTP/1.1 abc OK", "not an HTTP status line"),
        (b"HTTP/2 200 OK", "not an HTTP/1.x response"),
        (b"SPDY/3 200 OK", "not an HTTP/1.x response"),
        (b"http/1.1 200 OK", "not an HTTP/1.x response"),
        (b"HTTP/1.1 099 Low", "invalid status"),
        (b"HTTP/1.1 200 OK\r\nno colon", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nName : x", "malformed header line"),  # RFC 9112 5.1: reject
        (b"HTTP/1.1 200 OK\r\n: x", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\n\xff: x", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\n folded", "folded header line"),
    ],
)
def test_parse_head_errors(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolViolation, match=match):
        parse_head(data)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"HTTP/1.1 200 OK\r\n\r\nbody", (16, 3)),
        (b"HTTP/1.1 200 OK\n\nbody", (15, 2)),
        (b"HTTP/1.1 200 OK\r\n\nbody", (16, 2)),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n\n\n", (22, 3)),  # the first empty line
        (b"HTTP/1.1 200 OK\r\nA: b\r\n", None),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n\r", None),
        (b"", None),
    ],
)
def test_find_head_end(data: bytes, found: tuple[int, int] | None) -> None:
    assert find_head_end(data, 0, len(data)) == found
    assert find_head_end(bytearray(b"xx" + data), 2, len(data) + 2) == (
        None if found is None else (found[0] + 2, found[1])
    )


def test_find_head_end_respects_its_bounds() -> None:
    data = b"HTTP/1.1 200 OK\r\n\r\n"
    assert find_head_end(data, 0, len(data) - 1) is None
    assert find_head_end(b"\r\n\r\n" + data, 4, len(data) + 4) == (4 + 16, 3)


def test_find_head_end_agrees_with_h11_on_lf_cr_lf() -> None:
    data = b"HTTP/1.1 200 OK\nContent-Length: 6\n\r\nA: bcd"
    assert find_head_end(data, 0, len(data)) == (33, 3)


def test_is_interim() -> None:
    assert [s for s in range(100, 600) if is_interim(s)] == [100, *range(102, 200)]


# Header fields: token names, latin-1 values without control characters or edge spaces.
TOKEN = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=12,
)
VALUE = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=20).map(
    str.strip
)


@given(
    status=st.integers(100, 999),
    reason=st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=20),
    fields=st.lists(st.tuples(TOKEN, VALUE), max_size=8),
    newlines=st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=10, max_size=10),
)
def test_parse_head_any_line_endings(
    status: int, reason: str, fields: list[tuple[str, str]], newlines: list[bytes]
) -> None:
    lines = [b"HTTP/1.1 %d %s" % (status, reason.encode("latin-1"))]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in fields]
    data = b"".join(line + newlines[i % 10] for i, line in enumerate(lines))
    end = newlines[0]  # the empty line: CRLF or a bare LF, after any line ending
    stream = data + end + b"body\n\n\r\n\r\n"
    found = find_head_end(stream, 0, len(stream))
    assert found is not None and found[0] + found[1] == len(data) + len(end)
    head = parse_head(stream[: found[0]])
    expected: dict[str, str] = {}
    for k, v in fields:
        key = k.lower()
        expected[key] = f"{expected[key]}, {v}" if key in expected else v
    assert head.status == status
    assert head.reason == reason.encode("latin-1").strip().decode("latin-1")  # ASCII spaces only
    assert head.headers == expected


# --------------------------------------------------------------------------
# Framing


def head(text: bytes) -> h.ResponseHead:
    return parse_head(b"HTTP/1.1 " + text)


@pytest.mark.parametrize(
    ("text", "method", "expected"),
    [
        (b"200 OK\r\nContent-Length: 12", "POST", Framing("length", 12)),
        (b"200 OK\r\nContent-Length: 0", "POST", Framing("length", 0)),
        (b"200 OK\r\nContent-Length: 7, 7", "POST", Framing("length", 7)),
        (b"200 OK\r\nContent-Length: 7\r\nContent-Length: 7", "POST", Framing("length", 7)),
        (b"200 OK\r\nTransfer-Encoding: chunked", "POST", Framing("chunked")),
        (b"200 OK\r\nTransfer-Encoding: Chunked", "POST", Framing("chunked")),
        (
            b"200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3",
            "POST",
            Framing("chunked", reusable=False),
        ),
        (b"200 OK", "POST", Framing("close", reusable=False)),
        (b"204 No Content\r\nContent-Length: 10", "POST", Framing("none")),
        (b"304 Not Modified\r\nTransfer-Encoding: chunked", "POST", Framing("none")),
        (b"100 Continue", "POST", Framing("none")),
        (b"200 OK\r\nContent-Length: 10", "HEAD", Framing("none")),
        (b"400 Bad\r\nContent-Length: 3", "POST", Framing("length", 3)),
    ],
)
def test_framing(text: bytes, method: str, expected: Framing) -> None:
    assert framing(head(text), method) == expected


def test_framing_of_an_http_1_0_chunked_response_forbids_reuse() -> None:
    frame = framing(parse_head(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked"))
    assert frame == Framing("chunked", reusable=False)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"200 OK\r\nContent-Length: nope", "invalid Content-Length"),
        (b"200 OK\r\nContent-Length: -1", "invalid Content-Length"),
        (b"200 OK\r\nContent-Length: +1", "invalid Content-Length"),
        (b"200 OK\r\nContent-Length: 0x10", "invalid Content-Length"),
        (b"200 OK\r\nContent-Length: \xb2", "invalid Content-Length"),  # a superscript two
        (b"200 OK\r\nContent-Length: 12345678901234567890", "invalid Content-Length"),
        (b"200 OK\r\nContent-Length: ", "invalid Content-Length"),
        (b"200 OK\r\nContent-Length: 1, 2", "conflicting Content-Length"),
        (b"200 OK\r\nContent-Length: 1\r\nContent-Length: 2", "conflicting Content-Length"),
        (b"200 OK\r\nTransfer-Encoding: gzip", "unsupported Transfer-Encoding"),
        (b"200 OK\r\nTransfer-Encoding: gzip, chunked", "unsupported Transfer-Encoding"),
        (b"200 OK\r\nTransfer-Encoding: chunked, gzip", "unsupported Transfer-Encoding"),
        (b"200 OK\r\nTransfer-Encoding: ", "unsupported Transfer-Encoding"),
    ],
)
def test_framing_errors(text: bytes, match: str) -> None:
    with pytest.raises(ProtocolViolation, match=match):
        framing(head(text))


# --------------------------------------------------------------------------
# Chunk sizes


@pytest.mark.parametrize(
    ("line", "size"),
    [
        (b"0", 0),
        (b"a", 10),
        (b"FF", 255),
        (b"1f;name=value", 31),
        (b"10 ; ext", 16),
        (b"10\r", 16),
        (b"ffffffffffffffff", 2**64 - 1),
    ],
)
def test_parse_chunk_size(line: bytes, size: int) -> None:
    assert parse_chunk_size(line) == size


@pytest.mark.parametrize(
    "line", [b"", b";ext", b"zz", b"-1", b"+1", b"0x10", b"1 2", b"1" * 17, b"\xff"]
)
def test_parse_chunk_size_errors(line: bytes) -> None:
    with pytest.raises(ProtocolViolation, match="invalid chunk size line"):
        parse_chunk_size(line)


@given(size=st.integers(0, 2**64 - 1), upper=st.booleans(), ext=st.binary(max_size=20))
def test_parse_chunk_size_round_trips(size: int, upper: bool, ext: bytes) -> None:
    text = b"%X" % size if upper else b"%x" % size
    assert parse_chunk_size(text + b";" + ext) == size
    assert parse_chunk_size(text + b"\r") == size


# --------------------------------------------------------------------------
# Content decoding, bounded


def compress(data: bytes, encoding: str) -> bytes:
    return gzip.compress(data) if encoding == "gzip" else zlib.compress(data)


@given(
    data=st.binary(max_size=3000),
    encoding=st.sampled_from(["gzip", "deflate"]),
    cuts=st.lists(st.integers(0, 4000), max_size=5),
    limit=st.none() | st.integers(0, 4000),
)
def test_bounded_decoder_inflates_or_stops_at_the_limit(
    data: bytes, encoding: str, cuts: list[int], limit: int | None
) -> None:
    wire = compress(data, encoding)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    pieces = [wire[a:b] for a, b in itertools.pairwise(points)]
    decoder = BoundedDecoder(encoding, limit)
    out = bytearray()
    over: h.OverLimit | None = None
    try:
        for piece in pieces:
            out += decoder.feed(piece)
            assert len(out) == decoder.produced
        assert decoder.finish() == b""
    except h.OverLimit as exc:
        over = exc
    if over is None:
        assert limit is None or len(data) <= limit
        assert bytes(out) == data
    else:
        assert limit is not None and len(data) > limit
        assert limit < over.produced <= limit + 1
        assert bytes(out) == data[: len(out)]


@functools.cache
def bomb(encoding: str) -> bytes:
    """64 MiB of zeros, compressed: about 64 KB."""
    zeros = bytes(64 << 20)
    return gzip.compress(zeros, compresslevel=1) if encoding == "gzip" else zlib.compress(zeros, 1)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("piece", [1 << 30, 65536], ids=["at-once", "in-pieces"])
def test_a_bomb_costs_at_most_the_limit(encoding: str, piece: int) -> None:
    wire = bomb(encoding)
    assert len(wire) < 1 << 20
    limit = 1 << 20
    tracemalloc.start()
    try:
        decoder = BoundedDecoder(encoding, limit)

        def feed_all() -> None:
            for start in range(0, len(wire), piece):
                decoder.feed(wire[start : start + piece])

        with pytest.raises(h.OverLimit) as info:
            feed_all()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert limit < info.value.produced <= limit + 1
    assert peak < 4 * limit, peak


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", " GZIP ", "deflate", "Deflate"])
def test_bounded_decoder_encodings(encoding: str) -> None:
    wire = compress(b"hello", "deflate" if "deflate" in encoding.lower() else "gzip")
    decoder = BoundedDecoder(encoding, None)
    assert decoder.feed(wire) == b"hello"
    assert decoder.finish() == b""


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, br", ""])
def test_bounded_decoder_refuses_other_encodings(encoding: str) -> None:
    with pytest.raises(ProtocolViolation, match="unsupported Content-Encoding"):
        BoundedDecoder(encoding, None)


def test_bounded_decoder_errors() -> None:
    with pytest.raises(ProtocolViolation, match="corrupt"):
        BoundedDecoder("gzip", None).feed(b"not gzip at all")
    with pytest.raises(ProtocolViolation, match="corrupt"):
        # raw deflate (no zlib wrapper) is not what RFC 9110 calls deflate
        BoundedDecoder("deflate", None).feed(zlib.compress(b"hello" * 50)[2:])
    decoder = BoundedDecoder("gzip", 100)
    decoder.feed(gzip.compress(b"hello")[:-3])
    with pytest.raises(ProtocolViolation, match="ended early"):
        decoder.finish()


@pytest.mark.parametrize(
    ("tail", "whole"),
    [(gzip.compress(b"world"), b"helloworld"), (b"garbage", None)],
    ids=["member", "garbage"],
)
def test_bounded_decoder_never_drops_bytes_silently(tail: bytes, whole: bytes | None) -> None:
    """A second member is read (as ``gzip.decompress`` does) or refused; garbage is refused."""
    decoder = BoundedDecoder("gzip", None)
    try:
        out = decoder.feed(gzip.compress(b"hello") + tail)
        decoder.finish()
    except ProtocolViolation:
        return
    assert whole is not None and out == whole


# --------------------------------------------------------------------------
# The response tracker


def ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


def chunked(body: bytes, size: int = 3, trailer: bytes = b"") -> bytes:
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    )
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n"
        + trailer
        + b"\r\n"
    )


def verdict(pieces: list[bytes], requests: int = 1, method: str = "POST") -> tuple[bool, bool]:
    tracker = ResponseTracker()
    assert tracker.idle
    for _ in range(requests):
        tracker.request_sent(method)
    for piece in pieces:
        tracker.feed(piece)
    return tracker.poisoned, tracker.idle


@pytest.mark.parametrize(
    ("stream", "requests", "poisoned", "idle"),
    [
        (ok(), 1, False, True),
        (ok(b""), 1, False, True),
        (chunked(b"hello world"), 1, False, True),
        (chunked(b"hello", trailer=b"X-T: 1\r\nX-U: 2\r\n"), 1, False, True),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), 1, False, True),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(), 1, False, True),
        (ok() + ok(), 2, False, True),  # pipelined
        (ok(), 2, False, False),  # one response still pending
        (ok()[:-1], 1, False, False),
        (ok() + b"x", 1, True, True),
        (ok() + ok(), 1, True, True),  # a response nobody asked for
        (ok() + b"\r\n", 1, True, True),
        (chunked(b"hello") + b"\r\n", 1, True, True),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", 1, True, True),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n" + ok(), 1, True, True),
        (chunked(b"abc").replace(b"0\r\n", b"0\r\nContent-Length: 3\r\n", 1), 1, False, True),
        (b"garbage\r\n\r\n", 1, True, False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 1, True, False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n", 1, True, False),
        (b"x", 0, True, True),  # before any request
    ],
)
def test_tracker(stream: bytes, requests: int, poisoned: bool, idle: bool) -> None:
    assert verdict([stream], requests) == (poisoned, idle)


@pytest.mark.parametrize(
    "stream",
    [
        b"HTTP/1.1 200 OK\r\n\r\nup to the close",
        ok(extra=b"Connection: close\r\n") + b"extra",
        ok().replace(b"1.1", b"1.0") + b"extra",
        chunked(b"abc").replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n", 1),
    ],
)
def test_tracker_never_calls_a_connection_that_must_close_reusable(stream: bytes) -> None:
    poisoned, idle = verdict([stream])
    assert poisoned or not idle


def test_tracker_poisons_a_connection_it_no_longer_follows() -> None:
    tracker = ResponseTracker()
    tracker.request_sent()
    tracker.feed(chunked(b"abc").replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n", 1))
    tracker.request_sent()  # (the transport does not even call it: the tracker is not idle)
    tracker.feed(ok() + ok())  # one response too many
    assert tracker.poisoned


def test_tracker_head_requests_have_no_body() -> None:
    assert verdict([ok()[: -len(b"hello")]], 1, "HEAD") == (False, True)
    assert verdict([ok()], 1, "HEAD") == (True, True)


def test_tracker_bounds() -> None:
    long_head = (
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD_BYTES - 40) + b"\r\nContent-Length: 0\r\n\r\n"
    )
    assert len(long_head) <= MAX_HEAD_BYTES + 4
    assert verdict([long_head]) == (False, True)
    too_long = b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES
    assert verdict([too_long]) == (True, False)
    assert verdict([too_long[:1000], too_long[1000:]]) == (True, False)
    line = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * MAX_CHUNK_LINE
    assert verdict([line]) == (True, False)


def test_tracker_feed_accepts_any_buffer() -> None:
    tracker = ResponseTracker()
    tracker.request_sent()
    tracker.feed(bytearray(ok()[:10]))
    tracker.feed(memoryview(ok()[10:]))
    tracker.feed(b"")
    assert (tracker.poisoned, tracker.idle) == (False, True)
    tracker.request_sent()
    tracker.feed(memoryview(ok() + b"!"))
    assert tracker.poisoned
    tracker.request_sent()
    tracker.feed(ok())
    assert tracker.poisoned  # and stays so


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """One complete, reusable response (interim responses first, maybe)."""
    nl = draw(st.sampled_from([b"\r\n", b"\n"]))
    out = b"".join(
        draw(
            st.lists(
                st.sampled_from(
                    [
                        b"HTTP/1.1 100 Continue" + nl + nl,
                        b"HTTP/1.1 103 Hints" + nl + b"Link: x" + nl + nl,
                    ]
                ),
                max_size=2,
            )
        )
    )
    status = draw(st.sampled_from([200, 400, 503, 204, 304]))
    body = b"" if status in (204, 304) else draw(st.binary(max_size=30))
    fields = [b"X-A: %d" % draw(st.integers(0, 9))]
    chunks = b""
    if status not in (204, 304) and draw(st.booleans()):
        fields.append(b"Transfer-Encoding: chunked")
        size = draw(st.integers(1, 8))
        for i in range(0, len(body), size):
            piece = body[i : i + size]
            ext = b";e=1" if draw(st.booleans()) else b""
            chunks += b"%x%s\r\n%s\r\n" % (len(piece), ext, piece)
        chunks += b"0\r\n" + (b"T: 1\r\n" if draw(st.booleans()) else b"") + b"\r\n"
    else:
        fields.append(b"Content-Length: %d" % len(body))
        chunks = body
    head = nl.join([b"HTTP/1.1 %d R" % status, *fields]) + nl + nl
    return out + head + chunks


@given(
    items=st.lists(responses(), min_size=1, max_size=3),
    stray=st.binary(max_size=10),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
)
def test_tracker_verdict_does_not_depend_on_how_the_bytes_arrive(
    items: list[bytes], stray: bytes, cuts: list[int]
) -> None:
    stream = b"".join(items) + stray
    whole = verdict([stream], len(items))
    assert whole == (bool(stray), True)  # clean responses; any byte more poisons
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert verdict(pieces, len(items)) == whole


@pytest.mark.parametrize(
    "stream",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n" + chunked(b"hello world", trailer=b"T: 1\r\n") + b"x",
        ok() + ok(),
        b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n" + ok(),
    ],
)
def test_tracker_verdict_at_every_split(stream: bytes) -> None:
    whole = verdict([stream])
    for i in range(len(stream) + 1):
        assert verdict([stream[:i], stream[i:]]) == whole, i
    assert verdict([bytes([b]) for b in stream]) == whole  # one byte at a time
