"""Batched execution, the drivers: worker threads for ``Client``, tasks for ``AsyncClient``.

(Under trio, ``AsyncClient``'s drivers are those of ``drivers_anyio``.)

Both keep at most ``concurrency`` batches between "sliced" and "finished"
(sent, answered, written or handed out), so memory is bounded by
``concurrency`` batches plus the outputs, whatever the size of the dataset.

Failures (see ``docs/batched.md``):

- by default the first failed batch stops the run: no new batch is sent; the
  threads driver waits for the batches already in flight (each bounded by the
  client's timeout), the tasks driver cancels them; then the
  :class:`BatchError` is raised. The client stays usable.
- with ``on_error``, each :class:`BatchError` is handed to it (in the caller's
  thread) and the run goes on; the failed rows keep zeros (``None`` for string
  outputs). If every batch failed there is nothing to return, and the first
  :class:`BatchError` is raised at the end.
- ``KeyboardInterrupt`` (Ctrl-C) in the caller's thread stops the threads
  driver at once: nothing more is sent, the interrupt is re-raised without
  waiting, and the worker threads (daemons) finish the requests already on
  the wire in the background, then exit, returning their connections to the
  client's pool. Cancelling the task of the tasks driver (``asyncio.run``
  does on Ctrl-C) cancels the batches in flight.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from .._exceptions import BatchError, GraphPipeError
from .._http.exchange import shape_outputs
from .plan import (
    AsyncBatches,
    Batch,
    OnError,
    OutputWriter,
    RowPlan,
    batch_error,
    release_arrays,
    stream_batch,
)
from .progress import Reporter

if TYPE_CHECKING:
    import asyncio

# asyncio and anyio (and drivers_anyio) are imported by the async drivers when
# they first run: a process that only uses the sync Client never loads them.

__all__ = ["run_tasks", "run_threads", "stream_tasks", "stream_threads"]

#: Call: the arrays of one batch -> the model's outputs for them.
SyncCall = Callable[[list[np.ndarray]], list[np.ndarray]]
AsyncCall = Callable[[list[np.ndarray]], Awaitable[list[np.ndarray]]]

#: How long the caller's thread waits at a time for a finished batch: a
#: bound on how late it notices a signal where lock waits cannot be interrupted.
_POLL: Final = 0.25


class _Workers:
    """``n`` daemon threads that run ``work(job)`` for each submitted job.

    Daemons, so that an interrupted run never holds the interpreter's exit
    for the requests still on the wire.
    """

    def __init__(self, n: int, work: Callable[[Any], None]) -> None:
        self._work = work
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        self._cancelled = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"graphpipe-batch-{i}", daemon=True)
            for i in range(n)
        ]
        for t in self._threads:
            t.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._cancelled:
                continue
            try:
                self._work(job)
            except BaseException as exc:
                self._done.put((job, exc))
            else:
                self._done.put((job, None))

    def submit(self, job: Any) -> None:
        self._jobs.put(job)

    def next_done(self) -> tuple[Any, BaseException | None]:
        """The next finished job and its exception (``None``: it worked); interruptible."""
        while True:
            try:
                return self._done.get(timeout=_POLL)
            except queue.Empty:
                continue

    def stop(self, wait: bool) -> None:
        """No new job starts; with ``wait``, wait for the running ones to finish."""
        self._cancelled = True
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for t in self._threads:
                t.join()


def _failure(batch: Batch, exc: BaseException) -> BatchError:
    """A batch's exception as a :class:`BatchError`; anything else (a bug) is re-raised."""
    if isinstance(exc, GraphPipeError):
        return batch_error(batch, exc)
    raise exc


# --------------------------------------------------------------------------
# Threads (Client)


