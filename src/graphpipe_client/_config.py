"""Client configuration shared by the sync and async clients: timeouts, retries, TLS, limits."""

from __future__ import annotations

import enum
import random
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, TypeAlias

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "UNSET",
    "ClientConfig",
    "RetryPolicy",
    "Timeout",
    "TimeoutTypes",
    "Unset",
]


class Unset(enum.Enum):
    """The type of :data:`UNSET`: "not given", as distinct from ``None``."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


#: Marks a per-call option as "use the client's setting" (``None`` disables).
UNSET: Final = Unset.UNSET

#: FlatBuffers messages cannot exceed 2 GiB, so neither can a sane response.
DEFAULT_MAX_RESPONSE_BYTES: Final = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Timeout:
    """Connect and read timeouts, in seconds; ``None`` waits forever.

    ``read`` bounds each wait for data from the server, not the whole call.

    Example:
        >>> Timeout(connect=2.0, read=None)
        Timeout(connect=2.0, read=None)
    """

    connect: float | None = 5.0
    read: float | None = 60.0


TimeoutTypes: TypeAlias = Timeout | float | int | tuple[float | None, float | None] | None


def to_timeout(value: TimeoutTypes) -> Timeout:
    """Normalise ``5``, ``(2, 30)``, ``None`` or a :class:`Timeout` into a :class:`Timeout`."""
    if isinstance(value, Timeout):
        return value
    if value is None:
        return Timeout(None, None)
    if isinstance(value, tuple):
        if len(value) != 2:
            raise ValueError("a timeout tuple is (connect, read)")
        return Timeout(value[0], value[1])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"timeout must be positive or None, got {value}")
        return Timeout(float(value), float(value))
    raise TypeError(
        f"timeout must be a number, a (connect, read) tuple, a Timeout or None, not {value!r}"
    )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a call is retried.

    By default a call is retried only when the request provably never reached
    the server (connection refused or unreachable, connect timeout) and on
    HTTP 503, at most ``retries`` times, after ``backoff * 2**attempt``
    seconds (capped by ``backoff_max``) with full jitter. A ``Retry-After``
    header (seconds or a date) on a 503 is honoured, capped by
    ``retry_after_max``. Read timeouts and other failures are not retried: the
    model may already have run.

    Example:
        >>> RetryPolicy(retries=5, backoff=0.2).retries
        5
    """

    retries: int = 2
    backoff: float = 0.1
    backoff_max: float = 5.0
    retry_after_max: float = 30.0
    jitter: bool = True
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({503}))

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")

    def backoff_delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        ceiling = min(self.backoff_max, self.backoff * (2**attempt))
        return random.uniform(0, ceiling) if self.jitter else ceiling

    def retry_after_delay(self, value: str | None) -> float | None:
        """Seconds asked for by a ``Retry-After`` header, capped; ``None`` if absent or unreadable."""
        if not value:
            return None
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        if seconds != seconds:  # NaN
            return None
        return min(max(seconds, 0.0), self.retry_after_max)


def to_retry_policy(value: int | RetryPolicy | None) -> RetryPolicy:
    """Normalise ``3``, ``0``/``None`` (off) or a :class:`RetryPolicy`."""
    if isinstance(value, RetryPolicy):
        return value
    if value is None:
        return RetryPolicy(retries=0)
    if isinstance(value, int) and not isinstance(value, bool):
        return RetryPolicy(retries=value)
    raise TypeError(f"retries must be an int, a RetryPolicy or None, not {value!r}")


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs besides its I/O; both clients build one from the same arguments."""

    timeout: Timeout = field(default_factory=Timeout)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Header values are often credentials: never in a repr.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    verify: bool | str | ssl.SSLContext = True
    cert: str | tuple[str, str] | None = None
    max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES
    pool_size: int = 10

    @classmethod
    def build(
        cls,
        *,
        timeout: TimeoutTypes = Timeout(),
        retries: int | RetryPolicy | None = RetryPolicy(),
        headers: Mapping[str, str] | None = None,
        verify: bool | str | ssl.SSLContext = True,
        cert: str | tuple[str, str] | None = None,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
        pool_size: int = 10,
    ) -> ClientConfig:
        """Validate the public constructor arguments of a client."""
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if max_response_bytes is not None and max_response_bytes < 0:
            raise ValueError(f"max_response_bytes must be >= 0 or None, got {max_response_bytes}")
        if isinstance(verify, ssl.SSLContext) and cert is not None:
            raise ValueError(
                "give cert=None with an SSLContext: load the client certificate into "
                "the context with ctx.load_cert_chain(...)"
            )
        hdrs = dict(headers or {})
        for k, v in hdrs.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("headers must map str to str")
            if "\r" in k or "\n" in k or "\r" in v or "\n" in v:
                raise ValueError(f"header {k!r} contains a line break")
        return cls(
            timeout=to_timeout(timeout),
            retry=to_retry_policy(retries),
            headers=hdrs,
            verify=verify,
            cert=cert,
            max_response_bytes=max_response_bytes,
            pool_size=pool_size,
        )

    def with_timeout(self, timeout: TimeoutTypes | Unset) -> Timeout:
        """The timeout for one call: the per-call value, or the client's."""
        return self.timeout if timeout is UNSET else to_timeout(timeout)


def make_ssl_context(
    verify: bool | str | ssl.SSLContext, cert: str | tuple[str, str] | None
) -> ssl.SSLContext:
    """The client-side TLS context for ``verify`` (True, a CA bundle path, or a context) and ``cert``."""
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif verify is True:
        ctx = ssl.create_default_context()
    else:
        ctx = ssl.create_default_context(cafile=verify)
    if cert is not None:
        if isinstance(cert, tuple):
            ctx.load_cert_chain(cert[0], cert[1])
        else:
            ctx.load_cert_chain(cert)
    return ctx
