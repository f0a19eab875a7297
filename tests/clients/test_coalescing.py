"""Coalescing on real sockets: many callers, one request; never a wrong answer, never another's rows.

Each caller sends rows of its own distinct values and checks that it gets
exactly its rows back, with threads on ``Client`` and tasks on
``AsyncClient``: plain, with replicas, with the row cache, with a model that
fails on some values (bisected when idempotent), with deadlines and
cancellation storms, and with a server that fails some requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from aio_modes import run_in
from graphpipe_client import (
    AsyncClient,
    Client,
    Coalesce,
    DeadlineExceeded,
    HTTPStatusError,
    InvalidOption,
    RemoteError,
    RowCache,
    Timeout,
)
from graphpipe_client.testing import GraphPipeServer, serve

POISON = -1.0  # a row holding this value makes the model fail


class Recorder:
    """A model that doubles its input and records the row count of every request it gets."""

    def __init__(self, fn: Callable[[np.ndarray], Any] | None = None) -> None:
        self.fn = fn or (lambda x: x * 2)
        self.lock = threading.Lock()
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> Any:
        with self.lock:
            self.sizes.append(int(x.shape[0]) if x.ndim else -1)
        if (x == POISON).any():
            raise ValueError("poisoned row")
        return self.fn(x)


@pytest.fixture
def doubler() -> Iterator[tuple[GraphPipeServer, Recorder]]:
    model = Recorder()
    with serve(model) as server:
        yield server, model


def rows_of(i: int, n: int = 1) -> np.ndarray:
    """Caller ``i``'s ``n`` rows: values no other caller sends."""
    return (np.arange(n * 3, dtype=np.float32).reshape(n, 3) + 1000 * i).astype(np.float32)


def threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """``fn(i)`` for i in range(n) on n threads started together; results or exceptions."""
    barrier = threading.Barrier(n)

    def one(i: int) -> Any:
        barrier.wait()
        try:
            return fn(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


# -- Client (threads) ----------------------------------------------------------------


def test_many_callers_get_exactly_their_rows(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler
    sizes = [1 + i % 3 for i in range(48)]
    with Client(server.url, coalesce=Coalesce(max_rows=16, max_wait=0.05)) as client:

        def call(i: int) -> bool:
            ok = True
            for k in range(5):
                x = rows_of(i * 10 + k, sizes[i])
                y = client.execute(x)
                ok &= isinstance(y, np.ndarray) and y.shape == x.shape and bool((y == 2 * x).all())
            return ok

        assert all(r is True for r in threads(48, call))
    assert max(model.sizes) <= 16
    assert len(model.sizes) < 48 * 5 / 2  # merged: far fewer requests than calls
    assert sum(model.sizes) == 5 * sum(sizes)  # every row sent exactly once


def test_a_full_batch_is_one_request(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=8, max_wait=30, eager=False)) as client:
        ys = threads(8, lambda i: client.execute(rows_of(i)))
    assert model.sizes == [8]  # full: sent at once, without waiting 30 s
    for i, y in enumerate(ys):
        assert (y == 2 * rows_of(i)).all()


def test_calls_that_differ_are_not_merged(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=64, max_wait=0.05)) as client:

        def call(i: int) -> bool:
            width = 2 + i % 2
            x = np.full((1, width), i, np.float64 if i % 4 < 2 else np.float32)
            y = client.execute(x, config="a" if i % 8 < 4 else "b")
            return y.dtype == x.dtype and y.shape == x.shape and bool((y == 2 * x).all())

        assert all(r is True for r in threads(16, call))
    assert len(model.sizes) >= 8  # 8 kinds of call: at least one request each


def test_a_model_that_is_not_row_wise_is_sent_each_call_alone() -> None:
    model = Recorder(lambda x: x.sum(axis=0, keepdims=True))  # one row whatever the rows
    with (
        serve(model) as server,
        Client(server.url, coalesce=Coalesce(max_rows=8, max_wait=30, eager=False)) as client,
    ):
        ys = threads(4, lambda i: client.execute(rows_of(i, 2)))
        for i, y in enumerate(ys):
            assert y.shape == (1, 3) and (y == rows_of(i, 2).sum(axis=0)).all()
        assert model.sizes[0] == 8  # the merged request, answered with one row: not row-wise
        assert sorted(model.sizes[1:]) == [2, 2, 2, 2]  # then each call alone
        # Remembered: such calls go alone at once from now on.
        before = len(model.sizes)
        y = client.execute(rows_of(9, 2))
        assert (y == rows_of(9, 2).sum(axis=0)).all() and model.sizes[before:] == [2]


