"""``graphpipe_client.dask``: lazy predictions scored on Dask, against real bundled servers.

The cluster tests run a ``distributed.LocalCluster`` of two worker processes
(one thread each) against two bundled servers (replicas of one model); the
rest use Dask's threaded scheduler, which runs the same task graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

# The test dependencies include the [dask] extra: a missing Dask fails here, loudly.
import dask
import dask.array as da
import distributed
import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.dask import _worker_clients as _worker_clients
from graphpipe_client.dask import predict, predict_named, worker_client
from graphpipe_client.dask._worker_clients import ClientSpec
from graphpipe_client.testing import GraphPipeServer, serve

ROWS = 2_000
BAD = -1.0  # a row whose first feature is BAD makes the model fail for its request

METADATA = gp.ModelMetadata(
    name="features",
    inputs=(gp.IOMetadata("x", shape=(None, 4), dtype=np.dtype(np.float32)),),
    outputs=(
        gp.IOMetadata("total", shape=(None,), dtype=np.dtype(np.float32)),
        gp.IOMetadata("scaled", shape=(None, 4), dtype=np.dtype(np.float64)),
        gp.IOMetadata("tag", shape=(None,), dtype=np.dtype(object)),
    ),
)


def features(x: np.ndarray, config: bytes = b"", output_names: Any = None) -> dict[str, Any]:
    """Three outputs of different dtypes and row shapes; ``config`` scales; BAD rows fail."""
    if np.any(x[:, 0] == BAD):
        raise ValueError("a BAD row")
    k = float(config or 1)
    return {
        "total": x.sum(axis=1).astype(np.float32),
        "scaled": x.astype(np.float64) * k,
        "tag": np.array([b"r%d" % int(v) for v in x[:, 1]], dtype=object),
    }


def expected(x: np.ndarray, k: float = 1.0) -> list[np.ndarray]:
    return [
        x.sum(axis=1).astype(np.float32),
        x.astype(np.float64) * k,
        np.array([b"r%d" % int(v) for v in x[:, 1]], dtype=object),
    ]


def data(rows: int = ROWS) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 100, size=(rows, 4)).astype(np.float32)
    return x


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[GraphPipeServer]]:
    with serve(features, metadata=METADATA) as a, serve(features, metadata=METADATA) as b:
        yield [a, b]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes, one thread each, and a distributed client (the default scheduler)."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc) as dc,
    ):
        yield dc


def urls(servers: list[GraphPipeServer]) -> list[str]:
    return [s.url for s in servers]


# --------------------------------------------------------------------------
# On a LocalCluster of two worker processes


@pytest.mark.slow
def test_cluster_results_equal_local_execute_batched(
    cluster: Any, replicas: list[GraphPipeServer]
) -> None:
    x = data()
    lazy = predict(da.from_array(x, chunks=250), urls(replicas), batch_size=64, config="3")
    assert isinstance(lazy, list) and len(lazy) == 3
    assert [y.chunks[0] for y in lazy] == [(250,) * 8] * 3
    got = cluster.compute(lazy, sync=True)
    with gp.Client(urls(replicas)) as client:
        local = client.execute_batched(
            x, batch_size=64, config="3", output_names=["total", "scaled", "tag"]
        )
    assert isinstance(local, list)
    for g, want, ref in zip(got, expected(x, 3.0), local, strict=True):
        assert g.dtype == want.dtype and g.shape == want.shape
        np.testing.assert_array_equal(g, want)
        np.testing.assert_array_equal(g, ref)
    # Both replicas served the workers' requests.
    assert all(s.requests_served > 0 for s in replicas)


@pytest.mark.slow
def test_cluster_each_worker_makes_exactly_one_client(
    cluster: Any, replicas: list[GraphPipeServer]
) -> None:
    cluster.run(_worker_clients.close_all)
    before = cluster.run(_worker_clients.clients_created)
    x = da.from_array(data(), chunks=100)  # 20 blocks over 2 workers
    for _ in range(2):  # a second computation reuses the same clients
        cluster.compute(predict(x, urls(replicas), output_names=["total"]), sync=True)
    made = cluster.run(_worker_clients.clients_created)
    assert len(made) == 2
    assert {w: made[w] - before[w] for w in made} == dict.fromkeys(made, 1)
    # Another configuration is another client: one more per worker that ran a block.
    cluster.compute(
        predict(x, urls(replicas), output_names=["total"], client_options={"pool_size": 3}),
        sync=True,
    )
    again = cluster.run(_worker_clients.clients_created)
    new = {w: again[w] - made[w] for w in again if again[w] != made[w]}
    assert new and set(new.values()) == {1}  # one more on each worker that ran a block


@pytest.mark.slow
def test_cluster_failing_block_gives_the_typed_error_with_its_rows(
    cluster: Any, replicas: list[GraphPipeServer]
) -> None:
    x = data()
    x[1234, 0] = BAD  # block 4 (rows 1000:1250): its batch 7 (rows 224:250 of the block)
    lazy = predict(
        da.from_array(x, chunks=250), urls(replicas), batch_size=32, output_names=["total"]
    )
    with pytest.raises(gp.BatchError) as info:
        cluster.compute(lazy, sync=True)
    err = info.value
    assert (err.start, err.stop) == (1224, 1250)  # rows of the whole array
    assert err.index == 4 * 8 + 7  # batches are counted over every block: 8 per block
    assert isinstance(err.error, gp.HTTPStatusError) and err.error.status_code == 400
    assert "a BAD row" in str(err.error)
    assert str(err).startswith("rows 1224:1250 (block 4, batch 39) failed: ")


@pytest.mark.slow
def test_cluster_dask_retries_rerun_a_failed_block(cluster: Any) -> None:
    """Retries are Dask's: a block that failed once is run again with compute(retries=1)."""
    failures = {"left": 1}
    lock = threading.Lock()

    def flaky(x: np.ndarray) -> np.ndarray:
        with lock:
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("a transient failure")
        return x * 2

    x = np.arange(40, dtype=np.float64).reshape(20, 2)
    y = x + 100  # another graph: Dask remembers a failed key while it is referenced
    with serve(flaky) as server:
        meta = np.empty((0, 2))
        with pytest.raises(gp.BatchError, match="a transient failure"):
            cluster.compute(predict(da.from_array(x, chunks=5), server.url, meta=meta), sync=True)
        failures["left"] = 1
        lazy = predict(da.from_array(y, chunks=5), server.url, meta=meta)
        got = cluster.compute(lazy, retries=1, sync=True)
    assert failures["left"] == 0  # the failure happened, and the block was run again
    np.testing.assert_array_equal(got, y * 2)


