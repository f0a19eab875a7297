"""The async client and the aio module over real sockets against the bundled server."""

from __future__ import annotations

import asyncio
import gc
import time

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import aio
from graphpipe_client._transports import asynchronous as _transport_async
from graphpipe_client.testing import serve


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def test_body_is_streamed_in_bounded_uncopied_slices() -> None:
    x = np.arange(3 << 20, dtype=np.uint8)  # 3 MiB
    msg = gp.codec.encode_infer_request([x])

    async def collect() -> list[memoryview]:
        return [s async for s in _transport_async._RequestBody(msg)]

    slices = asyncio.run(collect())
    assert sum(s.nbytes for s in slices) == msg.nbytes
    assert max(s.nbytes for s in slices) <= _transport_async.BODY_SLICE
    data = [s for s in slices if np.shares_memory(np.frombuffer(s, np.uint8), x)]
    assert sum(s.nbytes for s in data) == x.nbytes  # every tensor byte is a view of x


def test_large_round_trip_and_writable_aligned_view() -> None:
    x = np.random.default_rng(0).random((64, 1000))

    async def main(url: str) -> np.ndarray:
        async with gp.AsyncClient(url) as client:
            y = await client.execute(x)
            assert isinstance(y, np.ndarray)
            return y

    with serve(double) as server:
        y = asyncio.run(main(server.url))
    np.testing.assert_array_equal(y, x * 2)
    assert y.flags.writeable and not y.flags.owndata
    assert y.ctypes.data % 64 == 0


def test_connections_are_reused_because_streams_are_drained() -> None:
    async def main(url: str) -> None:
        async with gp.AsyncClient(url) as client:
            for _ in range(20):
                await client.execute(np.ones(1000))
            await client.metadata()

    with serve(double) as server:
        asyncio.run(main(server.url))
        assert server.connections_accepted == 1
        assert server.requests_served == 21


def test_two_hundred_concurrent_calls_on_one_client() -> None:
    async def main(url: str) -> list[bool]:
        async with gp.AsyncClient(url, pool_size=50) as client:
            xs = [np.full((4, 4), i, np.int64) for i in range(200)]
            ys = await asyncio.gather(*(client.execute(x) for x in xs))
            return [bool(np.array_equal(y, x * 2)) for x, y in zip(xs, ys, strict=True)]

    with serve(double) as server:
        assert all(asyncio.run(main(server.url)))
        assert server.requests_served == 200
        assert server.connections_accepted <= 50


def test_one_client_across_several_event_loops() -> None:
    with serve(double) as server:
        client = gp.AsyncClient(server.url)  # built outside any running loop
        for i in range(3):
            y = asyncio.run(client.execute(np.full(2, i)))
            np.testing.assert_array_equal(y, [2 * i, 2 * i])
        gc.collect()  # pools of finished loops were closed: no ResourceWarning
        assert server.connections_accepted == 3  # one per loop, none shared
        asyncio.run(client.aclose())  # in yet another loop: marks it closed


def test_aio_module_reuses_connections_within_a_loop_and_survives_new_loops() -> None:
    async def calls(url: str) -> None:
        for _ in range(5):
            np.testing.assert_array_equal(await aio.execute(url, np.ones(2)), [2, 2])
        assert await aio.get_input_names(url) == ["input0"]

    with serve(double) as server:
        asyncio.run(calls(server.url))
        asyncio.run(calls(server.url))
        gc.collect()
        assert server.connections_accepted == 2


def test_aio_execute_multi_and_metadata() -> None:
    async def main(url: str) -> None:
        outs = await aio.execute_multi(url, [np.arange(3)])
        np.testing.assert_array_equal(outs[0], [0, 2, 4])
        meta = await aio.metadata(url)
        assert meta.input_names == ("input0",)
        assert await aio.get_output_names(url) == ["output0"]
        assert await aio.get_input_shapes(url) == [[]]
        assert await aio.get_input_types(url) == [None]

    with serve(double) as server:
        asyncio.run(main(server.url))


def test_closed_async_client_refuses_calls() -> None:
    async def main() -> None:
        client = gp.AsyncClient("http://127.0.0.1:9/")
        await client.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await client.execute(np.ones(1))

    asyncio.run(main())


def test_async_errors_are_mapped_never_leaked() -> None:
    async def main(url: str) -> None:
        async with gp.AsyncClient(url, retries=0, timeout=0.3) as client:
            for faults, expected in [
                ({"drop": True}, gp.TransportError),
                ({"delay": 1.0}, gp.ReadTimeout),
                ({"stall_after_headers": 1.0}, gp.ReadTimeout),
                ({"content_length_delta": 50}, gp.TransportError),
                ({"status": 503, "body": b"busy"}, gp.HTTPStatusError),
            ]:
                server.set_faults(**faults, times=1)
                with pytest.raises(expected):
                    await client.execute(np.ones(1000))
            np.testing.assert_array_equal(await client.execute(np.ones(2)), [2, 2])

    with serve(double) as server:
        asyncio.run(main(server.url))


# --------------------------------------------------------------------------
# trio: the httpx path, through anyio


def test_under_trio_concurrent_calls_each_get_their_own_answer() -> None:
    trio = pytest.importorskip("trio")
    results: dict[int, np.ndarray] = {}

    async def main(url: str) -> None:
        async with gp.AsyncClient(url, pool_size=4) as client:

            async def one(i: int) -> None:
                results[i] = await client.execute(np.full(3, i, np.int64))

            async with trio.open_nursery() as nursery:
                for i in range(40):
                    nursery.start_soon(one, i)

    with serve(double) as server:
        trio.run(main, server.url)
        assert server.connections_accepted <= 4
    assert sorted(results) == list(range(40))
    for i, y in results.items():
        np.testing.assert_array_equal(y, np.full(3, 2 * i))


def test_under_trio_the_total_timeout_bounds_the_call() -> None:
    trio = pytest.importorskip("trio")

    async def main(url: str) -> BaseException:
        async with gp.AsyncClient(url, retries=0, timeout=gp.Timeout(read=5, total=0.3)) as c:
            with pytest.raises(gp.DeadlineExceeded) as info:
                await c.execute(np.ones(2))
            return info.value

    with serve(double) as server:
        server.set_faults(delay=2.0)
        started = time.monotonic()
        trio.run(main, server.url)
        assert time.monotonic() - started < 1.5


def test_one_client_across_trio_runs_and_asyncio_runs() -> None:
    trio = pytest.importorskip("trio")
    client = gp.AsyncClient("http://127.0.0.1:1")  # the URL is given per call

    async def call(url: str) -> np.ndarray:
        y = await client.execute(np.arange(3.0), url=url)
        assert isinstance(y, np.ndarray)
        return y

    async def close() -> None:
        await client.aclose()

    with serve(double) as server:
        for _ in range(2):
            np.testing.assert_array_equal(trio.run(call, server.url), np.arange(3.0) * 2)
            np.testing.assert_array_equal(asyncio.run(call(server.url)), np.arange(3.0) * 2)
        trio.run(close)