def test_a_failed_batch_gives_every_caller_the_same_error(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=8, max_wait=30, eager=False)) as client:
        out = threads(8, lambda i: client.execute(np.full((1, 3), POISON if i == 3 else float(i))))
    assert model.sizes == [8]
    assert all(isinstance(e, HTTPStatusError) for e in out)
    assert len({(type(e), str(e), e.status_code) for e in out}) == 1
    assert len({id(e) for e in out}) == 8  # each caller raises its own copy


@pytest.mark.parametrize("as_response", [False, True], ids=["http-400", "remote-error"])
def test_idempotent_bisects_a_model_error_to_the_failing_callers(as_response: bool) -> None:
    model = Recorder()
    poisoned = {2, 11}
    with (
        serve(model, errors_as_response=as_response) as server,
        Client(
            server.url, idempotent=True, coalesce=Coalesce(max_rows=16, max_wait=30, eager=False)
        ) as client,
    ):
        out = threads(
            16,
            lambda i: client.execute(np.full((1, 3), POISON if i in poisoned else float(i))),
        )
    error = RemoteError if as_response else HTTPStatusError
    for i, y in enumerate(out):
        if i in poisoned:
            assert isinstance(y, error), y
        else:
            assert isinstance(y, np.ndarray) and (y == 2 * i).all(), y
    assert model.sizes[0] == 16 and len(model.sizes) <= 1 + 2 * 2 * 4  # O(k log n) requests


def test_without_idempotent_nothing_is_sent_again(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=4, max_wait=30, eager=False)) as client:
        out = threads(4, lambda i: client.execute(np.full((1, 3), POISON if i == 0 else float(i))))
    assert all(isinstance(e, HTTPStatusError) for e in out)
    assert model.sizes == [4]