def _worker_pids(dc: Any) -> dict[str, int]:
    return dc.run(os.getpid)


@pytest.mark.slow
def test_cluster_worker_killed_mid_run_still_completes() -> None:
    """SIGKILL one of two worker processes while blocks are running: Dask reruns its blocks."""

    def slow_sum(x: np.ndarray) -> np.ndarray:
        time.sleep(0.01)
        return x.sum(axis=1)

    x = data(4_000)
    with (
        serve(slow_sum) as a,
        serve(slow_sum) as b,
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as lc,
        distributed.Client(lc) as dc,
    ):
        inputs = da.from_array(x, chunks=200)
        lazy = predict(
            inputs,
            [a.url, b.url],
            batch_size=20,
            concurrency=1,
            meta=np.empty((0,), np.float32),
        )
        scored = {str(k) for k in dict(lazy.__dask_graph__())} - {
            str(k) for k in dict(inputs.__dask_graph__())
        }  # the keys of blocks' results, not of their input rows
        future = dc.compute(lazy)
        # The victim is a worker that holds finished blocks: killing it loses them, so Dask
        # must score them again (an idle worker's death would prove nothing).
        victim = None
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline and not future.done():
            held = {
                w: n
                for w, keys in dc.has_what().items()
                if (n := sum(str(k) in scored for k in keys))
            }
            if held:
                victim = max(held, key=held.__getitem__)
            else:
                time.sleep(0.01)
        assert victim is not None and not future.done(), "the run ended before a kill"
        os.kill(_worker_pids(dc)[victim], signal.SIGKILL)
        got = future.result(timeout=120)
        served = a.requests_served + b.requests_served
    np.testing.assert_array_equal(got, x.sum(axis=1))
    assert served > 4_000 // 20  # some blocks were scored twice: the killed worker's


