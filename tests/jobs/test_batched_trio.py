"""``AsyncClient.execute_batched`` and ``execute_stream`` under trio (``drivers_anyio``).

The same contract as on asyncio (``docs/batched.md``), over real sockets to
the bundled server: at most ``concurrency`` batches in flight, outputs in row
order, the first failure as a ``BatchError`` (never an ``ExceptionGroup``),
``on_error`` to go on, cancellation that stops the run.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest
from test_batched import Gauge  # the model's concurrent calls, counted

import graphpipe_client as gp
from graphpipe_client.testing import GraphPipeServer, serve

trio = pytest.importorskip("trio")

MARKER = -1.0


def slow_double(gauge: Gauge, delay: float = 0.02) -> Any:
    def model(x: np.ndarray) -> np.ndarray:
        with gauge:
            time.sleep(delay)
        if x.ndim and len(x) and np.any(x.reshape(len(x), -1)[:, 0] == MARKER):
            raise ValueError("a poisoned row")
        return x * 2

    return model


@pytest.fixture
def gauge() -> Gauge:
    return Gauge()


@pytest.fixture
def server(gauge: Gauge) -> Iterator[GraphPipeServer]:
    with serve(slow_double(gauge)) as s:
        yield s


def test_batched_results_and_concurrency(server: GraphPipeServer, gauge: Gauge) -> None:
    x = np.arange(200.0).reshape(50, 4)

    async def main() -> Any:
        async with gp.AsyncClient(server.url) as client:
            return await client.execute_batched(x, batch_size=5, concurrency=4)

    y = trio.run(main)
    np.testing.assert_array_equal(y, x * 2)
    assert server.requests_served == 10
    assert 2 <= gauge.most <= 4  # several at once, never more than asked


def test_batched_several_inputs_strings_and_progress() -> None:
    def model(a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        return [b, a + 1]

    a = np.arange(7, dtype=np.int32)
    b = np.array([b"a", b"", b"ccc", b"d", b"e", b"f", b"g"], dtype=object)
    seen: list[tuple[int, int | None]] = []

    async def main(url: str) -> Any:
        async with gp.AsyncClient(url) as client:
            return await client.execute_batched(
                [a, b], 2, concurrency=3, progress=lambda d, t: seen.append((d, t))
            )

    with serve(model) as s:
        strings, plus = trio.run(main, s.url)
    np.testing.assert_array_equal(plus, a + 1)
    assert list(strings) == list(b)
    assert seen[-1] == (7, 7) and len(seen) == 4


def test_batched_first_failure_is_a_batch_error_and_the_client_goes_on(
    server: GraphPipeServer,
) -> None:
    x = np.ones((40, 2))
    x[23, 0] = MARKER  # batch 5 of 4-row batches: rows 20:24

    async def main() -> tuple[BaseException, Any, list[gp.BatchError], Any]:
        async with gp.AsyncClient(server.url) as client:
            try:
                await client.execute_batched(x, 4, concurrency=3)
            except BaseException as exc:
                first: BaseException = exc
            failures: list[gp.BatchError] = []
            partial = await client.execute_batched(x, 4, concurrency=3, on_error=failures.append)
            after = await client.execute(np.ones(3))
            return first, partial, failures, after

    first, partial, failures, after = trio.run(main)
    assert type(first) is gp.BatchError, repr(first)  # not an ExceptionGroup
    assert (first.start, first.stop, first.index) == (20, 24, 5)
    assert isinstance(first.error, gp.HTTPStatusError) and "a poisoned row" in str(first)
    assert [(f.start, f.stop) for f in failures] == [(20, 24)]
    assert np.all(partial[20:24] == 0) and np.all(partial[:20] == 2) and np.all(partial[24:] == 2)
    np.testing.assert_array_equal(after, np.full(3, 2.0))


def test_batched_bug_in_on_error_comes_out_as_itself(server: GraphPipeServer) -> None:
    x = np.full((8, 2), MARKER)

    def on_error(failure: gp.BatchError) -> None:
        raise KeyError("the user's callback")

    async def main() -> None:
        async with gp.AsyncClient(server.url) as client:
            await client.execute_batched(x, 2, concurrency=2, on_error=on_error)

    with pytest.raises(KeyError, match="the user's callback"):
        trio.run(main)


def test_batched_cancelled_by_a_trio_deadline_stops_sending(
    server: GraphPipeServer, gauge: Gauge
) -> None:
    x = np.ones((400, 2))

    async def main() -> bool:
        async with gp.AsyncClient(server.url) as client:
            with trio.move_on_after(0.15) as scope:
                await client.execute_batched(x, 2, concurrency=2)  # 200 batches of 20 ms
            return bool(scope.cancelled_caught)

    started = time.monotonic()
    assert trio.run(main) is True
    assert time.monotonic() - started < 2
    time.sleep(0.1)
    assert server.requests_served < 30  # nothing more was sent after the cancel
    assert gauge.now == 0


def test_stream_in_order_and_bounded(server: GraphPipeServer, gauge: Gauge) -> None:
    pulled = 0

    async def batches() -> AsyncIterator[np.ndarray]:
        nonlocal pulled
        for i in range(13):
            pulled += 1
            yield np.full((2, 1), float(i))

    async def main() -> list[Any]:
        out = []
        async with gp.AsyncClient(server.url) as client:
            async for y in client.execute_stream(batches(), concurrency=4):
                assert pulled - len(out) <= 4  # at most concurrency batches held
                out.append(y)
            out.extend([y async for y in client.execute_stream([np.ones(2)] * 2)])
        return out

    out = trio.run(main)
    assert [float(y[0, 0]) for y in out[:13]] == [2.0 * i for i in range(13)]
    assert [y.tolist() for y in out[13:]] == [[2.0, 2.0]] * 2
    assert 2 <= gauge.most <= 4


def test_stream_failures_on_error_and_encode_errors(server: GraphPipeServer) -> None:
    items = [np.full((2, 1), float(i)) for i in range(6)]
    items[4] = np.full((2, 1), MARKER)

    async def main() -> tuple[BaseException, list[Any], list[gp.BatchError], BaseException]:
        async with gp.AsyncClient(server.url) as client:
            seen: list[Any] = []
            try:
                async for y in client.execute_stream(items, concurrency=3):
                    seen.append(y)
            except BaseException as exc:
                first: BaseException = exc
            failures: list[gp.BatchError] = []
            out = [
                y
                async for y in client.execute_stream(items, concurrency=3, on_error=failures.append)
            ]
            try:
                async for _ in client.execute_stream([np.ones(2), [np.ones(2), np.ones(3)]]):
                    pass
            except BaseException as exc:
                bad: BaseException = exc
            return first, out, failures, bad

    first, out, failures, bad = trio.run(main)
    assert type(first) is gp.BatchError and (first.index, first.start, first.stop) == (4, 8, 10)
    assert [f.index for f in failures] == [4] and len(out) == 5
    assert isinstance(bad, gp.BatchError) and isinstance(bad.error, gp.EncodeError)
    assert bad.index == 1


def test_leaving_a_stream_early_sends_no_more(server: GraphPipeServer) -> None:
    async def main() -> None:
        async with gp.AsyncClient(server.url) as client:
            stream = client.execute_stream((np.ones(1) for _ in range(1000)), concurrency=2)
            i = 0
            async for _ in stream:
                i += 1
                if i == 3:
                    break
            await stream.aclose()  # type: ignore[attr-defined]

    trio.run(main)
    assert server.requests_served <= 4  # two windows of two, at most