def test_a_server_that_fails_some_requests_never_gives_a_wrong_answer(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, _ = doubler
    server.set_faults(status=500, body="overloaded", times=3)
    with Client(server.url, retries=0, coalesce=Coalesce(max_rows=8, max_wait=0.01)) as client:

        def call(i: int) -> int:
            failed = 0
            for k in range(6):
                x = rows_of(i * 10 + k)
                try:
                    y = client.execute(x)
                except HTTPStatusError as exc:
                    failed += 1 if exc.status_code == 500 else 1000
                else:
                    assert (y == 2 * x).all()
            return failed

        failures = threads(24, call)
    assert all(isinstance(f, int) for f in failures), failures
    assert (
        3 <= sum(failures) <= 3 * 8
    )  # (a status other than 500 would count 1000)  # three failed requests, each of up to 8 callers


def test_each_callers_deadline_applies_to_it_alone(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, _ = doubler
    server.set_faults(delay=1.0)
    with Client(server.url, coalesce=Coalesce(max_rows=4, max_wait=30, eager=False)) as client:

        def call(i: int) -> Any:
            t = Timeout(total=0.2) if i == 0 else Timeout(total=20) if i == 1 else Timeout()
            return client.execute(rows_of(i), timeout=t)

        out = threads(4, call)
    assert isinstance(out[0], DeadlineExceeded)  # alone, its own deadline
    for i in (1, 2, 3):
        assert (out[i] == 2 * rows_of(i)).all()


def test_a_caller_whose_deadline_passes_leaves_a_batch_not_yet_sent(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=64, max_wait=0.5, eager=False)) as client:

        def call(i: int) -> Any:
            if i == 0:  # the oldest: its leaving hands the batch's timer to the next
                return client.execute(rows_of(i), timeout=Timeout(total=0.05))
            threading.Event().wait(0.01)
            return client.execute(rows_of(i))

        out = threads(3, call)
    assert isinstance(out[0], DeadlineExceeded)
    assert (out[1] == 2 * rows_of(1)).all() and (out[2] == 2 * rows_of(2)).all()
    assert model.sizes == [2]  # the rows of the caller that left were not sent


def test_named_and_multi_calls_merge_too() -> None:
    model = Recorder()

    def two(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        with model.lock:
            model.sizes.append(len(a))
        return [a + b, a - b]

    with (
        serve(two) as server,
        Client(server.url, coalesce=Coalesce(max_rows=8, max_wait=30, eager=False)) as client,
    ):

        def named(i: int) -> bool:
            a, b = rows_of(i), rows_of(i + 100)
            out = client.execute_named({"input0": a, "input1": b}, ["output0", "output1"])
            return bool((out["output0"] == a + b).all() and (out["output1"] == a - b).all())

        assert all(r is True for r in threads(8, named))

        def multi(i: int) -> bool:
            a, b = rows_of(i, 2), rows_of(i + 50, 2)
            s, d = client.execute_multi([a, b])
            return bool((s == a + b).all() and (d == a - b).all())

        assert all(r is True for r in threads(4, multi))
    assert model.sizes == [8, 8]


def test_with_replicas_and_the_row_cache() -> None:
    ma, mb = Recorder(), Recorder()
    cache = RowCache()
    with serve(ma) as a, serve(mb) as b:
        with Client(
            [a.url, b.url], cache=cache, coalesce=Coalesce(max_rows=8, max_wait=0.02)
        ) as client:

            def call(i: int) -> bool:
                ok = True
                for k in range(8):
                    x = rows_of((i + k) % 20)  # values repeat: the cache serves some
                    ok &= bool((client.execute(x) == 2 * x).all())
                return ok

            assert all(r is True for r in threads(16, call))
            hits = cache.stats.hits
            assert (client.execute(rows_of(7)) == 2 * rows_of(7)).all()
            assert cache.stats.hits == hits + 1  # served from the cache
        assert ma.sizes and mb.sizes, (ma.sizes, mb.sizes)  # both replicas served requests
        assert sum(ma.sizes) + sum(mb.sizes) <= 16 * 8


def test_batched_calls_are_left_as_they_are(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    server, model = doubler
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    with Client(server.url, coalesce=Coalesce(max_rows=64, max_wait=30)) as client:
        assert (client.execute_batched(x, batch_size=4) == 2 * x).all()
        assert client.coalesce == Coalesce(max_rows=64, max_wait=30)
    assert sorted(model.sizes) == [2, 4, 4]  # no wait of 30 s, no merging


def test_calls_that_cannot_merge_go_alone_at_once(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=2, max_wait=30)) as client:
        big = rows_of(1, 3)  # more rows than max_rows
        assert (client.execute(big) == 2 * big).all()
        assert client.execute(np.float32(4.0)) == 8.0  # a scalar
        with pytest.raises(Exception, match="bool"):  # not encodable: the error of the call alone
            client.execute(np.zeros((1, 2), dtype=bool))
    assert model.sizes == [3, -1]


HOLD = -7.0  # a request holding this value is held by the server until released


def held_until(release: threading.Event) -> Recorder:
    """A doubler that holds any request with a :data:`HOLD` row until ``release`` is set."""

    def fn(x: np.ndarray) -> np.ndarray:
        if (x == HOLD).any():
            release.wait(20)
        return x * 2

    return Recorder(fn)


def until(cond: Callable[[], bool], what: str, seconds: float = 10) -> None:
    """Poll ``cond`` (no timing is asserted: a bound against a hang)."""
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"never: {what}")
        time.sleep(0.005)


def test_a_lone_call_goes_out_at_once(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    """Idle: no waiting for company (max_wait 5 s, each call's deadline 2 s)."""
    server, model = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=64, max_wait=5)) as client:
        for i in range(3):
            y = client.execute(rows_of(i), timeout=Timeout(total=2))
            assert (y == 2 * rows_of(i)).all()
    assert model.sizes == [1, 1, 1]