# --------------------------------------------------------------------------
# The same graphs on Dask's threaded scheduler


def threads(lazy: Any) -> Any:
    return dask.compute(lazy, scheduler="threads")[0]


def test_outputs_from_the_models_metadata(replicas: list[GraphPipeServer]) -> None:
    x = data(300)
    total, scaled, tag = predict(da.from_array(x, chunks=(100, 2)), replicas[0].url)
    assert (total.dtype, total.shape, total.chunks) == (np.float32, (300,), ((100,) * 3,))
    assert (scaled.dtype, scaled.shape, scaled.chunks) == (
        np.float64,
        (300, 4),
        ((100,) * 3, (4,)),
    )
    assert tag.dtype == object
    for got, want in zip(threads([total, scaled, tag]), expected(x), strict=True):
        np.testing.assert_array_equal(got, want)


def test_predict_named_and_output_names(replicas: list[GraphPipeServer]) -> None:
    x = data(50)
    out = predict_named(da.from_array(x, chunks=20), replicas[0].url, output_names=["tag", "total"])
    assert list(out) == ["tag", "total"]
    tag, total = threads([out["tag"], out["total"]])
    np.testing.assert_array_equal(total, expected(x)[0])
    np.testing.assert_array_equal(tag, expected(x)[2])
    one = predict(da.from_array(x, chunks=20), replicas[0].url, output_names=["total"])
    assert isinstance(one, da.Array)


def test_inputs_as_mapping_list_and_numpy() -> None:
    def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    a = np.arange(30.0).reshape(10, 3)
    b = np.ones((10, 3))
    meta = np.empty((0, 3))
    with serve(add) as server:
        as_map = predict({"input0": da.from_array(a, chunks=4), "input1": b}, server.url, meta=meta)
        as_list = predict(
            [da.from_array(a, chunks=4), da.from_array(b, chunks=3)], server.url, meta=meta
        )
        assert isinstance(as_map, da.Array) and isinstance(as_list, list)
        assert as_list[0].chunks[0] == (4, 4, 2)  # the first input's row chunks
        got_map, got_list = threads([as_map, as_list[0]])
    np.testing.assert_array_equal(got_map, a + b)
    np.testing.assert_array_equal(got_list, a + b)


def test_chunks_across_columns_are_merged(replicas: list[GraphPipeServer]) -> None:
    x = data(64)
    lazy = predict(da.from_array(x, chunks=(16, 1)), replicas[0].url, output_names=["scaled"])
    assert lazy.chunks == ((16,) * 4, (4,))
    np.testing.assert_array_equal(threads(lazy), x.astype(np.float64))


def test_unknown_row_chunks() -> None:
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    with serve(lambda x: x * 2) as server:
        dx = da.from_array(x, chunks=25)
        kept = dx[dx[:, 0] % 4 == 0]  # row counts unknown until computed
        assert np.isnan(kept.shape[0])
        lazy = predict(kept, server.url, meta=np.empty((0, 2), np.float32))
        np.testing.assert_array_equal(threads(lazy), x[x[:, 0] % 4 == 0] * 2)


def test_unknown_row_chunks_error_counts_rows_within_the_block() -> None:
    def picky(x: np.ndarray) -> np.ndarray:
        if np.any(x[:, 0] == 88):
            raise ValueError("no 88")
        return x

    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    with serve(picky) as server:
        dx = da.from_array(x, chunks=25)
        kept = dx[dx[:, 0] % 4 == 0]
        with pytest.raises(gp.BatchError, match=r"^rows 0:12 of block 1 failed: HTTP 400"):
            threads(predict(kept, server.url, meta=np.empty((0, 2), np.float32)))


def test_zero_rows() -> None:
    with serve(lambda x: x + 1) as server:
        lazy = predict(da.zeros((0, 3), chunks=5), server.url, meta=np.empty((0, 3)))
        got = threads(lazy)
    assert got.shape == (0, 3)


