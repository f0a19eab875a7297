"""The exception tree of graphpipe-client.

Every error the package raises derives from :class:`GraphPipeError`::

    GraphPipeError
    ├── InvalidOption          a bad client option (also a ValueError)
    │   ├── InvalidURL         a model URL that is not http(s)://host[:port][/path]
    │   └── InvalidHeader      a header name or value that cannot be sent
    ├── EncodeError            bad input: cannot be written as a GraphPipe message
    ├── DecodeError            malformed or hostile message bytes
    ├── TransportError         the HTTP exchange failed
    │   ├── ConnectError       the request never reached the server
    │   │   └── TLSError       TLS handshake or certificate verification failed
    │   └── TimeoutError
    │       ├── ConnectTimeout the connection could not be made in time
    │       ├── ReadTimeout    the server did not answer in time
    │       └── DeadlineExceeded  the whole call outlasted ``Timeout(total=...)``
    ├── ResponseTooLargeError  the response exceeds ``max_response_bytes``
    ├── HTTPStatusError        the server answered with a non-200 status
    ├── RemoteError            the server answered 200 with ``errors`` entries
    └── BatchError             one batch of ``execute_batched`` failed (rows, and the error)

Every exception pickles (for ``multiprocessing``) and keeps the underlying
cause chained as ``__cause__``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "BatchError",
    "ConnectError",
    "ConnectTimeout",
    "DeadlineExceeded",
    "DecodeError",
    "EncodeError",
    "ErrorEntry",
    "GraphPipeError",
    "HTTPStatusError",
    "InvalidHeader",
    "InvalidOption",
    "InvalidURL",
    "ReadTimeout",
    "RemoteError",
    "ResponseTooLargeError",
    "TLSError",
    "TimeoutError",
    "TransportError",
]


#: At most this many entries, each cut to this many characters, are rendered in
#: a :class:`RemoteError`'s message (``.errors`` keeps them all): a hostile
#: response can point thousands of entries at one long message.
MESSAGE_ENTRIES: Final = 100
MESSAGE_ENTRY_CHARS: Final = 4096


def remote_error_message(errors: tuple[ErrorEntry, ...]) -> str:
    """Render the entries of a server's ``errors`` vector, one after the other (bounded)."""
    if not errors:
        return "the server reported an error without entries"
    head = f"the server reported {len(errors)} error{'s' if len(errors) != 1 else ''}"
    lines = []
    for e in errors[:MESSAGE_ENTRIES]:
        text = e.message
        if len(text) > MESSAGE_ENTRY_CHARS:
            text = (
                text[:MESSAGE_ENTRY_CHARS]
                + f"... ({len(e.message) - MESSAGE_ENTRY_CHARS} more characters)"
            )
        lines.append(f"[code {e.code}] {text}")
    if len(errors) > MESSAGE_ENTRIES:
        lines.append(f"... and {len(errors) - MESSAGE_ENTRIES} more")
    return head + ": " + "; ".join(lines)


