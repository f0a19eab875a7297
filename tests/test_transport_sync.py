"""The urllib3 properties the sync transport relies on (see _transport_sync's docstring).

If an upgrade of urllib3 changes one of them, these tests fail loudly rather
than the client silently copying tensors again.
"""

from __future__ import annotations

import http.client

import numpy as np
import urllib3

import graphpipe_client as gp
from graphpipe_client import _transport_sync
from graphpipe_client._core import HEAD_BYTES
from graphpipe_client.testing import serve


def identity(x: np.ndarray) -> np.ndarray:
    return x


def test_request_segments_reach_sendall_uncopied(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sent: list[object] = []
    original = _transport_sync._Connection.send

    def record(self, data):  # type: ignore[no-untyped-def]
        sent.append(data)
        return original(self, data)

    monkeypatch.setattr(_transport_sync._Connection, "send", record)
    x = np.arange(1 << 20, dtype=np.float32)  # 4 MiB
    with serve(identity) as server, gp.Client(server.url) as client:
        client.execute(x)
    tensor_chunks = [
        c
        for c in sent
        if isinstance(c, memoryview) and np.shares_memory(np.frombuffer(c, np.uint8), x)
    ]
    assert len(tensor_chunks) == 1, [type(c) for c in sent]
    assert tensor_chunks[0].nbytes == x.nbytes  # sent whole, straight from the array
    assert not any(isinstance(c, bytes) and len(c) >= x.nbytes for c in sent)  # never joined


def test_large_response_is_read_into_one_numpy_buffer_via_http_client() -> None:
    x = np.arange(HEAD_BYTES * 4, dtype=np.float64)
    with serve(identity) as server, gp.Client(server.url) as client:
        pool = client._transport._manager.connection_from_url(server.url)
        assert pool.ConnectionCls is _transport_sync._Connection
        resp = pool.urlopen("POST", "/", body=b"", preload_content=False, retries=False)
        assert isinstance(getattr(resp, "_fp", None), http.client.HTTPResponse)
        resp.drain_conn()
        resp.release_conn()
        y = client.execute(x)
    # The fast path: a view into an np.empty buffer (the slow path returns a bytearray view).
    owner = y
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    assert isinstance(owner, np.ndarray | memoryview)
    root = owner.obj if isinstance(owner, memoryview) else owner
    while isinstance(root, np.ndarray) and root.base is not None:
        root = root.base
    assert isinstance(root, np.ndarray) and root.dtype == np.uint8, type(root)


def test_connection_reuse_is_tracked_per_thread() -> None:
    with serve(identity) as server, gp.Client(server.url) as client:
        client.execute(np.ones(1))
        assert _transport_sync._local.reused is False
        client.execute(np.ones(1))
        assert _transport_sync._local.reused is True


def test_urllib3_exposes_what_we_use() -> None:
    assert hasattr(urllib3.PoolManager(), "pool_classes_by_scheme")
    assert issubclass(_transport_sync._Pool, urllib3.HTTPConnectionPool)
    assert hasattr(http.client.HTTPResponse, "readinto")
