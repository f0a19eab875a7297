"""``graphpipe-client bench``: measure a model's latency and throughput.

Three steps: :func:`_bench_plan` makes the inputs (random, shaped from the
metadata or the options) and the amount (``--requests`` or ``--duration``);
:func:`_bench_sync` (threads, one ``Client``) or :func:`_bench_async_main`
(tasks, one ``AsyncClient``) sends them, timing each call; :func:`_bench_report`
prints the percentiles and the rates, also for a run stopped by Ctrl-C.

What it reuses: the command line's progress display, the one of ``execute
--batch-size`` (``progress_reporter`` in :mod:`._common`, over
:mod:`.._progress`: a tqdm bar, or a plain status line without tqdm), fed
with the count of finished requests through :func:`.._progress.as_callback`.

What it does not reuse, and why: ``execute_batched`` and its drivers
(:mod:`.._batched_run`) score a dataset. They cut inputs into row batches
(every input with at least one dimension and the same number of rows), stop
at the first failed batch, copy every batch's outputs into arrays the size of
the dataset, and time nothing per call. ``bench`` sends the same request again and again, for a
count or for a duration (a number of requests not known in advance), measures
the latency of each call around the whole round trip, counts failures
without stopping, keeps no outputs, warms up each worker first, and on
Ctrl-C waits for the calls in flight so that its partial report is exact.
Forcing it through ``execute_batched`` would mean copying the input once per
request, allocating outputs for all of them, and losing the duration mode
and the per-call latency.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._async_client import AsyncClient
from .._client import Client
from .._exceptions import GraphPipeError, TransportError
from .._http.exchange import parse_endpoint
from .._jobs.coalesce import Coalesce
from .._jobs.progress import Reporter, as_callback
from .._wire.messages import IOMetadata, ModelMetadata
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    client_options,
    describe,
    progress_reporter,
)

__all__ = ["cmd_bench"]


@dataclass
class _BenchPlan:
    """What ``bench`` sends, and how much."""

    inputs: list[np.ndarray]
    labels: list[str]
    input_names: list[str] | None
    concurrency: int
    requests: int | None
    duration: float | None

    @property
    def rows(self) -> int:
        first = self.inputs[0] if self.inputs else None
        return int(first.shape[0]) if first is not None and first.ndim else 1


@dataclass
class _BenchResult:
    """Latencies (seconds) of the successful requests, the failures, the wall time.

    Filled in as the run goes, so that an interrupted run still has its
    partial figures: ``started`` once the timed run began, ``interrupted``
    if Ctrl-C stopped it.
    """

    latencies: list[float] = field(default_factory=list)
    errors: list[GraphPipeError] = field(default_factory=list)
    elapsed: float = 0.0
    started: bool = False
    interrupted: bool = False

    @property
    def done(self) -> int:
        return len(self.latencies) + len(self.errors)


class _BenchProgress:
    """The bench's display: the shared progress reporter, created at the first update
    (after the warm-up), fed with absolute counts through ``as_callback``."""

    def __init__(self, args: argparse.Namespace | None, plan: _BenchPlan) -> None:
        self._args = args
        self._plan = plan
        self._reporter: Reporter | None = None
        self._feed: Callable[[int, int | None], None] | None = None
        self._done = 0

    def update(self, done: int, elapsed: float) -> None:
        """Show ``done`` requests finished; the first call opens the display (if shown)."""
        if self._args is None:
            return
        if self._feed is None:
            plan = self._plan
            desc = None if plan.duration is None else f"{plan.duration:g} s run"
            reporter = progress_reporter(self._args, plan.requests, "requests", desc)
            if reporter is None:
                self._args = None
                return
            self._reporter = reporter
            self._feed = as_callback(reporter)
        if done > self._done:
            self._feed(done, self._plan.requests)
            self._done = done

    def finish(self) -> None:
        """Close the display (its last state stays on the terminal)."""
        if self._reporter is not None:
            self._reporter.close()
            self._reporter = None
            self._feed = None


def _bench_plan(args: argparse.Namespace) -> _BenchPlan:
    shape: tuple[int, ...] | None = args.shape
    dtype: np.dtype[Any] | None = args.dtype
    names: list[str] | None = args.input_name
    meta: ModelMetadata | None = None
    if shape is None or dtype is None or not names:
        with Client(args.url, **client_options(args)) as client:
            try:
                meta = client.metadata()
            except TransportError:
                raise  # the server is not there: the benchmark cannot run either
            except GraphPipeError:
                meta = None  # no usable metadata: use the defaults
    if names:
        by_name = {io.name: io for io in meta.inputs} if meta else {}
        described: list[IOMetadata | None] = [by_name.get(name) for name in names]
        labels = list(names)
    elif meta is not None and meta.inputs:
        described = list(meta.inputs)
        labels = [io.name for io in meta.inputs]
    else:
        described = [None]
        labels = ["input0"]
    rng = np.random.default_rng(0)
    inputs = []
    for io in described:
        s = shape
        if s is None:
            s = (
                (1, 10)
                if io is None or io.shape is None
                else tuple(1 if d is None else d for d in io.shape)
            )
        dt = dtype
        if dt is None:
            known = io.dtype if io is not None else None
            dt = known if known is not None and known.kind in "iuf" else np.dtype(np.float32)
        if dt.kind == "f":
            arr = rng.standard_normal(s).astype(dt)
        else:
            arr = rng.integers(0, 10, size=s, dtype=dt)
        inputs.append(np.ascontiguousarray(arr))
    requests: int | None = args.requests
    duration: float | None = args.duration
    if requests is None and duration is None:
        requests = 200
    return _BenchPlan(inputs, labels, names, args.concurrency, requests, duration)


def _bench_sync(
    url: str,
    plan: _BenchPlan,
    options: dict[str, Any],
    progress: _BenchProgress,
    result: _BenchResult,
) -> None:
    lock = threading.Lock()
    stop = threading.Event()
    issued = 0
    fatal: list[BaseException] = []

    with Client(url, pool_size=plan.concurrency, retries=0, **options) as client:

        def call() -> None:
            client.execute_multi(plan.inputs, plan.input_names)

        # Untimed warm-up, one request per worker: opens the connections, and
        # a model that fails fails here, with its own error.
        with ThreadPoolExecutor(
            plan.concurrency, thread_name_prefix="graphpipe-bench-warmup"
        ) as pool:
            for future in [pool.submit(call) for _ in range(plan.concurrency)]:
                future.result()

        start = time.perf_counter()
        result.started = True
        deadline = start + plan.duration if plan.duration is not None else None
        progress.update(0, 0.0)  # the display starts with the timed requests

        def worker() -> None:
            nonlocal issued
            try:
                while not stop.is_set():
                    if plan.requests is not None:
                        with lock:
                            if issued >= plan.requests:
                                return
                            issued += 1
                    elif deadline is not None and time.perf_counter() >= deadline:
                        return
                    t0 = time.perf_counter()
                    try:
                        call()
                    except GraphPipeError as exc:
                        with lock:
                            if not stop.is_set():  # else: after the end of the run
                                result.errors.append(exc)
                    else:
                        t1 = time.perf_counter()
                        with lock:
                            if not stop.is_set():
                                result.latencies.append(t1 - t0)
            except BaseException as exc:  # a bug: stop everything and report it
                fatal.append(exc)
                stop.set()

        threads = [
            threading.Thread(target=worker, name=f"graphpipe-bench-{i}", daemon=True)
            for i in range(plan.concurrency)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.1)
                    progress.update(result.done, time.perf_counter() - start)
        except BaseException:  # Ctrl-C: the figures so far, then wait for the calls in flight
            with lock:
                stop.set()
                result.elapsed = time.perf_counter() - start
            for t in threads:
                t.join()
            raise
        result.elapsed = time.perf_counter() - start
    if fatal:
        raise fatal[0]


async def _bench_async_main(
    url: str,
    plan: _BenchPlan,
    options: dict[str, Any],
    progress: _BenchProgress,
    result: _BenchResult,
) -> None:
    issued = 0
    async with AsyncClient(url, pool_size=plan.concurrency, retries=0, **options) as client:

        async def call() -> None:
            await client.execute_multi(plan.inputs, plan.input_names)

        # Untimed warm-up, one request per worker (see _bench_sync).
        warmup = await asyncio.gather(
            *(call() for _ in range(plan.concurrency)), return_exceptions=True
        )
        for outcome in warmup:
            if isinstance(outcome, BaseException):
                raise outcome

        start = time.perf_counter()
        result.started = True
        deadline = start + plan.duration if plan.duration is not None else None
        progress.update(0, 0.0)  # the display starts with the timed requests

        async def worker() -> None:
            nonlocal issued
            while True:
                if plan.requests is not None:
                    if issued >= plan.requests:
                        return
                    issued += 1
                elif deadline is not None and time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    await call()
                except GraphPipeError as exc:
                    result.errors.append(exc)
                else:
                    result.latencies.append(time.perf_counter() - t0)

        tasks = [asyncio.create_task(worker()) for _ in range(plan.concurrency)]
        try:
            while True:
                _, pending = await asyncio.wait(tasks, timeout=0.1)
                progress.update(result.done, time.perf_counter() - start)
                if not pending:
                    break
            for task in tasks:
                task.result()  # a bug in a worker surfaces here
        except BaseException:  # Ctrl-C cancels this task (asyncio.run): keep the figures so far
            result.elapsed = time.perf_counter() - start
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        result.elapsed = time.perf_counter() - start


def _coalesce(args: argparse.Namespace) -> Coalesce | None:
    """``--coalesce-rows``/``--coalesce-wait`` as the client's option, or ``None``."""
    rows: int | None = getattr(args, "coalesce_rows", None)
    wait: float | None = getattr(args, "coalesce_wait", None)
    if rows is None and wait is None:
        return None
    default = Coalesce()
    return Coalesce(
        max_rows=default.max_rows if rows is None else rows,
        max_wait=default.max_wait if wait is None else wait,
    )


