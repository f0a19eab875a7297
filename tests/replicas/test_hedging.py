"""Hedged requests and the configurable back-off: the decisions on :class:`Hedger` with a fake
clock, the races end to end against real bundled servers, counting at the servers what each
received.

A stall is a model blocked on an event the test sets: nothing here depends on timing but
the calls' own deadlines (generous), and waits for a server-side count (bounded polls).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from aio_modes import run_in
from graphpipe_client import AsyncClient, Client, Hedge, InvalidOption, Timeout
from graphpipe_client._replicas.hedging import Hedger
from graphpipe_client._replicas.routing import check_backoff
from graphpipe_client.testing import GraphPipeServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the options ---------------------------------------------------------------------


def test_hedging_needs_idempotent_and_two_replicas() -> None:
    urls = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    for cls in (Client, AsyncClient):
        with pytest.raises(InvalidOption, match="idempotent=True"):
            cls(urls, hedge=Hedge())
        with pytest.raises(InvalidOption, match="at least 2 replica"):
            cls("http://127.0.0.1:1", idempotent=True, hedge=Hedge())
        with pytest.raises(InvalidOption, match="at least 2 replica"):
            cls(["http://127.0.0.1:1"], idempotent=True, hedge=Hedge())
        with pytest.raises(InvalidOption, match="Hedge"):
            cls(urls, idempotent=True, hedge=0.05)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delay": -1}, "Hedge.delay"),
        ({"delay": "fast"}, "percentile"),
        ({"delay": "p100"}, "percentile"),
        ({"delay": True}, "Hedge.delay"),
        ({"budget": 0}, "Hedge.budget"),
        ({"budget": 1.5}, "Hedge.budget"),
        ({"window": 0}, "Hedge.window"),
        ({"min_delay": float("nan")}, "Hedge.min_delay"),
        ({"warmup": 0}, "Hedge.warmup"),
    ],
)
def test_bad_hedge_options_say_what_to_give(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidOption, match=match):
        Hedge(**kwargs)


def test_a_percentile_delay_warms_up_then_follows_the_latencies_above_a_floor() -> None:
    h = Hedger(Hedge(delay="p90", warmup=10, min_delay=0.002))
    for _ in range(9):
        h.record(0.001)
    assert h.delay() is None  # 9 latencies: still warming up
    h.record(0.001)
    assert h.delay() == 0.002  # the p90 of 1 ms, raised to the floor
    for _ in range(200):
        h.record(0.050)
    assert h.delay() == pytest.approx(0.050)
    assert Hedger(Hedge(delay=0.3)).delay() == 0.3  # fixed: from the first call


def test_the_budget_is_a_fraction_of_the_calls_of_a_sliding_window() -> None:
    clock = FakeClock()
    h = Hedger(Hedge(delay=0.01, budget=0.1, window=10.0), clock=clock)
    for _ in range(20):
        h.call()
    assert [h.allow() for _ in range(3)] == [True, True, False]  # 10% of 20
    clock.now += 5.0
    for _ in range(10):
        h.call()
    assert h.allow()  # 30 calls in the window, 3 hedges allowed
    assert not h.allow()
    clock.now += 5.5  # the first 20 calls and 2 hedges left the window
    assert not h.allow()  # 10 calls, 1 hedge (the third) still in it
    for _ in range(10):
        h.call()
    assert h.allow() and not h.allow()
    assert h.stats().hedges == 4


def test_eject_backoff_is_an_option_checked_at_construction(replicas: Any) -> None:
    assert check_backoff((0.1, 2)) == (0.1, 2.0)
    assert check_backoff(3) == (3.0, 3.0)
    for bad in [(0, 1), (2.0, 1.0), (1,), "1", None, (1, float("inf")), True]:
        with pytest.raises(InvalidOption, match="eject_backoff"):
            Client("http://127.0.0.1:1", eject_backoff=bad)
    (a, _), (b, _) = replicas(), replicas()
    b.stop()
    for backoff, low, high in [((8.0, 60.0), 4.0, 8.0), (None, 0.25, 0.5)]:
        kwargs = {} if backoff is None else {"eject_backoff": backoff}
        with Client([a.url, b.url], **kwargs) as client:
            before = time.monotonic()
            for _ in range(2):
                client.execute(np.ones(1))  # b refuses once: ejected, the call goes to a
            after = time.monotonic()
            until = client.replicas[1].ejected_until
            assert until is not None
            # the first back-off, with jitter: between half and all of it
            assert before + low <= until <= after + high
        # (AsyncClient takes the same option through the same constructor)
    with pytest.raises(InvalidOption, match="eject_backoff"):
        AsyncClient("http://127.0.0.1:1", eject_backoff=(5, 1))


# -- the races, on real servers ------------------------------------------------------


class Gate:
    """A model whose first ``stalls`` requests wait for :attr:`release` (a stalled replica).

    :attr:`entered` is set when a request stalls; :attr:`after`, when set to another
    gate's ``entered``, holds every answer until that one stalls (so that a hedge cannot
    win before the first copy has reached its replica, however slow the machine).
    """

    def __init__(self, stalls: int = 1, sleep: float = 0.0) -> None:
        self.sleep = sleep
        self.release = threading.Event()
        self.entered = threading.Event()
        self.after: threading.Event | None = None
        self.stalls = stalls
        self.calls = 0
        self.stalled = 0
        self.lock = threading.Lock()

    def model(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            stall = self.calls <= self.stalls
            self.stalled += stall
        if self.after is not None:
            self.after.wait(20)
        if stall:
            self.entered.set()
            self.release.wait(20)
        elif self.sleep:
            time.sleep(self.sleep)  # slower than a hedge's start, so that it is wanted
        return x + 1


@pytest.fixture
def replicas() -> Iterator[Callable[..., tuple[GraphPipeServer, Gate]]]:
    servers: list[tuple[GraphPipeServer, Gate]] = []

    def start(stalls: int = 0, sleep: float = 0.0, **kwargs: Any) -> tuple[GraphPipeServer, Gate]:
        gate = Gate(stalls, sleep)
        server = GraphPipeServer(gate.model, **kwargs).start()
        servers.append((server, gate))
        return server, gate

    yield start
    for server, gate in servers:
        gate.release.set()
        server.stop()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll a server-side count (bounded: a hang fails, it never passes)."""
    end = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < end, what
        time.sleep(0.01)


