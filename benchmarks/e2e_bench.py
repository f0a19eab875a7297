"""End-to-end benchmarks against the benchmark server on loopback.

- large: one ``Client.execute`` of the seed request (77 MB out, 12.8 MB back)
  against the raw-socket floor and the 2018 client;
- small: a 1x10 float32 call, our sync ``Client`` against a bare urllib3 POST
  of the same bytes and our ``AsyncClient`` against a bare ``httpx.AsyncClient``
  POST;
- throughput: rows/s with 1 and 5 concurrent callers (threads sharing one
  sync client, tasks sharing one async client), on the seed shape and on
  1-row requests.

Every case is checked once for the right answer before it is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np

import graphpipe_client as gp
from graphpipe_client._transports import send_thread as _send_thread

from . import legacy
from .rawclient import RawClient, request_head
from .server import BenchServer
from .timing import Figure, MachineUse, interleaved, median
from .workloads import WORKLOADS, Workload

__all__ = ["run_large", "run_server_floor", "run_small", "run_throughput"]

Log = Callable[[str], None]
SYNC = "graphpipe-client Client"
ASYNC = "graphpipe-client AsyncClient"
RAW = "raw socket (floor)"
OLD = "graphpipe 2018 (requests)"
ASYNC_UV = f"{ASYNC} on uvloop"


def _uvloop() -> Any:
    """uvloop's module, or ``None`` when it is not installed (its figures are then left out)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def _run_on(loop_factory: Callable[[], asyncio.AbstractEventLoop] | None, main: Any) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def _check(out: Any, w: Workload, who: str) -> None:
    arr = np.asarray(out)
    if arr.shape != w.response_shape or not np.array_equal(arr, w.response):
        raise AssertionError(f"{who} got a wrong answer for {w.name}")


def _raw_call(
    server: BenchServer, w: Workload, path: str | None = None
) -> tuple[RawClient, Callable[[], memoryview]]:
    msg = gp.codec.encode_infer_request([w.request])
    head = request_head(path or w.path, msg.nbytes, server.port)
    raw = RawClient(server.port, len(w.response_bytes()))
    # The same bytes from the same memory as our client: the message segments
    # (views of the request array). A small request goes out in one send.
    parts: list[bytes | memoryview] = (
        [head + msg.tobytes()]
        if msg.nbytes <= 64 * 1024
        else [head, *(memoryview(s) for s in msg.segments)]
    )
    expected = w.response_bytes()
    if bytes(raw.post(parts)) != expected:
        raise AssertionError("the raw client got a wrong answer")
    return raw, lambda: raw.post(parts)


def run_server_floor(
    server: BenchServer, runs: int, log: Log = print
) -> tuple[list[Figure], dict[str, Any]]:
    """The server alone: raw-socket round trips, and the server's own CPU time per call."""
    figures = []
    info: dict[str, Any] = {}
    for name in ("seed", "row", "tiny"):
        w = WORKLOADS[name]
        raw, post = _raw_call(server, w)
        count = [0]

        def call(post: Callable[[], memoryview] = post, count: list[int] = count) -> None:
            post()
            count[0] += 1

        with raw:
            cpu0 = server.cpu_seconds()
            n0 = count[0]
            res = interleaved({RAW: (call, None)}, runs=runs, warmup=2, run_seconds=0.05)
            cpu1 = server.cpu_seconds()
            calls = max(1, count[0] - n0)
        t = median(res[RAW])
        cpu = (cpu1 - cpu0) / calls if cpu0 is not None and cpu1 is not None else None
        info[name] = {"round_trip_s": t, "server_cpu_per_call_s": cpu}
        figures.append(
            Figure(
                section="server",
                name=f"raw round trip, {name} {w.request_shape} -> {w.response_shape}",
                unit="s",
                value=t,
                note="" if cpu is None else f"server CPU {cpu * 1e6:.0f} us/call",
                samples=res[RAW],
            )
        )
        log(
            f"  {name}: raw round trip {t * 1e3:.3f} ms"
            + ("" if cpu is None else f", server CPU {cpu * 1e6:.0f} us/call")
        )
    return figures, info


