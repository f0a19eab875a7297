"""Several replicas of one model behind one client: the routing decisions (no sockets here).

A :class:`ReplicaSet` is what ``Client(["http://a:9000", "http://b:9000"])``
routes with. Per call it picks a replica by the rule of :mod:`.balance`
(fewest requests in flight, weighted by each replica's recent latency; ties
go round-robin), takes a replica out of rotation ("ejects" it)
for a back-off period when it refuses connections, times out on connect or
answers 503, and puts it back only once an ``is_ready`` probe succeeds. The
clients do the I/O (see :mod:`._replica_io`); every decision is made here,
under one lock, synchronously: safe from threads and from asyncio tasks.

Example:
    >>> rs = ReplicaSet(["http://a:9000", "http://b:9000"], clock=lambda: 0.0)
    >>> first = rs.choose(set(), 0.0).index
    >>> second = rs.choose(set(), 0.0).index   # the other one: fewer in flight
    >>> sorted([first, second])
    [0, 1]
    >>> rs.finished(first, ok=True)           # answered: no ejection
    False
    >>> rs.finished(second, ok=False, error="ConnectError: refused")   # ejected
    True
    >>> [(s.ready, s.sent, s.failed, s.ejections) for s in rs.stats()]
    [(True, 1, 0, 0), (False, 1, 1, 1)]
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .._exceptions import ConnectError, InvalidOption, TLSError
from .._http.exchange import Endpoint, parse_endpoint
from .balance import Latency, check_balance, pick
from .hedging import Hedge, Hedger
from .options import EJECT_BACKOFF, EJECT_BACKOFF_MAX, check_backoff

if TYPE_CHECKING:
    from .._exceptions import GraphPipeError
    from .._http.config import ClientConfig
    from .._http.exchange import PreparedRequest, RawResponse

__all__ = [
    "EJECT_BACKOFF",
    "EJECT_BACKOFF_MAX",
    "Choice",
    "ReplicaSet",
    "ReplicaStats",
    "check_backoff",
    "ejects",
    "ejects_response",
    "retarget",
]


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """A snapshot of one replica of a client: how much it serves, and whether it is in rotation.

    Read them with :attr:`Client.replicas <graphpipe_client.Client.replicas>`.

    Attributes:
        url: the replica's URL, credentials hidden (``http://***@host:9000/``).
        in_flight: requests sent to it and not answered yet.
        sent: requests sent to it so far (probes not counted).
        failed: requests to it that failed (no answer, or an answer that ejects it: 503).
        ejections: how many times it was taken out of rotation.
        ready: whether it is in rotation (gets new calls).
        ejected_until: when it is out of rotation, the ``time.monotonic()``
            time after which it is probed with ``is_ready``; ``None`` when in rotation.
        last_error: why it was last ejected (the failure, one line), or ``None``.
        latency: its latency estimate in seconds (recent answers, decayed while
            none come; see ``docs/replicas.md``), or ``None``: no answer seen
            since it came (back) into rotation, ``balance="in-flight"``, or a
            set of one replica.

    Example:
        >>> s = ReplicaStats("http://a:9000/", 0, 10, 1, 1, False, 12.5, "HTTP 503")
        >>> s.ready, s.ejections
        (False, 1)
    """

    url: str
    in_flight: int
    sent: int
    failed: int
    ejections: int
    ready: bool
    ejected_until: float | None
    last_error: str | None
    latency: float | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """What a call does next (see :meth:`ReplicaSet.choose`).

    - ``action == "send"``: send to replica ``index`` (now counted in flight:
      report the outcome with :meth:`ReplicaSet.finished`).
    - ``"probe"``: every replica is out of rotation and this one's back-off is
      over: probe it with ``is_ready``, report with :meth:`ReplicaSet.probed`,
      then choose again.
    - ``"wait"``: every replica is out of rotation; the earliest comes back in
      ``wait`` seconds (or a probe is under way): wait, then choose again.

    ``probes`` lists replicas whose back-off is over while others serve: the
    caller probes them in the background (each claimed once).
    """

    action: str
    index: int = -1
    wait: float = 0.0
    probes: tuple[int, ...] = ()


class _Replica:
    __slots__ = (
        "ejected_until",
        "ejections",
        "endpoint",
        "failed",
        "failures",
        "in_flight",
        "last_error",
        "latency",
        "probing",
        "sent",
        "url",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.endpoint: Endpoint = parse_endpoint(url)
        self.in_flight = 0
        self.sent = 0
        self.failed = 0
        self.ejections = 0
        self.failures = 0  # consecutive: the back-off exponent
        self.ejected_until: float | None = None
        self.probing = False
        self.last_error: str | None = None
        self.latency = Latency()


def check_urls(urls: object) -> tuple[str, ...]:
    """The replica URLs of a list or tuple, checked: at least one, each valid, no duplicates."""
    if not isinstance(urls, (list, tuple)) or not urls:
        raise InvalidOption("give the replicas as a non-empty list of URLs")
    out = []
    for u in urls:
        if not isinstance(u, str):
            raise InvalidOption(f"a replica URL must be a str, not {type(u).__name__}")
        out.append(parse_endpoint(u).url)
    if len(set(out)) != len(out):
        dup = next(parse_endpoint(u).redacted for u in out if out.count(u) > 1)
        raise InvalidOption(f"the replica {dup} is listed twice")
    return tuple(urls)


class ReplicaSet:
    """The replicas of one model and the routing state: in flight, back-off, counters.

    Thread-safe: every method takes the set's lock for a few attribute
    updates, never around I/O.

    Args:
        urls: the replicas' URLs (at least one).
        backoff: the first ejection's back-off, in seconds.
        backoff_max: the longest back-off.
        hedge: the client's :class:`Hedge` option: this set's :attr:`hedger`
            (``None``: no hedging; a set of one replica is never hedged).
        balance: ``"latency"`` or ``"in-flight"``: how a replica is picked
            (:mod:`.balance`).
        clock: ``time.monotonic`` (a test can pass its own).
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        backoff: float = EJECT_BACKOFF,
        backoff_max: float = EJECT_BACKOFF_MAX,
        hedge: Hedge | None = None,
        balance: str = "latency",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = check_urls(urls)
        self.key = self.key_of(self.urls)
        self._replicas = [_Replica(u) for u in self.urls]
        self._lock = threading.Lock()
        self._next = 0  # round-robin start among ties
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.clock = clock
        self.balance = check_balance(balance)
        self._weighted = self.balance == "latency" and len(self.urls) > 1
        self.hedger = Hedger(hedge) if hedge is not None and len(self.urls) > 1 else None

    @staticmethod
    def key_of(urls: Sequence[str]) -> str:
        """The key a client files a list of replicas under: never a URL (URLs hold no spaces)."""
        return "replicas: " + " ".join(check_urls(urls))

    def __len__(self) -> int:
        return len(self._replicas)

    def endpoint(self, index: int) -> Endpoint:
        """Where replica ``index`` is."""
        return self._replicas[index].endpoint

    def redacted(self) -> str:
        """The replicas' URLs for a message, credentials hidden."""
        return ", ".join(r.endpoint.redacted for r in self._replicas)

    # -- routing ----------------------------------------------------------------

    def choose(self, tried: set[int], now: float | None = None) -> Choice:
        """The next step of a call that has already tried the replicas in ``tried``.

        Among the replicas in rotation, the untried ones are the candidates
        (if every one in rotation was tried, the tried ones are candidates
        again); :func:`.balance.pick` picks one.
        """
        now = self.clock() if now is None else now
        with self._lock:
            probes = []
            live = []
            for i, r in enumerate(self._replicas):
                if r.ejected_until is None:
                    live.append(i)
                elif r.ejected_until <= now and not r.probing:
                    probes.append(i)
            if live:
                for i in probes:
                    self._replicas[i].probing = True
                fresh = [i for i in live if i not in tried] or live
                n = len(self._replicas)
                chosen = pick(self._candidates(fresh, now), self._next, n)
                self._next = (chosen + 1) % n
                r = self._replicas[chosen]
                r.in_flight += 1
                r.sent += 1
                return Choice("send", chosen, probes=tuple(probes))
            if probes:
                # Nothing in rotation: this call probes the one that waited longest.
                first = min(probes, key=lambda i: self._replicas[i].ejected_until or 0.0)
                self._replicas[first].probing = True
                return Choice("probe", first)
            pending = [
                r.ejected_until
                for r in self._replicas
                if not r.probing and r.ejected_until is not None
            ]
            # Only probes in flight (pending empty): look again shortly.
            wait = max(0.0, min(pending) - now) if pending else 0.02
            return Choice("wait", wait=wait)

    def _candidates(self, indices: list[int], now: float) -> list[tuple[int, int, float | None]]:
        """``(index, in flight, latency estimate)`` of each of ``indices`` (under the lock)."""
        rs = self._replicas
        if not self._weighted:
            return [(i, rs[i].in_flight, None) for i in indices]
        return [(i, rs[i].in_flight, rs[i].latency.at(now)) for i in indices]

    def choose_other(self, index: int, now: float | None = None) -> int | None:
        """Where a hedge of an attempt on ``index`` goes: a replica in rotation other
        than ``index``, picked as :meth:`choose` picks (now counted in flight), or ``None``."""
        now = self.clock() if now is None else now
        with self._lock:
            others = [
                i for i, r in enumerate(self._replicas) if i != index and r.ejected_until is None
            ]
            if not others:
                return None
            chosen = pick(self._candidates(others, now), self._next, len(self._replicas))
            r = self._replicas[chosen]
            r.in_flight += 1
            r.sent += 1
            return chosen

    def finished(
        self, index: int, *, ok: bool, error: str | None = None, now: float | None = None
    ) -> bool:
        """A request to ``index`` is over: ``ok`` (an answer that does not eject),
        or a failure; ``error`` set means it ejects the replica (returns whether
        this call ejected it)."""
        with self._lock:
            r = self._replicas[index]
            r.in_flight -= 1
            if ok:
                r.failures = 0
                return False
            r.failed += 1
            if error is None:
                return False
            return self._eject(r, error, self.clock() if now is None else now)

    def observe(
        self, index: int, seconds: float, *, at_least: bool = False, now: float | None = None
    ) -> None:
        """A request to ``index`` took ``seconds`` to answer, for its latency estimate
        (``at_least``: it was given up after that long, an abandoned copy of a hedged
        call or a timeout: counted only if above the estimate)."""
        if not self._weighted:
            return
        now = self.clock() if now is None else now
        with self._lock:
            self._replicas[index].latency.observe(seconds, now, at_least=at_least)

    def observe_outcome(
        self, index: int, seconds: float, out: RawResponse | GraphPipeError
    ) -> None:
        """:meth:`observe` the outcome of a request that took ``seconds``: an answer
        (not a 503: that ejects) is a latency, a failure that does not eject (a
        timeout, a broken connection) a lower bound."""
        if isinstance(out, BaseException):
            if not ejects(out):
                self.observe(index, seconds, at_least=True)
        elif not ejects_response(out):
            self.observe(index, seconds)

    def eject(self, index: int, error: str, now: float | None = None) -> bool:
        """Take ``index`` out of rotation for a back-off period; whether it was in rotation."""
        with self._lock:
            return self._eject(self._replicas[index], error, self.clock() if now is None else now)

    def _eject(self, r: _Replica, error: str, now: float) -> bool:
        r.last_error = error
        if r.ejected_until is not None and r.ejected_until > now:
            return False  # already out: another call saw the same failure
        fresh = r.ejected_until is None
        ceiling = min(self.backoff_max, self.backoff * (2**r.failures))
        r.failures = min(r.failures + 1, 30)
        r.ejected_until = now + random.uniform(ceiling / 2, ceiling)
        if fresh:
            r.ejections += 1
        return fresh

    def probed(self, index: int, ready: bool, why: str, now: float | None = None) -> None:
        """The outcome of the ``is_ready`` probe of a replica out of rotation."""
        with self._lock:
            r = self._replicas[index]
            r.probing = False
            if ready:
                r.ejected_until = None
                r.latency.forget()
            else:
                r.ejected_until = -1.0  # over: _eject sets the next, longer back-off
                self._eject(r, f"not ready: {why}", self.clock() if now is None else now)

    def reinstate(self, index: int) -> None:
        """Put ``index`` back in rotation (a user's ``is_ready`` said it is ready)."""
        with self._lock:
            r = self._replicas[index]
            if r.ejected_until is not None:
                r.ejected_until = None
                r.latency.forget()

    def last_error(self) -> str | None:
        """The most recent ejection's reason, as ``url: error``."""
        with self._lock:
            errors = [
                (r.ejected_until or 0.0, f"{r.endpoint.redacted}: {r.last_error}")
                for r in self._replicas
                if r.last_error
            ]
        return max(errors)[1] if errors else None

    def is_ejected(self, index: int) -> bool:
        """Whether replica ``index`` is out of rotation."""
        return self._replicas[index].ejected_until is not None

    def stats(self) -> list[ReplicaStats]:
        """A consistent snapshot of every replica's counters, in the order given."""
        now = self.clock()
        with self._lock:
            return [
                ReplicaStats(
                    r.endpoint.redacted,
                    r.in_flight,
                    r.sent,
                    r.failed,
                    r.ejections,
                    r.ejected_until is None,
                    r.ejected_until,
                    r.last_error,
                    r.latency.at(now),
                )
                for r in self._replicas
            ]


def ejects(exc: GraphPipeError) -> bool:
    """Whether a failure takes the replica out of rotation: it refused the
    connection, or the connect timed out (a :class:`ConnectError`; a TLS
    failure is a configuration problem, not a dead replica)."""
    return isinstance(exc, ConnectError) and not isinstance(exc, TLSError)


def ejects_response(raw: RawResponse) -> bool:
    """Whether an answer takes the replica out of rotation: 503 (the server refused the work)."""
    return raw.status == 503


def retarget(config: ClientConfig, req: PreparedRequest, endpoint: Endpoint) -> PreparedRequest:
    """``req`` (an inference or metadata POST) sent to another replica: its endpoint,
    and that replica's own credentials.

    The ``Authorization`` header of a URL's user-info belongs to that URL;
    one given in ``headers=`` applies to every replica.
    """
    if endpoint is req.endpoint:
        return req
    headers = dict(req.headers)
    own = {k.lower() for k in config.headers}
    if "authorization" not in own:
        headers.pop("Authorization", None)
        if endpoint.authorization:
            headers["Authorization"] = endpoint.authorization
    return replace(req, endpoint=endpoint, headers=headers)
