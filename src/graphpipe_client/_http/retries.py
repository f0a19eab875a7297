"""Whether a failed attempt is tried again, and after how long, within the call's deadline.

Sans I/O: the clients (and the replica I/O) sleep and send; :class:`RetryState`
decides, and logs each retry at INFO.
"""

from __future__ import annotations

import time

from .._exceptions import ConnectError, DeadlineExceeded, GraphPipeError, TLSError, TransportError
from .._observe.log import log_retry
from .config import ClientConfig
from .exchange import PreparedRequest, RawResponse

__all__ = ["RetryState"]


class RetryState:
    """Decides, attempt after attempt, whether to retry and after how long, within the deadline.

    Use: ``delay = state.after_error(exc)`` (re-raises ``exc`` when it is
    final) or ``delay = state.after_response(raw)`` (``None`` when the
    response is final); sleep ``delay`` and try again. :attr:`deadline` is
    the call's deadline (``time.monotonic()`` seconds) from
    ``Timeout(total=...)``, or ``None``; a retry that would start after it
    raises :class:`DeadlineExceeded` instead.

    What is retried: a request that provably never reached the server
    (:class:`ConnectError`, TLS failures excepted) and the statuses of the
    policy (503). With ``idempotent=True`` (the model may run twice), also a
    connection that broke after the request was sent; never a timeout.
    """

    __slots__ = ("attempt", "deadline", "idempotent", "policy", "req", "total", "where")

    def __init__(self, config: ClientConfig, req: PreparedRequest) -> None:
        self.req = req
        self.policy = config.retry
        self.idempotent = config.idempotent
        self.attempt = 0
        self.total = req.timeout.total
        self.deadline = None if self.total is None else time.monotonic() + self.total
        self.where = req.endpoint.redacted

    def _retryable(self, exc: GraphPipeError) -> bool:
        if isinstance(exc, ConnectError):
            return not isinstance(exc, TLSError)
        return (
            self.idempotent
            and type(exc) is TransportError  # not a timeout, not a TLS or size error
        )

    def after_error(self, exc: GraphPipeError) -> float:
        if self._retryable(exc) and self.attempt < self.policy.retries:
            delay = self.policy.backoff_delay(self.attempt)
            self.attempt += 1
            self._check_deadline(delay, exc)
            log_retry(
                self.req, self.attempt, self.policy.retries, delay, f"{type(exc).__name__}: {exc}"
            )
            return delay
        raise exc

    def after_response(self, raw: RawResponse) -> float | None:
        if raw.status not in self.policy.statuses or self.attempt >= self.policy.retries:
            return None
        delay = self.policy.retry_after_delay(raw.retry_after)
        if delay is None:
            delay = self.policy.backoff_delay(self.attempt)
        if self.deadline is not None and time.monotonic() + delay >= self.deadline:
            return None  # no time left to retry: the status is the answer
        self.attempt += 1
        log_retry(self.req, self.attempt, self.policy.retries, delay, f"HTTP {raw.status}")
        return delay

    def _check_deadline(self, delay: float, cause: GraphPipeError) -> None:
        if self.deadline is not None and time.monotonic() + delay >= self.deadline:
            raise DeadlineExceeded(
                f"the call to {self.where} did not finish within its total timeout of "
                f"{self.total} s (after {self.attempt} attempt(s); the last one: {cause})",
                url=self.where,
            ) from cause
