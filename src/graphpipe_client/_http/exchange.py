"""One GraphPipe exchange over HTTP, as data: model URLs, the request, the raw response.

The clients are thin shells: each one builds a request with
:func:`prepare_infer` (or :func:`prepare_metadata`, :func:`prepare_control`),
hands it to its transport, and feeds the outcome to
:class:`~.retries.RetryState` and :func:`interpret_infer`. Everything that
decides *what* happens (headers, size limits, how an HTTP status or a
malformed body becomes an exception, where the response buffer is placed so
outputs are aligned) lives here, once. No sockets.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from .._exceptions import (
    DeadlineExceeded,
    HTTPStatusError,
    InvalidURL,
    RemoteError,
    ResponseTooLargeError,
    TransportError,
)
from .._version import __version__
from .._wire.decode import (
    Buffer,
    decode_infer_response,
    decode_metadata_response,
    head_alignment_shift,
)
from .._wire.encode import encode_infer_request, encode_metadata_request
from .._wire.messages import EncodedMessage, ModelMetadata
from .config import ClientConfig, Timeout
from .receive_buffers import ReceiveBuffers

if TYPE_CHECKING:
    from .._replicas.routing import ReplicaSet

__all__ = [
    "HEAD_BYTES",
    "SMALL_BODY",
    "USER_AGENT",
    "Endpoint",
    "PreparedRequest",
    "RawResponse",
    "interpret_infer",
    "interpret_metadata",
    "interpret_readiness",
    "new_receive_buffer",
    "parse_endpoint",
    "prepare_control",
    "prepare_infer",
    "prepare_metadata",
    "shape_outputs",
]

USER_AGENT: Final = f"graphpipe-client/{__version__}"

#: Bytes of a response read first, to decide where the buffer is placed.
HEAD_BYTES: Final = 4096

#: A request body of at most this many bytes is sent together with the
#: request head (a copy of at most this much where the socket cannot gather:
#: TLS, or httpx); larger bodies go out as views of the caller's arrays.
SMALL_BODY: Final = 64 * 1024

#: Bytes of a non-200 body kept for the exception message.
ERROR_BODY_BYTES: Final = 64 * 1024

Kind = Literal["infer", "metadata", "control"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed model URL: where to send, how to show it, and its credentials.

    ``url`` has any user-info removed (it becomes an ``Authorization`` header);
    ``redacted`` is what messages and reprs show.
    """

    url: str
    redacted: str
    scheme: str
    host: str
    port: int
    target: str
    authorization: str | None = field(repr=False)  # a credential: never in a repr


