"""Load and leaks: many threads on one Client, many tasks on one AsyncClient, against the bundled server.

Every call sends its own input and checks its own output; the run must end
with zero errors, as many file descriptors open as before, and a resident
set that stopped growing after warm-up.

Budgets (environment variables; the defaults keep this file under 20 s, and
``nox -s soak`` runs the full sizes):

- ``GP_SOAK_THREADS`` (16) threads x ``GP_SOAK_CALLS`` (200) calls each, one ``Client``;
- ``GP_SOAK_TASKS`` (200) tasks sharing ``GP_SOAK_ASYNC_CALLS`` (2000) calls, one
  ``AsyncClient``: the tasks take the next call from a shared counter, so 200
  calls are in flight at once;
- ``GP_SOAK_MAX_SECONDS`` (60): a deadline for each phase; loops stop there
  and the test fails;
- ``GP_SOAK_RSS_GROWTH_MB`` (64): the allowed RSS growth from warm-up to end.

Every connection goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import serve

# Interpreter-independent and long: run by `nox -s tests` and `oldest`, not `tests_newer`.
pytestmark = pytest.mark.slow

THREADS = int(os.environ.get("GP_SOAK_THREADS", "16"))
CALLS = int(os.environ.get("GP_SOAK_CALLS", "200"))
TASKS = int(os.environ.get("GP_SOAK_TASKS", "200"))
ASYNC_CALLS = int(os.environ.get("GP_SOAK_ASYNC_CALLS", "2000"))
MAX_SECONDS = float(os.environ.get("GP_SOAK_MAX_SECONDS", "60"))
RSS_GROWTH_MB = float(os.environ.get("GP_SOAK_RSS_GROWTH_MB", "64"))
WARMUP = 0.2  # the fraction of the calls after which the first RSS sample is taken


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def wait_for_fds(target: int, seconds: float = 5.0) -> int:
    """Server threads close their side asynchronously: wait (bounded) for the count to settle."""
    deadline = time.monotonic() + seconds
    n = open_fds()
    while n > target and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
        n = open_fds()
    return n


def make_input(i: int) -> np.ndarray:
    """A distinct input per call: its output tells whether answers were mixed up."""
    return np.arange(i, i + 64, dtype=np.float64).reshape(8, 8)


@dataclass
class Figures:
    label: str
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    wrong: int = 0
    fds_before: int = 0
    fds_after: int = 0
    rss_warm: float = 0.0
    rss_end: float = 0.0
    seconds: float = 0.0
    requests_served: int = 0
    connections: int = 0

    def line(self) -> str:
        return (
            f"soak {self.label}: {self.calls} calls in {self.seconds:.1f} s "
            f"({self.calls / max(self.seconds, 1e-9):.0f}/s), {len(self.errors)} errors, "
            f"{self.wrong} wrong results, {self.connections} connections; open fds "
            f"{self.fds_before} before / {self.fds_after} after; RSS {self.rss_warm:.1f} MiB "
            f"after warm-up / {self.rss_end:.1f} MiB at the end "
            f"({self.rss_end - self.rss_warm:+.1f} MiB)"
        )


FIGURES: list[Figures] = []


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for f in FIGURES:
                reporter.write_line(f.line())
    path = os.environ.get("GP_SOAK_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(f.line() + "\n" for f in FIGURES)


def _check(fig: Figures, total: int) -> None:
    FIGURES.append(fig)
    assert fig.errors == [], fig.errors[:5]
    assert fig.wrong == 0
    assert fig.calls == total, f"only {fig.calls} of {total} calls within {MAX_SECONDS} s"
    assert fig.fds_after == fig.fds_before, fig.line()
    assert fig.rss_end - fig.rss_warm < RSS_GROWTH_MB, fig.line()


def test_threads_share_one_sync_client() -> None:
    total = THREADS * CALLS
    fig = Figures(f"sync {THREADS} threads x {CALLS} calls")
    done = 0
    lock = threading.Lock()
    warm = threading.Event()
    deadline = time.monotonic() + MAX_SECONDS

    with serve(double) as server:
        gc.collect()
        fig.fds_before = open_fds()
        client = gp.Client(server.url, pool_size=THREADS, timeout=30)

        def work(t: int) -> None:
            nonlocal done
            for j in range(CALLS):
                if time.monotonic() > deadline:
                    return
                i = t * CALLS + j
                x = make_input(i)
                try:
                    y = client.execute(x)
                except gp.GraphPipeError as exc:
                    with lock:
                        fig.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                good = isinstance(y, np.ndarray) and np.array_equal(y, x * 2)
                with lock:
                    done += 1
                    fig.wrong += not good
                    if done == int(total * WARMUP):
                        warm.set()

        start = time.monotonic()
        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        warm.wait(MAX_SECONDS)
        fig.rss_warm = rss_mb()
        for th in threads:
            th.join(MAX_SECONDS + 5)
        fig.seconds = time.monotonic() - start
        gc.collect()
        fig.rss_end = rss_mb()
        fig.calls = done
        fig.requests_served = server.requests_served
        fig.connections = server.connections_accepted
        client.close()
        fig.fds_after = wait_for_fds(fig.fds_before)
    assert fig.requests_served == total
    assert fig.connections <= THREADS
    _check(fig, total)


def test_tasks_share_one_async_client() -> None:
    total = ASYNC_CALLS
    fig = Figures(f"async {TASKS} tasks sharing {ASYNC_CALLS} calls")

    async def main(url: str) -> None:
        next_call = 0
        done = 0
        deadline = time.monotonic() + MAX_SECONDS
        # The default pool (10 connections): httpcore's pool does work in
        # proportion to connections x waiting requests on every request, so
        # a larger pool is slower here, not faster (see docs/reliability.md).
        client = gp.AsyncClient(url, timeout=30)

        async def task() -> None:
            nonlocal next_call, done
            while next_call < total and time.monotonic() < deadline:
                i = next_call
                next_call += 1
                x = make_input(i)
                try:
                    y = await client.execute(x)
                except gp.GraphPipeError as exc:
                    fig.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                fig.wrong += not (isinstance(y, np.ndarray) and np.array_equal(y, x * 2))
                done += 1
                if done == int(total * WARMUP):
                    fig.rss_warm = rss_mb()

        try:
            await asyncio.gather(*(task() for _ in range(TASKS)))
        finally:
            await client.aclose()
        fig.calls = done

    with serve(double) as server:
        gc.collect()
        fig.fds_before = open_fds()
        start = time.monotonic()
        asyncio.run(main(server.url))
        fig.seconds = time.monotonic() - start
        gc.collect()
        fig.rss_end = rss_mb()
        fig.requests_served = server.requests_served
        fig.connections = server.connections_accepted
        fig.fds_after = wait_for_fds(fig.fds_before)
    assert fig.requests_served == total
    assert fig.connections <= 10
    _check(fig, total)