def run_threads(
    plan: RowPlan,
    call: SyncCall,
    concurrency: int,
    reporter: Reporter,
    on_error: OnError | None,
) -> list[np.ndarray]:
    """Run every batch of ``plan`` on ``concurrency`` threads; the filled outputs.

    Each worker takes the next batch itself as soon as it is done with one
    (no round trip through the caller's thread between batches), sends it and
    writes its outputs in place; the caller's thread only hears of each
    finished batch (progress, failures) and tells the workers to stop.
    """
    writer = OutputWriter(plan.rows)
    batches = plan.batches()
    lock = threading.Lock()
    stop = threading.Event()
    position = 0
    done: queue.SimpleQueue[tuple[Batch, BaseException | None] | None] = queue.SimpleQueue()
    # Without a progress display, the caller's thread hears only of failures
    # (and of each worker's end): no wake-up, and no GIL hand-off, per batch.
    each = not getattr(reporter, "silent", False)

    def take() -> Batch | None:
        nonlocal position
        with lock:
            if stop.is_set() or position == len(batches):
                return None
            position += 1
            return batches[position - 1]

    def worker() -> None:
        try:
            while (batch := take()) is not None:
                try:
                    writer.write(batch, call(plan.slices(batch)))
                except BaseException as exc:
                    if on_error is None:
                        stop.set()  # no worker starts another batch after a failure
                    done.put((batch, exc))
                else:
                    if each:
                        done.put((batch, None))
                finally:
                    plan.release(batch)
        finally:
            done.put(None)  # this worker is finished

    # Daemons: an interrupted run never holds the interpreter's exit for the
    # requests still on the wire.
    threads = [
        threading.Thread(target=worker, name=f"graphpipe-batch-{i}", daemon=True)
        for i in range(min(concurrency, len(batches)))
    ]
    for t in threads:
        t.start()
    first_failure: BatchError | None = None
    running = len(threads)
    try:
        while running:
            try:
                item = done.get(timeout=_POLL)
            except queue.Empty:
                continue
            if item is None:
                running -= 1
                continue
            batch, exc = item
            if exc is not None:
                failure = _failure(batch, exc)
                if on_error is None:
                    raise failure
                on_error(failure)
                first_failure = first_failure or failure
            reporter.update(batch.rows)
    except KeyboardInterrupt:
        stop.set()  # the workers finish the requests on the wire, in the background
        raise
    except BaseException:
        stop.set()
        for t in threads:  # drain: nothing of this run goes on after it returns
            t.join()
        raise
    finally:
        reporter.close()
    if writer.arrays is None:
        assert first_failure is not None
        raise first_failure
    return writer.arrays


@dataclass(eq=False)
class _Job:
    """One batch of a stream: its arrays, and its outputs once back."""

    batch: Batch
    single: bool
    arrays: list[np.ndarray]
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None
    done: bool = False


def stream_threads(
    items: Iterable[Any],
    call: SyncCall,
    concurrency: int,
    make_reporter: Callable[[], Reporter],
    on_error: OnError | None,
    input_names: Any,
) -> Iterator[np.ndarray | list[np.ndarray]]:
    """Results of a stream of batches, in order, with at most ``concurrency`` batches held."""
    source = iter(items)
    reporter = make_reporter()

    def work(job: _Job) -> None:
        try:
            job.outputs = call(job.arrays)
        finally:
            release_arrays(job.arrays)  # a memory map's pages, once sent

    workers = _Workers(concurrency, work)
    held: deque[_Job] = deque()
    index = 0
    row = 0
    exhausted = False
    try:
        while True:
            while not exhausted and len(held) < concurrency:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                try:
                    single, arrays, batch = stream_batch(item, index, row, input_names)
                except GraphPipeError as exc:
                    failure = batch_error(Batch(index, row, row), exc)
                    index += 1
                    if on_error is None:
                        raise failure from exc
                    on_error(failure)
                    continue
                job = _Job(batch, single, arrays)
                index += 1
                row = batch.stop
                held.append(job)
                workers.submit(job)
            if not held:
                return
            head = held[0]
            while not head.done:
                finished, error = workers.next_done()
                finished.done = True
                finished.error = error
            held.popleft()
            reporter.update(head.batch.rows)
            if head.error is not None:
                failure = _failure(head.batch, head.error)
                if on_error is None:
                    raise failure
                on_error(failure)
                continue
            assert head.outputs is not None
            yield shape_outputs(head.outputs) if head.single else head.outputs
    except GraphPipeError:
        workers.stop(wait=True)  # a failed batch: drain, as execute_batched does
        raise
    finally:
        # Ctrl-C, or the consumer left the loop (the generator is closed, maybe
        # much later, when its frame is collected): stop at once; the batches on
        # the wire finish in the background.
        workers.stop(wait=False)
        reporter.close()


