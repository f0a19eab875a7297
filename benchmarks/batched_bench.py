"""Scoring a whole dataset: ``execute_batched`` against a hand-written thread-pool loop.

Against the bundled server (``graphpipe_client.testing.serve``) in a child
process, with an instant model and with a simulated 5 ms one (the server's
thread sleeps 5 ms per request, as a model on an accelerator would):

- rows/s of ``Client.execute_batched(x, 256, concurrency=4)`` against the
  loop a user would write: a ``ThreadPoolExecutor(4)`` submitting
  ``client.execute`` for each 256-row slice, then ``np.concatenate`` of the
  results. Same client settings, same server, interleaved in the same run;
- with the 5 ms model, rows/s at ``concurrency=8`` against ``concurrency=1``;
- peak extra RSS of scoring a memory-mapped ``.npy`` file (4 GiB; 1 GiB with
  ``--quick``) in a fresh process, against its budget: ``concurrency`` x the
  bytes of a batch + the outputs.

``python -m benchmarks.batched_bench --serve instant|5ms`` runs the server
alone (it prints ``PORT n`` and stops when its standard input closes);
``--rss PORT PATH BATCH CONCURRENCY`` is the memory probe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import graphpipe_client as gp

from .child_server import ChildServer
from .timing import Figure, interleaved, median


def _paired(samples: list[float], baseline: list[float]) -> str:
    """The median of the per-run ratios: steadier than the ratio of medians on a busy machine."""
    ratios = [a / b for a, b in zip(samples, baseline, strict=True)]
    return f"median of per-run ratios {median(ratios):.2f}x"


__all__ = ["run_batched"]

Log = Callable[[str], None]

ROOT = Path(__file__).resolve().parent.parent

#: The dataset: rows of 64 float32 (256 bytes), answered with 8 float32 per row.
WIDTH = 64
OUT = 8
BATCH = 256
MODEL_MS = 5


def _model(ms: int) -> Callable[[np.ndarray], np.ndarray]:
    def model(x: np.ndarray) -> np.ndarray:
        if ms:
            time.sleep(ms / 1000)
        return x[:, :OUT] * 2

    return model


def _serve(model: str) -> None:
    from graphpipe_client.testing import serve

    if model == "rows":  # the memory probe's model: two numbers per row
        fn: Callable[[np.ndarray], np.ndarray] = lambda x: x[:, :2].copy()  # noqa: E731
    else:
        fn = _model(0 if model == "instant" else int(model.removesuffix("ms")))
    with serve(fn) as server:
        sys.stdout.write(f"PORT {server.port}\n")
        sys.stdout.flush()
        sys.stdin.buffer.read()  # until the parent closes it


def _server(model: str) -> ChildServer:
    """The bundled server in a child process (no GIL shared with the client under test)."""
    return ChildServer("benchmarks.batched_bench", "--serve", model)


def _hand_written(client: gp.Client, pool: ThreadPoolExecutor, x: np.ndarray) -> np.ndarray:
    """What a user writes without execute_batched: submit every slice, concatenate."""
    futures = [pool.submit(client.execute, x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    return np.concatenate([f.result() for f in futures])  # type: ignore[misc]


def _throughput(
    model_ms: int, rows: int, runs: int, log: Log
) -> tuple[list[Figure], dict[str, Any]]:
    x = np.random.default_rng(0).random((rows, WIDTH), dtype=np.float32)
    expected = x[:, :OUT] * 2
    label = "model 5 ms" if model_ms else "instant model"
    figures: list[Figure] = []
    table: dict[str, Any] = {}
    with (
        _server(f"{model_ms}ms" if model_ms else "instant") as server,
        gp.Client(server.url, pool_size=8) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        cases: dict[str, Callable[[], object]] = {
            "execute_batched, concurrency 4": lambda: client.execute_batched(
                x, BATCH, concurrency=4
            ),
            "ThreadPoolExecutor(4) loop": lambda: _hand_written(client, pool, x),
        }
        if model_ms:
            cases["execute_batched, concurrency 8"] = lambda: client.execute_batched(
                x, BATCH, concurrency=8
            )
            cases["execute_batched, concurrency 1"] = lambda: client.execute_batched(
                x, BATCH, concurrency=1
            )
        for name, fn in cases.items():  # every case gives the right answer
            if not np.array_equal(np.asarray(fn()), expected):
                raise AssertionError(f"{name} got a wrong answer")
        res = interleaved({k: (v, 1) for k, v in cases.items()}, runs=runs, warmup=1)
    rate = {k: [rows / t for t in v] for k, v in res.items()}
    med = {k: median(v) for k, v in rate.items()}
    table = {k: {"rows_per_s": v} for k, v in med.items()}
    log("  " + label + ": " + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in med.items()))
    ours, theirs = "execute_batched, concurrency 4", "ThreadPoolExecutor(4) loop"
    figures.append(
        Figure(
            "batched",
            f"execute_batched vs a hand-written loop: {rows} rows x {WIDTH} f32, "
            f"batches of {BATCH}, 4 in flight, {label}",
            "rows/s",
            med[ours],
            theirs,
            med[theirs],
            1.0,
            ">= 1.0x the hand-written loop",
            lower_is_better=False,
            note=_paired(rate[ours], rate[theirs]),
            samples=rate[ours],
            baseline_samples=rate[theirs],
        )
    )
    if model_ms:
        c8, c1 = "execute_batched, concurrency 8", "execute_batched, concurrency 1"
        figures.append(
            Figure(
                "batched",
                f"execute_batched rows/s at concurrency 8 vs 1, {label}",
                "rows/s",
                med[c8],
                "concurrency 1",
                med[c1],
                6.0,
                ">= 6x concurrency 1",
                lower_is_better=False,
                note=_paired(rate[c8], rate[c1]),
                samples=rate[c8],
                baseline_samples=rate[c1],
            )
        )
    return figures, table


# --------------------------------------------------------------------------
# Memory: a memory-mapped file much larger than the batches


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _rss_probe(port: int, path: str, batch: int, concurrency: int) -> None:
    x = np.load(path, mmap_mode="r")
    with gp.Client(f"http://127.0.0.1:{port}", pool_size=concurrency) as client:
        client.execute_batched(x[: batch * concurrency], batch, concurrency=concurrency)  # warm-up
        before = _status("VmRSS")
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _status("VmRSS"))
                done.wait(0.0005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        y = client.execute_batched(x, batch, concurrency=concurrency)
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        assert isinstance(y, np.ndarray)
        ok = bool(np.array_equal(y[-5:], x[-5:, :2]))
    print(
        json.dumps(
            {
                "rss_extra": peak - before,
                "file_bytes": x.nbytes,
                "batch_bytes": x[:batch].nbytes,
                "output_bytes": y.nbytes,
                "seconds": seconds,
                "ok": ok,
            }
        )
    )


def _memory(gib: int, log: Log) -> tuple[list[Figure], dict[str, Any]]:
    width = 4096  # 16 KiB rows
    batch, concurrency = 1024, 4  # 16 MiB batches, 4 in flight
    rows = (gib << 30) // (width * 4)
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as tmp:
        path = Path(tmp) / "big.npy"
        t0 = time.perf_counter()
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, width))
        rng = np.random.default_rng(0)
        chunk = rng.random((8192, width), dtype=np.float32)
        for start in range(0, rows, len(chunk)):
            arr[start : start + len(chunk)] = chunk[: rows - start]
        arr.flush()
        del arr
        log(f"  wrote a {gib} GiB .npy file in {time.perf_counter() - t0:.1f} s")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        with _server("rows") as server:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.batched_bench",
                    "--rss",
                    str(server.port),
                    str(path),
                    str(batch),
                    str(concurrency),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=900,
                check=False,
            )
    if proc.returncode != 0:
        raise RuntimeError(f"the memmap probe failed:\n{proc.stderr}")
    m = json.loads(proc.stdout)
    if not m["ok"]:
        raise AssertionError("the memmap probe got a wrong answer")
    budget = concurrency * m["batch_bytes"] + m["output_bytes"]
    log(
        f"  scored {m['file_bytes'] / 2**30:.1f} GiB in {m['seconds']:.1f} s: RSS +{m['rss_extra'] / 1e6:.1f} MB "
        f"(budget {budget / 1e6:.1f} MB)"
    )
    figure = Figure(
        "batched",
        f"peak extra RSS scoring a {gib} GiB memory-mapped .npy (batches of 16 MiB, 4 in flight)",
        "B",
        m["rss_extra"],
        "4 batches + the outputs",
        budget,
        1.2,
        "< 1.2x (concurrency x batch bytes + outputs)",
        note=f"{m['file_bytes'] / m['seconds'] / 1e6:,.0f} MB/s",
    )
    return [figure], m


def run_batched(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    # Each run scores the whole dataset once per case (tens of milliseconds):
    # many short interleaved runs resist a busy machine better than a few long ones.
    runs = 9 if quick else 21
    figures: list[Figure] = []
    table: dict[str, Any] = {}
    for model_ms, rows in ((0, 65536), (MODEL_MS, 16384 if quick else 32768)):
        figs, t = _throughput(model_ms, rows, runs, log)
        figures += figs
        table[f"{model_ms}ms"] = t
    figs, m = _memory(1 if quick else 4, log)
    figures += figs
    table["memory"] = m
    return figures, table


def main() -> None:
    if sys.argv[1] == "--serve":
        _serve(sys.argv[2])
    elif sys.argv[1] == "--rss":
        _rss_probe(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        figures, _ = run_batched("--quick" in sys.argv)
        for f in figures:
            print(
                f"{f.name}: {f.value:,.0f} vs {f.baseline_name} {f.baseline:,.0f}: {f.ratio:.2f}x"
            )


if __name__ == "__main__":
    main()
