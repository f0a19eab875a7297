"""The shapes the benchmarks use, and their request and response messages.

The seed's headline benchmark (GraphPipe, 2018): a request of 128 images of
224x224x3 float32 (77 MB) answered by 128x7x7x512 float32 (12.8 MB). The
benchmarks add the same shapes with one row, and a tiny 1x10 request, to see
per-call overheads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from graphpipe_client import codec

__all__ = ["WORKLOADS", "Workload"]


@dataclass(frozen=True)
class Workload:
    """A request shape, the response shape the benchmark server answers with, and its path."""

    name: str
    request_shape: tuple[int, ...]
    response_shape: tuple[int, ...]

    @property
    def path(self) -> str:
        return f"/{self.name}"

    @property
    def rows(self) -> int:
        return self.request_shape[0]

    @cached_property
    def request(self) -> np.ndarray:
        # Random data: nothing on the way may profit from zeros.
        rng = np.random.default_rng(2018)
        return rng.random(self.request_shape, dtype=np.float32)

    @cached_property
    def response(self) -> np.ndarray:
        rng = np.random.default_rng(2019)
        return rng.random(self.response_shape, dtype=np.float32)

    def request_bytes(self) -> bytes:
        """The request as our client writes it, joined (a copy: for the baselines)."""
        return codec.encode_infer_request([self.request]).tobytes()

    def response_bytes(self) -> bytes:
        """The response message the benchmark server answers with (our writer, 64-byte aligned data)."""
        return codec.encode_infer_response([self.response]).tobytes()


def _workloads() -> dict[str, Workload]:
    items = [
        Workload("seed", (128, 224, 224, 3), (128, 7, 7, 512)),
        Workload("row", (1, 224, 224, 3), (1, 7, 7, 512)),
        Workload("tiny", (1, 10), (1, 10)),
    ]
    return {w.name: w for w in items}


#: seed: the headline shapes; row: one row of them; tiny: a 1x10 float32 call.
WORKLOADS = _workloads()