# --------------------------------------------------------------------------
# Tasks (AsyncClient)


async def _cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    import asyncio

    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _under_asyncio() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def run_tasks(
    plan: RowPlan,
    call: AsyncCall,
    concurrency: int,
    reporter: Reporter,
    on_error: OnError | None,
) -> list[np.ndarray]:
    """Run every batch of ``plan`` as tasks, at most ``concurrency`` at once; the filled outputs.

    Under another event loop (trio), ``drivers_anyio.run_tasks`` does it.
    """
    import asyncio

    if not _under_asyncio():
        from . import drivers_anyio

        return await drivers_anyio.run_tasks(plan, call, concurrency, reporter, on_error)
    writer = OutputWriter(plan.rows)

    async def work(batch: Batch) -> None:
        try:
            writer.write(batch, await call(plan.slices(batch)))
        finally:
            plan.release(batch)

    first_failure: BatchError | None = None
    pending = iter(plan.batches())
    running: dict[asyncio.Task[None], Batch] = {}

    def start(batch: Batch) -> None:
        running[asyncio.ensure_future(work(batch))] = batch

    try:
        for batch in pending:
            start(batch)
            if len(running) == concurrency:
                break
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                batch = running.pop(task)
                error = task.exception()
                if error is not None:
                    failure = _failure(batch, error)
                    if on_error is None:
                        raise failure
                    on_error(failure)
                    first_failure = first_failure or failure
                reporter.update(batch.rows)
                following = next(pending, None)
                if following is not None:
                    start(following)
    finally:
        await _cancel_all(running)
        reporter.close()
    if writer.arrays is None:
        assert first_failure is not None
        raise first_failure
    return writer.arrays


async def _released(call: AsyncCall, arrays: list[np.ndarray]) -> list[np.ndarray]:
    try:
        return await call(arrays)
    finally:
        release_arrays(arrays)  # a memory map's pages, once sent


async def stream_tasks(
    items: Iterable[Any] | AsyncIterable[Any],
    call: AsyncCall,
    concurrency: int,
    make_reporter: Callable[[], Reporter],
    on_error: OnError | None,
    input_names: Any,
) -> AsyncGenerator[np.ndarray | list[np.ndarray], None]:
    """Results of a (async) stream of batches, in order, at most ``concurrency`` held.

    Under another event loop (trio), ``drivers_anyio.stream_tasks`` does it.
    """
    import asyncio

    if not _under_asyncio():
        from . import drivers_anyio

        inner = drivers_anyio.stream_tasks(
            items, call, concurrency, make_reporter, on_error, input_names
        )
        async with contextlib.aclosing(inner):
            async for result in inner:
                yield result
        return
    source = AsyncBatches(items, input_names, on_error)
    reporter = make_reporter()
    held: deque[tuple[Batch, bool, asyncio.Task[list[np.ndarray]]]] = deque()
    exhausted = False
    try:
        while True:
            while not exhausted and len(held) < concurrency:
                got = await source.next()
                if got is None:
                    exhausted = True
                    break
                batch, single, arrays = got
                held.append((batch, single, asyncio.ensure_future(_released(call, arrays))))
            if not held:
                return
            batch, single, task = held.popleft()
            try:
                outputs = await task
            except GraphPipeError as exc:
                reporter.update(batch.rows)
                failure = batch_error(batch, exc)
                if on_error is None:
                    raise failure from exc
                on_error(failure)
                continue
            reporter.update(batch.rows)
            yield shape_outputs(outputs) if single else outputs
    finally:
        await _cancel_all(task for _, _, task in held)
        await source.aclose()
        reporter.close()
