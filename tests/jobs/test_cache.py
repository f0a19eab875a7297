"""``RowCache``: the seed's three cache bugs, only missing rows sent, LRU by bytes, threads, tasks."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphpipe_client as gp
from graphpipe_client import AsyncClient, Client, RowCache
from graphpipe_client.testing import GraphPipeServer, serve


class Rows:
    """A model wrapper that records the rows of every request it gets (server side)."""

    def __init__(self, fn: Any, *, config: bool = False) -> None:
        self.fn = fn
        self.config = config
        self.lock = threading.Lock()
        self.sent: list[int] = []

    def __call__(self, *xs: np.ndarray, config: str = "") -> Any:
        with self.lock:
            self.sent.append(int(xs[0].shape[0]) if xs and xs[0].ndim else -1)
        return self.fn(*xs, config=config) if self.config else self.fn(*xs)

    @property
    def requests(self) -> int:
        return len(self.sent)

    @property
    def rows(self) -> int:
        return sum(self.sent)


def echo_config(x: np.ndarray, config: str = "") -> list[np.ndarray]:
    return [x * 2, np.array([config.encode()] * len(x), dtype=object)]


@pytest.fixture
def echo() -> Iterator[tuple[GraphPipeServer, Rows]]:
    model = Rows(lambda x: x)
    with serve(model) as server:
        yield server, model


@pytest.fixture(scope="module")
def doubler() -> Iterator[GraphPipeServer]:
    with serve(lambda x: x * 2) as server:
        yield server


# -- the seed's three bugs ------------------------------------------------------


def test_config_is_in_the_key() -> None:
    """Bug 1: the same inputs sent with config B must not get config A's cached result."""
    model = Rows(echo_config, config=True)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache = RowCache()
    with serve(model) as server, Client(server.url, cache=cache) as client:
        a = client.execute(x, config="A")
        b = client.execute(x, config="B")
        a_again = client.execute(x, config="A")
        none = client.execute(x)
    assert list(a[1]) == [b"A"] * 3
    assert list(b[1]) == [b"B"] * 3
    assert list(a_again[1]) == [b"A"] * 3
    assert list(none[1]) == [b""] * 3
    assert model.sent == [3, 3, 3]  # A, B and no config: each sent once; A again: cached
    assert cache.stats.hits == 3


def test_strings_with_trailing_nuls_are_exact_and_distinct(
    echo: tuple[GraphPipeServer, Rows],
) -> None:
    """Bug 2: b"x" and b"x\\x00" are different rows, and come back byte for byte."""
    server, model = echo
    values = [b"x", b"x\x00", b"x\x00\x00", b"", b"\x00", b"\x00x", "é".encode()]
    x = np.array(values, dtype=object)
    cache = RowCache()
    with Client(server.url, cache=cache) as client:
        first = client.execute(x)
        again = client.execute(x[::-1].copy())
    assert list(first) == values
    assert list(again) == values[::-1]
    assert cache.stats.entries == len(values)  # no two collided
    assert model.sent == [len(values)]  # the second call was served from the cache
    # Element boundaries are in the key: [b"ab", b""] is not [b"a", b"b"].
    with Client(server.url, cache=cache) as client:
        one = client.execute(np.array([[b"ab", b""]], dtype=object))
        two = client.execute(np.array([[b"a", b"b"]], dtype=object))
    assert one.tolist() == [[b"ab", b""]]
    assert two.tolist() == [[b"a", b"b"]]
    assert model.sent == [len(values), 1, 1]


def test_a_shape_change_with_the_same_bytes_misses(echo: tuple[GraphPipeServer, Rows]) -> None:
    """Bug 3: the shape is in the key (rows of (2, 3) and of (3, 2) hold the same bytes)."""
    server, model = echo
    a = np.arange(24, dtype=np.int32).reshape(4, 2, 3)
    b = a.reshape(4, 3, 2)
    c = a.reshape(4, 6)
    d = a.view(np.float32)  # same bytes, another dtype
    cache = RowCache()
    with Client(server.url, cache=cache) as client:
        ra = client.execute(a)
        rb = client.execute(b)
        rc = client.execute(c)
        rd = client.execute(d)
        ra2 = client.execute(a)
    assert ra.shape == (4, 2, 3) and np.array_equal(ra, a)
    assert rb.shape == (4, 3, 2) and np.array_equal(rb, b)
    assert rc.shape == (4, 6) and np.array_equal(rc, c)
    assert rd.dtype == np.float32 and np.array_equal(rd.view(np.int32), a)
    assert ra2.shape == (4, 2, 3) and np.array_equal(ra2, a)
    assert model.sent == [4, 4, 4, 4]  # a again: all hits
    assert cache.stats == gp.CacheStats(
        hits=4, misses=16, evictions=0, bypassed=0, entries=16, nbytes=cache.stats.nbytes
    )