def test_a_block_that_contradicts_the_declaration_is_an_error() -> None:
    x = np.ones((8, 2), np.float32)
    with serve(lambda x: x.astype(np.float64)) as server:
        lazy = predict(da.from_array(x, chunks=4), server.url, meta=np.empty((0, 2), np.float32))
        with pytest.raises(gp.BatchError) as info:
            threads(lazy)
    assert isinstance(info.value.error, gp.DecodeError)
    assert (info.value.start, info.value.stop) in {(0, 4), (4, 8)}  # a whole block
    assert "declared float32" in str(info.value) and "meta=" in str(info.value)


def test_too_few_rows_back_is_an_error() -> None:
    x = np.ones((8, 2), np.float32)
    with serve(lambda x: x[:1]) as server:
        lazy = predict(da.from_array(x, chunks=4), server.url, meta=np.empty((0, 2), np.float32))
        with pytest.raises(gp.BatchError, match="one row per input row"):
            threads(lazy)


def test_metadata_without_shapes_asks_for_meta() -> None:
    # The default metadata gives no dtype and no shape (and names the model '<lambda>').
    with (
        serve(lambda x: x) as server,
        pytest.raises(gp.InvalidOption, match=r"pass meta=np\.empty") as info,
    ):
        predict(da.ones((4, 2), chunks=2), server.url)
    assert str(info.value).startswith(
        "the metadata of the model '<lambda>' does not give output 'output0' both a dtype"
    )
    assert "''" not in str(info.value)


@pytest.mark.parametrize("as_client", [False, True])
def test_a_failed_metadata_request_says_it_is_the_drivers_and_meta_avoids_it(
    as_client: bool,
) -> None:
    url = "http://127.0.0.1:9"  # nothing listens
    x = da.ones((4, 2), chunks=2)
    with contextlib.ExitStack() as stack:
        target: Any = stack.enter_context(gp.Client(url, retries=0)) if as_client else url
        with pytest.raises(gp.ConnectError) as info:
            predict(x, target)
        # The same type as the request raised, its cause kept, and what to do.
        assert type(info.value) is gp.ConnectError
        assert isinstance(info.value.__cause__, gp.ConnectError)
        message = str(info.value)
        assert message.startswith("the driver's metadata request failed (predict asks")
        assert "meta=np.empty((0, ...), dtype)" in message
        assert str(info.value.__cause__) in message
        # With meta= nothing is asked: the graph is built without the server.
        lazy = predict(x, target, meta=np.empty((0,), np.float32))
        assert lazy.shape == (4,)


def test_meta_and_output_names_must_agree() -> None:
    x = da.ones((4, 2), chunks=2)
    with pytest.raises(gp.InvalidOption, match="describes 2 output"):
        predict(x, "http://127.0.0.1:9", meta=[np.empty((0,)), np.empty((0,))], output_names=["a"])
    with pytest.raises(gp.InvalidOption, match="dtype and row shape"):
        predict(x, "http://127.0.0.1:9", meta=np.float32)
    with pytest.raises(gp.InvalidOption, match="names the outputs"):
        predict(x, "http://127.0.0.1:9", meta={"a": np.empty((0,))}, output_names=["b"])


def test_bad_inputs_fail_before_anything_runs() -> None:
    url = "http://127.0.0.1:9"  # nothing listens: no request may be made
    meta = np.empty((0,))
    with pytest.raises(gp.EncodeError, match="has 3 rows but input 0 has 4"):
        predict([da.ones((4, 2), chunks=2), da.ones((3, 2), chunks=2)], url, meta=meta)
    with pytest.raises(gp.EncodeError, match="scalar"):
        predict(da.ones(()), url, meta=meta)
    with pytest.raises(gp.EncodeError):
        predict(da.ones((4, 2), dtype=bool, chunks=2), url, meta=meta)  # bool cannot be sent
    with pytest.raises(gp.InvalidOption, match="batch_size"):
        predict(da.ones((4, 2), chunks=2), url, meta=meta, batch_size=0)
    with pytest.raises(gp.InvalidURL):
        predict(da.ones((4, 2), chunks=2), "ftp://x", meta=meta)


