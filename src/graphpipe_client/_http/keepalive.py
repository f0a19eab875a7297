"""When an idle pooled connection may carry another request, sans I/O.

A request written on a connection that the peer has already closed is lost,
and when the close came after the request left, the client cannot tell
whether the server ran it (it is then never sent again, unless
``idempotent=True``). So a connection is reused only while its peer is known
to keep it open:

- **An idle limit.** A connection idle for longer than the client's
  ``keepalive_expiry`` (4 s by default, below the 5 s of Apache, Node.js and
  uvicorn and the 60-75 s of nginx and cloud load balancers) is closed, not
  reused; a server's ``Keep-Alive: timeout=N`` shortens it to a margin below
  ``N`` (:func:`idle_limit`).
- **A memory per peer** (:class:`Peer`). Some peers close each connection
  right after its response without saying so (no ``Connection: close``:
  tinyproxy 1.11 does): the close then races the next request. A pooled
  connection found closed (or readable) within :data:`SOON` seconds of its
  response marks its peer as one that closes them; from then on a connection
  to it is reused only once it has stayed open for :data:`GRACE` seconds
  after its response (the peer then showed that it keeps connections, and is
  trusted again), so busy traffic opens a fresh connection per request.
  The first reuse towards a peer not yet known waits up to :data:`SETTLE`
  seconds for such a close (once per peer), so that even the first
  connection of a closing peer is not reused in the race. The memory lasts
  :data:`FORGET` seconds after the last close seen; the peer is then not
  known again (where no connection can age in the pool to show it: httpx's
  pool closes the young ones).

The transports do the waiting and polling; this module only decides.
"""

from __future__ import annotations

import math
import time
from typing import Final

from .._exceptions import InvalidOption

__all__ = [
    "DEFAULT_KEEPALIVE_EXPIRY",
    "FORGET",
    "GRACE",
    "KEEPS",
    "SETTLE",
    "SOON",
    "Peer",
    "idle_limit",
    "to_keepalive_expiry",
]

#: The default ``keepalive_expiry``: seconds an idle connection stays in the pool.
DEFAULT_KEEPALIVE_EXPIRY: Final = 4.0

#: A connection found closed this soon after its response: its peer closes after each one.
SOON: Final = 1.0

#: A connection still open this long after its response: its peer keeps connections.
GRACE: Final = 1.0

#: How long the first reuse towards a peer not yet known waits for the peer's close.
SETTLE: Final = 0.02

#: Seconds after its last close seen that a peer is no longer known as one that closes.
FORGET = 30.0

_UNKNOWN: Final = 0
_KEEPS: Final = 1
_CLOSES: Final = 2

#: ``Peer.state`` of a peer seen keeping its connections open (a fast path's one check).
KEEPS: Final = _KEEPS


def to_keepalive_expiry(value: object) -> float | None:
    """Validate the ``keepalive_expiry`` option: seconds >= 0 (0: never reuse), or ``None``.

    Raises:
        InvalidOption: anything else (a bool, a string, a negative or
            infinite number, NaN).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidOption(
            f"keepalive_expiry must be a number of seconds >= 0 or None, not {type(value).__name__}"
        )
    if not math.isfinite(value) or value < 0:
        raise InvalidOption(
            f"keepalive_expiry must be a number of seconds >= 0 or None, got {value!r}"
        )
    return float(value)


def idle_limit(configured: float | None, promised: float | None) -> float | None:
    """Seconds a connection may stay idle before it is no longer reused; ``None``: no limit.

    ``configured`` is the client's ``keepalive_expiry``; ``promised`` the
    server's ``Keep-Alive: timeout=`` for this connection, if any, which
    lowers it to ``promised`` less a margin (a second, or half of it when
    shorter): the server's clock started when it sent the last byte, ours
    when the last byte arrived.
    """
    if promised is None:
        return configured
    limit = promised - min(1.0, promised / 2)
    return limit if configured is None else min(configured, limit)


class Peer:
    """What one peer (a server or a proxy) has shown about keeping idle connections open.

    One per pool (endpoint, and proxy); shared by the threads or tasks that
    use the pool. Its state changes by single assignments, so concurrent
    updates can only lose a lesson, never corrupt one.
    """

    __slots__ = ("state", "until")

    def __init__(self) -> None:
        self.state = _UNKNOWN
        self.until = 0.0  # time.monotonic() at which a closing peer is forgotten

    @property
    def closes(self) -> bool:
        """The peer was seen closing connections right after their responses."""
        if self.state == _CLOSES and time.monotonic() >= self.until:
            self.state = _UNKNOWN
        return self.state == _CLOSES

    def settle(self, idle_for: float) -> float:
        """Seconds to wait for a close before reusing a connection idle for ``idle_for`` s.

        Non-zero only for a peer not yet known, and a connection younger than
        :data:`SETTLE`.
        """
        if self.state != _KEEPS and idle_for < SETTLE and not self.closes:
            return SETTLE - idle_for
        return 0.0

    def reusable(self, idle_for: float, closed: bool) -> bool:
        """Whether a pooled connection, idle for ``idle_for`` s, may carry a request; learns.

        ``closed``: the liveness check found the connection readable (closed
        by the peer, or holding stray bytes): never reused.
        """
        if closed:
            if idle_for < SOON:
                self.state = _CLOSES
                self.until = time.monotonic() + FORGET
            return False
        if self.closes:
            if idle_for < GRACE:
                return False  # too young to tell: a fresh connection instead
            self.state = _KEEPS  # stayed open: the peer keeps connections after all
        return True

    def answered(self) -> None:
        """A response arrived on a reused connection: the peer keeps connections."""
        if self.state == _UNKNOWN:
            self.state = _KEEPS
