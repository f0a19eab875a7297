"""The asyncio fast path of repeated small calls (``AsyncClient.execute``), on the standard
loop and on uvloop: every call returns its own answer, and every misbehaviour of the server
gets what the general path gives it. Under httpx or trio the general path carries them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from aio_modes import run_in
from graphpipe_client.testing import Faults, GraphPipeServer, serve

X = np.arange(10, dtype=np.float32).reshape(1, 10)
FAST = ["asyncio", "uvloop"]


@pytest.fixture
def server() -> Iterator[GraphPipeServer]:
    with serve(lambda x: x * 2) as s:
        yield s


def learned(client: gp.AsyncClient) -> bool:
    small = client._small
    return small is not None and any(c is not None and c.answer is not None for c in small.values())


async def warm(client: gp.AsyncClient, x: np.ndarray = X) -> None:
    """Calls until the fast path knows this call and its answer (checked, so that the
    test exercises it)."""
    for _ in range(4):
        np.testing.assert_array_equal(await client.execute(x), x * 2)
    assert learned(client), "the fast path did not learn this call"


@pytest.mark.parametrize("mode", FAST)
def test_tasks_sharing_a_client_each_get_their_own_answer(
    mode: str, server: GraphPipeServer
) -> None:
    async def main() -> list[str]:
        wrong: list[str] = []
        async with gp.AsyncClient(server.url) as client:
            await warm(client)

            async def work(t: int) -> None:
                for i in range(50):
                    x = np.full((1, 10), t * 1000 + i, np.float32)
                    y = await client.execute(x)
                    if not np.array_equal(y, x * 2) or not y.flags.aligned:
                        wrong.append(f"task {t} call {i}: {y}")

            await asyncio.gather(*(work(t) for t in range(8)))
            got = await client.execute_named({"input0": X}, ["output0"])
            np.testing.assert_array_equal(got["output0"], X * 2)
        return wrong

    assert run_in(mode, main) == []


@pytest.mark.parametrize("mode", FAST)
@pytest.mark.parametrize(
    ("knobs", "error"),
    [
        ({"status": 500, "body": "boom"}, gp.HTTPStatusError),
        ({"garbage": b"not a flatbuffer"}, gp.DecodeError),
        ({"truncate_body": 3}, gp.TransportError),
        ({"drop": True}, gp.TransportError),
        ({"delay": 2}, gp.ReadTimeout),
        ({"stall_after_headers": 2}, gp.ReadTimeout),
    ],
    ids=["status", "garbage", "truncated", "dropped", "no-answer", "stalled"],
)
def test_a_misbehaving_answer_is_the_general_paths_error(
    mode: str, server: GraphPipeServer, knobs: dict[str, Any], error: type[Exception]
) -> None:
    async def main() -> None:
        async with gp.AsyncClient(server.url, timeout=(5, 0.4)) as client:
            await warm(client)
            served = server.requests_served
            server.faults = Faults(**knobs, times=1)  # (one each: a Faults counts its uses)
            with pytest.raises(error):
                await client.execute(X)
            assert server.requests_served - served == 1  # not sent again: it may have run
            for i in range(3):
                x = np.full((1, 10), i, np.float32)
                np.testing.assert_array_equal(await client.execute(x), x * 2)

    run_in(mode, main)


@pytest.mark.parametrize("mode", FAST)
def test_retries_apply_to_a_call_the_fast_path_began(mode: str, server: GraphPipeServer) -> None:
    async def main() -> None:
        async with gp.AsyncClient(server.url, idempotent=True) as client:
            await warm(client)
            served = server.requests_served
            server.faults = Faults(drop=True, times=1)
            np.testing.assert_array_equal(await client.execute(X), X * 2)
            server.faults = Faults(status=503, body="busy", retry_after=0, times=1)
            np.testing.assert_array_equal(await client.execute(X), X * 2)
            assert server.requests_served - served == 4

    run_in(mode, main)


@pytest.mark.parametrize("mode", FAST)
def test_surplus_bytes_and_chunked_answers(mode: str, server: GraphPipeServer) -> None:
    async def main() -> None:
        async with gp.AsyncClient(server.url) as client:
            await warm(client)
            server.faults = Faults(content_length_delta=-2, times=1)
            with pytest.raises(gp.GraphPipeError):
                await client.execute(X)
            server.faults = Faults(chunked=True, times=2)
            for _ in range(4):
                np.testing.assert_array_equal(await client.execute(X), X * 2)

    run_in(mode, main)


@pytest.mark.parametrize("mode", FAST)
def test_a_cancelled_call_leaves_the_client_usable(mode: str, server: GraphPipeServer) -> None:
    async def main() -> None:
        async with gp.AsyncClient(server.url) as client:
            await warm(client)
            server.faults = Faults(delay=0.5, times=1)
            task = asyncio.ensure_future(client.execute(X))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for i in range(3):
                x = np.full((1, 10), i, np.float32)
                np.testing.assert_array_equal(await client.execute(x), x * 2)

    run_in(mode, main)


@pytest.mark.parametrize("mode", ["httpx", "trio"])
def test_off_the_fast_path_the_general_path_answers(mode: str, server: GraphPipeServer) -> None:
    async def main() -> bool:
        async with gp.AsyncClient(server.url) as client:
            for i in range(6):
                x = np.full((1, 10), i, np.float32)
                np.testing.assert_array_equal(await client.execute(x), x * 2)
            return learned(client)

    assert run_in(mode, main) is False
