"""Several replicas behind one client: routing, ejection, probes, retries, statistics.

The routing decisions are tested on :class:`ReplicaSet` alone with a fake
clock; the behaviour end to end against real bundled servers on loopback
(killed and restarted on the same port, slow, answering 503), with both
clients, counting what each server received.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import AsyncClient, Client, ConnectError, ReplicaStats, Timeout, aio, remote
from graphpipe_client._replicas.routing import ReplicaSet
from graphpipe_client.testing import Faults, GraphPipeServer

# -- the routing decisions, sans I/O -------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fewest_in_flight_wins_and_ties_go_round_robin() -> None:
    rs = ReplicaSet(["http://a:1", "http://b:1", "http://c:1"], clock=FakeClock())
    assert [rs.choose(set()).index for _ in range(3)] == [0, 1, 2]  # all tied: in turn
    rs.finished(1, ok=True)
    assert rs.choose(set()).index == 1  # the only one with nothing in flight
    for i in (0, 1, 2):
        rs.finished(i, ok=True)
    picks = [rs.choose(set()).index for _ in range(3)]
    assert sorted(picks) == [0, 1, 2]
    assert [s.in_flight for s in rs.stats()] == [1, 1, 1]
    assert [s.sent for s in rs.stats()] == [2, 3, 2]


def test_a_call_prefers_a_replica_it_has_not_tried() -> None:
    rs = ReplicaSet(["http://a:1", "http://b:1"], clock=FakeClock())
    assert rs.choose({0}).index == 1
    assert rs.choose({0, 1}).index in (0, 1)  # every one tried: any is a candidate again


def test_ejection_backs_off_exponentially_with_jitter_and_a_cap() -> None:
    clock = FakeClock()
    rs = ReplicaSet(["http://a:1", "http://b:1"], backoff=1.0, backoff_max=4.0, clock=clock)
    assert rs.eject(0, "ConnectError: refused") is True
    assert rs.eject(0, "ConnectError: refused") is False  # already out: no second ejection
    periods = []
    for _ in range(5):
        until = rs.stats()[0].ejected_until
        assert until is not None
        periods.append(until - clock.now)
        clock.now = until  # back-off over: probed, and the probe fails
        c = rs.choose(set())
        assert c.probes == (0,) and c.index == 1
        rs.finished(1, ok=True)
        rs.probed(0, False, "HTTP 503")
    # ceilings 1, 2, 4, 4, 4, each jittered between half and all of it
    for period, ceiling in zip(periods, [1, 2, 4, 4, 4], strict=True):
        assert ceiling / 2 <= period <= ceiling
    assert rs.stats()[0].ejections == 1  # one ejection, extended by each failed probe
    assert rs.stats()[0].last_error == "not ready: HTTP 503"


def test_an_ejected_replica_gets_nothing_until_its_probe_succeeds() -> None:
    clock = FakeClock()
    rs = ReplicaSet(["http://a:1", "http://b:1"], clock=clock)
    assert rs.finished(rs.choose(set()).index, ok=False, error="HTTP 503") is True
    for _ in range(10):
        c = rs.choose(set())
        assert (c.action, c.index, c.probes) == ("send", 1, ())
        rs.finished(1, ok=True)
    clock.now += 60
    c = rs.choose(set())
    assert c.index == 1 and c.probes == (0,)  # the probe is claimed once
    rs.finished(1, ok=True)
    assert rs.choose(set()).probes == ()
    rs.finished(1, ok=True)
    rs.probed(0, True, "HTTP 200 OK")
    assert rs.stats()[0].ready and rs.stats()[0].ejected_until is None
    assert {rs.choose(set()).index, rs.choose(set()).index} == {0, 1}


def test_when_every_replica_is_out_the_call_probes_the_earliest_or_waits() -> None:
    clock = FakeClock()
    rs = ReplicaSet(["http://a:1", "http://b:1"], backoff=1.0, clock=clock)
    rs.eject(0, "refused")
    rs.eject(1, "refused")
    c = rs.choose(set())
    assert c.action == "wait" and 0.5 <= c.wait <= 1.0
    clock.now += 1.0
    c = rs.choose(set())
    assert c.action == "probe"
    other = rs.choose(set())
    assert (other.action, other.index) == ("probe", 1 - c.index)  # each probe claimed once
    assert rs.choose(set()).action == "wait"  # both probes under way: look again shortly
    rs.probed(c.index, True, "ok")
    c2 = rs.choose(set())
    assert (c2.action, c2.index) == ("send", c.index)


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ([], "non-empty list"),
        ("http://a:1 http://b:1", None),  # a str is one URL (and this one is invalid)
        (["http://a:1", "http://a:1"], "listed twice"),
        (["http://a:1", 5], "must be a str"),
        (["ftp://a"], "unsupported URL"),
    ],
)
def test_bad_replica_lists_are_refused_by_the_constructor(urls: Any, message: str | None) -> None:
    with pytest.raises(gp.InvalidOption, match=message):
        Client(urls)


def test_replica_stats_are_frozen_and_redacted() -> None:
    with Client(["http://user:secret@127.0.0.1:1", "http://127.0.0.1:2"]) as client:
        stats = client.replicas
        assert [s.url for s in stats] == ["http://***@127.0.0.1:1/", "http://127.0.0.1:2/"]
        assert "secret" not in repr(client) and "secret" not in repr(stats)
        assert client.url is None
        assert client.urls == ("http://user:secret@127.0.0.1:1", "http://127.0.0.1:2")
        with pytest.raises(AttributeError):
            stats[0].sent = 3  # type: ignore[misc]
    with Client("http://127.0.0.1:1") as one:
        assert one.replicas == [] and one.urls == ("http://127.0.0.1:1",)


# -- end to end, against bundled servers -----------------------------------------------


class Counted:
    """A model that records when each of its calls started (the server-side count)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.delay = delay

    def model(self) -> Callable[[np.ndarray], np.ndarray]:
        def model(x: np.ndarray) -> np.ndarray:
            with self.lock:
                self.times.append(time.monotonic())
            if self.delay:
                time.sleep(self.delay)
            return x * 2

        return model

    @property
    def calls(self) -> int:
        with self.lock:
            return len(self.times)


