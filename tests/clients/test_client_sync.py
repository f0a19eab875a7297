"""The sync Client over real sockets against the bundled server."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import flatbuffers
import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import codec
from graphpipe_client.testing import serve


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def two_outputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x, x + 1


def test_execute_returns_writable_aligned_view_of_the_receive_buffer() -> None:
    x = np.arange(100_000, dtype=np.float64)
    with serve(double) as server, gp.Client(server.url) as client:
        y = client.execute(x)
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, x * 2)
    assert y.flags.writeable
    assert not y.flags.owndata  # a view into the one receive buffer
    assert y.ctypes.data % 64 == 0  # our server aligns data to 64 bytes


def test_execute_returns_list_for_several_outputs() -> None:
    with serve(two_outputs) as server, gp.Client(server.url) as client:
        out = client.execute(np.arange(3))
    assert isinstance(out, list)
    np.testing.assert_array_equal(out[1], np.arange(3) + 1)


def test_bound_and_unbound_urls() -> None:
    with serve(double) as server:
        with gp.Client() as client:
            np.testing.assert_array_equal(client.execute(np.ones(2), url=server.url), [2, 2])
            with pytest.raises(ValueError, match="no model URL"):
                client.execute(np.ones(2))
        with gp.Client(server.url) as client:
            np.testing.assert_array_equal(client.execute(np.ones(2)), [2, 2])


def test_invalid_url_fails_early_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        gp.Client("ftp://example.com")
    with pytest.raises(ValueError, match="no host"):
        gp.Client("http://")


def test_connection_is_reused_across_calls() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        for _ in range(20):
            client.execute(np.ones(4))
        client.metadata()
        assert server.connections_accepted == 1
        assert server.requests_served == 21


def test_sixteen_threads_share_one_client() -> None:
    with serve(double) as server, gp.Client(server.url, pool_size=16) as client:

        def work(i: int) -> bool:
            ok = True
            for j in range(25):
                x = np.full((3, 5), i * 100 + j, np.int32)
                ok &= bool(np.array_equal(client.execute(x), x * 2))
            return ok

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(work, range(16)))
        assert all(results)
        assert server.requests_served == 16 * 25
        assert server.connections_accepted <= 16


def test_metadata_is_cached_per_url_and_refreshable() -> None:
    meta = gp.ModelMetadata(
        name="m",
        version="3",
        inputs=(gp.IOMetadata("x", "features", (None, 4), np.dtype("float32")),),
        outputs=(gp.IOMetadata("y", "", (None,), np.dtype("int64")),),
    )
    with serve(double, metadata=meta) as server, gp.Client(server.url) as client:
        first = client.metadata()
        assert first == meta
        assert client.metadata() is first
        assert server.requests_served == 1
        assert client.metadata(refresh=True) == meta
        assert server.requests_served == 2
        client.clear_metadata_cache()
        client.metadata()
        assert server.requests_served == 3


def test_http_400_carries_the_servers_text() -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("input 'x' must be 2-d")

    with (
        serve(broken) as server,
        gp.Client(server.url) as client,
        pytest.raises(gp.HTTPStatusError) as info,
    ):
        client.execute(np.ones(3))
    assert info.value.status_code == 400
    assert "input 'x' must be 2-d" in info.value.body
    assert "input 'x' must be 2-d" in str(info.value)
    assert "400" in str(info.value)


def test_remote_error_carries_every_entry() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        body = codec.encode_infer_response(errors=[(3, "first"), (4, "second")]).tobytes()
        server.set_faults(garbage=body)
        with pytest.raises(gp.RemoteError) as info:
            client.execute(np.ones(1))
    assert info.value.errors == (gp.ErrorEntry(3, "first"), gp.ErrorEntry(4, "second"))
    assert "first" in str(info.value) and "second" in str(info.value)


def test_read_timeout_per_call_override_and_none() -> None:
    with serve(double) as server, gp.Client(server.url, timeout=0.2, retries=0) as client:
        server.set_faults(delay=0.6)
        with pytest.raises(gp.ReadTimeout):
            client.execute(np.ones(1))
        server.set_faults(delay=0.4)
        np.testing.assert_array_equal(client.execute(np.ones(1), timeout=None), [2])
        server.set_faults(delay=0.4)
        np.testing.assert_array_equal(client.execute(np.ones(1), timeout=(1, 2)), [2])


def test_stall_after_headers_is_a_read_timeout() -> None:
    with serve(double) as server, gp.Client(server.url, timeout=0.3) as client:
        server.set_faults(stall_after_headers=1.5, times=1)
        with pytest.raises(gp.ReadTimeout):
            client.execute(np.ones(1000))
        # the client recovers on a fresh connection
        np.testing.assert_array_equal(client.execute(np.ones(2)), [2, 2])


def test_lying_content_length_longer_is_a_transport_error() -> None:
    with serve(double) as server, gp.Client(server.url, timeout=2) as client:
        server.set_faults(content_length_delta=100, times=1)
        with pytest.raises(gp.TransportError, match=r"closed|broke"):
            client.execute(np.ones(1000))
        np.testing.assert_array_equal(client.execute(np.ones(2)), [2, 2])


def test_connect_errors_are_retried_then_raised() -> None:
    client = gp.Client(
        "http://127.0.0.1:9/", retries=gp.RetryPolicy(retries=2, backoff=0.05, jitter=False)
    )
    start = time.monotonic()
    with pytest.raises(gp.ConnectError) as info:
        client.execute(np.ones(1))
    elapsed = time.monotonic() - start
    assert elapsed >= 0.05 + 0.1 - 0.01  # two backoffs: 0.05 then 0.1
    assert isinstance(info.value.__cause__, Exception)  # the cause stays chained
    client.close()


def test_retry_after_is_honoured() -> None:
    with (
        serve(double) as server,
        gp.Client(server.url, retries=gp.RetryPolicy(retries=1, backoff=0)) as client,
    ):
        server.set_faults(status=503, body=b"later", retry_after="0.3", times=1)
        start = time.monotonic()
        np.testing.assert_array_equal(client.execute(np.ones(1)), [2])
        assert time.monotonic() - start >= 0.29
        assert server.requests_served == 2


def test_retries_zero_disables_retries() -> None:
    with serve(double) as server, gp.Client(server.url, retries=0) as client:
        server.set_faults(status=503, body=b"busy", times=1)
        with pytest.raises(gp.HTTPStatusError) as info:
            client.execute(np.ones(1))
        assert info.value.status_code == 503
        assert server.requests_served == 1


def test_response_too_large_is_refused_before_allocation() -> None:
    with serve(double) as server, gp.Client(server.url, max_response_bytes=10_000) as client:
        with pytest.raises(gp.ResponseTooLargeError) as info:
            client.execute(np.ones(100_000))
        assert info.value.limit == 10_000
        assert info.value.size is not None and info.value.size > 800_000
        np.testing.assert_array_equal(client.execute(np.ones(2)), [2, 2])


def test_stale_pooled_connection_is_replaced() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        client.execute(np.ones(1))
        server.close_connections()
        time.sleep(0.05)
        np.testing.assert_array_equal(client.execute(np.ones(1)), [2])
        assert server.connections_accepted == 2


def test_credentials_never_appear_in_messages_or_reprs() -> None:
    url = "http://alice:s3cr3t@127.0.0.1:9/"
    client = gp.Client(url, retries=0, headers={"Authorization": "Bearer tok3n"})
    assert "s3cr3t" not in repr(client)
    with pytest.raises(gp.ConnectError) as info:
        client.execute(np.ones(1))
    text = (
        str(info.value)
        + repr(info.value)
        + str(info.value.url)
        + repr(pickle.loads(pickle.dumps(info.value)))
    )
    assert "s3cr3t" not in text and "alice" not in text and "tok3n" not in text
    assert "***@127.0.0.1:9" in text
    client.close()


def test_closed_client_refuses_calls() -> None:
    client = gp.Client("http://127.0.0.1:9/")
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.execute(np.ones(1))


@pytest.mark.parametrize(
    "exc",
    [
        gp.GraphPipeError("x"),
        gp.EncodeError("bad"),
        gp.DecodeError("bad"),
        gp.TransportError("t", url="http://h/"),
        gp.ConnectError("c", url="http://h/"),
        gp.TLSError("tls", url="http://h/"),
        gp.ConnectTimeout("ct", url="http://h/"),
        gp.ReadTimeout("rt", url="http://h/"),
        gp.ResponseTooLargeError("big", size=10, limit=5),
        gp.HTTPStatusError("HTTP 400", status_code=400, body="nope", url="http://h/"),
        gp.RemoteError(errors=[gp.ErrorEntry(1, "a"), gp.ErrorEntry(2, "b")]),
    ],
)
def test_exceptions_pickle(exc: gp.GraphPipeError) -> None:
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert clone.__dict__ == exc.__dict__


def test_exception_tree() -> None:
    assert issubclass(gp.ConnectTimeout, gp.TimeoutError)
    assert issubclass(gp.ConnectTimeout, gp.ConnectError)
    assert issubclass(gp.ReadTimeout, gp.TimeoutError)
    assert issubclass(gp.TLSError, gp.ConnectError)
    assert issubclass(gp.EncodeError, ValueError)
    for name in gp.__all__:
        obj = getattr(gp, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, gp.GraphPipeError)


def _misaligned_float64_response(values: np.ndarray) -> bytes:
    """An InferResponse whose float64 data sits at 4 mod 8, as the 2018 writers put it."""
    b = flatbuffers.Builder(0)
    b.StartVector(1, 0, 4)  # 4 bytes at the very end push the data off 8-byte alignment
    b.EndVector()
    raw = values.astype("<f8").tobytes()
    data = b.CreateByteVector(raw)
    b.StartVector(8, 1, 8)
    b.PrependInt64(len(values))
    shape = b.EndVector()
    b.StartObject(4)
    b.PrependUint8Slot(0, codec.DataType.Float64, 0)
    b.PrependUOffsetTRelativeSlot(1, shape, 0)
    b.PrependUOffsetTRelativeSlot(2, data, 0)
    tensor = b.EndObject()
    b.StartVector(4, 1, 4)
    b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, tensors, 0)
    b.Finish(b.EndObject())
    out = bytes(b.Output())
    start = out.index(raw)
    assert start % 8 == 4, start
    return out


def test_misaligned_peer_data_comes_back_aligned_without_a_copy() -> None:
    values = np.linspace(0, 1, 5000)
    body = _misaligned_float64_response(values)
    with serve(double) as server, gp.Client(server.url) as client:
        server.set_faults(garbage=body)
        y = client.execute(np.ones(1))
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, values)
    assert y.ctypes.data % 8 == 0
    assert not y.flags.owndata  # placed, not copied


def test_small_misaligned_output_is_copied_aligned() -> None:
    values = np.array([1.5, 2.5])
    body = _misaligned_float64_response(values)
    with serve(double) as server, gp.Client(server.url) as client:
        server.set_faults(garbage=body)
        y = client.execute(np.ones(1))
    np.testing.assert_array_equal(y, values)
    assert isinstance(y, np.ndarray) and y.flags.aligned


def test_sync_api_works_inside_a_running_event_loop() -> None:
    import asyncio

    async def main(url: str) -> np.ndarray:
        # e.g. a notebook cell: the sync API must not call asyncio.run
        out = gp.remote.execute(url, np.arange(3))
        assert isinstance(out, np.ndarray)
        return out

    with serve(double) as server:
        np.testing.assert_array_equal(asyncio.run(main(server.url)), [0, 2, 4])


def test_client_is_thread_safe_for_metadata_cache() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        barrier = threading.Barrier(8)
        seen = []

        def work() -> None:
            barrier.wait()
            seen.append(client.metadata())

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 8
        assert all(m == seen[0] for m in seen)