def test_not_eager_a_lone_call_waits_max_wait(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    server, model = doubler
    with (
        Client(server.url, coalesce=Coalesce(max_rows=64, max_wait=5, eager=False)) as client,
        pytest.raises(DeadlineExceeded),
    ):
        client.execute(rows_of(1), timeout=Timeout(total=0.2))
    assert model.sizes == []  # it left its batch before it went out


def test_calls_arriving_while_a_request_is_out_wait_and_merge() -> None:
    release = threading.Event()
    model = held_until(release)
    with (
        serve(model) as server,
        Client(server.url, coalesce=Coalesce(max_rows=6, max_wait=30)) as client,
        ThreadPoolExecutor(7) as pool,
    ):
        try:
            first = pool.submit(client.execute, np.full((1, 3), HOLD, np.float32))
            until(lambda: model.sizes == [1], "the first call went out alone")
            rest = [pool.submit(client.execute, rows_of(i)) for i in range(6)]
            until(lambda: len(model.sizes) == 2, "the six calls went out")
            assert model.sizes == [1, 6]  # they waited behind the first, merged, full
        finally:
            release.set()
        assert (first.result(10) == 2 * HOLD).all()
        for i, f in enumerate(rest):
            assert (f.result(10) == 2 * rows_of(i)).all()


def test_threads_whose_calls_were_merged_stay_together() -> None:
    """After a merged answer its callers call again at once: the first of them waits too."""
    release = threading.Event()
    model = held_until(release)
    with (
        serve(model) as server,
        Client(server.url, coalesce=Coalesce(max_rows=3, max_wait=30)) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        again = threading.Barrier(4)

        def call(i: int) -> bool:
            a = client.execute(rows_of(i))
            again.wait(10)
            b = client.execute(rows_of(i + 10), timeout=Timeout(total=5))
            return bool((a == 2 * rows_of(i)).all() and (b == 2 * rows_of(i + 10)).all())

        try:
            first = pool.submit(client.execute, np.full((1, 3), HOLD, np.float32))
            until(lambda: model.sizes == [1], "the first call went out alone")
            calls = [pool.submit(call, i) for i in range(3)]
            until(lambda: model.sizes == [1, 3], "the three calls went out merged")
        finally:
            release.set()
        first.result(10)  # nothing is in flight any more
        again.wait(10)  # the three call again now
        assert all(f.result(10) for f in calls)
    assert model.sizes == [1, 3, 3]


def test_a_bad_coalesce_option_is_refused() -> None:
    with pytest.raises(InvalidOption, match="coalesce must be a Coalesce"):
        Client("http://127.0.0.1:9", coalesce=64)  # type: ignore[arg-type]
    with Client("http://127.0.0.1:9") as client:
        assert client.coalesce is None


# -- AsyncClient (tasks) ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["asyncio", "httpx"])
def test_async_many_tasks_get_exactly_their_rows(
    doubler: tuple[GraphPipeServer, Recorder], mode: str
) -> None:
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=16, max_wait=0.01)) as c:

            async def call(i: int) -> bool:
                ok = True
                for k in range(4):
                    x = rows_of(i * 10 + k, 1 + i % 3)
                    y = await c.execute(x)
                    ok &= bool((y == 2 * x).all())
                return ok

            assert all(await asyncio.gather(*(call(i) for i in range(64))))

    run_in(mode, main)
    assert max(model.sizes) <= 16 and len(model.sizes) < 64 * 4 / 2


@pytest.mark.parametrize("mode", ["asyncio", "httpx"])
def test_async_a_lone_call_goes_out_at_once(
    doubler: tuple[GraphPipeServer, Recorder], mode: str
) -> None:
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=64, max_wait=5)) as c:
            for i in range(3):
                y = await c.execute(rows_of(i), timeout=Timeout(total=2))
                assert (y == 2 * rows_of(i)).all()

    run_in(mode, main)
    assert model.sizes == [1, 1, 1]


def test_async_calls_arriving_while_a_request_is_out_wait_and_merge() -> None:
    release = threading.Event()
    model = held_until(release)

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=6, max_wait=30)) as c:
            first = asyncio.create_task(c.execute(np.full((1, 3), HOLD, np.float32)))
            try:
                for _ in range(1000):
                    if model.sizes == [1]:
                        break
                    await asyncio.sleep(0.01)
                assert model.sizes == [1]  # idle: out alone at once
                rest = []
                for i in range(6):  # one by one, each in a turn of the loop of its own
                    rest.append(asyncio.create_task(c.execute(rows_of(i))))
                    await asyncio.sleep(0.001)
                ys = await asyncio.wait_for(asyncio.gather(*rest), 10)
                assert model.sizes == [1, 6]  # they waited behind the first, merged, full
                for i, y in enumerate(ys):
                    assert (y == 2 * rows_of(i)).all()
            finally:
                release.set()
            assert (await asyncio.wait_for(first, 10) == 2 * HOLD).all()

    with serve(model) as server:
        run_in("asyncio", main)