def run_large(
    server: BenchServer, runs: int, log: Log = print
) -> tuple[list[Figure], dict[str, float]]:
    w = WORKLOADS["seed"]
    x = w.request
    url = server.url(w.path)
    client = gp.Client(url)
    aclient = gp.AsyncClient(url)
    loop = asyncio.new_event_loop()
    uvloop = _uvloop()
    loops = [loop] if uvloop is None else [loop, uvloop.new_event_loop()]
    raw, raw_call = _raw_call(server, w)
    cases: dict[str, tuple[Callable[[], object], int | None]] = {
        SYNC: (lambda: client.execute(x), 1),
        RAW: (raw_call, 1),
        ASYNC: (lambda: loop.run_until_complete(aclient.execute(x)), 1),
    }
    _check(client.execute(x), w, SYNC)
    _check(loop.run_until_complete(aclient.execute(x)), w, ASYNC)
    if uvloop is not None:
        uv = loops[1]
        cases[ASYNC_UV] = (lambda: uv.run_until_complete(aclient.execute(x)), 1)
        _check(uv.run_until_complete(aclient.execute(x)), w, ASYNC_UV)
    old = legacy.load()
    if isinstance(old, str):
        log(f"  (2018 client left out: {old})")
    else:
        remote = old[0]
        _check(remote.execute(url, x), w, OLD)
        cases[OLD] = (lambda: remote.execute(url, x), 1)
    try:
        res = interleaved(cases, runs=runs, warmup=1)
    finally:
        client.close()
        for lp in loops:
            lp.run_until_complete(aclient.aclose())
            lp.run_until_complete(lp.shutdown_asyncgens())
            lp.close()
        raw.close()
    t = {k: median(v) for k, v in res.items()}
    log("  " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t.items()))
    what = "execute 128x224x224x3 f32 (77 MB) -> 128x7x7x512 (12.8 MB)"
    figures = [
        Figure(
            "e2e large",
            f"{SYNC}: {what}",
            "s",
            t[SYNC],
            RAW,
            t[RAW],
            1.25,
            "<= 1.25x the raw-socket floor",
            samples=res[SYNC],
            baseline_samples=res[RAW],
        ),
        *(
            Figure(
                "e2e large",
                f"{name}: {what}",
                "s",
                t[name],
                RAW,
                t[RAW],
                1.1,
                "<= 1.1x the raw-socket floor",
                samples=res[name],
                baseline_samples=res[RAW],
            )
            for name in (ASYNC, ASYNC_UV)
            if name in t
        ),
    ]
    if OLD in t:
        figures.append(
            Figure(
                "e2e large",
                f"{SYNC} vs the 2018 client: {what}",
                "s",
                t[SYNC],
                OLD,
                t[OLD],
                1 / 3,
                ">= 3x faster than the 2018 client (ratio <= 0.33)",
                samples=res[SYNC],
                baseline_samples=res[OLD],
            )
        )
    return figures, t


