"""Which replica in rotation a request goes to: the load balancing rule (no I/O here).

Two rules, the client's ``balance=`` option:

- ``"latency"`` (the default): each replica has a latency estimate, an
  average of its recent answers (each new answer weighs :data:`WEIGHT`) that
  decays toward zero while no answer comes (time constant :data:`DECAY`
  seconds). A request given up unanswered (the losing copy of a hedged call,
  a timeout) raises it to at least the time it waited: a hedge that rescues
  a call from a stalled replica does not hide the stall from the balancer. A replica's cost is its estimate times one more than its requests
  in flight, as in Finagle's and linkerd's peak-EWMA balancers. The
  candidates are the replicas whose cost is within :data:`SLACK` times the
  lowest; among them the fewest in flight win, ties in turn. So equal
  replicas share the calls as under ``"in-flight"``, while one that answers
  several times slower than another gets calls only when the faster one is
  busy, or once its estimate has decayed (a probe of whether it recovered:
  within ``DECAY * ln(ratio / SLACK)`` seconds). A replica never answered
  yet, or just back in rotation, is taken to be as fast as the mean of the
  others.
- ``"in-flight"``: the fewest requests in flight win, ties in turn, whatever
  the latencies.

Example:
    >>> est = Latency()
    >>> est.observe(0.010, now=0.0)
    >>> est.observe(0.210, now=0.0)          # a slow answer moves it by WEIGHT of the gap
    >>> round(est.at(0.0), 3)
    0.05
    >>> round(est.at(DECAY), 4)              # no answer for DECAY seconds: divided by e
    0.0184
    >>> # replica 0 slow and idle, 1 fast and idle: 1 wins; 1 busy: 0 gets its turn
    >>> pick([(0, 0, 0.050), (1, 0, 0.010)], start=0, n=2)
    1
    >>> pick([(0, 0, 0.050), (1, 4, 0.010)], start=0, n=2)
    0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from .options import BALANCES, check_balance

__all__ = ["BALANCES", "DECAY", "SLACK", "WEIGHT", "Latency", "check_balance", "pick"]

#: The weight of each new answer in a replica's latency estimate.
WEIGHT: Final = 0.2

#: Seconds: without answers, an estimate decays as ``exp(-t / DECAY)`` (so that a
#: replica avoided for being slow is tried again, and is seen once it recovered).
DECAY: Final = 10.0

#: Replicas whose cost is within this factor of the lowest are equals (fewest in flight).
SLACK: Final = 1.5


class Latency:
    """One replica's latency estimate, in seconds; ``None`` until its first answer.

    Not locked: the :class:`~.routing.ReplicaSet` holding it is.
    """

    __slots__ = ("stamp", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self.stamp = 0.0

    def at(self, now: float) -> float | None:
        """The estimate at time ``now`` (decayed since the last answer)."""
        if self.value is None:
            return None
        return self.value * math.exp(-max(0.0, now - self.stamp) / DECAY)

    def observe(self, seconds: float, now: float, *, at_least: bool = False) -> None:
        """An answer that took ``seconds``; ``at_least``: a request given up after
        ``seconds`` (it would have taken longer: it lost a hedged race, or timed out),
        which raises the estimate to ``seconds`` if it is below."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            return
        current = self.at(now)
        if current is None:
            self.value = seconds
        elif at_least:
            if seconds <= current:
                return
            self.value = seconds
        else:
            self.value = current + WEIGHT * (seconds - current)
        self.stamp = now

    def forget(self) -> None:
        """Back to unknown (a replica back in rotation after an ejection)."""
        self.value = None


def pick(candidates: Sequence[tuple[int, int, float | None]], start: int, n: int) -> int:
    """The replica a request goes to among ``candidates``, ``(index, in flight, estimate)``
    each (estimates all ``None``: fewest in flight alone); ``start`` is where the turn
    is among ``n`` replicas (ties go to the first index at or after it)."""
    if len(candidates) == 1:
        return candidates[0][0]
    ceiling, unknown = math.inf, 0.0
    known = [e for _, _, e in candidates if e is not None]
    if known:
        unknown = sum(known) / len(known)
        ceiling = SLACK * min((unknown if e is None else e) * (k + 1) for _, k, e in candidates)
    best, best_key = -1, math.inf
    for i, k, e in candidates:
        # Fewest in flight first, then the turn: one integer (the turn is below n).
        key = k * n + (i - start) % n
        if key < best_key and (
            ceiling == math.inf or (unknown if e is None else e) * (k + 1) <= ceiling
        ):
            best, best_key = i, key
    return best
