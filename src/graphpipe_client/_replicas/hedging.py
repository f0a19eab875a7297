"""Hedged requests: when to send a second copy of a slow call, and how many (no I/O here).

A :class:`Hedge` is the public option (``Client(urls, idempotent=True,
hedge=Hedge(...))``); a :class:`Hedger` is its state for one replica set (one
model): the latencies seen (for a percentile delay), and the budget, a sliding
window of calls and hedges. The I/O that races the two attempts is
:mod:`._replicas.hedged`.

Example:
    >>> h = Hedger(Hedge(delay=0.05, budget=0.1, window=10.0), clock=lambda: 0.0)
    >>> h.delay()
    0.05
    >>> [h.call() for _ in range(10)][-1]   # 10 calls in the window
    >>> h.allow(), h.allow()                # 10% of 10 calls: one hedge
    (True, False)
    >>> p = Hedger(Hedge(delay="p95"))     # warm-up: 100 latencies
    >>> for ms in range(1, 100):
    ...     p.record(ms / 1000)
    >>> p.delay() is None                   # still warming up: no hedge yet
    True
    >>> p.record(0.1)
    >>> round(p.delay(), 3)                 # the p95 of 1..100 ms
    0.095
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._exceptions import InvalidOption
from .options import check_hedge

__all__ = ["Hedge", "HedgeStats", "Hedger", "check_hedge"]

#: Latencies kept for a percentile delay (the most recent ones).
SAMPLES: Final = 1000

#: The percentile is computed again after this many new latencies.
REFRESH: Final = 50

#: The sliding window of the budget is this many buckets.
BUCKETS: Final = 10


@dataclass(frozen=True, slots=True)
class Hedge:
    """Hedged requests: a second copy of a slow call goes to another replica; the first answer wins.

    Pass it to a client bound to at least two replicas of a model that may run
    twice: ``Client(urls, idempotent=True, hedge=Hedge())`` (or
    ``AsyncClient``). When a call has no answer after :attr:`delay`, the same
    request is sent to another replica in rotation; the first answer is the
    call's, the other attempt is abandoned (its connection closed, never
    reused). See ``docs/replicas.md``.

    Attributes:
        delay: seconds to wait before hedging (a number), or ``"pNN"``: the
            NN-th percentile of the latencies this client has seen for the
            model (default ``"p95"``, as in "The Tail at Scale").
        budget: at most this fraction of the calls of the last
            :attr:`window` seconds get a hedge (default 0.05: 5% more requests
            at most).
        window: the budget's sliding window, in seconds (default 10).
        min_delay: a percentile delay is never shorter than this (default
            0.005 s): hedging a call that is fast anyway only adds load.
        warmup: a percentile delay is used only once this many latencies were
            seen (default 100); no call is hedged before.

    Bad values raise :class:`~graphpipe_client.InvalidOption`.

    Example:
        >>> Hedge(delay=0.05).delay
        0.05
        >>> Hedge(delay="p99").percentile
        99.0
    """

    delay: float | str = "p95"
    budget: float = 0.05
    window: float = 10.0
    min_delay: float = 0.005
    warmup: int = 100

    def __post_init__(self) -> None:
        d = self.delay
        if isinstance(d, str):
            self._percentile_of(d)
        elif (
            isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0
        ):
            raise InvalidOption(
                f"Hedge.delay must be seconds (a number >= 0) or a percentile such as 'p95', got {d!r}"
            )
        else:
            object.__setattr__(self, "delay", float(d))
        b = self.budget
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b <= 1:
            raise InvalidOption(
                f"Hedge.budget is the fraction of calls that may be hedged, in (0, 1], got {b!r}"
            )
        for name in ("window", "min_delay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidOption(f"Hedge.{name} must be a number of seconds, got {v!r}")
            if v < 0 or (name == "window" and v == 0):
                raise InvalidOption(f"Hedge.{name} must be positive, got {v!r}")
        w = self.warmup
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InvalidOption(f"Hedge.warmup must be an int >= 1 (latencies), got {w!r}")

    @staticmethod
    def _percentile_of(text: str) -> float:
        try:
            p = float(text[1:]) if text[:1] in "pP" and text[1:] else math.nan
        except ValueError:
            p = math.nan
        if not 0 < p < 100:
            raise InvalidOption(
                f"Hedge.delay as a string is a percentile of the latencies seen, 'p50' to "
                f"'p99.9', got {text!r}"
            )
        return p

    @property
    def percentile(self) -> float | None:
        """The percentile of a ``"pNN"`` delay, or ``None`` for a fixed delay."""
        return self._percentile_of(self.delay) if isinstance(self.delay, str) else None


@dataclass(frozen=True, slots=True)
class HedgeStats:
    """How many calls could be hedged, how many were, and how many hedges answered first.

    A snapshot, from :meth:`Client.hedge_stats <graphpipe_client.Client.hedge_stats>`.

    Attributes:
        calls: attempts that could have been hedged (each call's, until it sends its hedge).
        hedges: hedges sent: the extra requests.
        won: hedges that answered before the first copy.

    Example:
        >>> s = HedgeStats(calls=1000, hedges=48, won=46)
        >>> s.hedges / s.calls
        0.048
    """

    calls: int
    hedges: int
    won: int


class Hedger:
    """The hedging state of one replica set: recent latencies and the budget's window.

    Thread-safe (one lock, a few arithmetic operations per call).
    """

    def __init__(self, options: Hedge, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.clock = clock
        self._lock = threading.Lock()
        self._percentile = options.percentile
        self._samples: list[float] = []
        self._next = 0  # where the next latency goes once the ring is full
        self._fresh = 0  # latencies since the percentile was computed
        self._delay: float | None = None if self._percentile is not None else float(options.delay)
        self._width = options.window / BUCKETS
        self._slot = 0
        self._calls = [0] * BUCKETS
        self._hedges = [0] * BUCKETS
        self._window_calls = 0
        self._window_hedges = 0
        self.calls = 0
        self.hedges = 0
        self.won = 0

    def delay(self) -> float | None:
        """Seconds before a call is hedged; ``None`` while a percentile delay warms up."""
        return self._delay

    def record(self, latency: float) -> None:
        """The latency of an attempt that answered (for a percentile delay)."""
        if self._percentile is None:
            return
        with self._lock:
            if len(self._samples) < SAMPLES:
                self._samples.append(latency)
            else:
                self._samples[self._next] = latency
                self._next = (self._next + 1) % SAMPLES
            self._fresh += 1
            n = len(self._samples)
            if n < self.options.warmup or (self._delay is not None and self._fresh < REFRESH):
                return
            self._fresh = 0
            ordered = sorted(self._samples)
            at = min(n - 1, max(0, math.ceil(self._percentile / 100 * n) - 1))
            self._delay = max(self.options.min_delay, ordered[at])

    def _roll(self, now: float) -> int:
        slot = int(now / self._width)
        steps = slot - self._slot
        if steps:
            for k in range(1, min(steps, BUCKETS) + 1):
                i = (self._slot + k) % BUCKETS
                self._window_calls -= self._calls[i]
                self._window_hedges -= self._hedges[i]
                self._calls[i] = self._hedges[i] = 0
            self._slot = slot
        return slot % BUCKETS

    def call(self) -> None:
        """Count a call (that could be hedged) in the budget's window."""
        with self._lock:
            i = self._roll(self.clock())
            self._calls[i] += 1
            self._window_calls += 1
            self.calls += 1

    def allow(self) -> bool:
        """Whether the budget allows one more hedge now; counts it if so."""
        with self._lock:
            i = self._roll(self.clock())
            if self._window_hedges + 1 > self.options.budget * self._window_calls:
                return False
            self._hedges[i] += 1
            self._window_hedges += 1
            self.hedges += 1
            return True

    def hedge_won(self) -> None:
        """A hedge answered first."""
        with self._lock:
            self.won += 1

    def stats(self) -> HedgeStats:
        """Counters since the client was made: calls, hedges sent, hedges that answered first."""
        with self._lock:
            return HedgeStats(self.calls, self.hedges, self.won)
