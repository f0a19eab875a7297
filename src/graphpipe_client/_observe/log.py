"""The ``graphpipe_client`` logger: one DEBUG line per exchange, retries at INFO.

At the default level (WARNING) only a replica taken out of rotation is logged
(no call reports it, and capacity is lost: docs/observability.md). At DEBUG,
each attempt of a call logs one line, from the transport that made it::

    POST http://127.0.0.1:9000/ -> 200 OK: 4,112 B sent, 4,096 B received in 0.41 ms (reused connection)

URLs are the redacted ones (``http://***@host/``): no credential is ever
logged, and neither are header values. Retries are logged at INFO, with the
failure that caused them; with several replicas, a replica taken out of
rotation is logged at WARNING and its return at INFO. The cost when DEBUG is off is one
``isEnabledFor`` check per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sized
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from .._exceptions import GraphPipeError

__all__ = [
    "debug_enabled",
    "log_ejection",
    "log_exchange",
    "log_failure",
    "log_reinstated",
    "log_retry",
    "logger",
]

logger: Final = logging.getLogger("graphpipe_client")


# What a log line reads of a request and a response. The HTTP layer's
# ``PreparedRequest`` and ``RawResponse`` have these attributes; this layer sits
# below it (the HTTP layer's retry decisions log), so it names only what it reads.
class _Where(Protocol):
    @property
    def redacted(self) -> str: ...


class _Body(Protocol):
    @property
    def nbytes(self) -> int: ...


class Request(Protocol):
    """What is logged of a request: its method, where it goes (redacted), its body's size."""

    @property
    def method(self) -> str: ...
    @property
    def endpoint(self) -> _Where: ...
    @property
    def body(self) -> _Body: ...


class Response(Protocol):
    """What is logged of a response: status, reason, body and whether the connection was reused."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def body(self) -> Sized: ...
    @property
    def reused(self) -> bool | None: ...


def debug_enabled() -> bool:
    """Whether the DEBUG line of each exchange would be emitted."""
    return logger.isEnabledFor(logging.DEBUG)


def log_exchange(req: Request, raw: Response, started: float) -> None:
    """The DEBUG line of an exchange that got a response (``started``: ``perf_counter()``)."""
    elapsed = (time.perf_counter() - started) * 1000
    reason = f" {raw.reason}" if raw.reason else ""
    reuse = {True: " (reused connection)", False: " (new connection)", None: ""}[raw.reused]
    logger.debug(
        "%s %s -> %d%s: %s B sent, %s B received in %.2f ms%s",
        req.method,
        req.endpoint.redacted,
        raw.status,
        reason,
        f"{req.body.nbytes:,}",
        f"{len(raw.body):,}",
        elapsed,
        reuse,
    )


def log_failure(req: Request, exc: GraphPipeError, started: float) -> None:
    """The DEBUG line of an exchange that failed."""
    elapsed = (time.perf_counter() - started) * 1000
    logger.debug(
        "%s %s -> %s after %.2f ms: %s",
        req.method,
        req.endpoint.redacted,
        type(exc).__name__,
        elapsed,
        exc,
    )


def log_retry(req: Request, attempt: int, retries: int, delay: float, why: str) -> None:
    """The INFO line of a retry: which attempt comes next, after how long, and why."""
    logger.info(
        "retrying %s %s in %.3f s (retry %d of %d) after %s",
        req.method,
        req.endpoint.redacted,
        delay,
        attempt,
        retries,
        why,
    )


def log_ejection(req: Request, why: str) -> None:
    """The WARNING line of a replica taken out of rotation, and why."""
    logger.warning(
        "replica %s out of rotation after %s; it gets traffic again once is_ready succeeds",
        req.endpoint.redacted,
        why,
    )


def log_reinstated(where: str, why: str) -> None:
    """The INFO line of a replica back in rotation after a probe."""
    logger.info("replica %s back in rotation (is_ready: %s)", where, why)