# -- what is sent -----------------------------------------------------------------


def test_only_the_missing_rows_are_sent_in_one_request(
    echo: tuple[GraphPipeServer, Rows],
) -> None:
    server, model = echo
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    cache = RowCache()
    with Client(server.url, cache=cache) as client:
        client.execute(x[[1, 3, 5]])
        out = client.execute(x)
        assert model.sent == [3, 7]
        assert np.array_equal(out, x)
        assert np.array_equal(client.execute(x), x)  # all cached: no request at all
        assert model.sent == [3, 7]
        # a row repeated within a call is sent once
        rep = np.stack([np.full(2, 100.0)] * 5 + [np.full(2, 200.0)] * 3)
        assert np.array_equal(client.execute(rep), rep)
        assert model.sent == [3, 7, 2]
    s = cache.stats
    assert (s.hits, s.misses, s.entries) == (3 + 10, 3 + 7 + 8, 12)


def test_several_inputs_and_outputs_named_and_mixed_dtypes() -> None:
    model = Rows(lambda a, b: [a * 2, b, a.sum(axis=1)])
    cache = RowCache()
    a = np.arange(12, dtype=np.int16).reshape(4, 3)
    b = np.array([["p", "q"], ["r", "s"], ["t", "u"], ["v", "w"]], dtype=object)
    with serve(model) as server, Client(server.url, cache=cache) as client:
        want = client.execute_multi([a, b])
        got = client.execute_multi([a[::-1], b[::-1]])
        named = client.execute_named({"input0": a, "input1": b}, output_names=["output2"])
        assert model.sent == [4, 4]  # the named call asks for other outputs: another key
    assert np.array_equal(got[0], want[0][::-1])
    assert got[1].tolist() == want[1][::-1].tolist()
    assert got[2].dtype == want[2].dtype and np.array_equal(got[2], want[2][::-1])
    assert np.array_equal(named["output2"], want[2])


def test_the_result_is_a_new_array_and_writing_it_leaves_the_cache_alone(
    doubler: GraphPipeServer,
) -> None:
    x = np.arange(4.0)
    with Client(doubler.url, cache=RowCache()) as client:
        first = client.execute(x)
        first[:] = -1
        again = client.execute(x)
        again[:] = -2
        assert np.array_equal(client.execute(x), x * 2)


def test_outputs_without_a_row_axis_are_not_cached() -> None:
    """A model that reduces over rows breaks the row assumption: detected, sent whole."""
    model = Rows(lambda x: x.sum(axis=0, keepdims=True))
    cache = RowCache()
    x = np.arange(6.0).reshape(3, 2)
    with serve(model) as server, Client(server.url, cache=cache) as client:
        one = client.execute(x[:1])  # looks row-wise with one row: cached
        three = client.execute(x)  # 2 missing rows sent, 1 output row: not row-wise
        assert np.array_equal(one, x[:1])
        assert np.array_equal(three, x.sum(axis=0, keepdims=True))
        assert model.sent == [1, 2, 3]  # the whole call sent again, uncached
        assert cache.stats.bypassed == 1
        scalar = Rows(lambda x: np.float64(x.sum()))
    with serve(scalar) as server, Client(server.url, cache=cache) as client:
        assert client.execute(x) == x.sum()
        assert client.execute(x) == x.sum()
        assert scalar.sent == [3, 3]


def test_outputs_whose_row_shape_depends_on_the_batch_are_sent_whole() -> None:
    """Padding to the longest row of the batch: cached rows cannot be stacked with new ones."""

    def pad(x: np.ndarray) -> np.ndarray:
        n = int(x.max()) + 1
        return np.stack([np.arange(n) < v for v in x]).astype(np.uint8)

    model = Rows(pad)
    cache = RowCache()
    with serve(model) as server, Client(server.url, cache=cache) as client:
        client.execute(np.array([1, 2]))
        out = client.execute(np.array([1, 2, 5]))
        assert model.sent == [2, 1, 3]
        assert out.shape == (3, 6)
        assert np.array_equal(out, pad(np.array([1, 2, 5])))


def test_inputs_without_a_row_axis_bypass_the_cache(echo: tuple[GraphPipeServer, Rows]) -> None:
    server, model = echo
    cache = RowCache()
    with Client(server.url, cache=cache) as client:
        assert client.execute(np.float32(3)) == 3
        assert client.execute(np.float32(3)) == 3
        assert client.execute(np.zeros((0, 2))).shape == (0, 2)
    assert model.requests == 3
    assert cache.stats.bypassed == 3 and cache.stats.entries == 0