def test_async_a_burst_of_tasks_from_idle_is_one_request(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    """Tasks that call in the same turn of the loop merge, though the model was idle."""
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=8, max_wait=30)) as c:
            for base in (0, 100):  # then again, after a quiet moment
                ys = await asyncio.wait_for(
                    asyncio.gather(*(c.execute(rows_of(base + i)) for i in range(8))), 10
                )
                for i, y in enumerate(ys):
                    assert (y == 2 * rows_of(base + i)).all()

    run_in("asyncio", main)
    assert model.sizes == [8, 8]


def test_async_tasks_whose_calls_were_merged_stay_together(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    """After a merged answer, callers that call again in turns of their own still merge."""
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=4, max_wait=30)) as c:

            async def call(i: int) -> bool:
                ok = True
                for k in range(3):  # together first (one turn), then each in a turn of its own
                    for _ in range(i if k else 0):
                        await asyncio.sleep(0)
                    x = rows_of(10 * i + k)
                    ok &= bool((await c.execute(x, timeout=Timeout(total=5)) == 2 * x).all())
                return ok

            assert all(await asyncio.gather(*(call(i) for i in range(4))))

    run_in("asyncio", main)
    assert model.sizes == [4, 4, 4]


def test_async_under_trio_sends_each_call_alone(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=16, max_wait=30)) as c:
            y = await c.execute(rows_of(3))
            assert (y == 2 * rows_of(3)).all()

    run_in("trio", main)
    assert model.sizes == [1]


def test_async_cancellation_storm(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    server, model = doubler
    server.set_faults(delay=0.02)
    rng = random.Random(23)

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=64, max_wait=0.05)) as c:
            for _ in range(3):
                tasks = [asyncio.create_task(c.execute(rows_of(i))) for i in range(120)]
                await asyncio.sleep(0)
                doomed = rng.sample(range(120), 60)
                for j, i in enumerate(doomed):
                    if j % 3 == 0:
                        await asyncio.sleep(rng.random() * 0.03)
                    tasks[i].cancel()
                done = await asyncio.gather(*tasks, return_exceptions=True)
                for i, y in enumerate(done):
                    if isinstance(y, asyncio.CancelledError):
                        assert i in doomed
                    else:
                        assert isinstance(y, np.ndarray) and (y == 2 * rows_of(i)).all(), y
            coalescer = c._coalescer
            assert coalescer is not None
            assert not coalescer._open  # no batch left behind
            await asyncio.sleep(0.1)
            assert not coalescer._tasks

    run_in("asyncio", main)
    assert sum(model.sizes) < 3 * 120  # some cancelled rows never went out


def test_async_all_callers_gone_cancels_the_request(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, _ = doubler
    server.set_faults(delay=5)

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=4, max_wait=30)) as c:
            tasks = [asyncio.create_task(c.execute(rows_of(i))) for i in range(4)]
            await asyncio.sleep(0.2)  # full: sent, the server sleeps
            coalescer = c._coalescer
            assert coalescer is not None and len(coalescer._tasks) == 1
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert not coalescer._tasks  # nobody left to answer: the request was cancelled

    run_in("asyncio", main)


def test_async_bisects_and_deadlines(doubler: tuple[GraphPipeServer, Recorder]) -> None:
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(
            server.url, idempotent=True, coalesce=Coalesce(max_rows=8, max_wait=30, eager=False)
        ) as c:
            out = await asyncio.gather(
                *(c.execute(np.full((1, 2), POISON if i == 5 else float(i))) for i in range(8)),
                return_exceptions=True,
            )
            for i, y in enumerate(out):
                if i == 5:
                    assert isinstance(y, HTTPStatusError)
                else:
                    assert isinstance(y, np.ndarray) and (y == 2 * i).all()
            # A deadline passes while its batch waits: it leaves; the other is sent alone later.
            short = c.execute(rows_of(1), timeout=Timeout(total=0.05))
            other = c.execute(rows_of(2))
            c2 = asyncio.gather(short, other, return_exceptions=True)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.shield(c2), 0.5)  # max_wait is 30 s
            coalescer = c._coalescer
            assert coalescer is not None
            (b,) = coalescer._open.values()
            assert b.rows == 1  # the expired caller's row left the batch
            b.timer.cancel()  # type: ignore[attr-defined]
            coalescer._close(b)  # type: ignore[arg-type]
            s, o = await c2
            assert isinstance(s, DeadlineExceeded)
            assert (o == 2 * rows_of(2)).all()  # type: ignore[operator]

    run_in("asyncio", main)
    assert model.sizes[0] == 8