@functools.lru_cache(maxsize=256)
def parse_endpoint(url: str) -> Endpoint:
    """Parse and check a model URL such as ``http://host:9000``.

    Raises:
        InvalidURL: the URL is not an ``http``/``https`` URL with a host (a
            ``ValueError`` too).
    """
    if not isinstance(url, str):
        raise TypeError(f"the model URL must be a str, not {type(url).__name__}")
    if _URL_BAD.search(url.strip()):
        raise InvalidURL(
            f"invalid URL {_redact_text(url)!r}: it contains a space or a control character"
        )
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(
            f"unsupported URL {_redact_text(url)!r}: give an http:// or https:// URL, "
            "such as http://127.0.0.1:9000"
        )
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {_redact_text(url)!r}: {exc}") from None
    if not host:
        raise InvalidURL(f"invalid URL {_redact_text(url)!r}: it names no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    from .proxy import basic_authorization  # once per URL (cached): not with the package

    authorization = basic_authorization(parts.username, parts.password)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    redacted = urlunsplit(
        (scheme, ("***@" if authorization else "") + netloc, parts.path or "/", parts.query, "")
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(clean, redacted, scheme, host, port, target, authorization)


_URL_BAD: Final = re.compile(r"[\x00-\x20\x7f]")


def _redact_text(url: str) -> str:
    """Hide user-info in a URL that could not be parsed properly."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """One request, ready for a transport: where, what, which headers, how long to wait.

    ``method`` is ``"POST"`` for GraphPipe messages and ``"GET"`` for the
    ``/control`` probes (whose ``body`` is empty).
    """

    endpoint: Endpoint
    kind: Kind
    body: EncodedMessage
    headers: dict[str, str] = field(repr=False)  # may hold credentials
    timeout: Timeout
    max_response_bytes: int | None
    method: str = "POST"
    tensor_count: int = 0  # input tensors in the body (for tracing)
    # Several replicas: the attempts go where this set routes them (endpoint: the first).
    replicas: ReplicaSet | None = field(default=None, repr=False, compare=False)


def _headers(config: ClientConfig, endpoint: Endpoint, nbytes: int) -> dict[str, str]:
    headers = {
        "User-Agent": USER_AGENT,
        "Content-Type": "application/octet-stream",
        "Accept-Encoding": "identity",
    }
    if endpoint.authorization:
        headers["Authorization"] = endpoint.authorization
    headers.update(config.headers)
    # Framing is ours: an explicit length lets both transports stream the
    # segments without chunked encoding (and without copying them).
    for key in [k for k in headers if k.lower() in ("content-length", "transfer-encoding")]:
        del headers[key]
    headers["Content-Length"] = str(nbytes)
    return headers


_HEADERS: dict[tuple[int, int, int], tuple[ClientConfig, Endpoint, dict[str, str]]] = {}


def _headers_once(config: ClientConfig, endpoint: Endpoint, nbytes: int) -> dict[str, str]:
    """:func:`_headers`, made once per configuration, endpoint and length.

    Remembered by the very ``config`` and ``endpoint`` objects (held, so that
    they stay the same objects; ``parse_endpoint`` gives one per URL). The
    dict is shared by the requests made with it: it is read, never changed.
    """
    key = (id(config), id(endpoint), nbytes)
    known = _HEADERS.get(key)
    if known is not None and known[0] is config and known[1] is endpoint:
        return known[2]
    headers = _headers(config, endpoint, nbytes)
    if len(_HEADERS) >= 256:
        _HEADERS.clear()
    _HEADERS[key] = (config, endpoint, headers)
    return headers


def prepare_infer(
    config: ClientConfig,
    url: str,
    inputs: object,
    input_names: object,
    output_names: object,
    request_config: str | bytes | None,
    timeout: Timeout,
) -> PreparedRequest:
    """Encode an ``InferRequest`` (no copy of tensor data) and its HTTP framing."""
    endpoint = parse_endpoint(url)
    body = encode_infer_request(inputs, input_names, output_names, request_config)  # type: ignore[arg-type]
    return PreparedRequest(
        endpoint,
        "infer",
        body,
        _headers_once(config, endpoint, body.nbytes),
        timeout,
        config.max_response_bytes,
        tensor_count=len(inputs),  # type: ignore[arg-type]
    )


_METADATA_REQUEST: Final = encode_metadata_request()


def prepare_metadata(config: ClientConfig, url: str, timeout: Timeout) -> PreparedRequest:
    """A ``MetadataRequest`` POST."""
    endpoint = parse_endpoint(url)
    body = _METADATA_REQUEST
    return PreparedRequest(
        endpoint,
        "metadata",
        body,
        _headers(config, endpoint, body.nbytes),
        timeout,
        config.max_response_bytes,
    )


_EMPTY: Final = EncodedMessage((), 0)

#: The probes of the Go reference servers, relative to the model URL's path.
CONTROL_PATHS: Final = {"ready": "control/is_ready", "alive": "control/is_alive"}


def prepare_control(config: ClientConfig, url: str, path: str, timeout: Timeout) -> PreparedRequest:
    """A ``GET`` of a control probe such as ``control/is_ready``, relative to the URL's path.

    ``http://host:9000`` probes ``http://host:9000/control/is_ready``; a URL
    with a path (a gateway's prefix, ``http://gw/models/a``) probes below it
    (``http://gw/models/a/control/is_ready``).

    Example:
        >>> from graphpipe_client import ClientConfig
        >>> from graphpipe_client._http.config import Timeout
        >>> req = prepare_control(ClientConfig.build(), "http://h:9000/m", "control/is_ready", Timeout())
        >>> (req.method, req.endpoint.url)
        ('GET', 'http://h:9000/m/control/is_ready')
    """
    base = parse_endpoint(url)

    def below(u: str) -> str:
        parts = urlsplit(u)
        return urlunsplit(
            (parts.scheme, parts.netloc, parts.path.rstrip("/") + "/" + path, parts.query, "")
        )

    target = urlsplit(below(base.url))
    endpoint = Endpoint(
        below(base.url),
        below(base.redacted),
        base.scheme,
        base.host,
        base.port,
        target.path + (f"?{target.query}" if target.query else ""),
        base.authorization,
    )
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if endpoint.authorization:
        headers["Authorization"] = endpoint.authorization
    headers.update(config.headers)
    for key in [k for k in headers if k.lower() in ("content-length", "transfer-encoding")]:
        del headers[key]
    return PreparedRequest(
        endpoint,
        "control",
        _EMPTY,
        headers,
        timeout,
        min(config.max_response_bytes or ERROR_BODY_BYTES, ERROR_BODY_BYTES),
        method="GET",
    )


def interpret_readiness(raw: RawResponse) -> bool | None:
    """What a control probe's answer says: ``True`` (200), ``False`` (any other status),
    or ``None`` when the server has no such route (404, 405, 501): ask for the metadata instead.

    Example:
        >>> interpret_readiness(RawResponse(200, "OK", None, b"ok"))
        True
        >>> interpret_readiness(RawResponse(503, "Service Unavailable", None, b"not ready"))
        False
        >>> interpret_readiness(RawResponse(404, "Not Found", None, b"")) is None
        True
    """
    if raw.status == 200:
        return True
    if raw.status in (404, 405, 501):
        return None
    return False


def content_length(value: str | None, limit: int | None, endpoint: Endpoint) -> int | None:
    """Parse ``Content-Length`` and refuse, before any allocation, a body over ``limit``."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        raise TransportError(
            f"invalid Content-Length {value[:40]!r} from {endpoint.redacted}", url=endpoint.redacted
        )
    n = int(value)
    check_size(n, limit, endpoint)
    return n


def check_size(n: int, limit: int | None, endpoint: Endpoint) -> None:
    """Raise :class:`ResponseTooLargeError` when ``n`` bytes exceed ``limit``."""
    if limit is not None and n > limit:
        raise ResponseTooLargeError(
            f"the response from {endpoint.redacted} is {n} bytes, over max_response_bytes={limit}",
            size=n,
            limit=limit,
        )


def decoded_too_large(req: PreparedRequest, produced: int) -> ResponseTooLargeError:
    """The error for a compressed body whose inflated size passed ``max_response_bytes``."""
    where = req.endpoint.redacted
    return ResponseTooLargeError(
        f"the response from {where} decodes to more than max_response_bytes="
        f"{req.max_response_bytes} (at least {produced} bytes)",
        size=produced,
        limit=req.max_response_bytes,
    )


def deadline_error(req: PreparedRequest) -> DeadlineExceeded:
    """The error for a call that outlasted its ``Timeout(total=...)``, on every transport."""
    where = req.endpoint.redacted
    return DeadlineExceeded(
        f"the call to {where} did not finish within its total timeout of {req.timeout.total} s",
        url=where,
    )


def no_response_error(req: PreparedRequest, reason: str | None = None) -> TransportError:
    """The error for a connection closed after the request went out, before any response.

    The same on every transport. The server may have run the request (a
    stopped or restarted server, a proxy or a replica dropping the
    connection, or a request it could not read), so the client does not send
    it again; the message says so, and names the remedy for a model that may
    run twice. ``reason`` is the peer's word (a reset), when there was one.
    """
    where = req.endpoint.redacted
    detail = f" ({reason})" if reason else ""
    return TransportError(
        f"the connection to {where} was closed before a response arrived{detail}; "
        "the server may have run the request, so it is not sent again (if the model may "
        "safely run twice on the same input, idempotent=True has such calls retried)",
        url=where,
    )


def new_receive_buffer(
    total: int, head: Buffer, buffers: ReceiveBuffers | None = None
) -> np.ndarray:
    """A writable buffer of ``total`` bytes that starts with a copy of ``head``.

    It is placed so that the largest tensor found in ``head`` is aligned to
    its item size (and our own 64-byte-aligned messages to 64 bytes); the
    rest is uninitialised (no memset) and is meant to be filled in place.
    With ``buffers`` (the transport's), a large one may be a buffer used
    before and viewed by nothing now (:mod:`.receive_buffers`).
    """
    shift = head_alignment_shift(head, total)
    size = total + 64 + 8
    base = np.empty(size, dtype=np.uint8) if buffers is None else buffers.take(size)
    start = (-base.ctypes.data) % 64 + shift
    buf = base[start : start + total]
    n = len(head)
    buf[:n] = np.frombuffer(head, dtype=np.uint8)
    return buf


@dataclass(frozen=True, slots=True)
class RawResponse:
    """What a transport hands back: the status, the headers it needs, the body."""

    status: int
    reason: str
    retry_after: str | None
    body: Buffer
    reused: bool | None = None  # whether it came on a reused connection, where known


def _status_error(req: PreparedRequest, raw: RawResponse) -> HTTPStatusError:
    from .error_bodies import status_message  # with the first non-200 answer

    text = bytes(raw.body[:ERROR_BODY_BYTES]).decode("utf-8", "replace").strip()
    where = req.endpoint.redacted
    # One line, bounded: an HTML error page is reduced to its title (all of it is on .body).
    message = status_message(raw.status, raw.reason, where, text)
    return HTTPStatusError(message, status_code=raw.status, body=text, url=where)


def interpret_infer(req: PreparedRequest, raw: RawResponse) -> list[np.ndarray]:
    """Turn a final response into the output arrays, or raise the right exception."""
    if raw.status != 200:
        raise _status_error(req, raw)
    resp = decode_infer_response(raw.body, align=True)
    if resp.errors:
        raise RemoteError(errors=resp.errors)
    return resp.outputs


def interpret_metadata(req: PreparedRequest, raw: RawResponse) -> ModelMetadata:
    """Turn a final response to a ``MetadataRequest`` into :class:`ModelMetadata`."""
    if raw.status != 200:
        raise _status_error(req, raw)
    return decode_metadata_response(raw.body)


def shape_outputs(outputs: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """``execute``'s return: the array when there is one output, else the list."""
    return outputs[0] if len(outputs) == 1 else outputs