def test_the_model_is_in_the_key_and_model_key_shares_it() -> None:
    cache = RowCache()
    x = np.arange(3)
    with serve(lambda x: x * 2) as s2, serve(lambda x: x * 3) as s3:
        with Client(s2.url, cache=cache) as c2, Client(s3.url, cache=cache) as c3:
            assert np.array_equal(c2.execute(x), x * 2)
            assert np.array_equal(c3.execute(x), x * 3)  # another URL: another model
        shared = RowCache(model_key="doubler-v1")
        with Client(s2.url, cache=shared) as c2, Client(s3.url, cache=shared) as c3:
            c2.execute(x)
            # the user said both URLs serve one model: served from the cache
            assert np.array_equal(c3.execute(x), x * 2)
            assert shared.stats.hits == 3


# -- LRU -----------------------------------------------------------------------


def test_lru_eviction_is_by_bytes_and_recency(doubler: GraphPipeServer) -> None:
    probe = RowCache()
    with Client(doubler.url, cache=probe) as client:
        client.execute(np.zeros((1, 100)))
    per_row = probe.stats.nbytes  # what one row of 100 float64 costs, key included
    assert 800 + 32 < per_row < 800 + 32 + 1024
    cache = RowCache(max_bytes=per_row * 4)
    rows = np.arange(600.0).reshape(6, 100)
    with Client(doubler.url, cache=cache) as client:
        client.execute(rows[:4])
        assert cache.stats.entries == 4 and cache.stats.evictions == 0
        client.execute(rows[0:1])  # row 0 is now the most recent
        client.execute(rows[4:6])  # evicts rows 1 and 2, the least recent
        s = cache.stats
        assert (s.entries, s.evictions) == (4, 2)
        assert s.nbytes <= cache.max_bytes
        before = s.hits
        client.execute(rows[[0, 3, 4, 5]])
        assert cache.stats.hits == before + 4
        client.execute(rows[[1]])
        assert cache.stats.misses == s.misses + 1
    tiny = RowCache(max_bytes=10)  # smaller than any row: nothing is held
    with Client(doubler.url, cache=tiny) as client:
        assert np.array_equal(client.execute(rows), rows * 2)
        assert tiny.stats.entries == 0 and tiny.stats.nbytes == 0
    cache.clear()
    assert len(cache) == 0 and cache.stats.nbytes == 0


def test_bad_options() -> None:
    with pytest.raises(gp.InvalidOption, match="max_bytes"):
        RowCache(max_bytes=-1)
    with pytest.raises(gp.InvalidOption, match="model_key"):
        RowCache(model_key="")
    with pytest.raises(gp.InvalidOption, match="RowCache"):
        Client("http://127.0.0.1:9", cache={})  # type: ignore[arg-type]
    assert "0 rows" in repr(RowCache())


# -- concurrency ------------------------------------------------------------------


