"""Replicas: rows/s of ``execute_batched`` over 1, 2 and 4 bundled replicas, same total concurrency.

Each replica is the bundled server (``graphpipe_client.testing.serve``) in a
child process of its own (no GIL shared with the client, nor with the other
replicas), running a simulated 5 ms model that computes **one batch at a
time**: a lock around a 5 ms sleep, as a model holding one accelerator does.
So one replica serves at most 200 batches/s whatever the concurrency, and
adding replicas is what adds capacity; the client keeps the same total
concurrency (8 batches in flight) in every case and routes by fewest in
flight. The cases run interleaved in the same process, against the same
servers (the 1- and 2-replica cases use the first replicas of the four).

Also the cost of routing: ``Client([url])`` (one replica, routed) against
``Client(url)``, calls per second of one small ``execute`` after another,
with an instant model.

``python -m benchmarks.replicas_bench --serve MS`` runs one replica alone (it
prints ``PORT n`` and stops when its standard input closes);
``python -m benchmarks.replicas_bench [--quick]`` prints the figures.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import graphpipe_client as gp

from .child_server import ChildServer
from .timing import Figure, interleaved, median

__all__ = ["run_replicas"]

Log = Callable[[str], None]


WIDTH = 64  # float32 per row in
OUT = 8  # float32 per row out
BATCH = 256
MODEL_MS = 5
CONCURRENCY = 8


def _serve(ms: int) -> None:
    from graphpipe_client.testing import serve

    lock = threading.Lock()

    def model(x: np.ndarray) -> np.ndarray:
        if ms:
            with lock:  # one batch at a time, as on one accelerator
                time.sleep(ms / 1000)
        return x[:, :OUT] * 2

    with serve(model) as server:
        sys.stdout.write(f"PORT {server.port}\n")
        sys.stdout.flush()
        sys.stdin.buffer.read()  # until the parent closes it


def _replica(ms: int = MODEL_MS) -> ChildServer:
    """The bundled server in a child process (no GIL shared with the client under test)."""
    return ChildServer("benchmarks.replicas_bench", "--serve", str(ms))


def _scorer(client: gp.Client, x: np.ndarray) -> Callable[[], object]:
    return lambda: client.execute_batched(x, BATCH, concurrency=CONCURRENCY)


def run_replicas(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """The figures: 2 and 4 replicas against 1, rows/s, at ``CONCURRENCY`` in flight."""
    rows = 64 * BATCH if quick else 128 * BATCH
    runs = 7 if quick else 15
    x = np.random.default_rng(0).random((rows, WIDTH), dtype=np.float32)
    expected = x[:, :OUT] * 2
    replicas = [_replica() for _ in range(4)]
    try:
        urls = [r.url for r in replicas]
        clients = {n: gp.Client(urls[:n], pool_size=CONCURRENCY) for n in (1, 2, 4)}
        try:
            cases: dict[str, tuple[Callable[[], object], int | None]] = {
                f"{n} replica{'s' if n > 1 else ''}": (_scorer(c, x), 1) for n, c in clients.items()
            }
            for name, (fn, _) in cases.items():
                if not np.array_equal(np.asarray(fn()), expected):
                    raise AssertionError(f"{name} got a wrong answer")
            res = interleaved(cases, runs=runs, warmup=1)
            split = {n: [s.sent for s in c.replicas] for n, c in clients.items()}
        finally:
            for c in clients.values():
                c.close()
    finally:
        for r in replicas:
            r.stop()
    rate = {k: [rows / t for t in v] for k, v in res.items()}
    med = {k: median(v) for k, v in rate.items()}
    log(
        f"  {rows} rows x {WIDTH} f32, batches of {BATCH}, {CONCURRENCY} in flight, "
        f"a {MODEL_MS} ms model one batch at a time per replica: "
        + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in med.items())
    )
    log("  requests per replica: " + "; ".join(f"{n}: {s}" for n, s in split.items()))
    one = "1 replica"
    figures = []
    for n, target in ((2, 1.8), (4, None)):
        name = f"{n} replicas"
        ratios = [a / b for a, b in zip(rate[name], rate[one], strict=True)]
        figures.append(
            Figure(
                "replicas",
                f"execute_batched rows/s over {n} replicas vs 1, {CONCURRENCY} in flight, "
                f"{MODEL_MS} ms model (one batch at a time per replica)",
                "rows/s",
                med[name],
                one,
                med[one],
                target,
                f">= {target}x one replica" if target else "",
                lower_is_better=False,
                note=f"median of per-run ratios {median(ratios):.2f}x; "
                f"ideal {n}.00x (the model's capacity: {n * 1000 // MODEL_MS * BATCH:,} rows/s)",
                samples=rate[name],
                baseline_samples=rate[one],
            )
        )
    overhead, calls = _routing_cost(runs, log)
    figures.append(overhead)
    table = {"rows_per_s": med, "requests_per_replica": split, "rows": rows, "runs": runs}
    table["calls_per_s"] = calls
    return figures, table


def _routing_cost(runs: int, log: Log) -> tuple[Figure, dict[str, float]]:
    """Calls/s of a small execute through a one-replica set against the plain client."""
    server = _replica(0)
    x = np.ones((1, WIDTH), np.float32)
    try:
        with gp.Client(server.url) as plain, gp.Client([server.url]) as routed:
            cases: dict[str, tuple[Callable[[], object], int | None]] = {
                "Client(url)": (lambda: plain.execute(x), None),
                "Client([url])": (lambda: routed.execute(x), None),
            }
            res = interleaved(cases, runs=runs, warmup=50, run_seconds=0.2)
    finally:
        server.stop()
    rate = {k: [1 / t for t in v] for k, v in res.items()}
    med = {k: median(v) for k, v in rate.items()}
    ratios = [a / b for a, b in zip(rate["Client([url])"], rate["Client(url)"], strict=True)]
    log(
        "  routing cost, instant model: "
        + ", ".join(f"{k} {v:,.0f} calls/s" for k, v in med.items())
    )
    figure = Figure(
        "replicas",
        "calls/s of a 1x64 f32 execute through a one-replica set vs the plain client, instant model",
        "calls/s",
        med["Client([url])"],
        "Client(url)",
        med["Client(url)"],
        None,  # informational: the bundled server's own noise (+-10%) exceeds the cost
        "",
        lower_is_better=False,
        note=f"median of per-run ratios {median(ratios):.2f}x",
        samples=rate["Client([url])"],
        baseline_samples=rate["Client(url)"],
    )
    return figure, med


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        _serve(int(sys.argv[2]))
        return
    figures, table = run_replicas("--quick" in sys.argv)
    for f in figures:
        print(f"{f.name}: {f.value:,.0f} vs {f.baseline_name} {f.baseline:,.0f}: {f.ratio:.2f}x")
        print(f"  {f.note}")
    for key, value in table.items():
        if key != "runs":
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