def test_storm_of_threads_with_poison_deadlines_and_shapes() -> None:
    """Mixed shapes, random deadlines, poisoned rows, bisection: right answer or the right error."""
    model = Recorder()
    with (
        serve(model) as server,
        Client(server.url, idempotent=True, coalesce=Coalesce(max_rows=12, max_wait=0.005)) as c,
    ):
        server.set_faults(delay=0.003)

        def call(i: int) -> list[str]:
            rng = random.Random(i)
            seen = []
            for k in range(6):
                n = rng.choice((1, 1, 2, 3))
                width = rng.choice((3, 3, 4))
                x = np.full((n, width), float(i * 100 + k), np.float32)
                poisoned = rng.random() < 0.1
                if poisoned:
                    x[-1, 0] = POISON
                total = rng.choice((None, None, 0.002, 5.0))
                try:
                    y = c.execute(x, timeout=Timeout(total=total))
                except DeadlineExceeded:
                    assert total is not None
                    seen.append("deadline")
                except HTTPStatusError:
                    assert poisoned, (i, k)
                    seen.append("poison")
                else:
                    assert not poisoned, (i, k)
                    assert y.shape == x.shape and (y == 2 * x).all(), (i, k)
                    seen.append("ok")
            return seen

        out = threads(32, call)
    for r in out:
        assert isinstance(r, list), r
    outcomes = [o for r in out for o in r]
    assert outcomes.count("ok") > len(outcomes) / 2
    assert max(model.sizes) <= 12


def test_async_client_used_from_one_loop_after_another(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler
    client = AsyncClient(server.url, coalesce=Coalesce(max_rows=4, max_wait=30))

    async def main(base: int) -> None:
        ys = await asyncio.gather(*(client.execute(rows_of(base + i)) for i in range(4)))
        for i, y in enumerate(ys):
            assert (y == 2 * rows_of(base + i)).all()

    asyncio.run(main(0))
    asyncio.run(main(10))

    async def close() -> None:
        await client.aclose()

    asyncio.run(close())
    assert model.sizes == [4, 4]


def test_named_calls_that_ask_the_metadata_merge(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, model = doubler

    async def main() -> None:
        async with AsyncClient(server.url, coalesce=Coalesce(max_rows=6, max_wait=30)) as c:
            await c.metadata()  # cached: the named calls below ask nothing more
            outs = await asyncio.gather(*(c.execute_named(rows_of(i)) for i in range(6)))
            for i, out in enumerate(outs):
                assert list(out) == ["output0"] and (out["output0"] == 2 * rows_of(i)).all()

    run_in("asyncio", main)
    assert model.sizes == [6]


def test_merged_requests_bisection_and_not_row_wise_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = Recorder()
    caplog.set_level(logging.DEBUG, logger="graphpipe_client")
    with (
        serve(model) as server,
        Client(
            server.url, idempotent=True, coalesce=Coalesce(max_rows=4, max_wait=30, eager=False)
        ) as c,
    ):
        threads(4, lambda i: c.execute(np.full((1, 2), POISON if i == 0 else float(i))))
    text = caplog.text
    assert "coalesced 4 calls (4 rows) into one request to http://127.0.0.1:" in text
    assert "a model error on 4 coalesced calls" in text and "idempotent=True" in text
    caplog.clear()
    reduce = Recorder(lambda x: x.sum(axis=0, keepdims=True))
    with (
        serve(reduce) as server,
        Client(server.url, coalesce=Coalesce(max_rows=2, max_wait=30, eager=False)) as c,
    ):
        threads(2, lambda i: c.execute(rows_of(i)))
    assert "do not have one row per input row (2 merged rows)" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_join_the_parents_open_batch(
    doubler: tuple[GraphPipeServer, Recorder],
) -> None:
    server, _ = doubler
    with Client(server.url, coalesce=Coalesce(max_rows=8, max_wait=1.0, eager=False)) as client:
        parent = threading.Thread(target=client.execute, args=(rows_of(1),))
        parent.start()  # its batch stays open for a second
        time.sleep(0.2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                y = client.execute(rows_of(2))  # alone in a batch of its own, after max_wait
                code = 0 if (y == 2 * rows_of(2)).all() else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the child's call never returned")
            time.sleep(0.02)
        parent.join()
    assert os.waitstatus_to_exitcode(status) == 0