async def _ainterleaved(
    cases: dict[str, Callable[[], Awaitable[object]]], runs: int, calls: int
) -> dict[str, list[float]]:
    names = list(cases)
    for name in names:
        await cases[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = cases[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                await fn()
            out[name].append((time.perf_counter() - t0) / calls)
    return out


def run_small(
    server: BenchServer, runs: int, calls: int, log: Log = print
) -> tuple[list[Figure], dict[str, float]]:
    import httpx
    import urllib3

    w = WORKLOADS["tiny"]
    x = w.request
    body = w.request_bytes()  # the very bytes our client sends
    url = server.url(w.path)
    headers = {"Content-Type": "application/octet-stream"}
    client = gp.Client(url)
    pool = urllib3.HTTPConnectionPool("127.0.0.1", server.port, maxsize=1)
    raw, raw_call = _raw_call(server, w)

    def bare_urllib3() -> bytes:
        return pool.urlopen("POST", w.path, body=body, headers=headers).data  # type: ignore[no-any-return]

    expected = w.response_bytes()
    if bare_urllib3() != expected:
        raise AssertionError("bare urllib3 got a wrong answer")
    _check(client.execute(x), w, SYNC)
    try:
        res = interleaved(
            {
                SYNC: (lambda: client.execute(x), calls),
                "bare urllib3 POST": (bare_urllib3, calls),
                RAW: (raw_call, calls),
            },
            runs=runs,
            warmup=20,
        )
    finally:
        client.close()
        pool.close()
        raw.close()

    async def async_part(suffix: str = "") -> dict[str, list[float]]:
        async with gp.AsyncClient(url) as aclient, httpx.AsyncClient() as hx:

            async def bare_httpx() -> bytes:
                r = await hx.post(url, content=body, headers=headers)
                return r.content

            if await bare_httpx() != expected:
                raise AssertionError("bare httpx got a wrong answer")
            _check(await aclient.execute(x), w, ASYNC)
            for _ in range(20):
                await aclient.execute(x)
                await bare_httpx()
            return await _ainterleaved(
                {
                    ASYNC + suffix: lambda: aclient.execute(x),
                    "bare httpx.AsyncClient POST" + suffix: bare_httpx,
                },
                runs,
                calls,
            )

    res.update(_run_on(None, async_part()))
    uvloop = _uvloop()
    if uvloop is not None:
        res.update(_run_on(uvloop.new_event_loop, async_part(" on uvloop")))
    t = {k: median(v) for k, v in res.items()}
    log("  " + ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in t.items()))
    what = "execute 1x10 f32"
    return (
        [
            Figure(
                "e2e small",
                f"{SYNC}: {what}",
                "s",
                t[SYNC],
                "bare urllib3 POST",
                t["bare urllib3 POST"],
                1.2,
                "<= 1.2x a bare urllib3 POST",
                samples=res[SYNC],
                baseline_samples=res["bare urllib3 POST"],
            ),
            *(
                Figure(
                    "e2e small",
                    f"{ASYNC}{suffix}: {what}",
                    "s",
                    t[ASYNC + suffix],
                    "bare httpx.AsyncClient POST" + suffix,
                    t["bare httpx.AsyncClient POST" + suffix],
                    0.9,
                    "<= 0.9x a bare httpx POST",
                    samples=res[ASYNC + suffix],
                    baseline_samples=res["bare httpx.AsyncClient POST" + suffix],
                )
                for suffix in ("", " on uvloop")
                if ASYNC + suffix in t
            ),
            *(
                Figure(
                    "e2e small",
                    f"{kind} vs the raw floor: {what}",
                    "s",
                    t[kind],
                    RAW,
                    t[RAW],
                    2.5,
                    "<= 2.5x the raw socket (issue 22)",
                    samples=res[kind],
                    baseline_samples=res[RAW],
                )
                for kind in (SYNC, ASYNC)
                if kind in t
            ),
        ],
        t,
    )


# --------------------------------------------------------------------------
# Throughput


def _threads_rows_per_s(
    make_call: Callable[[], Callable[[], object]], callers: int, calls: int, rows: int
) -> float:
    """Rows/s of ``callers`` threads making ``calls`` calls each (after one untimed call each)."""
    ready = threading.Barrier(callers + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            call = make_call()
            call()
        except BaseException as exc:
            errors.append(exc)
            ready.abort()
            return
        ready.wait()
        try:
            for _ in range(calls):
                call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(callers)]
    for th in threads:
        th.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(timeout=120)
    t0 = time.perf_counter()
    for th in threads:
        th.join(timeout=600)
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return callers * calls * rows / elapsed


async def _tasks_rows_per_s(
    call: Callable[[], Awaitable[object]], callers: int, calls: int, rows: int
) -> float:
    await asyncio.gather(*(call() for _ in range(callers)))  # one untimed call each

    async def worker() -> None:
        for _ in range(calls):
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(callers)))
    return callers * calls * rows / (time.perf_counter() - t0)


