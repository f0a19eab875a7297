"""Many callers of one row each, merged into shared requests with ``Coalesce``.

A web service that calls the model once per incoming request sends one row at a time. Here
32 threads do that against a model that takes 5 ms per request, first with a plain
``Client``, then with ``Client(url, coalesce=Coalesce(...))``: the same calls, far fewer
requests, more rows per second; every caller still gets exactly its own answer.

Run it: ``python examples/coalescing.py``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from graphpipe_client import Client, Coalesce
from graphpipe_client.testing import demo_metadata, demo_model, serve

CALLERS = 32
CALLS = 10  # per caller


def slow_model(features: np.ndarray) -> dict[str, np.ndarray]:
    time.sleep(0.005)  # 5 ms per request, whatever its rows (as a model on a GPU)
    return demo_model(features)


def run(client: Client, rows: list[np.ndarray]) -> tuple[float, list[int]]:
    """Each caller scores its rows one call at a time; the seconds taken and the labels."""
    barrier = threading.Barrier(CALLERS)

    def caller(i: int) -> list[int]:
        barrier.wait()
        mine = rows[i * CALLS : (i + 1) * CALLS]
        return [int(client.execute(x, output_name="label")[0]) for x in mine]  # type: ignore[index]

    start = time.perf_counter()
    with ThreadPoolExecutor(CALLERS) as pool:
        labels = [label for part in pool.map(caller, range(CALLERS)) for label in part]
    return time.perf_counter() - start, labels


def main() -> None:
    rng = np.random.default_rng(3)
    rows = [
        rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(1, 4)).astype(np.float32)
        for _ in range(CALLERS * CALLS)
    ]
    expected = [int(demo_model(x)["label"][0]) for x in rows]
    with serve(slow_model, metadata=demo_metadata) as server:
        figures = {}
        for name, coalesce in (
            ("one request per call", None),
            ("Coalesce(max_rows=32, max_wait=0.002)", Coalesce(max_rows=32, max_wait=0.002)),
        ):
            before = server.requests_served
            with Client(server.url, pool_size=CALLERS, coalesce=coalesce) as client:
                took, labels = run(client, rows)
            assert labels == expected, f"{name}: a caller got an answer that is not its own"
            figures[name] = (len(rows) / took, server.requests_served - before)
    for name, (rate, requests) in figures.items():
        print(f"{name}: {len(rows)} calls in {requests} requests, {rate:,.0f} rows/s")
    plain, merged = figures.values()
    print(
        f"coalescing: {merged[0] / plain[0]:.1f}x the rows/s with {plain[1] / merged[1]:.0f}x "
        "fewer requests; every caller got its own answer"
    )


if __name__ == "__main__":
    main()
