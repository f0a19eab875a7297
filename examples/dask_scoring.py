"""Score a dask array on a Dask cluster: two worker processes, two replicas of the model.

Starts two bundled servers with the demo model (an iris classifier, one
replica each) and a ``distributed.LocalCluster`` of two worker processes,
then scores 400,000 rows with ``graphpipe_client.dask.predict``: the dtypes
and shapes of the outputs come from the model's metadata, each block is
scored on a worker by that worker's one shared client, routed over both
replicas. Then a poisoned row shows the typed error that reaches the
driver, with the rows of the whole array. On a real cluster only the
``Client(...)`` line changes (see docs/dask.md). Needs the ``[dask]`` extra::

    pip install 'graphpipe-client[dask]'
    python examples/dask_scoring.py
"""

from __future__ import annotations

import logging
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

import graphpipe_client as gp
from graphpipe_client.dask import predict, predict_named
from graphpipe_client.testing import DEMO_CLASSES, demo_metadata, demo_model, serve


def picky_model(features: np.ndarray) -> dict[str, np.ndarray]:
    """The demo model, refusing any request that holds a negative measurement."""
    if (features < 0).any():
        raise ValueError("a flower cannot measure less than 0 cm")
    return demo_model(features)


def quiet_task_failures() -> None:
    """On a worker: log no failed or cancelled task (for a failure made on purpose)."""
    for name in ("distributed.worker", "distributed.worker.state_machine"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main() -> None:
    rows = 400_000
    # A lazy dataset: 8 blocks of 50,000 rows, generated on the workers.
    flowers = da.random.default_rng(0).uniform(0.1, 7.0, (rows, 4), chunks=(50_000, 4))
    flowers = flowers.astype(np.float32)

    with (
        serve(picky_model, metadata=demo_metadata) as a,
        serve(picky_model, metadata=demo_metadata) as b,
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as dask_client,
    ):
        replicas = [a.url, b.url]

        # 1. Lazy outputs, typed from the model's metadata (one metadata request, now).
        probabilities, label = predict(flowers, replicas, batch_size=5_000, concurrency=2)
        print(f"lazy: probabilities {probabilities.dtype} {probabilities.shape}, "
              f"label {label.dtype} {label.shape}, {label.numblocks[0]} blocks")  # fmt: skip

        # 2. Compute them on the cluster. Dask's own tools show progress
        #    (distributed.progress, the dashboard).
        start = time.perf_counter()
        p, labels = dask_client.compute([probabilities, label], sync=True)
        seconds = time.perf_counter() - start
        counts = np.bincount(labels, minlength=len(DEMO_CLASSES))
        print(f"scored {rows:,} rows in {seconds:.2f} s on 2 workers: "
              + ", ".join(f"{n} {c}" for n, c in zip(counts, DEMO_CLASSES, strict=True)))  # fmt: skip
        assert p.shape == (rows, 3) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
        print(f"requests per replica: {a.requests_served}, {b.requests_served}")

        # 3. By name, and only one output (only it is asked for).
        named = predict_named(flowers[:1_000], replicas, output_names=["label"])
        assert list(named) == ["label"]
        np.testing.assert_array_equal(named["label"].compute(), labels[:1_000])

        # 4. A failed block reaches the driver as our typed error, rows of the whole array.
        #    The workers log a failed task (an ERROR with a traceback, then a WARNING for
        #    the blocks cancelled with it): this failure is on purpose, so quiet them.
        dask_client.run(quiet_task_failures)
        poisoned = da.where(da.arange(rows)[:, None] == 123_456, -1.0, flowers)
        try:
            dask_client.compute(predict(poisoned, replicas, batch_size=5_000)[1], sync=True)
        except gp.BatchError as exc:
            print(f"failed as expected: rows {exc.start}:{exc.stop}: "
                  f"{type(exc.error).__name__} {exc.error.status_code}")  # fmt: skip
            if not exc.start <= 123_456 < exc.stop:
                raise AssertionError(f"the error names rows {exc.rows}") from exc
        else:
            raise AssertionError("the poisoned block did not fail")


if __name__ == "__main__":  # LocalCluster starts processes: guard the entry point
    main()
