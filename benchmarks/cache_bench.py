"""The row cache: a fully cached 10,000-row batch against its round trip.

Against the bundled server (``graphpipe_client.testing.serve``) in a child
process. The dataset is 10,000 rows of 64 float32 (256 bytes), answered with
8 float32 per row, in one ``execute``. Two models:

- one that costs 100 µs per row (the server's thread sleeps ``rows x 100 µs``:
  1 s for the batch, as a model on an accelerator would take): the target,
  a fully cached batch at least 50x faster than its round trip;
- the instant model (``x[:, :8] * 2``): no target; it shows what the cache
  itself costs against loopback transport alone.

Each case is timed interleaved with its baseline in the same run: the round
trip (a client without a cache) and the same call through a warm
``RowCache`` (every row cached: no request is sent). The half-cached call
(5,000 rows cached, 5,000 sent) is reported too.

``python -m benchmarks.cache_bench --serve instant|100us`` runs the server
alone (it prints ``PORT n`` and stops when its standard input closes).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import graphpipe_client as gp

from .child_server import ChildServer
from .timing import Figure, interleaved, median

__all__ = ["run_cache"]

Log = Callable[[str], None]


ROWS = 10_000
WIDTH = 64
OUT = 8
#: The slow model's cost per row, in microseconds.
ROW_US = 100


def _serve(model: str) -> None:
    from graphpipe_client.testing import serve

    per_row = 0.0 if model == "instant" else int(model.removesuffix("us")) / 1e6

    def fn(x: np.ndarray) -> np.ndarray:
        if per_row:
            time.sleep(len(x) * per_row)
        return x[:, :OUT] * 2

    with serve(fn) as server:
        sys.stdout.write(f"PORT {server.port}\n")
        sys.stdout.flush()
        sys.stdin.buffer.read()  # until the parent closes it


def _server(model: str) -> ChildServer:
    """The bundled server in a child process (no GIL shared with the client under test)."""
    return ChildServer("benchmarks.cache_bench", "--serve", model)


def _paired(samples: list[float], baseline: list[float]) -> str:
    """The median of the per-run figures: a speed-up when the cache wins, else a ratio."""
    speedup = median([b / a for a, b in zip(samples, baseline, strict=True)])
    if speedup >= 1:
        return f"median of per-run speed-ups {speedup:.0f}x"
    ratio = median([a / b for a, b in zip(samples, baseline, strict=True)])
    return f"median of per-run ratios {ratio:.2f}x: the cache is slower than this round trip"


def _case(model: str, runs: int, log: Log) -> tuple[list[Figure], dict[str, Any]]:
    x = np.random.default_rng(0).random((ROWS, WIDTH), dtype=np.float32)
    expected = x[:, :OUT] * 2
    label = "instant model" if model == "instant" else f"model {ROW_US} µs per row"
    warm = gp.RowCache(max_bytes=64 * 1024 * 1024)
    half = x.copy()
    half[1::2] += 1.0  # every other row is new
    with (
        _server(model) as server,
        gp.Client(server.url) as plain,
        gp.Client(server.url, cache=warm) as cached,
    ):
        cached.execute(x)  # fills the cache
        partial = gp.RowCache(max_bytes=64 * 1024 * 1024)

        def half_cached() -> object:
            # A fresh cache holding the even rows, then the whole batch: 5,000 rows sent.
            partial.clear()
            with gp.Client(server.url, cache=partial) as c:
                c.execute(half[0::2])
                t0 = time.perf_counter()
                c.execute(half)
                half_times.append(time.perf_counter() - t0)
            return None

        half_times: list[float] = []
        cases: dict[str, Callable[[], object]] = {
            "round trip (no cache)": lambda: plain.execute(x),
            "fully cached": lambda: cached.execute(x),
        }
        for name, fn in cases.items():
            if not np.array_equal(np.asarray(fn()), expected):
                raise AssertionError(f"{name} got a wrong answer")
        sent_before = warm.stats.misses
        res = interleaved({k: (v, 1) for k, v in cases.items()}, runs=runs, warmup=1)
        assert warm.stats.misses == sent_before, "the fully cached case sent rows"
        for _ in range(max(3, runs // 2)):
            half_cached()
    rt, hit = res["round trip (no cache)"], res["fully cached"]
    table = {
        "round_trip_s": median(rt),
        "fully_cached_s": median(hit),
        "half_cached_s": median(half_times),
        "cache_us_per_row": median(hit) / ROWS * 1e6,
    }
    log(
        f"  {label}: round trip {median(rt) * 1e3:,.2f} ms, fully cached "
        f"{median(hit) * 1e3:,.2f} ms ({table['cache_us_per_row']:.2f} µs per row), "
        f"half cached {median(half_times) * 1e3:,.2f} ms"
    )
    slow = model != "instant"
    figures = [
        Figure(
            "cache",
            f"a fully cached {ROWS:,}-row batch ({WIDTH} f32 per row) vs its round trip, {label}",
            "s",
            median(hit),
            "round trip",
            median(rt),
            1 / 50 if slow else None,
            "<= 1/50 of the round trip (50x faster)" if slow else "",
            lower_is_better=True,
            note=_paired(hit, rt),
            samples=hit,
            baseline_samples=rt,
        ),
        Figure(
            "cache",
            f"half of a {ROWS:,}-row batch cached (5,000 rows sent) vs its round trip, {label}",
            "s",
            median(half_times),
            "round trip",
            median(rt),
            note=(
                "no target: half the model's time, plus the cache's own cost"
                if slow
                else "no target: a 5,000-row round trip plus the cache's own cost"
            ),
            samples=half_times,
            baseline_samples=rt,
        ),
    ]
    return figures, table


def run_cache(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    table: dict[str, Any] = {}
    for model, runs in ((f"{ROW_US}us", 3 if quick else 5), ("instant", 9 if quick else 21)):
        figs, t = _case(model, runs, log)
        figures += figs
        table[model] = t
    return figures, table


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2])
    else:
        figures, _ = run_cache("--quick" in sys.argv)
        for f in figures:
            ratio = f.ratio if f.ratio is not None else float("nan")
            print(
                f"{f.name}: {f.value * 1e3:,.2f} ms vs {f.baseline_name} "
                f"{(f.baseline or 0) * 1e3:,.2f} ms: {ratio:.4f}x"
            )


if __name__ == "__main__":
    main()
