"""Batched execution for ``AsyncClient`` under event loops other than asyncio (trio), on anyio.

The asyncio drivers (``drivers.run_tasks`` and ``stream_tasks``) use
asyncio tasks directly, the fastest way there; under trio they hand over to
these, which keep the same contract (``docs/batched.md``): at most
``concurrency`` batches in flight, outputs in row order, the first failed
batch raised as :class:`BatchError` (or each handed to ``on_error``), the
client usable afterwards. anyio comes with httpx (it is how httpx itself
runs under trio), so this costs no dependency.

- :func:`run_tasks` keeps a sliding window in one task group: a finished
  batch makes room for the next, as on asyncio.
- :func:`stream_tasks` is an async generator, and a generator must not yield
  inside a task group (a nursery, under trio: PEP 789), so it works in
  windows: up to ``concurrency`` batches run together in a task group that
  is closed before their results are yielded, in order. A slow batch holds
  its window back; throughput is at most that of the sliding window.

Failures inside a task group are collected and raised after it closes, so
the caller sees our :class:`BatchError` (or the bug), never an
``ExceptionGroup`` of anyio's making.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from .._exceptions import GraphPipeError
from .._http.exchange import shape_outputs
from .plan import AsyncBatches, Batch, OnError, OutputWriter, RowPlan, batch_error, release_arrays
from .progress import Reporter

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    AsyncCall = Callable[[list[np.ndarray]], Awaitable[list[np.ndarray]]]

__all__ = ["run_tasks", "stream_tasks"]


async def run_tasks(
    plan: RowPlan,
    call: AsyncCall,
    concurrency: int,
    reporter: Reporter,
    on_error: OnError | None,
) -> list[np.ndarray]:
    """Every batch of ``plan``, at most ``concurrency`` at once, in one anyio task group."""
    writer = OutputWriter(plan.rows)
    send: MemoryObjectSendStream[tuple[Batch, Exception | None]]
    receive: MemoryObjectReceiveStream[tuple[Batch, Exception | None]]
    send, receive = anyio.create_memory_object_stream(math.inf)

    async def work(batch: Batch) -> None:
        error: Exception | None = None
        try:
            writer.write(batch, await call(plan.slices(batch)))
        except Exception as exc:  # handed to the driver; cancellation goes on up
            error = exc
        finally:
            plan.release(batch)
        send.send_nowait((batch, error))

    first_failure: BaseException | None = None
    stop: BaseException | None = None  # raised once the task group has closed
    try:
        with send, receive:
            async with anyio.create_task_group() as tg:
                pending = iter(plan.batches())
                running = 0
                for batch in pending:
                    tg.start_soon(work, batch)
                    running += 1
                    if running == concurrency:
                        break
                while running:
                    batch, error = await receive.receive()
                    running -= 1
                    if error is not None:
                        if not isinstance(error, GraphPipeError):
                            stop = error  # a bug: re-raised as it is
                            break
                        failure = batch_error(batch, error)
                        if on_error is None:
                            stop = failure
                            break
                        try:
                            on_error(failure)
                        except Exception as exc:
                            stop = exc
                            break
                        first_failure = first_failure or failure
                    reporter.update(batch.rows)
                    following = next(pending, None)
                    if following is not None:
                        tg.start_soon(work, following)
                        running += 1
                tg.cancel_scope.cancel()  # the batches still in flight, after a failure
    finally:
        reporter.close()
    if stop is not None:
        raise stop
    if writer.arrays is None:
        assert first_failure is not None
        raise first_failure
    return writer.arrays


async def _run_window(
    call: AsyncCall, window: list[list[np.ndarray]]
) -> list[list[np.ndarray] | Exception]:
    """Every batch of ``window`` at once, in a task group: each one's outputs or exception."""
    results: list[list[np.ndarray] | Exception] = [RuntimeError("not run (a bug)") for _ in window]

    async def work(k: int, arrays: list[np.ndarray]) -> None:
        try:
            results[k] = await call(arrays)
        except Exception as exc:  # handed to the caller; cancellation goes on up
            results[k] = exc
        finally:
            release_arrays(arrays)  # a memory map's pages, once sent

    async with anyio.create_task_group() as tg:
        for k, arrays in enumerate(window):
            tg.start_soon(work, k, arrays)
    return results


async def stream_tasks(
    items: Iterable[Any] | AsyncIterable[Any],
    call: AsyncCall,
    concurrency: int,
    make_reporter: Callable[[], Reporter],
    on_error: OnError | None,
    input_names: Any,
) -> AsyncGenerator[np.ndarray | list[np.ndarray], None]:
    """Results of a (async) stream of batches, in order, in windows of ``concurrency``."""
    source = AsyncBatches(items, input_names, on_error)
    reporter = make_reporter()
    exhausted = False
    try:
        while not exhausted:
            window: list[tuple[Batch, bool, list[np.ndarray]]] = []
            while len(window) < concurrency:
                got = await source.next()
                if got is None:
                    exhausted = True
                    break
                window.append(got)
            if not window:
                return
            results = await _run_window(call, [arrays for _, _, arrays in window])
            for (batch, single, _), result in zip(window, results, strict=True):
                reporter.update(batch.rows)
                if isinstance(result, GraphPipeError):
                    failure = batch_error(batch, result)
                    if on_error is None:
                        raise failure from result
                    on_error(failure)
                    continue
                if isinstance(result, Exception):
                    raise result  # a bug: re-raised as it is
                yield shape_outputs(result) if single else result
    finally:
        await source.aclose()
        reporter.close()