#: Simulated model time (ms) of the throughput runs "with a model": the server
#: answers after this long, as a model running elsewhere (an accelerator, other
#: cores) would, so that concurrent callers can overlap their transfers with it.
MODEL_MS = 5

#: Tasks sharing one async client in the "no collapse with many waiting calls" run.
TASKS = 200

#: The key of the run of 5 tasks whose large request bodies are all written from the
#: event loop's thread (the fast path's send threads off), set beside the usual 5 tasks.
LOOP_SENDS = -5


@contextlib.contextmanager
def _send_threads(on: bool) -> Iterator[None]:
    """The async fast path's send threads on (as shipped) or off (every body from the loop)."""
    if on:
        yield
        return
    cap = _send_thread.MAX_SEND_THREADS
    _send_thread.MAX_SEND_THREADS = 0  # type: ignore[misc]
    try:
        yield
    finally:
        _send_thread.MAX_SEND_THREADS = cap  # type: ignore[misc]


#: Rows the 5 callers move together per side of a paired round: 6 calls of 128 rows each,
#: or 768 of 1 row; about 0.7 s on the 2-core machine.
PAIRED_ROWS = 3840


def _paired_with_floor(
    server: BenchServer,
    w: Workload,
    path: str,
    kind: str,
    goal: float | None,
    rounds: int,
    calls: int,
    label: str,
    log: Log,
) -> Figure:
    """5 callers of ``kind`` against the raw floor at 5 sockets, round by round, paired.

    Each round runs the floor's 5 threads, then the client's 5 callers (threads on
    one ``Client``, or tasks on one ``AsyncClient`` on a loop kept for every round),
    the same calls each; the figure is the median of the rounds' ratios. A drift of
    the shared machine moves both sides of a round alike, where the medians of
    runs taken minutes apart (the figures above) can differ by 10% either way.
    """
    n = max(calls, -(-PAIRED_ROWS // (5 * w.rows)))
    x = w.request
    url = server.url(path)
    rates: list[float] = []
    floors: list[float] = []

    def floor_rate() -> float:
        return _threads_rows_per_s(lambda: _raw_call(server, w, path)[1], 5, n, w.rows)

    if kind == SYNC:
        with gp.Client(url) as client:
            for _ in range(rounds):
                floors.append(floor_rate())
                rates.append(_threads_rows_per_s(lambda: lambda: client.execute(x), 5, n, w.rows))
    else:
        uvloop = _uvloop() if kind == ASYNC_UV else None
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
            aclient = gp.AsyncClient(url)
            try:
                for _ in range(rounds):
                    floors.append(floor_rate())
                    rates.append(
                        runner.run(_tasks_rows_per_s(lambda: aclient.execute(x), 5, n, w.rows))
                    )
            finally:
                runner.run(aclient.aclose())
    ratios = [r / f for r, f in zip(rates, floors, strict=True)]
    log(
        f"  {label}: {kind} at 5 callers, paired with the raw floor at 5 sockets: "
        f"{median(rates):.0f} vs {median(floors):.0f} rows/s, median ratio "
        f"{median(ratios):.3f} over {rounds} rounds (from {min(ratios):.3f} to {max(ratios):.3f})"
    )
    return Figure(
        "throughput",
        f"{kind}: rows/s at 5 callers vs the raw floor at 5 sockets, {label} (paired rounds)",
        "x floor",
        median(ratios),
        "raw floor at 5 sockets, same round",
        1.0,
        goal,
        f">= {goal:g}x the raw floor (issue 22)" if goal else "",
        lower_is_better=False,
        note=f"medians {median(rates):.0f} vs {median(floors):.0f} rows/s; "
        f"{rounds} rounds of {n} calls per caller",
        samples=ratios,
        baseline_samples=[1.0] * len(ratios),
    )


def run_throughput(
    server: BenchServer, runs: int, quick: bool, log: Log = print
) -> tuple[list[Figure], dict[str, Any]]:
    """Rows/s at 1 and 5 callers, with an instant server and with a simulated model time."""
    old = legacy.load()
    remote = None if isinstance(old, str) else old[0]
    figures: list[Figure] = []
    table: dict[str, dict[str, dict[int, float]]] = {}
    machine_use: dict[tuple[str, str, int], float] = {}  # share of all cores busy, async runs
    scenarios = [
        (name, model_ms, calls)
        for model_ms in (0, MODEL_MS)
        for name, calls in (("seed", 2 if quick else 4), ("row", 20 if quick else 60))
    ]
    for name, model_ms, calls in scenarios:
        w = WORKLOADS[name]
        key = name if not model_ms else f"{name}+{model_ms}ms"
        path = w.path if not model_ms else f"{w.path}?ms={model_ms}"
        label = f"{name} {w.request_shape}" + (
            f", model {model_ms} ms" if model_ms else ", instant server"
        )
        x = w.request
        url = server.url(path)
        rows = w.rows
        table[key] = {}
        with gp.Client(url) as client:
            _check(client.execute(x), w, SYNC)

            def raw_factory(w: Workload = w, path: str = path) -> Callable[[], object]:
                return _raw_call(server, w, path)[1]

            kinds: dict[str, Callable[[], Callable[[], object]]] = {
                RAW: raw_factory,
                SYNC: lambda client=client, x=x: lambda: client.execute(x),
            }
            if remote is not None:
                kinds[OLD] = lambda url=url, x=x: lambda: remote.execute(url, x)
            samples: dict[tuple[str, int], list[float]] = {}
            for _ in range(runs):
                for kind, factory in kinds.items():
                    for callers in (1, 5):
                        n = max(1, calls // 2) if kind == OLD else calls
                        rate = _threads_rows_per_s(factory, callers, n, rows)
                        samples.setdefault((kind, callers), []).append(rate)

        many = TASKS if name == "row" else 0  # many small calls: what a large pool must not slow

        async def async_part(
            url: str = url,
            x: np.ndarray = x,
            calls: int = calls,
            rows: int = rows,
            many: int = many,
        ) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
            counts: tuple[int, ...] = (1, 5) if not many else (1, 5, many)
            if x.nbytes >= _send_thread.THREAD_SEND_BYTES:
                counts += (LOOP_SENDS,)  # the same 5 tasks with the threads off, side by side
            out: dict[int, list[float]] = {c: [] for c in counts}
            used: dict[int, list[float]] = {c: [] for c in counts}
            async with gp.AsyncClient(url) as aclient:
                for _ in range(runs):
                    for callers in counts:
                        tasks = 5 if callers == LOOP_SENDS else callers
                        n = calls if tasks <= 5 else max(1, calls * 5 // tasks)
                        use = MachineUse()
                        with _send_threads(callers != LOOP_SENDS):
                            rate = await _tasks_rows_per_s(
                                lambda: aclient.execute(x), tasks, n, rows
                            )
                        out[callers].append(rate)
                        share = use.stop()
                        if share is not None:
                            used[callers].append(share)
            return out, used

        uvloop = _uvloop()
        loops: list[tuple[str, Any]] = [(ASYNC, None)]
        if uvloop is not None:
            loops.append((ASYNC_UV, uvloop.new_event_loop))
        for kind, factory in loops:
            rates_by, used_by = _run_on(factory, async_part())
            for callers, rates in rates_by.items():
                samples[(kind, callers)] = rates
                if used_by[callers]:
                    machine_use[(key, kind, callers)] = median(used_by[callers])
        for (kind, callers), rates in samples.items():
            table[key].setdefault(kind, {})[callers] = median(rates)
        for kind, by in table[key].items():
            log(
                f"  {label}: {kind}: {by[1]:.0f} rows/s at 1 caller, {by[5]:.0f} at 5"
                + (f", {by[TASKS]:.0f} at {TASKS}" if TASKS in by else "")
            )
            target: float | None = 1.0 if kind in (SYNC, ASYNC, ASYNC_UV) else None
            if kind in (ASYNC, ASYNC_UV) and name == "seed" and not model_ms:
                # Issue 14's "5 tasks give 1.2x the rows/s of 1", which 2 cores cannot show,
                # is replaced by issue 22's 5 tasks against the raw floor at 5 (below).
                target = None
            if LOOP_SENDS in by:
                figures.append(
                    Figure(
                        "throughput",
                        f"{kind}: rows/s at 5 tasks, large bodies from threads vs from the "
                        f"loop, {label}",
                        "rows/s",
                        by[5],
                        "5 tasks, bodies from the loop",
                        by[LOOP_SENDS],
                        None,
                        "",
                        lower_is_better=False,
                        samples=samples[(kind, 5)],
                        baseline_samples=samples[(kind, LOOP_SENDS)],
                    )
                )
            if TASKS in by:
                figures.append(
                    Figure(
                        "throughput",
                        f"{kind}: rows/s at {TASKS} tasks vs 5, {label}",
                        "rows/s",
                        by[TASKS],
                        "5 tasks",
                        by[5],
                        1.0 if not model_ms else None,
                        f"{TASKS} tasks give at least the rows/s of 5" if not model_ms else "",
                        lower_is_better=False,
                        samples=samples[(kind, TASKS)],
                        baseline_samples=samples[(kind, 5)],
                    )
                )
            figures.append(
                Figure(
                    "throughput",
                    f"{kind}: rows/s at 5 callers vs 1, {label}",
                    "rows/s",
                    by[5],
                    "1 caller",
                    by[1],
                    target,
                    f"5 callers give at least {target}x the rows/s of 1" if target else "",
                    lower_is_better=False,
                    samples=samples[(kind, 5)],
                    baseline_samples=samples[(kind, 1)],
                )
            )
        if not model_ms:
            # Issue 22: against the raw floor at 5 sockets, in rounds that pair them:
            # 5 threads making 1-row calls on one Client; 5 tasks of 128-row calls on one
            # AsyncClient.
            checks = [(SYNC, 0.7)] if name == "row" else [(ASYNC, 0.95), (ASYNC_UV, None)]
            for kind, goal in checks:
                if kind == ASYNC_UV and uvloop is None:
                    continue
                figures.append(
                    _paired_with_floor(
                        server, w, path, kind, goal, 8 if quick else 12, calls, label, log
                    )
                )
        if name == "seed" and not model_ms and RAW in table[key]:
            # Issue 14's 1.2x is against the client's own 1-task figure. How much room the
            # machine leaves above it: the most any client got here, the raw floor at 5.
            ceiling = table[key][RAW][5]
            for kind in (ASYNC, ASYNC_UV):
                if kind not in table[key]:
                    continue
                by = table[key][kind]
                use1 = machine_use.get((key, kind, 1))
                use5 = machine_use.get((key, kind, 5))
                cores = os.cpu_count() or 1
                busy = (
                    f"; the machine's {cores} cores were {use1:.0%} busy at 1 task, {use5:.0%} at 5"
                    if use1 is not None and use5 is not None
                    else ""
                )
                figures.append(
                    Figure(
                        "throughput",
                        f"{kind}: rows/s at 1 task vs the raw floor at 5 callers, {label}",
                        "rows/s",
                        by[1],
                        "raw floor at 5 callers",
                        ceiling,
                        None,
                        "",
                        lower_is_better=False,
                        note=f"1.2x of 1 task would be {1.2 * by[1] / ceiling:.2f}x the floor's "
                        f"5-caller rows/s; 5 tasks reach {by[5] / ceiling:.2f}x of it{busy}",
                        samples=samples[(kind, 1)],
                        baseline_samples=samples[(RAW, 5)],
                    )
                )
    return figures, table