def exception_html(exc: GraphPipeError) -> str:
    """An HTML rendering of a graphpipe-client exception, for Jupyter."""
    import html  # with the first rendering: html.entities is ~1 ms of import

    e = html.escape
    rows = [("error", type(exc).__name__), ("message", str(exc))]
    for attr in ("status_code", "url"):
        value = getattr(exc, attr, None)
        if value is not None:
            rows.append((attr, str(value)))
    # Bounded like the exception's message: a hostile response may carry
    # thousands of long entries (``exc.errors`` keeps them all).
    entries = getattr(exc, "errors", ())
    for entry in entries[:MESSAGE_ENTRIES]:
        rows.append((f"code {entry.code}", entry.message[:MESSAGE_ENTRY_CHARS]))
    if len(entries) > MESSAGE_ENTRIES:
        rows.append(("", f"... and {len(entries) - MESSAGE_ENTRIES} more entries in .errors"))
    body = "".join(
        f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


class GraphPipeError(Exception):
    """Root of every exception raised by graphpipe-client.

    Example:
        >>> import graphpipe_client as gp
        >>> try:
        ...     with gp.Client("http://127.0.0.1:9", retries=0) as client:
        ...         client.execute([1.0])
        ... except gp.GraphPipeError as exc:
        ...     print(type(exc).__name__)
        ConnectError
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the constructor's arguments so that subclasses with
        # keyword-only fields pickle too.
        return (_rebuild, (type(self), self._init_kwargs()))

    def _init_kwargs(self) -> dict[str, Any]:
        return {"message": self.message}

    def _repr_html_(self) -> str:
        return exception_html(self)


def _rebuild(cls: type[GraphPipeError], kwargs: dict[str, Any]) -> GraphPipeError:
    return cls(**kwargs)


class InvalidOption(GraphPipeError, ValueError):
    """A client option or call argument that cannot be used; raised before anything is sent.

    The message names the option and says what is accepted. It never
    contains the value of a header (often a credential).

    Example:
        >>> import graphpipe_client as gp
        >>> try:
        ...     gp.Timeout(connect=-1)
        ... except gp.InvalidOption as exc:
        ...     print(exc)
        Timeout.connect must be a positive number of seconds or None, got -1
    """


class InvalidURL(InvalidOption):
    """A model URL that is not ``http://`` or ``https://`` with a host (credentials hidden)."""


class InvalidHeader(InvalidOption):
    """A header that cannot be sent: a name that is not an HTTP token, or a value with a
    line break, a NUL or another control character, or a character outside ASCII.

    The message names the header, never its value.
    """


class EncodeError(GraphPipeError, ValueError):
    """The inputs cannot be written as a GraphPipe message.

    Raised before anything is sent, for example for a ``bool`` array (GraphPipe
    has no boolean type: send ``x.astype(np.uint8)``) or a message larger than
    FlatBuffers' 2 GiB limit.
    """


class DecodeError(GraphPipeError):
    """A message is malformed: truncated, inconsistent or hostile.

    The message says which field was being read, at which offset, and why it
    was refused. Decoding never raises anything else on bad bytes.
    """


class TransportError(GraphPipeError):
    """The HTTP exchange failed: refused, reset, dropped or truncated.

    ``url`` is the endpoint with any credentials removed.
    """

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url

    def _init_kwargs(self) -> dict[str, Any]:
        return {"message": self.message, "url": self.url}


class ConnectError(TransportError):
    """The request never reached the server (refused, unreachable, TLS failure).

    Such a request is always safe to retry, and the clients retry it by
    default.
    """


class TLSError(ConnectError):
    """The TLS handshake failed: an unknown CA, a wrong host name, a refused client certificate.

    The request never reached the server, but retrying cannot help, so it is
    not retried.
    """


class TimeoutError(TransportError):  # noqa: A001 - scoped like concurrent.futures.TimeoutError
    """A timeout expired; catch :class:`ConnectTimeout` or :class:`ReadTimeout` to tell which."""


class ConnectTimeout(TimeoutError, ConnectError):
    """The connection could not be established within the connect timeout."""


class ReadTimeout(TimeoutError):
    """The server did not send the response within the read timeout."""


class DeadlineExceeded(TimeoutError):
    """The whole call, retries and back-off included, outlasted ``Timeout(total=...)``.

    Unlike the read timeout, which a server that trickles one byte at a time
    restarts with every byte, the total timeout is a deadline for the call.
    The last attempt's error, if any, is chained as ``__cause__``.
    """


class ResponseTooLargeError(GraphPipeError):
    """The response announced (or sent) more than ``max_response_bytes``.

    Raised before the receive buffer is allocated.
    """

    def __init__(self, message: str, *, size: int | None = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit

    def _init_kwargs(self) -> dict[str, Any]:
        return {"message": self.message, "size": self.size, "limit": self.limit}


class HTTPStatusError(GraphPipeError):
    """The server answered with a status other than 200.

    The GraphPipe reference server reports model errors as HTTP 400 with the
    error text as a ``text/plain`` body; that text is in :attr:`body` and in
    the message. The message is always one line: a plain-text body is
    collapsed onto it (up to 1,000 characters), and an HTML error page (from
    a proxy or web server in front of the model) is reduced to its title,
    marked ``(an HTML page)``; :attr:`body` keeps the whole text.

    Attributes:
        status_code: the HTTP status.
        body: the server's response body, decoded as text (truncated to 64 KiB).
        url: the endpoint, with credentials removed.
    """

    def __init__(
        self, message: str, *, status_code: int, body: str = "", url: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body
        self.url = url

    def _init_kwargs(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "status_code": self.status_code,
            "body": self.body,
            "url": self.url,
        }


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    """One ``Error`` entry of an ``InferResponse``: a code and a message."""

    code: int
    message: str


class RemoteError(GraphPipeError):
    """The server answered 200 with an ``InferResponse`` whose ``errors`` is not empty.

    Attributes:
        errors: every entry the server sent, in order, as :class:`ErrorEntry`.
    """

    def __init__(
        self, message: str | None = None, *, errors: tuple[ErrorEntry, ...] | list[ErrorEntry]
    ) -> None:
        self.errors = tuple(errors)
        if message is None:
            message = remote_error_message(self.errors)
        super().__init__(message)

    def _init_kwargs(self) -> dict[str, Any]:
        return {"message": self.message, "errors": self.errors}


class BatchError(GraphPipeError):
    """One batch of an ``execute_batched`` run failed: which rows, and the error it got.

    The original, typed error (an :class:`HTTPStatusError`, a
    :class:`ReadTimeout`, ...) is :attr:`error` and also ``__cause__``.

    Attributes:
        start: the first row of the failed batch (counted over the whole run).
        stop: one past its last row, so the rows are ``start:stop``.
        index: the batch's position in the run (0 for the first batch).
        error: what the batch raised.

    Example:
        >>> import pickle
        >>> from graphpipe_client import BatchError, HTTPStatusError
        >>> cause = HTTPStatusError("HTTP 400 from http://h/: bad row", status_code=400)
        >>> exc = BatchError(start=256, stop=512, index=1, error=cause)
        >>> str(exc)
        'rows 256:512 (batch 1) failed: HTTP 400 from http://h/: bad row'
        >>> again = pickle.loads(pickle.dumps(exc))
        >>> (again.rows, again.error.status_code, again.__cause__ is again.error)
        (range(256, 512), 400, True)
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        start: int,
        stop: int,
        index: int,
        error: GraphPipeError,
    ) -> None:
        if message is None:
            message = f"rows {start}:{stop} (batch {index}) failed: {error}"
        super().__init__(message)
        self.start = start
        self.stop = stop
        self.index = index
        self.error = error
        self.__cause__ = error

    @property
    def rows(self) -> range:
        """The failed rows, ``range(start, stop)``."""
        return range(self.start, self.stop)

    def _init_kwargs(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "start": self.start,
            "stop": self.stop,
            "index": self.index,
            "error": self.error,
        }


# The classes are used as ``graphpipe_client.HTTPStatusError``: tracebacks,
# reprs and pickles name them so, not by this private module. (Pickles stay
# loadable by either name; subclasses defined elsewhere keep their own module.)
for _name in __all__:  # every one is exported by graphpipe_client (tests/test_exception_names.py)
    globals()[_name].__module__ = "graphpipe_client"
del _name
