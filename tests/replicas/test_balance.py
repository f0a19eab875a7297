"""Latency-aware replica choice (``balance="latency"``, the default) against ``"in-flight"``.

The decisions on :class:`ReplicaSet` alone with a fake clock (latencies are
given, time is advanced by hand); then end to end against real bundled
servers, one of them slowed with :class:`Faults`, counting what each got.
Nothing here depends on timing but the ratio of a slowed replica's latency
to a normal one's (50 ms or more against about 1 ms).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from aio_modes import run_in
from graphpipe_client import AsyncClient, Client, Hedge, InvalidOption, ReplicaStats, Timeout
from graphpipe_client._replicas.balance import DECAY, SLACK, WEIGHT, Latency, pick
from graphpipe_client._replicas.routing import ReplicaSet
from graphpipe_client.testing import Faults, GraphPipeServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def calls(rs: ReplicaSet, clock: FakeClock, n: int, latency: Callable[[int], float]) -> list[int]:
    """``n`` calls one after another, each answered in ``latency(replica)``; where each went."""
    picks = []
    for _ in range(n):
        i = rs.choose(set()).index
        clock.now += latency(i)
        rs.observe(i, latency(i))
        rs.finished(i, ok=True)
        picks.append(i)
    return picks


def two(balance: str = "latency") -> tuple[ReplicaSet, FakeClock]:
    clock = FakeClock()
    return ReplicaSet(["http://a:1", "http://b:1"], balance=balance, clock=clock), clock


# -- the decisions, sans I/O ----------------------------------------------------------


def test_the_estimate_averages_answers_and_decays_without_them() -> None:
    est = Latency()
    assert est.at(0.0) is None
    est.observe(0.010, now=0.0)
    assert est.at(0.0) == 0.010  # the first answer is the estimate
    est.observe(0.110, now=0.0)
    assert est.at(0.0) == pytest.approx(0.010 + WEIGHT * 0.100)
    assert est.at(DECAY) == pytest.approx(est.at(0.0) / math.e)  # type: ignore[operator]
    before = est.at(DECAY)
    est.observe(0.001, now=DECAY, at_least=True)  # a lower bound below it: nothing learnt
    assert est.at(DECAY) == before
    est.observe(0.500, now=DECAY, at_least=True)  # given up after 500 ms: at least that
    assert est.at(DECAY) == 0.500
    est.observe(float("nan"), now=DECAY)
    assert est.at(DECAY) == 0.500
    est.forget()
    assert est.at(DECAY) is None


def test_a_replica_with_a_higher_latency_is_chosen_less_often() -> None:
    rs, clock = two()
    # Replica 0 answers in 50 ms, 1 in 10 ms, one call after another: after one call
    # each, 0 is five times slower and every call goes to 1.
    picks = calls(rs, clock, 200, lambda i: 0.050 if i == 0 else 0.010)
    assert picks[:2] == [0, 1]
    assert picks[2:].count(0) == 0
    a, b = rs.stats()
    assert a.latency is not None and b.latency is not None and a.latency > 4 * b.latency
    # The same under "in-flight": every call a tie, in turn.
    rs, clock = two("in-flight")
    picks = calls(rs, clock, 200, lambda i: 0.050 if i == 0 else 0.010)
    assert picks.count(0) == picks.count(1) == 100
    assert [s.latency for s in rs.stats()] == [None, None]


def test_equal_replicas_are_chosen_as_by_fewest_in_flight() -> None:
    # Within SLACK of each other, latencies do not matter: fewest in flight, ties in turn.
    for latency in (0.010, 0.010 * SLACK * 0.95):
        rs, clock = two()
        picks = calls(rs, clock, 100, lambda i, s=latency: s if i == 0 else 0.010)
        assert picks == [0, 1] * 50, latency
    rs = ReplicaSet(["http://a:1", "http://b:1", "http://c:1"], clock=FakeClock())
    for i in range(3):
        rs.observe(i, 0.010)
    assert [rs.choose(set()).index for _ in range(3)] == [0, 1, 2]
    rs.finished(1, ok=True)
    assert rs.choose(set()).index == 1  # the only one with nothing in flight


def test_a_slow_replica_still_serves_when_the_fast_one_is_busy() -> None:
    rs, _ = two()
    rs.observe(0, 0.080)
    rs.observe(1, 0.010)
    # cost = estimate x (in flight + 1): 1 takes calls until it holds 5 (cost 60 ms,
    # within SLACK of 0's 80 ms), then 0 gets one.
    picks = [rs.choose(set()).index for _ in range(10)]
    assert picks[:6] == [1, 1, 1, 1, 1, 0]
    # A hedge goes to the other replica whatever it costs.
    assert rs.choose_other(1) == 0


def test_a_recovered_replica_gets_traffic_back_and_none_is_starved() -> None:
    for slow in (0.050, 0.500, 30.0):
        rs, clock = two()
        latency = {0: slow, 1: 0.010}
        picks = calls(rs, clock, 2, latency.__getitem__)
        assert picks == [0, 1]
        start = clock.now
        # Replica 0's estimate decays while 1 serves; it is tried again within
        # DECAY * ln(ratio / SLACK) seconds (the replica itself recovered meanwhile).
        latency[0] = 0.010
        while (i := calls(rs, clock, 1, latency.__getitem__)[0]) == 1:
            assert clock.now - start < DECAY * math.log(slow / 0.010 / SLACK) + 1, slow
        assert i == 0
        # Back at its normal latency, it gets its share again (in turn).
        picks = calls(rs, clock, 100, latency.__getitem__)
        assert 40 <= picks.count(0) <= 60, (slow, picks.count(0))


def test_a_lost_hedge_race_and_a_timeout_raise_the_estimate() -> None:
    from graphpipe_client import ReadTimeout, TransportError
    from graphpipe_client._http.exchange import RawResponse

    rs, _ = two()
    rs.observe(0, 0.010)
    rs.observe(1, 0.010)
    rs.observe_outcome(0, 0.080, TransportError("abandoned: the hedge answered first"))
    assert rs.stats()[0].latency == pytest.approx(0.080)  # at least 80 ms, at once
    rs.observe_outcome(1, 2.0, ReadTimeout("no answer in 2 s"))
    assert rs.stats()[1].latency == pytest.approx(2.0)
    # A 503 ejects: it is no latency.
    raw = RawResponse(503, "Service Unavailable", None, b"")
    rs.observe_outcome(0, 5.0, raw)
    assert rs.stats()[0].latency == pytest.approx(0.080)


def test_a_replica_back_in_rotation_counts_as_the_mean_of_the_others() -> None:
    clock = FakeClock()
    rs = ReplicaSet(["http://a:1", "http://b:1", "http://c:1"], clock=clock)
    rs.observe(0, 0.010)
    rs.observe(1, 0.030)
    rs.observe(2, 5.0)  # very slow, then ejected
    rs.eject(2, "HTTP 503")
    clock.now += 10
    assert rs.choose(set()).action == "send"  # claims the probe of 2
    rs.finished(0, ok=True)
    rs.probed(2, True, "ready")
    assert rs.stats()[2].latency is None  # its past latency is forgotten
    # Unknown: as the mean of the others (20 ms), neither starved nor flooded.
    assert pick([(0, 0, 0.010), (2, 0, None)], start=0, n=3) == 0
    assert pick([(0, 1, 0.010), (2, 0, None)], start=0, n=3) == 2
    assert pick([(0, 0, None), (1, 0, None)], start=1, n=2) == 1  # none known: in turn


def test_threads_choosing_and_reporting_at_once_keep_the_books() -> None:
    rs = ReplicaSet(["http://a:1", "http://b:1", "http://c:1"])

    def work(seed: int) -> None:
        for n in range(2000):
            i = rs.choose(set()).index
            rs.observe(i, 0.001 * (1 + (seed + n + i) % 7))
            rs.finished(i, ok=True)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = rs.stats()
    assert [s.in_flight for s in stats] == [0, 0, 0]
    assert sum(s.sent for s in stats) == 16000
    assert all(s.latency is not None and 0 < s.latency <= 0.007 for s in stats)


def test_balance_is_checked_at_construction() -> None:
    urls = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    for cls in (Client, AsyncClient):
        with pytest.raises(InvalidOption, match=r'"latency".*"in-flight"'):
            cls(urls, balance="fastest")
    with pytest.raises(InvalidOption, match="balance"):
        ReplicaSet(urls, balance="round-robin")


# -- end to end, against bundled servers -----------------------------------------------


@pytest.fixture
def servers() -> Iterator[Callable[..., GraphPipeServer]]:
    started: list[GraphPipeServer] = []

    def start(**kwargs: Any) -> GraphPipeServer:
        server = GraphPipeServer(lambda x: x + 1, **kwargs).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def sequential(kind: str, urls: list[str], n: int, **options: Any) -> list[ReplicaStats]:
    """``n`` calls one after another with a fresh client of ``kind``; its replica stats."""
    x = np.arange(3.0)
    timeout = Timeout(total=15)
    if kind == "sync":
        with Client(urls, **options) as client:
            for _ in range(n):
                assert np.array_equal(client.execute(x, timeout=timeout), x + 1)
            return client.replicas

    async def main() -> list[ReplicaStats]:
        async with AsyncClient(urls, **options) as client:
            for _ in range(n):
                assert np.array_equal(await client.execute(x, timeout=timeout), x + 1)
            return client.replicas

    return run_in(kind, main)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_one_call_after_another_avoids_the_slow_replica(kind: str, servers: Any) -> None:
    slow, fast = servers(faults=Faults(delay=0.05)), servers()
    urls = [slow.url, fast.url]
    a, b = sequential(kind, urls, 40)
    # The slow one answered its first call in 50 ms or more, the fast one in about 1 ms:
    # it gets a call again only when its estimate has decayed (seconds), or when the fast
    # one seems more than 30 times slower than usual.
    assert a.sent <= 4 and a.sent + b.sent == 40, (a.sent, b.sent)
    assert a.latency is not None and b.latency is not None and a.latency >= 0.05 > b.latency
    assert a.ready and b.ready and a.failed == b.failed == 0
    # Fewest in flight alone: every call a tie, in turn.
    a, b = sequential(kind, urls, 40, balance="in-flight")
    assert (a.sent, b.sent) == (20, 20)


@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_a_hedge_that_rescues_a_call_does_not_hide_the_stall(kind: str, servers: Any) -> None:
    stalling, fast = servers(faults=Faults(delay=1.0)), servers()
    urls = [stalling.url, fast.url]
    hedge = Hedge(delay=0.05, budget=1.0)
    # The first call goes to the stalling replica, its hedge to the other after 50 ms and
    # wins; the lost copy, given up after 50 ms or more, counts as at least that: the
    # next calls go to the other replica, not hedged.
    a, b = sequential(kind, urls, 10, idempotent=True, hedge=hedge)
    assert a.sent == 1 and b.sent == 10, (a.sent, b.sent)
    assert a.latency is not None and a.latency >= 0.05
    # Fewest in flight alone: the stalling replica gets every other call, each hedged.
    a, b = sequential(kind, urls, 10, idempotent=True, hedge=hedge, balance="in-flight")
    assert a.sent == 5 and b.sent == 10, (a.sent, b.sent)