def test_client_target_copies_its_settings(replicas: list[GraphPipeServer]) -> None:
    cache = gp.RowCache(1 << 20, model_key="features-v1")
    with gp.Client(
        urls(replicas), timeout=gp.Timeout(2, 7), headers={"X-Team": "t"}, pool_size=3, cache=cache
    ) as client:
        spec = ClientSpec.of(client, None)
        x = data(40)
        lazy = predict(da.from_array(x, chunks=10), client, output_names=["total"])
        np.testing.assert_array_equal(threads(lazy), expected(x)[0])
    assert spec.urls == tuple(urls(replicas))
    assert spec.config.timeout == gp.Timeout(2, 7) and spec.config.pool_size == 3
    assert spec.headers == (("X-Team", "t"),) and spec.cache == (1 << 20, "features-v1")
    built = spec.build()
    try:
        assert built.urls == tuple(urls(replicas)) and built.config == client.config
        assert built._row_cache is not None and built._row_cache.model_key == "features-v1"
    finally:
        built.close()


# --------------------------------------------------------------------------
# ClientSpec and the per-process clients


def test_spec_pickles_hashes_and_hides_credentials() -> None:
    spec = ClientSpec.of(
        ["http://u:pw@127.0.0.1:9000", "http://127.0.0.1:9001"],
        {"headers": {"Authorization": "Bearer s3cret"}, "timeout": 3},
    )
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and hash(again) == hash(spec)
    assert ClientSpec.of("http://127.0.0.1:9000", None) != spec
    assert "s3cret" not in repr(spec) and "pw" not in repr(spec)
    assert "127.0.0.1:9000" in repr(spec)


def test_spec_refuses_what_cannot_travel() -> None:
    with pytest.raises(gp.InvalidOption, match="SSLContext"):
        ClientSpec.of("https://127.0.0.1:9000", {"verify": ssl.create_default_context()})
    with pytest.raises(gp.InvalidOption, match="unknown client option"):
        ClientSpec.of("http://127.0.0.1:9000", {"timeuot": 3})
    with pytest.raises(gp.InvalidOption, match="pool_size"):
        ClientSpec.of("http://127.0.0.1:9000", {"pool_size": 0})
    with pytest.raises(gp.InvalidOption, match="URL"):
        ClientSpec.of(42, None)  # type: ignore[arg-type]
    with gp.Client("http://127.0.0.1:9000") as c, pytest.raises(gp.InvalidOption, match="not both"):
        ClientSpec.of(c, {"timeout": 3})
    with gp.Client() as unbound, pytest.raises(gp.InvalidOption, match="not bound"):
        ClientSpec.of(unbound, None)


def test_worker_client_is_one_per_configuration() -> None:
    _worker_clients.close_all()
    before = _worker_clients.clients_created()
    with serve(lambda x: x) as server:
        first = worker_client(server.url, timeout=4)
        assert worker_client(server.url, timeout=4) is first
        assert worker_client(server.url, timeout=5) is not first
        seen = []
        workers = [
            threading.Thread(target=lambda: seen.append(worker_client(server.url, pool_size=2)))
            for _ in range(8)
        ]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert len({id(c) for c in seen}) == 1
        np.testing.assert_array_equal(first.execute(np.ones(2)), np.ones(2))
    assert _worker_clients.clients_created() - before == 3
    _worker_clients.close_all()
    assert first._closed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_worker_clients_are_forgotten_after_fork() -> None:
    with serve(lambda x: x) as server:
        parent = worker_client(server.url)
        r, w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            ok = worker_client(server.url) is not parent and not parent._closed
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        answer = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        assert answer == b"1"
        assert not parent._closed
        np.testing.assert_array_equal(parent.execute(np.ones(2)), np.ones(2))


def test_a_client_refuses_to_pickle_and_says_what_to_do() -> None:
    async def check_async() -> None:
        async with gp.AsyncClient("http://127.0.0.1:9000") as ac:
            with pytest.raises(TypeError, match="AsyncClient holds open connections"):
                pickle.dumps(ac)

    with (
        gp.Client("http://127.0.0.1:9000") as client,
        pytest.raises(TypeError, match=r"cannot be pickled.*worker_client"),
    ):
        pickle.dumps(client)
    asyncio.run(check_async())


def test_without_dask_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "try:\n"
        "    import graphpipe_client.dask\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'graphpipe-client[dask]'" in out
    # The rest of the package does not need Dask.
    code = "import sys; sys.modules['dask'] = None\nimport graphpipe_client; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "ok"