def test_threads_sharing_one_client_and_cache() -> None:
    model = Rows(lambda x: x * 3)
    cache = RowCache(max_bytes=64 * 1024)  # small enough to evict while threads run
    table = np.arange(400, dtype=np.int64).reshape(200, 2)
    errors: list[BaseException] = []
    looked_up = [0] * 8

    def worker(n: int, client: Client) -> None:
        rnd = random.Random(n)
        try:
            for _ in range(40):
                idx = rnd.sample(range(200), rnd.randint(1, 30))
                out = client.execute(table[idx])
                looked_up[n] += len(idx)
                assert np.array_equal(out, table[idx] * 3)
        except BaseException as exc:
            errors.append(exc)

    with serve(model) as server, Client(server.url, cache=cache, pool_size=8) as client:
        threads = [threading.Thread(target=worker, args=(n, client)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    s = cache.stats
    assert s.hits + s.misses == sum(looked_up)
    assert s.hits > 0 and s.evictions >= 0
    assert model.rows <= s.misses  # a row repeated within a call is sent once
    assert s.nbytes <= cache.max_bytes


def test_async_tasks_share_the_cache() -> None:
    model = Rows(lambda x: x + 1)
    cache = RowCache()
    table = np.arange(100, dtype=np.int32).reshape(50, 2)

    async def main(url: str) -> list[Any]:
        async with AsyncClient(url, cache=cache) as client:
            first = await client.execute(table)
            outs = await asyncio.gather(*(client.execute(table[i::7]) for i in range(7)))
            batched = await client.execute_batched(table, batch_size=8, concurrency=3)
            return [first, outs, batched]

    with serve(model) as server:
        first, outs, batched = asyncio.run(main(server.url))
    assert np.array_equal(first, table + 1)
    for i, out in enumerate(outs):
        assert np.array_equal(out, table[i::7] + 1)
    assert np.array_equal(batched, table + 1)
    assert model.sent == [50]
    assert cache.stats.hits == 100


# -- execute_batched and execute_stream ---------------------------------------------


def test_execute_batched_sends_only_the_missing_rows() -> None:
    model = Rows(lambda x: x * 2)
    cache = RowCache()
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    with serve(model) as server, Client(server.url, cache=cache) as client:
        client.execute(x[10:30])
        out = client.execute_batched(x, batch_size=16, concurrency=3)
        assert np.array_equal(out, x * 2)
        assert model.rows == 20 + 80
        assert model.requests == 1 + 7  # 7 batches, the first two partly cached
        again = client.execute_batched(x, batch_size=16)
        assert np.array_equal(again, x * 2)
        assert model.requests == 8  # all cached: no request
        streamed = list(client.execute_stream(x[i : i + 25] for i in range(0, 100, 25)))
        assert np.array_equal(np.concatenate(streamed), x * 2)
        assert model.requests == 8


# -- the property: cached == uncached ----------------------------------------------

_NUMERIC = st.sampled_from(
    ["<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8", ">i4", ">f8"]
)


@st.composite
def _input(draw: st.DrawFn, rows: int) -> np.ndarray:
    row_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3))
    shape = (rows, *row_shape)
    if draw(st.booleans()):
        values = draw(
            st.lists(
                st.binary(max_size=4) | st.text(max_size=3).map(str.encode),
                min_size=int(np.prod(shape)),
                max_size=int(np.prod(shape)),
            )
        )
        arr = np.empty(int(np.prod(shape)), dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    dtype = np.dtype(draw(_NUMERIC))
    return draw(hnp.arrays(dtype, shape))  # NaNs too: compared by their bytes


@st.composite
def _calls(draw: st.DrawFn) -> tuple[list[np.ndarray], list[list[int]]]:
    rows = draw(st.integers(1, 6))
    inputs = [draw(_input(rows)) for _ in range(draw(st.integers(1, 2)))]
    subsets = draw(st.lists(st.lists(st.integers(0, rows - 1), min_size=1, max_size=8), max_size=4))
    return inputs, subsets


@pytest.fixture(scope="module")
def identity() -> Iterator[GraphPipeServer]:
    with serve(lambda *xs: [*xs, xs[0]]) as server:
        yield server


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind == "O" or b.dtype.kind == "O":
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@settings(max_examples=40)
@given(call=_calls())
def test_cached_equals_uncached(
    identity: GraphPipeServer, call: tuple[list[np.ndarray], list[list[int]]]
) -> None:
    inputs, subsets = call
    cache = RowCache()
    with Client(identity.url) as plain, Client(identity.url, cache=cache) as cached:
        for idx in [list(range(len(inputs[0]))), *subsets, *subsets]:
            part = [x[idx] for x in inputs]
            want = plain.execute_multi(part)
            got = cached.execute_multi(part)
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert _same(g, w), (g, w)


def test_the_bytes_counted_are_the_memory_held(doubler: GraphPipeServer) -> None:
    """``nbytes`` (what ``max_bytes`` bounds) is at least the memory really held, and near it."""
    import gc
    import tracemalloc

    cache = RowCache(max_bytes=1 << 30)
    x = np.random.default_rng(1).random((20_000, 4))
    with Client(doubler.url, cache=cache) as client:
        client.execute(x[:10])
        gc.collect()
        tracemalloc.start()
        try:
            client.execute(x)
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    counted = cache.stats.nbytes * (20_000 - 10) / 20_000
    # Python's dict grows by doubling: the real overhead per entry moves with the
    # table's fill; the count takes the high end, so max_bytes is a true bound.
    assert 0.4 < held / counted < 1.1, (held, counted)


def test_the_guide_example_runs_as_written() -> None:
    import contextlib
    import io
    import re
    from pathlib import Path

    guide = Path(__file__).parents[2] / "docs" / "cache.md"
    block = re.findall(r"```python\n(.*?)```", guide.read_text(encoding="utf-8"), flags=re.S)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "cache.md", "exec"), {})
    assert out.getvalue().strip() == "[[6.0, 8.0], [10.0, 12.0]] 1 3"


def test_the_cache_works_over_replicas() -> None:
    # The rows are keyed by the model (model_key: the replicas serve one model), and the
    # requests for the missing rows are routed over the replicas.
    rows_seen: list[int] = []

    def model(x: np.ndarray) -> np.ndarray:
        rows_seen.append(len(x))
        return x * 2

    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    cache = RowCache(model_key="doubler")
    with serve(model) as a, serve(model) as b, Client([a.url, b.url], cache=cache) as client:
        for _ in range(6):
            np.testing.assert_array_equal(client.execute(x[:10]), x[:10] * 2)
        np.testing.assert_array_equal(client.execute(x), x * 2)  # 10 new rows only
        served = a.requests_served + b.requests_served
    assert rows_seen == [10, 10]
    assert served == 2
    assert cache.stats.hits == 5 * 10 + 10
