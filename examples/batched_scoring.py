"""Score a whole dataset: a memory-mapped .npy file, in batches, with progress and failures.

Starts the bundled server with the demo model (an iris classifier), writes
200,000 rows to a temporary .npy file, and scores it with
``Client.execute_batched``: rows are read from the file only as they are
sent, four requests are in flight, and the outputs come back in row order.
Then the same with a stream of batches, and with a poisoned row whose batch
fails while the others go on. Runs in a few seconds::

    python examples/batched_scoring.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import graphpipe_client as gp
from graphpipe_client.testing import DEMO_CLASSES, demo_metadata, demo_model, serve


def report(done: int, total: int | None) -> None:
    """A progress callable: ``progress=True`` would draw a tqdm bar instead.

    On a terminal, one line rewritten in place; in a pipe or a log, where each
    ``\\r`` update would pile onto one line, only the last state.
    """
    if sys.stderr.isatty():
        print(f"\r  {done:>7}/{total} rows", end="" if done != total else "\n", file=sys.stderr)
    elif done == total:
        print(f"  {done}/{total} rows", file=sys.stderr)


def picky_model(features: np.ndarray) -> dict[str, np.ndarray]:
    """The demo model, refusing any batch that holds a negative measurement."""
    if (features < 0).any():
        raise ValueError("a flower cannot measure less than 0 cm")
    return demo_model(features)


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flowers.npy"
        np.save(path, rng.uniform(0.1, 7.0, (200_000, 4)).astype(np.float32))

        with serve(demo_model, metadata=demo_metadata) as server, gp.Client(server.url) as client:
            client.wait_until_ready(timeout=10)

            # 1. A file larger than you would like to load: memory-map it.
            flowers = np.load(path, mmap_mode="r")
            probabilities, label = client.execute_batched(
                flowers, batch_size=4096, concurrency=4, progress=report
            )
            counts = np.bincount(label, minlength=len(DEMO_CLASSES))
            print("labels:", dict(zip(DEMO_CLASSES, counts.tolist(), strict=True)))
            print("probabilities:", probabilities.dtype, probabilities.shape)

            # 2. A stream of batches (a generator): results in order, 4 held at once.
            chunks = (flowers[i : i + 50_000] for i in range(0, len(flowers), 50_000))
            for i, (_, chunk_label) in enumerate(client.execute_stream(chunks, concurrency=2)):
                assert isinstance(chunk_label, np.ndarray)
                print(f"chunk {i}: {len(chunk_label)} labels, first {chunk_label[:5].tolist()}")

        # 3. A failed batch: stop at the first (the default), or collect and go on.
        bad = np.array(flowers[:10_000])
        bad[1234, 2] = -1.0
        with serve(picky_model, metadata=demo_metadata) as server, gp.Client(server.url) as client:
            try:
                client.execute_batched(bad, batch_size=1000)
            except gp.BatchError as exc:
                print(
                    f"stopped: rows {exc.start}:{exc.stop} failed with {type(exc.error).__name__}"
                )
            failures: list[gp.BatchError] = []
            _, label = client.execute_batched(bad, batch_size=1000, on_error=failures.append)
            print(
                "collected:", [(f.start, f.stop) for f in failures], "- the other rows are scored"
            )
        del flowers  # close the memory map before the directory goes


if __name__ == "__main__":
    main()