def _bench_report(url: str, plan: _BenchPlan, result: _BenchResult, mode: str) -> str:
    lines = [f"bench {parse_endpoint(url).redacted} ({mode}, concurrency {plan.concurrency})"]
    for label, arr in zip(plan.labels, plan.inputs, strict=True):
        lines.append(f"input {describe(label, arr)}")
    ok = len(result.latencies)
    stopped = " (interrupted: a partial report)" if result.interrupted else ""
    lines.append(
        f"requests: {result.done} in {result.elapsed:.2f} s, {ok} ok, {len(result.errors)} failed"
        + stopped
    )
    if ok:
        ms = np.asarray(result.latencies) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        lines.append(
            f"latency (ms): p50 {p50:.3f}  p90 {p90:.3f}  p99 {p99:.3f}  max {ms.max():.3f}"
            f"  mean {ms.mean():.3f}"
        )
    else:
        lines.append("latency (ms): no successful request")
    rate = ok / result.elapsed if result.elapsed > 0 else 0.0
    lines.append(f"throughput: {rate:.1f} requests/s, {rate * plan.rows:.1f} rows/s")
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run ``bench``: plan, warm up, run, print the report; the exit status."""
    plan = _bench_plan(args)
    progress = _BenchProgress(args, plan)
    options = client_options(args)
    mode = "async" if args.use_async else "sync"
    coalesce = _coalesce(args)
    if coalesce is not None:
        options["coalesce"] = coalesce
        mode += f", coalescing up to {coalesce.max_rows} rows, {coalesce.max_wait * 1e3:g} ms"
    result = _BenchResult()
    try:
        try:
            if args.use_async:
                asyncio.run(_bench_async_main(args.url, plan, options, progress, result))
            else:
                _bench_sync(args.url, plan, options, progress, result)
        finally:
            progress.finish()
    except KeyboardInterrupt:
        if not result.started:
            raise  # still warming up: nothing measured, nothing to report
        # Ctrl-C during the timed run: what was measured until then.
        result.interrupted = True
        print(_bench_report(args.url, plan, result, mode), flush=True)
        return EXIT_INTERRUPTED
    print(_bench_report(args.url, plan, result, mode))
    if result.errors:
        first = result.errors[0]
        raise CommandError(
            f"{len(result.errors)} of {result.done} requests failed; the first: {first}"
        )
    return EXIT_OK
