"""Client configuration shared by the sync and async clients: timeouts, retries, TLS, limits."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeAlias

from .._exceptions import InvalidHeader, InvalidOption
from .keepalive import DEFAULT_KEEPALIVE_EXPIRY, to_keepalive_expiry

if TYPE_CHECKING:
    import ssl  # loaded with the first client (urllib3 or httpx needs it), not with the package

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
    """Timeouts in seconds; ``None`` waits forever.

    - ``connect``: to open a connection (TCP and TLS).
    - ``read``: each wait for the server (to accept request bytes, or to send
      response bytes). It restarts with every byte that arrives, so it bounds
      a stall, not a slow response.
    - ``total``: a deadline for the whole call, from its start to its last
      byte, retries and back-off included (:class:`DeadlineExceeded`). Off by
      default: how long a correct call takes depends on the model and the
      size of its tensors, which only the caller knows; the read timeout
      already ends calls to a server that stopped answering.

    Each value is ``None`` or a positive, finite number; anything else raises
    :class:`InvalidOption` naming the field.

    Example:
        >>> Timeout(connect=2.0, read=None)
        Timeout(connect=2.0, read=None, total=None)
        >>> Timeout(total=30).total
        30.0
    """

    connect: float | None = 5.0
    read: float | None = 60.0
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            object.__setattr__(self, name, _seconds(f"Timeout.{name}", getattr(self, name)))


def _seconds(field_name: str, value: object) -> float | None:
    """``value`` as a positive, finite number of seconds, or ``None``; else :class:`InvalidOption`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOption(
            f"{field_name} must be a positive number of seconds or None, not {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise InvalidOption(
            f"{field_name} must be a positive number of seconds or None, got {value!r}"
        )
    return float(value)


TimeoutTypes: TypeAlias = Timeout | float | int | tuple[float | None, float | None] | None


