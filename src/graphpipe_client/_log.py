"""The ``graphpipe_client`` logger: one DEBUG line per exchange, retries at INFO.

Nothing is logged at the default level (WARNING). At DEBUG, each attempt of a
call logs one line, from the transport that made it::

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
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._core import PreparedRequest, RawResponse
    from ._exceptions import GraphPipeError

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


def debug_enabled() -> bool:
    """Whether the DEBUG line of each exchange would be emitted."""
    return logger.isEnabledFor(logging.DEBUG)


def log_exchange(req: PreparedRequest, raw: RawResponse, started: float) -> None:
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


def log_failure(req: PreparedRequest, exc: GraphPipeError, started: float) -> None:
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


def log_retry(req: PreparedRequest, attempt: int, retries: int, delay: float, why: str) -> None:
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


def log_ejection(req: PreparedRequest, why: str) -> None:
    """The WARNING line of a replica taken out of rotation, and why."""
    logger.warning(
        "replica %s out of rotation after %s; it gets traffic again once is_ready succeeds",
        req.endpoint.redacted,
        why,
    )


def log_reinstated(where: str, why: str) -> None:
    """The INFO line of a replica back in rotation after a probe."""
    logger.info("replica %s back in rotation (is_ready: %s)", where, why)