@pytest.fixture
def replicas() -> Iterator[Callable[..., tuple[GraphPipeServer, Counted]]]:
    servers: list[GraphPipeServer] = []

    def start(delay: float = 0.0, **kwargs: Any) -> tuple[GraphPipeServer, Counted]:
        counted = Counted(delay)
        server = GraphPipeServer(counted.model(), **kwargs).start()
        servers.append(server)
        return server, counted

    yield start
    for s in servers:
        s.stop()


def run_batched(
    kind: str, urls: list[str], x: np.ndarray, **kwargs: Any
) -> tuple[Any, list[ReplicaStats]]:
    """``execute_batched`` with a fresh client of ``kind``; its result and the replica stats."""
    options = {k: kwargs.pop(k) for k in ("retries", "idempotent", "timeout") if k in kwargs}
    if kind == "sync":
        with Client(urls, pool_size=8, **options) as client:
            return client.execute_batched(x, **kwargs), client.replicas

    async def main() -> tuple[Any, list[ReplicaStats]]:
        async with AsyncClient(urls, pool_size=8, **options) as client:
            return await client.execute_batched(x, **kwargs), client.replicas

    return asyncio.run(main())


def down(*servers: GraphPipeServer) -> list[socket.socket]:
    """Stop ``servers`` and hold their ports, bound but not listening: connections are
    refused, and no other process (the other CI lane's tests) can take a port before its
    server starts again on it (a call would then be answered by a stranger)."""
    held = []
    for server in servers:
        server.stop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))
        held.append(sock)
    return held


def up(held: list[socket.socket], *servers: GraphPipeServer) -> None:
    """Release the ports :func:`down` held and start the servers again on them."""
    for sock, server in zip(held, servers, strict=True):
        sock.close()
        server.start()


