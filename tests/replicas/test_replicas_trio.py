"""An ``AsyncClient`` over replicas under trio: calls, ejection, background probes, close.

The replica I/O sleeps through the transport (asyncio or trio), probes in the background
as trio system tasks, and cancels them at ``aclose``; before, each of these raised
``RuntimeError: no running event loop`` under trio.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import serve

trio = pytest.importorskip("trio")


def test_replicas_under_trio_eject_probe_and_close() -> None:
    with serve(lambda x: x * 2) as good, serve(lambda x: x * 2) as other:
        other.stop()  # refuses connections: taken out of rotation

        async def main() -> tuple[list[np.ndarray], bool, bool]:
            client = gp.AsyncClient([good.url, other.url], eject_backoff=0.05, retries=3)
            try:
                answers = [await client.execute(np.full(3, float(i))) for i in range(4)]
                await trio.sleep(0.1)  # the back-off ends: the next calls probe in the background
                answers += [await client.execute(np.full(3, float(i))) for i in range(4, 8)]
                ready = await client.is_ready()
                stats = client.replicas
                ejected = any(not s.ready for s in stats)
            finally:
                await client.aclose()
            return answers, ready, ejected

        answers, ready, ejected = trio.run(main)
    for i, y in enumerate(answers):
        np.testing.assert_array_equal(y, np.full(3, 2.0 * i))
    assert ready  # one replica is ready
    assert ejected  # the stopped one stays out of rotation