def to_timeout(value: TimeoutTypes) -> Timeout:
    """Normalise ``5``, ``(2, 30)``, ``None`` or a :class:`Timeout` into a :class:`Timeout`.

    A number sets the connect and read timeouts (no total); a tuple is
    ``(connect, read)``; ``None`` waits forever.
    """
    if isinstance(value, Timeout):
        return value
    if value is None:
        return Timeout(None, None)
    if isinstance(value, tuple):
        if len(value) != 2:
            raise InvalidOption(
                f"a timeout tuple is (connect, read), got {len(value)} values; "
                "use Timeout(connect=..., read=..., total=...) for more"
            )
        return Timeout(value[0], value[1])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = _seconds("timeout", value)
        return Timeout(seconds, seconds)
    raise InvalidOption(
        "timeout must be a number of seconds, a (connect, read) tuple, a Timeout or None, "
        f"not {type(value).__name__}"
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

    Each field is checked when the policy is made, and a bad one raises
    :class:`InvalidOption` naming it: ``retries`` is an ``int >= 0``;
    ``backoff``, ``backoff_max`` and ``retry_after_max`` are finite numbers of
    seconds ``>= 0``; ``jitter`` is a bool; ``statuses`` is a set of HTTP
    error statuses (400 to 599), stored as a frozenset.

    Example:
        >>> RetryPolicy(retries=5, backoff=0.2).retries
        5
        >>> RetryPolicy(backoff=-1)
        Traceback (most recent call last):
        ...
        graphpipe_client.InvalidOption: RetryPolicy.backoff must be a finite number of seconds >= 0, got -1
    """

    retries: int = 2
    backoff: float = 0.1
    backoff_max: float = 5.0
    retry_after_max: float = 30.0
    jitter: bool = True
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({503}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "retries", _retry_count("RetryPolicy.retries", self.retries))
        for name in ("backoff", "backoff_max", "retry_after_max"):
            object.__setattr__(self, name, _pause(f"RetryPolicy.{name}", getattr(self, name)))
        if not isinstance(self.jitter, bool):
            raise InvalidOption(
                f"RetryPolicy.jitter must be True or False, not {type(self.jitter).__name__}"
            )
        object.__setattr__(self, "statuses", _retry_statuses(self.statuses))

    def backoff_delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        import random  # with the first retry, not with the package

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
            from email.utils import parsedate_to_datetime  # an HTTP date: rare, loaded when met

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


def _retry_count(field_name: str, value: object) -> int:
    """``value`` as a number of retries (an ``int >= 0``); else :class:`InvalidOption`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(
            f"{field_name} must be a whole number of retries (an int >= 0; 0 never retries), "
            f"not {type(value).__name__} {value!r}"
        )
    if value < 0:
        raise InvalidOption(f"{field_name} must be >= 0 (0 never retries), got {value!r}")
    return value


def _pause(field_name: str, value: object) -> float:
    """``value`` as a pause: a finite number of seconds ``>= 0``; else :class:`InvalidOption`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOption(
            f"{field_name} must be a number of seconds >= 0, not {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise InvalidOption(f"{field_name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _retry_statuses(value: object) -> frozenset[int]:
    """``value`` as a frozenset of HTTP error statuses (400-599); else :class:`InvalidOption`."""
    if isinstance(value, (str, bytes, int)) or not isinstance(value, (set, frozenset, list, tuple)):
        raise InvalidOption(
            "RetryPolicy.statuses must be a set of HTTP statuses, e.g. frozenset({503}), "
            f"not {type(value).__name__}"
        )
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidOption(
                f"RetryPolicy.statuses holds {status!r}: each must be an HTTP error status, "
                "an int from 400 to 599 (e.g. 503)"
            )
    return frozenset(value)


def to_retry_policy(value: int | RetryPolicy | None) -> RetryPolicy:
    """Normalise ``3``, ``0``/``None`` (off) or a :class:`RetryPolicy`.

    Raises:
        InvalidOption: anything else, or a negative number.
    """
    if isinstance(value, RetryPolicy):
        return value
    if value is None:
        return RetryPolicy(retries=0)
    if isinstance(value, int) and not isinstance(value, bool):
        return RetryPolicy(retries=_retry_count("retries", value))
    raise InvalidOption(
        "retries must be a whole number of retries (an int >= 0), a RetryPolicy or None, "
        f"not {type(value).__name__} {value!r}"
    )


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
    idempotent: bool = False
    # May hold credentials (user-info): never in a repr.
    proxy: str | None = field(default=None, repr=False)
    trust_env: bool = True
    keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY

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
        idempotent: bool = False,
        proxy: str | None = None,
        trust_env: bool = True,
        keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY,
    ) -> ClientConfig:
        """Validate the public constructor arguments of a client."""
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidOption(f"pool_size must be an int >= 1, got {pool_size!r}")
        if max_response_bytes is not None and (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 0
        ):
            raise InvalidOption(
                f"max_response_bytes must be an int >= 0 or None, got {max_response_bytes!r}"
            )
        import ssl  # here, not at import: ~8 ms that a package import need not pay

        if isinstance(verify, ssl.SSLContext) and cert is not None:
            raise InvalidOption(
                "give cert=None with an SSLContext: load the client certificate into "
                "the context with ctx.load_cert_chain(...)"
            )
        hdrs = validate_headers(headers)
        if proxy is not None:
            from .proxy import parse_proxy  # with the first proxy=: not with the package

            parse_proxy(proxy)  # InvalidOption now, not at the first call
        if not isinstance(trust_env, bool):
            raise InvalidOption(f"trust_env must be True or False, not {type(trust_env).__name__}")
        if not isinstance(idempotent, bool):
            raise InvalidOption(
                f"idempotent must be True or False, not {type(idempotent).__name__}"
            )
        return cls(
            timeout=to_timeout(timeout),
            retry=to_retry_policy(retries),
            headers=hdrs,
            verify=verify,
            cert=cert,
            max_response_bytes=max_response_bytes,
            pool_size=pool_size,
            idempotent=idempotent,
            proxy=proxy,
            trust_env=trust_env,
            keepalive_expiry=to_keepalive_expiry(keepalive_expiry),
        )

    def with_timeout(self, timeout: TimeoutTypes | Unset) -> Timeout:
        """The timeout for one call: the per-call value, or the client's."""
        return self.timeout if timeout is UNSET else to_timeout(timeout)


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# ASCII without control characters (horizontal tab allowed), RFC 9110 §5.5. (obs-text,
# bytes 0x80-0xFF, is not sent: httpx refuses it, and servers read it differently.)
_HEADER_VALUE_BAD: Final = re.compile(r"[^\x09\x20-\x7e]")


def validate_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Check extra request headers once, when a client is configured.

    Raises:
        InvalidHeader: a name that is not an HTTP token, a value that is not
            a ``str``, or that holds a line break, a NUL, another control
            character or a character outside ASCII. The message names the
            header (or, for a bad name, its valid beginning) and never shows
            the value, which is often a credential.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidHeader(
            f"headers must be a mapping of str to str, not {type(headers).__name__}"
        )
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            raise InvalidHeader(f"header names must be str, not {type(name).__name__}")
        if not name:
            raise InvalidHeader("a header name cannot be empty")
        match = _HEADER_NAME.match(name)
        if match is None or match.end() != len(name):
            good = name[: match.end()] if match else ""
            bad = name[len(good)]
            where = f"after {good[:40]!r}" if good else "at its start"
            raise InvalidHeader(
                f"a header name must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~); "
                f"this one has {_char_name(bad)} {where}"
            )
        if not isinstance(value, str):
            raise InvalidHeader(
                f"the value of header {name!r} must be a str, not {type(value).__name__}"
            )
        bad_value = _HEADER_VALUE_BAD.search(value)
        if bad_value is not None:
            raise InvalidHeader(
                f"the value of header {name!r} has {_char_name(bad_value.group())} at position "
                f"{bad_value.start()}; header values must be ASCII text without control "
                "characters (encode other text, e.g. with base64 or percent-encoding)"
            )
        out[name] = value
    return out


def _char_name(ch: str) -> str:
    if ch in "\r\n":
        return "a line break"
    if ch == "\x00":
        return "a NUL"
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"a control character (U+{ord(ch):04X})"
    if ord(ch) > 0x7E:
        return "a character outside ASCII"
    return "a space" if ch == " " else f"the character {ch!r}"
