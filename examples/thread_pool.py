"""A thread pool sharing one sync Client (thread-safe, one keep-alive pool per host).

Run it: ``python examples/thread_pool.py``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphpipe_client import Client
from graphpipe_client.testing import demo_metadata, demo_model, serve

THREADS = 8


def main() -> None:
    rng = np.random.default_rng(1)
    batches = [
        rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(32, 4)).astype(np.float32)
        for _ in range(200)
    ]
    with (
        serve(demo_model, metadata=demo_metadata) as server,
        Client(server.url, pool_size=THREADS) as client,
    ):

        def classify(batch: np.ndarray) -> np.ndarray:
            label = client.execute(batch, output_name="label")
            assert isinstance(label, np.ndarray)
            return label

        start = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(classify, batches))
        elapsed = time.perf_counter() - start
        rows = sum(len(b) for b in batches)
        print(
            f"{len(batches)} requests, {rows} rows in {elapsed:.2f} s ({rows / elapsed:.0f} rows/s) "
            f"on {server.connections_accepted} connections"
        )
    for batch, labels in zip(batches, results, strict=True):
        assert labels.tolist() == demo_model(batch)["label"].tolist()
    print("all answers match the local model")


if __name__ == "__main__":
    main()
