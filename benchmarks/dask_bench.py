"""Dask: rows/s of ``graphpipe_client.dask.predict`` on 2 worker processes against 1.

Two replicas of a simulated 5 ms model (``replicas_bench``'s: the bundled
server in a child process, one batch at a time per replica, so the two
serve at most 400 batches/s together) and two ``LocalCluster``s, one of one
worker process and one of two (one thread each), up at the same time; the
cases take turns within each run. The dataset is persisted on each
cluster's workers first, so a run times the scoring, not the data's
transfer. The target is for blocks scored with ``concurrency=1`` (one
request in flight per worker): the workers, not the model, are the limit,
which is the case more workers are for. With ``concurrency=2`` one worker
already keeps more of the replicas busy, and a second adds what capacity is
left; that figure is printed too.

``python -m benchmarks.dask_bench [--quick]`` prints the figures.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .replicas_bench import BATCH, MODEL_MS, OUT, WIDTH, _replica
from .timing import Figure, interleaved, median

__all__ = ["run_dask"]

Log = Callable[[str], None]

BLOCK_ROWS = 4 * BATCH  # 4 requests per block


def run_dask(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """The figure: rows/s on 2 workers against 1, each against the same two replicas."""
    import dask.array as da
    from distributed import Client, LocalCluster

    from graphpipe_client.dask import predict

    blocks = 32 if quick else 64
    runs = 5 if quick else 9
    rows = blocks * BLOCK_ROWS
    x = np.random.default_rng(0).random((rows, WIDTH), dtype=np.float32)
    expected = x[:, :OUT] * 2
    meta = np.empty((0, OUT), np.float32)
    replicas = [_replica(), _replica()]
    urls = [r.url for r in replicas]
    clusters = {
        n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0")
        for n in (1, 2)
    }
    dask_clients = {n: Client(c, set_as_default=False) for n, c in clusters.items()}
    # The dataset on each cluster's workers, referenced for as long as the cases run.
    persisted = {
        n: dc.persist(da.from_array(x, chunks=(BLOCK_ROWS, WIDTH)))
        for n, dc in dask_clients.items()
    }
    try:
        cases: dict[str, tuple[Callable[[], object], int | None]] = {}
        per_concurrency: dict[int, dict[str, tuple[Callable[[], object], int | None]]] = {}
        for conc in (1, 2):
            per_concurrency[conc] = {}
            for n, dc in dask_clients.items():
                lazy = predict(persisted[n], urls, batch_size=BATCH, concurrency=conc, meta=meta)
                got = dc.compute(lazy, sync=True)
                if not np.array_equal(got, expected):
                    raise AssertionError(f"{n} worker(s) got a wrong answer")

                def score(dc: Any = dc, lazy: Any = lazy) -> object:
                    return dc.compute(lazy, sync=True)

                name = f"{n} worker{'s' if n > 1 else ''}, concurrency {conc}"
                per_concurrency[conc][name] = (score, 1)
            cases.update(per_concurrency[conc])
        res = interleaved(cases, runs=runs, warmup=1)
    finally:
        for dc in dask_clients.values():
            dc.close()
        for c in clusters.values():
            c.close()
        for r in replicas:
            r.stop()
    rate = {k: [rows / t for t in v] for k, v in res.items()}
    med = {k: median(v) for k, v in rate.items()}
    log(
        f"  {rows} rows x {WIDTH} f32 in blocks of {BLOCK_ROWS}, batches of {BATCH}, two "
        f"replicas of a {MODEL_MS} ms model (one batch at a time each): "
        + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in med.items())
    )
    figures = []
    for conc, target in ((1, 1.6), (2, None)):
        one, two = (f"{n} worker{'s' if n > 1 else ''}, concurrency {conc}" for n in (1, 2))
        ratios = [a / b for a, b in zip(rate[two], rate[one], strict=True)]
        capacity = 2 * 1000 // MODEL_MS * BATCH
        figures.append(
            Figure(
                "dask",
                f"predict rows/s on 2 Dask workers vs 1, {conc} request(s) in flight per "
                f"worker, two replicas of a {MODEL_MS} ms model",
                "rows/s",
                med[two],
                one,
                med[one],
                target,
                f">= {target}x one worker" if target else "",
                lower_is_better=False,
                note=f"median of per-run ratios {median(ratios):.2f}x; 1 and 2 workers use "
                f"{med[one] / capacity:.0%} and {med[two] / capacity:.0%} of the replicas' "
                f"capacity ({capacity:,} rows/s)",
                samples=rate[two],
                baseline_samples=rate[one],
            )
        )
    return figures, {"rows_per_s": med, "rows": rows, "runs": runs}


def main() -> None:
    figures, table = run_dask("--quick" in sys.argv)
    for f in figures:
        print(f"{f.name}: {f.value:,.0f} vs {f.baseline_name} {f.baseline:,.0f}: {f.ratio:.2f}x")
        print(f"  {f.note}")
    print(table)


if __name__ == "__main__":
    main()