# --------------------------------------------------------------------------
# Dask dataframes: numeric columns in, new columns out


def frame(rows: int = 60, npartitions: int = 3) -> Any:
    import dask.dataframe as dd
    import pandas as pd

    x = data(rows)
    pdf = pd.DataFrame(
        {
            "a": x[:, 0],
            "b": x[:, 1].astype(np.int64),
            "name": [f"n{i}" for i in range(rows)],
            "c": x[:, 2].astype(np.float64),
            "flag": x[:, 0] > 50,
            "d": x[:, 3],
        },
        index=pd.Index(np.arange(rows) * 10, name="id"),
    )
    return dd.from_pandas(pdf, npartitions=npartitions), pdf


def test_frame_numeric_columns_become_new_columns(replicas: list[GraphPipeServer]) -> None:
    from graphpipe_client.dask import predict_frame

    ddf, pdf = frame()
    out = predict_frame(ddf, urls(replicas), batch_size=7)
    assert list(out.columns) == ["total", "scaled_0", "scaled_1", "scaled_2", "scaled_3", "tag"]
    assert out.divisions == ddf.divisions and out.npartitions == 3
    got = threads(out)
    # The numeric columns a, b, c, d (not the strings, not the booleans), as float64.
    x = pdf[["a", "b", "c", "d"]].to_numpy(np.float64)
    assert got.index.equals(pdf.index)
    total, scaled, tag = expected(x)
    np.testing.assert_array_equal(got["total"].to_numpy(), total)
    np.testing.assert_array_equal(got[[f"scaled_{i}" for i in range(4)]].to_numpy(), scaled)
    assert got["tag"].tolist() == tag.tolist()
    assert got["total"].dtype == np.float32
    joined = threads(ddf.join(out))
    assert len(joined.columns) == 12


def test_frame_chosen_columns_dtype_and_outputs(replicas: list[GraphPipeServer]) -> None:
    from graphpipe_client.dask import predict_frame

    ddf, pdf = frame()
    out = predict_frame(
        ddf, replicas[0].url, columns=["d", "c", "b", "a"], dtype=np.float32,
        output_names=["total"], config="2",
    )  # fmt: skip
    got = threads(out)
    want = pdf[["d", "c", "b", "a"]].to_numpy(np.float32).sum(axis=1)
    np.testing.assert_array_equal(got["total"].to_numpy(), want)
    assert list(got.columns) == ["total"]


def test_frame_errors_before_and_when_computed(replicas: list[GraphPipeServer]) -> None:
    from graphpipe_client.dask import predict_frame

    ddf, _ = frame()
    with pytest.raises(gp.InvalidOption, match="no numeric columns"):
        predict_frame(ddf[["name", "flag"]], replicas[0].url)
    with pytest.raises(gp.InvalidOption, match=r"no column\(s\) \['zz'\]"):
        predict_frame(ddf, replicas[0].url, columns=["a", "zz"])
    with pytest.raises(gp.InvalidOption, match="do not fit in dataframe columns"):
        predict_frame(ddf, replicas[0].url, meta=np.empty((0, 2, 2)))
    with pytest.raises(gp.InvalidOption, match="takes a dask DataFrame"):
        predict_frame(np.ones((2, 2)), replicas[0].url)
    import dask.dataframe as dd

    _, pdf = frame()
    pdf.loc[250, "a"] = BAD  # row 25: in partition 1 (rows 20:40)
    bad = dd.from_pandas(pdf, npartitions=3)
    with pytest.raises(gp.BatchError, match=r"^rows 0:20 of partition 1 failed: HTTP 400"):
        threads(predict_frame(bad, replicas[0].url, batch_size=20, output_names=["total"]))


@pytest.mark.slow
def test_cluster_frame(cluster: Any, replicas: list[GraphPipeServer]) -> None:
    from graphpipe_client.dask import predict_frame

    ddf, pdf = frame(2_000, npartitions=8)
    got = cluster.compute(predict_frame(ddf, urls(replicas), output_names=["total"]), sync=True)
    x = pdf[["a", "b", "c", "d"]].to_numpy(np.float64)
    np.testing.assert_array_equal(got["total"].to_numpy(), x.sum(axis=1).astype(np.float32))
    assert got.index.equals(pdf.index)
