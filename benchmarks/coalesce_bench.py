"""Coalescing: 64 callers of 1 row each, with and without ``Coalesce``, threads and tasks.

The server is the bundled one (``graphpipe_client.testing.serve``) in a child
process of its own (no GIL shared with the client), with one of three models:

- **5 ms, one call at a time**: the model holds a lock for 5 ms per request, as
  a model on one device does (a GPU, or a CPU model using the cores): this is
  the server the issue describes, where a 64-row request costs what a 1-row
  request does; the target (10x) applies here;
- **5 ms, side by side**: a sleep without a lock, so that 64 requests in flight
  take 5 ms together. No client can reach 10x there: 64 callers that each
  wait for their own answer have at most 64 rows in flight, 12,800 rows/s at
  5 ms whether merged or not, and uncoalesced callers already reach a fifth of
  that. Reported beside it, without a target;
- **instant** (target 3x). 64 callers share one client: threads on
``Client``, tasks on ``AsyncClient``; each sends 1-row calls one after the
other for a fixed time. The figures are rows/s of all callers together, and
each case's p50 and p99 call latency; the cases run interleaved, so the
ratios come from the same state of the machine. Last, one caller alone: its
p50 with coalescing against its p50 without (the target allows ``max_wait``
plus 10%). ``Coalesce(eager=False)`` (every call waits for others, idle or
not) runs beside the default in every case, without a target.

``python -m benchmarks.coalesce_bench --serve MS`` runs the server alone;
``python -m benchmarks.coalesce_bench [--quick]`` prints the figures.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import graphpipe_client as gp

from .child_server import ChildServer
from .timing import Figure, median

__all__ = ["run_coalesce"]

Log = Callable[[str], None]

CALLERS = 64
WIDTH = 16  # float32 per row
MODEL_MS = 5
OPTIONS = gp.Coalesce(max_rows=64, max_wait=0.002)
#: The same without the idle shortcut (every call waits up to max_wait): shown beside, no target.
WAITING = gp.Coalesce(max_rows=64, max_wait=0.002, eager=False)


def _serve(ms: int, one_at_a_time: bool) -> None:
    from graphpipe_client.testing import serve

    device = threading.Lock()

    def model(x: np.ndarray) -> np.ndarray:
        if ms and one_at_a_time:
            with device:
                time.sleep(ms / 1000)
        elif ms:
            time.sleep(ms / 1000)
        return x * 2

    with serve(model) as server:
        sys.stdout.write(f"PORT {server.port}\n")
        sys.stdout.flush()
        sys.stdin.buffer.read()  # until the parent closes it


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def _threads(
    client: gp.Client, callers: int, seconds: float, gap: float = 0.0
) -> tuple[float, list[float]]:
    """Rows/s of ``callers`` threads sending 1-row calls for ``seconds``; the latencies.

    ``gap``: seconds of sleep before each call (not timed)."""
    lat: list[list[float]] = [[] for _ in range(callers)]
    wrong = []
    barrier = threading.Barrier(callers + 1)
    stop = [0.0]

    def work(i: int) -> None:
        x = np.full((1, WIDTH), i, np.float32)
        mine = lat[i]
        barrier.wait()
        end = stop[0]
        while True:
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            if t0 >= end:
                return
            y = client.execute(x)
            mine.append(time.perf_counter() - t0)
            if y[0, 0] != 2 * i:  # type: ignore[index]
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop[0] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if wrong:
        raise AssertionError(f"wrong answers for callers {sorted(set(wrong))[:8]}")
    flat = [v for vs in lat for v in vs]
    return len(flat) / took, flat


def _tasks(
    url: str, coalesce: gp.Coalesce | None, callers: int, seconds: float
) -> tuple[float, list[float]]:
    """Rows/s of ``callers`` tasks sending 1-row calls for ``seconds``; the latencies."""

    async def main() -> tuple[float, list[float]]:
        async with gp.AsyncClient(url, pool_size=callers, coalesce=coalesce) as client:
            await client.execute(np.zeros((1, WIDTH), np.float32))  # connect once
            lat: list[float] = []
            wrong = []
            end = time.perf_counter() + seconds

            async def work(i: int) -> None:
                x = np.full((1, WIDTH), i, np.float32)
                while True:
                    t0 = time.perf_counter()
                    if t0 >= end:
                        return
                    y = await client.execute(x)
                    lat.append(time.perf_counter() - t0)
                    if y[0, 0] != 2 * i:  # type: ignore[index]
                        wrong.append(i)

            start = time.perf_counter()
            await asyncio.gather(*(work(i) for i in range(callers)))
            took = time.perf_counter() - start
            if wrong:
                raise AssertionError(f"wrong answers for callers {sorted(set(wrong))[:8]}")
            return len(lat) / took, lat

    return asyncio.run(main())


def _case_figures(
    label: str, rates: dict[str, list[float]], lats: dict[str, list[float]], target: float | None
) -> list[Figure]:
    figures = []
    for kind in ("threads on Client", "tasks on AsyncClient"):
        on, off = f"{kind}, coalesced", f"{kind}, alone"
        ratios = [a / b for a, b in zip(rates[on], rates[off], strict=True)]
        figures.append(
            Figure(
                "coalesce",
                f"rows/s of {CALLERS} callers x 1 row, {kind}, {label}: Coalesce(64, 2 ms) vs none",
                "rows/s",
                median(rates[on]),
                "no coalescing",
                median(rates[off]),
                target,
                f">= {target:g}x without coalescing"
                if target
                else "(no target: see the docstring)",
                lower_is_better=False,
                note=(
                    f"median of per-run ratios {median(ratios):.2f}x; p50/p99 "
                    f"{_pct(lats[on], 0.5) * 1e3:.2f}/{_pct(lats[on], 0.99) * 1e3:.2f} ms "
                    f"coalesced, {_pct(lats[off], 0.5) * 1e3:.2f}/"
                    f"{_pct(lats[off], 0.99) * 1e3:.2f} ms alone"
                ),
                samples=rates[on],
                baseline_samples=rates[off],
            )
        )
    return figures


def _many(url: str, label: str, runs: int, seconds: float, target: float | None, log: Log) -> Any:
    rates: dict[str, list[float]] = {}
    lats: dict[str, list[float]] = {}
    with (
        gp.Client(url, pool_size=CALLERS) as alone,
        gp.Client(url, pool_size=CALLERS, coalesce=OPTIONS) as merged,
        gp.Client(url, pool_size=CALLERS, coalesce=WAITING) as waiting,
    ):
        cases: dict[str, Callable[[], tuple[float, list[float]]]] = {
            "threads on Client, alone": lambda: _threads(alone, CALLERS, seconds),
            "threads on Client, coalesced": lambda: _threads(merged, CALLERS, seconds),
            "tasks on AsyncClient, alone": lambda: _tasks(url, None, CALLERS, seconds),
            "tasks on AsyncClient, coalesced": lambda: _tasks(url, OPTIONS, CALLERS, seconds),
            "threads on Client, coalesced, eager=False": lambda: _threads(
                waiting, CALLERS, seconds
            ),
            "tasks on AsyncClient, coalesced, eager=False": lambda: _tasks(
                url, WAITING, CALLERS, seconds
            ),
        }
        for fn in cases.values():
            fn()  # warm-up (connections)
        names = list(cases)
        for r in range(runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rate, lat = cases[name]()
                rates.setdefault(name, []).append(rate)
                lats.setdefault(name, []).extend(lat)
    for name in cases:
        log(
            f"  {label}, {name}: {median(rates[name]):,.0f} rows/s, p50 "
            f"{_pct(lats[name], 0.5) * 1e3:.2f} ms, p99 {_pct(lats[name], 0.99) * 1e3:.2f} ms"
        )
    return _case_figures(label, rates, lats, target), {
        name: {
            "rows_per_s": median(rates[name]),
            "p50_ms": _pct(lats[name], 0.5) * 1e3,
            "p99_ms": _pct(lats[name], 0.99) * 1e3,
        }
        for name in cases
    }


def _one_caller(url: str, label: str, runs: int, seconds: float, log: Log) -> Any:
    lats: dict[str, list[float]] = {}
    with (
        gp.Client(url) as alone,
        gp.Client(url, coalesce=OPTIONS) as merged,
        gp.Client(url, coalesce=WAITING) as waiting,
    ):
        cases: dict[str, Callable[[], tuple[float, list[float]]]] = {
            "Client, alone": lambda: _threads(alone, 1, seconds),
            "Client, coalesced": lambda: _threads(merged, 1, seconds),
            "Client, alone, idle max_wait between calls": lambda: _threads(
                alone, 1, seconds, OPTIONS.max_wait
            ),
            "AsyncClient, alone": lambda: _tasks(url, None, 1, seconds),
            "AsyncClient, coalesced": lambda: _tasks(url, OPTIONS, 1, seconds),
            "Client, coalesced, eager=False": lambda: _threads(waiting, 1, seconds),
            "AsyncClient, coalesced, eager=False": lambda: _tasks(url, WAITING, 1, seconds),
        }
        for fn in cases.values():
            fn()
        names = list(cases)
        for r in range(runs):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                lats.setdefault(name, []).extend(cases[name]()[1])
    figures = []
    table = {}
    for kind in ("Client", "AsyncClient"):
        on, off = lats[f"{kind}, coalesced"], lats[f"{kind}, alone"]
        p50_on, p50_off = _pct(on, 0.5), _pct(off, 0.5)
        bound = (p50_off + OPTIONS.max_wait) * 1.1
        log(
            f"  one caller, {label}, {kind}: p50/p99 {p50_on * 1e3:.2f}/{_pct(on, 0.99) * 1e3:.2f} ms "
            f"coalesced, {p50_off * 1e3:.2f}/{_pct(off, 0.99) * 1e3:.2f} ms alone "
            f"(bound {bound * 1e3:.2f} ms)"
        )
        figures.append(
            Figure(
                "coalesce",
                f"p50 of one caller alone, {kind}, {label}: Coalesce(64, 2 ms) vs none",
                "s",
                p50_on,
                "no coalescing",
                p50_off,
                bound / p50_off,
                "<= p50 + max_wait + 10%",
                note=(
                    f"p99 {_pct(on, 0.99) * 1e3:.2f} ms coalesced, "
                    f"{_pct(off, 0.99) * 1e3:.2f} ms alone"
                ),
                samples=on,
                baseline_samples=off,
            )
        )
        wait = lats[f"{kind}, coalesced, eager=False"]
        log(
            f"  one caller, {label}, {kind}, Coalesce(eager=False): p50/p99 "
            f"{_pct(wait, 0.5) * 1e3:.2f}/{_pct(wait, 0.99) * 1e3:.2f} ms (no target)"
        )
        table[kind] = {
            "p50_ms": p50_on * 1e3,
            "p50_alone_ms": p50_off * 1e3,
            "p50_eager_false_ms": _pct(wait, 0.5) * 1e3,
        }
    idle = lats["Client, alone, idle max_wait between calls"]
    log(
        f"  one caller, {label}, Client alone with {OPTIONS.max_wait * 1e3:g} ms idle before each "
        f"call: p50 {_pct(idle, 0.5) * 1e3:.2f} ms (what a request costs after the wait, "
        "coalescing or not)"
    )
    table["Client, idle between calls"] = {"p50_ms": _pct(idle, 0.5) * 1e3}
    return figures, table


def run_coalesce(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """The figures: 64 callers against the three servers; one caller alone."""
    runs = 3 if quick else 5
    seconds = 0.5 if quick else 1.0
    figures: list[Figure] = []
    table: dict[str, Any] = {}
    servers: tuple[tuple[int, bool, float | None, str], ...] = (
        (MODEL_MS, True, 10.0, f"a {MODEL_MS} ms model, one call at a time"),
        (MODEL_MS, False, None, f"a {MODEL_MS} ms model, calls side by side"),
        (0, False, 3.0, "the instant server"),
    )
    for ms, one_at_a_time, target, label in servers:
        args = ("--serve", str(ms)) + (("--one-at-a-time",) if one_at_a_time else ())
        server = ChildServer("benchmarks.coalesce_bench", *args)
        try:
            figs, t = _many(server.url, label, runs, seconds, target, log)
            figures += figs
            table[label] = t
            if ms == 0:
                figs, t = _one_caller(server.url, label, runs, seconds, log)
                figures += figs
                table["one caller"] = t
        finally:
            server.stop()
    return figures, table


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        _serve(int(sys.argv[2]), "--one-at-a-time" in sys.argv)
        return
    figures, _ = run_coalesce("--quick" in sys.argv)
    for f in figures:
        print(f"{f.name}: {f.value:,.4g} vs {f.baseline_name} {f.baseline}: {f.ratio}x")
        print(f"  {f.note}")


if __name__ == "__main__":
    main()