KINDS = ["sync", "async"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_load_splits_evenly_between_equal_replicas(kind: str, replicas: Any) -> None:
    (a, ca), (b, cb) = replicas(0.002), replicas(0.002)
    x = np.arange(200, dtype=np.float32)
    y, stats = run_batched(kind, [a.url, b.url], x, batch_size=1, concurrency=8)
    assert np.array_equal(y, x * 2)
    assert ca.calls + cb.calls == 200
    for counted, s in ((ca, stats[0]), (cb, stats[1])):
        assert 0.35 <= counted.calls / 200 <= 0.65, (ca.calls, cb.calls)
        assert s.sent == counted.calls and s.failed == 0 and s.ejections == 0
        assert s.in_flight == 0 and s.ready


@pytest.mark.parametrize("kind", KINDS)
def test_a_slow_replica_gets_fewer_requests(kind: str, replicas: Any) -> None:
    (a, ca), (b, cb) = replicas(0.001), replicas(0.0, faults=Faults(delay=0.05))
    x = np.arange(120, dtype=np.float32)
    y, stats = run_batched(kind, [a.url, b.url], x, batch_size=1, concurrency=8)
    assert np.array_equal(y, x * 2)
    assert cb.calls < ca.calls / 3, (ca.calls, cb.calls)
    assert stats[1].ejections == 0  # slow is not dead: it stays in rotation
    assert stats[0].sent + stats[1].sent == 120


@pytest.mark.parametrize("kind", KINDS)
def test_a_replica_answering_503_is_ejected_and_its_calls_succeed_elsewhere(
    kind: str, replicas: Any
) -> None:
    (a, ca), (b, cb) = replicas(0.001), replicas(faults=Faults(status=503, body="overloaded"))
    x = np.arange(100, dtype=np.float32)
    y, stats = run_batched(kind, [a.url, b.url], x, batch_size=1, concurrency=4)
    assert np.array_equal(y, x * 2)  # every call answered, by a
    assert ca.calls == 100 and cb.calls == 0
    assert stats[1].ejections >= 1 and stats[1].failed == stats[1].sent >= 1
    assert stats[1].last_error is not None and "503" in stats[1].last_error
    # Few requests reached b: those chosen before it was ejected, and after each probe.
    posts = b.requests_served
    assert stats[1].sent <= 8, stats
    assert posts >= stats[1].sent


@pytest.mark.parametrize("kind", KINDS)
def test_a_replica_killed_mid_run_then_restarted(kind: str, replicas: Any) -> None:
    """The run completes with the right answer; the dead replica gets nothing while ejected."""
    (a, _ca), (b, cb) = replicas(0.003), replicas(0.003)
    rows = 600
    x = np.arange(rows, dtype=np.float32).reshape(rows, 1)
    marks: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "stopped" not in marks and done >= total // 4:
            b.stop()  # requests in flight on b are cut off: idempotent=True re-sends them
            marks["stopped"] = time.monotonic()
            marks["calls_at_stop"] = cb.calls
        elif "started" not in marks and done >= total // 2:
            b.start()  # the same port; the client still has it out of rotation
            marks["started"] = time.monotonic()
            marks["stats_at_start"] = client_stats()

    holder: dict[str, Any] = {}

    def client_stats() -> list[ReplicaStats]:
        return holder["client"].replicas  # type: ignore[no-any-return]

    urls = [a.url, b.url]
    if kind == "sync":
        with Client(urls, pool_size=8, idempotent=True) as client:
            holder["client"] = client
            y = client.execute_batched(x, batch_size=2, concurrency=4, progress=progress)
            # Enough calls afterwards for the back-off to end and the probe to bring it back.
            deadline = time.monotonic() + 10
            while client.replicas[1].ejected_until is not None and time.monotonic() < deadline:
                client.execute(x[:2])
                time.sleep(0.01)
            for _ in range(20):
                client.execute(x[:2])
            stats = client.replicas
    else:

        async def main() -> tuple[Any, list[ReplicaStats]]:
            async with AsyncClient(urls, pool_size=8, idempotent=True) as client:
                holder["client"] = client
                y = await client.execute_batched(x, batch_size=2, concurrency=4, progress=progress)
                deadline = time.monotonic() + 10
                while client.replicas[1].ejected_until is not None and time.monotonic() < deadline:
                    await client.execute(x[:2])
                    await asyncio.sleep(0.01)
                for _ in range(20):
                    await client.execute(x[:2])
                return y, client.replicas

        y, stats = asyncio.run(main())
    assert np.array_equal(y, x * 2)
    at_start = marks["stats_at_start"][1]
    assert not at_start.ready and at_start.ejections >= 1, at_start
    assert at_start.last_error is not None and "ConnectError" in at_start.last_error
    back = at_start.ejected_until
    # While it was out of rotation (from its stop until its back-off ended), b ran nothing:
    after_stop = [t for t in cb.times if t > marks["stopped"]]
    assert all(t >= back for t in after_stop), (back, after_stop[:3])
    # ... and once the probe succeeded it got traffic again.
    assert stats[1].ready and len(after_stop) > 0
    assert stats[1].ejections >= 1 and stats[1].failed >= 1
    assert stats[0].ejections == 0 and stats[0].failed == 0


@pytest.mark.parametrize("kind", KINDS)
def test_what_a_replica_may_have_run_is_not_sent_again_by_default(kind: str, replicas: Any) -> None:
    """At most once: a connection dropped after the request went out is not retried elsewhere."""
    (a, ca), (b, _cb) = replicas(), replicas(faults=Faults(drop=True))
    x = np.arange(4, dtype=np.float32)

    def calls(**options: Any) -> list[type[BaseException] | None]:
        out: list[type[BaseException] | None] = []

        async def amain() -> None:
            async with AsyncClient([b.url, a.url], **options) as client:
                for _ in range(2):
                    try:
                        await client.execute(x)
                        out.append(None)
                    except gp.GraphPipeError as exc:
                        out.append(type(exc))

        if kind == "async":
            asyncio.run(amain())
        else:
            with Client([b.url, a.url], **options) as client:
                for _ in range(2):
                    try:
                        client.execute(x)
                        out.append(None)
                    except gp.GraphPipeError as exc:
                        out.append(type(exc))
        return out

    outcome = calls()
    assert outcome[0] is gp.TransportError  # b took it and dropped it: not re-sent
    assert ca.calls == outcome.count(None)
    before = ca.calls
    assert calls(idempotent=True) == [None, None]  # declared idempotent: re-sent to a
    assert ca.calls == before + 2


@pytest.mark.parametrize("kind", KINDS)
def test_every_replica_down_fails_fast_then_waits_for_the_earliest(
    kind: str, replicas: Any
) -> None:
    (a, _), (b, _) = replicas(), replicas()
    x = np.ones(2)
    held = down(a, b)

    async def amain(client: AsyncClient) -> None:
        with pytest.raises(ConnectError, match="past the call's deadline"):
            await client.execute(x, timeout=Timeout(total=1))
        with pytest.raises(ConnectError, match="every replica is out of rotation"):
            await client.execute(x)
        up(held, a, b)
        assert np.array_equal(await client.execute(x, timeout=Timeout(total=10)), x * 2)

    if kind == "sync":
        with Client([a.url, b.url], retries=2) as client:
            with pytest.raises(ConnectError, match="past the call's deadline"):
                # both refuse: both ejected; the call waits and probes until its deadline
                client.execute(x, timeout=Timeout(total=1))
            assert [s.ready for s in client.replicas] == [False, False]
            with pytest.raises(ConnectError, match="every replica is out of rotation"):
                client.execute(x)  # still down, and no deadline lets it wait that long
            up(held, a, b)
            # The call waits for the earliest back-off, probes, and is answered.
            assert np.array_equal(client.execute(x, timeout=Timeout(total=10)), x * 2)
    else:

        async def main() -> None:
            async with AsyncClient([a.url, b.url], retries=2) as client:
                await amain(client)

        asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_short_outage_of_every_replica_is_ridden_out_by_the_deadline_alone(
    kind: str, replicas: Any
) -> None:
    """Both replicas down for 1.5 s; a call with a 20 s deadline and the default 2 retries
    waits for them (its waits and probes spend no retries) and is answered."""
    (a, ca), (b, cb) = replicas(), replicas()
    x = np.ones(2)
    held = down(a, b)
    back = threading.Timer(1.5, lambda: up(held, a, b))

    async def acall() -> Any:
        async with AsyncClient([a.url, b.url]) as client:
            return await client.execute(x, timeout=Timeout(total=20))

    back.start()
    try:
        if kind == "sync":
            with Client([a.url, b.url]) as client:
                y = client.execute(x, timeout=Timeout(total=20))
        else:
            y = asyncio.run(acall())
    finally:
        back.join()
    assert np.array_equal(y, x * 2)
    assert ca.calls + cb.calls == 1


def test_readiness_and_metadata_of_a_replica_set(replicas: Any) -> None:
    (a, _), (b, _) = replicas(), replicas()
    with Client([a.url, b.url]) as client:
        assert client.is_ready() and client.is_alive()
        assert client.metadata().name == "model"
        b.stop()
        assert client.is_ready()  # one replica is enough
        a.stop()
        assert not client.is_ready()
        with pytest.raises(gp.TimeoutError, match="was not ready"):
            client.wait_until_ready(timeout=0.3)
        b.start()
        client.wait_until_ready(timeout=5)
        assert client.replicas[1].ready


def test_remote_and_aio_take_a_list_of_urls(replicas: Any) -> None:
    (a, ca), (b, cb) = replicas(), replicas()
    urls = [a.url, b.url]
    x = np.arange(3.0)
    for _ in range(4):
        assert np.array_equal(remote.execute(urls, x), x * 2)
    assert np.array_equal(
        remote.execute_batched(urls, np.zeros((8, 1)), batch_size=2), np.zeros((8, 1))
    )
    stats = remote.shared_client().replica_stats(urls)
    assert sum(s.sent for s in stats) == 8 and all(s.sent >= 2 for s in stats)

    async def main() -> None:
        for _ in range(4):
            assert np.array_equal(await aio.execute(urls, x), x * 2)
        assert aio.shared_client().replica_stats(urls)[0].sent == 2

    asyncio.run(main())
    assert ca.calls + cb.calls == 12


def test_aclose_waits_for_the_background_probes(replicas: Any) -> None:
    from graphpipe_client._replicas import attempts as _replica_io

    (a, _), (b, _) = replicas(), replicas()
    b.stop()

    async def main() -> None:
        client = AsyncClient([a.url, b.url], retries=2)
        rs = client._replica_sets[ReplicaSet.key_of(client.urls)]
        rs.backoff = 0.01
        for _ in range(3):
            await client.execute(np.ones(2))  # b refuses: ejected for ~10 ms
        await asyncio.sleep(0.03)
        await client.execute(np.ones(2))  # b's back-off is over: probed in a task
        await client.aclose()
        assert not any(c is client for c in _replica_io._TASKS.values())
        assert not rs.stats()[1].ready  # the probe failed or was cancelled: still out

    asyncio.run(main())
