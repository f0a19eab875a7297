"""Small calls made again and again: their bytes but for the data, and the answer head already checked.

A service calls one model with the same input names, dtypes, shapes and
config call after call, one row at a time. Per call, such a request differs
only in its tensor data, and the server's answers in their data (and in the
``Date`` header once a second). A :class:`SmallCall` holds what stays the
same, made once:

- the request's bytes up to the first tensor's data (the transport's HTTP
  head included) and the pieces between the data, so that a call writes the
  prefix and views of its arrays with one system call;
- the head of the last answer that passed every check of the general path
  (a plain ``200`` with a ``Content-Length``, no content coding, keep-alive),
  so that an answer whose head has the very same bytes gets the very same
  reading, with nothing trusted that was not checked on those bytes
  (:func:`plain_head`).

Anything else (another head, a short read, an error) goes to the general
path, which decides as it always does. The transports' fast paths
(``_transports/sync.py``, ``_transports/asyncio_direct.py``) use this module;
nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from .._wire.messages import EncodedMessage
from . import http11 as h11
from .exchange import PreparedRequest, RawResponse
from .keepalive import idle_limit

__all__ = ["MAX_SMALL_ANSWER", "MAX_SMALL_BODY", "Attempt", "SmallCall", "plain_head"]

#: The largest request body a :class:`SmallCall` is made for (bytes). Its data
#: goes out as views of the arrays whatever the size; past this, moving the data
#: outweighs what the fast path saves, and a body over the socket's buffer goes
#: out in pieces under the general path's timeouts anyway.
MAX_SMALL_BODY: Final = 4 << 20

#: The largest answer body a :class:`SmallCall` learns (bytes): the fast path
#: receives into a buffer sized from the learnt head and zeroed when made; past
#: this, the general path's uninitialised, 64-byte-aligned buffer is the cheaper.
MAX_SMALL_ANSWER: Final = 256 << 10

#: Bytes of a 16-byte boundary: the body of an answer starts on one.
_BODY_ALIGNMENT: Final = 16


_NO_BODY: Final = EncodedMessage((), 0)

#: What a :class:`SmallCall` learned of its answers: the head's bytes (its end
#: of head included), the ``Content-Length``, the idle limit of the connection
#: after such an answer, the reason phrase, and the offset to receive at.
Answer = tuple[bytes, int, "float | None", str, int]


class SmallCall:
    """One kind of small inference request, repeated: what a fast path writes and expects.

    ``req`` is a request of this kind, without a body;
    ``layout`` its message, each piece ``bytes`` or the index of an input
    whose data goes there; ``prefix`` what the transport writes first (its
    HTTP head, then ``layout[0]``), set by the transport, ``None`` when it has
    no fast path for this request. ``answer`` describes the last answer head
    accepted by :func:`plain_head` (one tuple, replaced whole: threads
    sharing a call read one consistent answer).
    """

    __slots__ = ("answer", "layout", "nbytes", "prefix", "req", "single", "tail", "wire")

    def __init__(self, req: PreparedRequest, layout: tuple[bytes | int, ...], nbytes: int) -> None:
        # Without its body: held for as long as the client lives, it would keep the
        # first call's arrays alive. Each call's request gets its own (:meth:`request`).
        self.req = replace(req, body=_NO_BODY)
        self.layout = layout
        self.tail = layout[1:]  # what follows the prefix
        self.single = self.tail == (0,)  # one input, its data last: execute()'s common case
        self.nbytes = nbytes  # the message's size
        self.prefix: bytes | None = None
        self.wire = 0  # bytes written per call: the transport's head and the message
        self.answer: Answer | None = None

    def set_prefix(self, http_head: bytes) -> None:
        """Give the transport's request head (with ``Content-Length``), written before the message."""
        first = self.layout[0]
        assert isinstance(first, bytes)
        self.prefix = http_head + first
        self.wire = len(http_head) + self.nbytes

    def parts(self, views: Sequence[memoryview]) -> list[bytes | bytearray | memoryview]:
        """What a call writes: the prefix, then the data of ``views`` (flat bytes) in place."""
        assert self.prefix is not None
        if self.single:
            return [self.prefix, views[0]]
        return [self.prefix, *(p if isinstance(p, bytes) else views[p] for p in self.tail)]

    def request(self, views: Sequence[memoryview]) -> PreparedRequest:
        """The full request of a call with these data (for the general path)."""
        segments = tuple(p if isinstance(p, bytes) else views[p] for p in self.layout)
        return replace(self.req, body=EncodedMessage(segments, self.nbytes))

    def accept(self, head: bytes, end: int, keepalive_expiry: float | None) -> Answer | None:
        """Learn ``head`` (an answer head, its end of head included, which begins at
        ``head[end:]``) if :func:`plain_head` accepts it: the new :attr:`answer`, or ``None``."""
        plain = plain_head(head, end, self.req.max_response_bytes)
        if plain is None or plain[1] > MAX_SMALL_ANSWER:
            return None  # (a large answer: received as the general path receives it)
        parsed, length = plain
        limit = idle_limit(keepalive_expiry, h11.keep_alive_timeout(parsed))
        answer = self.answer = (head, length, limit, parsed.reason, -len(head) % _BODY_ALIGNMENT)
        return answer


def plain_head(
    head: bytes, end: int, max_response_bytes: int | None
) -> tuple[h11.ResponseHead, int] | None:
    """The parse and ``Content-Length`` of a plain answer head, else ``None``.

    ``head`` is the answer head as received, its end of head included (which
    begins at ``head[end:]``, as :func:`.http11.find_head_end` finds it).
    Plain: a final ``200`` whose body has a ``Content-Length`` within
    ``max_response_bytes``, no content coding, and that lets the connection
    carry another request: exactly the answers the general path reads by
    length into one buffer and after which it keeps the connection. Anything
    else, malformed included, is ``None``: the general path reads it (and
    raises what it raises).
    """
    try:
        parsed = h11.parse_head_once(head[:end])
        if parsed.status != 200:
            return None
        rules = h11.body_rules(parsed, "POST")
    except h11.ProtocolViolation:
        return None
    frame = rules.frame
    if (
        frame.kind != "length"
        or not frame.reusable
        or not rules.keep_alive
        or rules.encoding not in ("", "identity")
        or (max_response_bytes is not None and frame.length > max_response_bytes)
    ):
        return None
    return parsed, frame.length


class Attempt:
    """A call a fast path began and the general path must finish: the request, and
    the first attempt's answer or error (for the retry rules)."""

    __slots__ = ("error", "raw", "req")

    def __init__(
        self, req: PreparedRequest, raw: RawResponse | None, error: BaseException | None
    ) -> None:
        self.req = req
        self.raw = raw
        self.error = error

    def outcome(self) -> RawResponse:
        """The first attempt's answer, or its error raised (as the transport's send would)."""
        if self.error is not None:
            raise self.error
        assert self.raw is not None
        return self.raw