HEDGE = Hedge(delay=0.05, budget=1.0)


def hedged_call(
    kind: str,
    urls: list[str],
    x: np.ndarray,
    then: Callable[[], object] = lambda: None,
    **kwargs: Any,
) -> Any:
    """One call with a fresh hedging client of ``kind``; its result and its ``hedge_stats()``.

    ``then()`` runs after the call, while the client is still open.
    """
    options: dict[str, Any] = {"idempotent": True, "hedge": HEDGE, **kwargs}
    timeout = options.pop("timeout", Timeout(total=15))
    if kind == "sync":
        with Client(urls, **options) as client:
            y = client.execute(x, timeout=timeout)
            then()
            return y, client.hedge_stats()

    async def main() -> Any:
        async with AsyncClient(urls, **options) as client:
            y = await client.execute(x, timeout=timeout)
            then()
            return y, client.hedge_stats()

    return run_in(kind, main)


KINDS = ["sync", "asyncio", "httpx"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_stalled_call_is_answered_by_the_hedge_and_the_loser_closed(
    kind: str, replicas: Any
) -> None:
    (a, ga), (b, gb) = replicas(stalls=1), replicas()
    gb.after = ga.entered
    x = np.arange(3.0)
    # A fresh replica set sends its first call to a, which stalls (until released); the
    # hedge goes to b.
    answered_before_release = []

    def then() -> None:
        # Answered while a still holds the first copy: the call did not wait for it.
        answered_before_release.append(not ga.release.is_set())
        ga.release.set()
        # The abandoned copy's connection was closed by the client (a pooled one would
        # stay open, the server waiting for its next request): the server sees it end.
        wait_for(lambda: a.open_connections == 0, "the loser's connection is still open")

    y, stats = hedged_call(kind, [a.url, b.url], x, then)
    assert np.array_equal(y, x + 1)
    assert answered_before_release == [True] and ga.stalled == 1
    assert (ga.calls, gb.calls) == (1, 1)  # one hedge, to the other replica
    assert (stats.calls, stats.hedges, stats.won) == (1, 1, 1)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_over_tls_the_loser_is_abandoned_too(kind: str, replicas: Any) -> None:
    # The sync client shuts a TLS connection down below TLS, from another thread.
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    (a, ga), (b, gb) = replicas(stalls=1, ssl_context=server_ctx), replicas(ssl_context=server_ctx)
    gb.after = ga.entered
    x = np.arange(3.0)

    def then() -> None:
        ga.release.set()
        wait_for(lambda: a.open_connections == 0, "the loser's connection is still open")

    y, stats = hedged_call(kind, [a.url, b.url], x, then, verify=client_ctx)
    assert np.array_equal(y, x + 1)
    assert (ga.calls, gb.calls) == (1, 1) and stats.won == 1


@pytest.mark.parametrize("kind", KINDS)
def test_when_the_first_copy_answers_first_no_hedge_is_sent(kind: str, replicas: Any) -> None:
    (a, ga), (b, gb) = replicas(), replicas()
    x = np.arange(3.0)
    y, stats = hedged_call(kind, [a.url, b.url], x)
    assert np.array_equal(y, x + 1)
    assert ga.calls + gb.calls == 1
    assert stats.hedges == 0


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_the_primary_wins_after_the_hedge_started_and_the_hedge_is_abandoned(
    kind: str, replicas: Any
) -> None:
    (a, ga), (b, gb) = replicas(stalls=1), replicas(stalls=1)
    x = np.arange(2.0)
    # Both stall: the primary (a) is released once the hedge (b) is under way.
    threading.Thread(
        target=lambda: (wait_for(lambda: gb.calls == 1, "no hedge"), ga.release.set()),
        daemon=True,
    ).start()

    def then() -> None:
        gb.release.set()
        wait_for(lambda: b.open_connections == 0, "the abandoned hedge's connection is open")

    y, stats = hedged_call(kind, [a.url, b.url], x, then)
    assert np.array_equal(y, x + 1)
    assert (ga.calls, gb.calls) == (1, 1)
    assert stats.won == 0


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_never_more_than_one_hedge_and_never_past_the_deadline(kind: str, replicas: Any) -> None:
    (a, ga), (b, gb) = replicas(stalls=5), replicas(stalls=5)
    with pytest.raises(gp.DeadlineExceeded):
        hedged_call(kind, [a.url, b.url], np.ones(1), timeout=Timeout(total=2))
    assert ga.calls + gb.calls == 2  # the first copy and one hedge: nothing else


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_refused_first_copy_is_retried_as_usual(kind: str, replicas: Any) -> None:
    (a, _), (b, gb) = replicas(), replicas()
    a.stop()
    y, stats = hedged_call(kind, [a.url, b.url], np.ones(1))
    assert np.array_equal(y, np.ones(1) + 1)
    assert gb.calls == 1 and stats.hedges == 0


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_the_budget_caps_the_extra_requests(kind: str, replicas: Any) -> None:
    (a, ga), (b, gb) = replicas(sleep=0.02), replicas(sleep=0.02)
    calls = 40
    options: dict[str, Any] = {"idempotent": True, "hedge": Hedge(delay=0.0, budget=0.1)}
    x = np.ones(1)
    if kind == "sync":
        with Client([a.url, b.url], **options) as client:
            for _ in range(calls):
                client.execute(x)
            stats = client.hedge_stats()
    else:

        async def main() -> Any:
            async with AsyncClient([a.url, b.url], **options) as client:
                for _ in range(calls):
                    await client.execute(x)
                return client.hedge_stats()

        stats = asyncio.run(main())
    # A zero delay wants a hedge for every call: the budget allows 10% of them.
    assert stats.calls == calls and 1 <= stats.hedges <= calls * 0.1
    # (a hedge that lost before it was written never reached its server)
    assert calls <= ga.calls + gb.calls <= calls + stats.hedges


def test_hedge_stats_is_none_without_hedging(replicas: Any) -> None:
    (a, _), (b, _) = replicas(), replicas()
    with Client([a.url, b.url]) as plain, Client(a.url, idempotent=True) as one:
        assert plain.hedge_stats() is None and one.hedge_stats() is None
    with Client(idempotent=True, hedge=Hedge(delay=1.0)) as client:  # lists given per call
        client.execute(np.ones(1), url=[a.url, b.url])
        assert client.hedge_stats() is None  # bound to nothing
        assert client.hedge_stats([a.url, b.url]) == gp.HedgeStats(calls=1, hedges=0, won=0)
        assert client.hedge_stats([a.url]) is None  # one replica: never hedged


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_many_hedged_calls_at_once_keep_the_books(kind: str, replicas: Any) -> None:
    """Races everywhere: a zero delay and no budget limit hedge every call of a batched run;
    every answer is right, and every request is accounted for (none left in flight)."""
    (a, ga), (b, gb) = replicas(sleep=0.002), replicas(sleep=0.002)
    x = np.arange(200, dtype=np.float64).reshape(200, 1)
    options: dict[str, Any] = {"idempotent": True, "hedge": Hedge(delay=0.0, budget=1.0)}
    urls = [a.url, b.url]
    if kind == "sync":
        with Client(urls, **options) as client:
            y = client.execute_batched(x, batch_size=2, concurrency=8)
            # An abandoned hedge's thread reports it as it ends, just after the call.
            wait_for(lambda: all(r.in_flight == 0 for r in client.replicas), "in flight")
            stats, after = client.hedge_stats(), client.replicas
    else:

        async def main() -> Any:
            async with AsyncClient(urls, **options) as client:
                y = await client.execute_batched(x, batch_size=2, concurrency=8)
                return y, client.hedge_stats(), client.replicas  # (cancelled tasks awaited)

        y, stats, after = asyncio.run(main())
    assert np.array_equal(y, x + 1)
    assert stats is not None and stats.calls == 100 and stats.hedges >= 1
    assert [(r.in_flight, r.failed, r.ready) for r in after] == [(0, 0, True)] * 2
    assert sum(r.sent for r in after) == 100 + stats.hedges
    # (a hedge abandoned before it was written never reached its server)
    assert 100 <= ga.calls + gb.calls <= 100 + stats.hedges
