"""Many requests concurrently on one AsyncClient, bounded by a semaphore.

Starts the bundled server with the demo model and classifies 500 flowers one
request each, with at most 64 requests in flight on a pool of 16 keep-alive
connections. Run it: ``python examples/async_fanout.py``.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from graphpipe_client import AsyncClient
from graphpipe_client.testing import demo_metadata, demo_model, serve

IN_FLIGHT = 64


async def classify_all(url: str, flowers: np.ndarray) -> list[int]:
    limit = asyncio.Semaphore(IN_FLIGHT)
    async with AsyncClient(url, pool_size=16, timeout=(2, 30)) as client:

        async def one(row: np.ndarray) -> int:
            async with limit:
                label = await client.execute(row[None, :], output_name="label")
                assert isinstance(label, np.ndarray)
                return int(label[0])

        return await asyncio.gather(*(one(row) for row in flowers))


def main() -> None:
    rng = np.random.default_rng(0)
    flowers = rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(500, 4)).astype(
        np.float32
    )
    with serve(demo_model, metadata=demo_metadata) as server:
        start = time.perf_counter()
        labels = asyncio.run(classify_all(server.url, flowers))
        elapsed = time.perf_counter() - start
        print(
            f"{len(labels)} requests in {elapsed:.2f} s ({len(labels) / elapsed:.0f}/s) "
            f"over {server.connections_accepted} connections"
        )
    expected = demo_model(flowers)["label"].tolist()
    assert labels == expected, "a concurrent answer differs from the local model"
    print("class counts:", np.bincount(labels, minlength=3).tolist())


if __name__ == "__main__":
    main()
