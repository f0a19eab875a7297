"""``execute_batched`` and ``execute_stream``, sync and async, over real sockets."""

from __future__ import annotations

import _thread
import asyncio
import pickle
import random
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import aio, remote
from graphpipe_client._jobs import progress as progress_module
from graphpipe_client.testing import Faults, GraphPipeServer, serve

MARKER = -1.0


class Gauge:
    """Counts the model's concurrent calls and remembers the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.calls = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def poisoned(x: np.ndarray) -> np.ndarray:
    """x * 2, but a 400 for any batch that holds a marker row."""
    if np.any(x[:, 0] == MARKER):
        raise ValueError("a poisoned row")
    return x * 2


@pytest.fixture(scope="module")
def doubler() -> Iterator[GraphPipeServer]:
    with serve(lambda x: x * 2) as server:
        yield server


@pytest.fixture(scope="module")
def poison_server() -> Iterator[GraphPipeServer]:
    with serve(poisoned) as server:
        yield server


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def async_batched(url: str, *args: Any, **kwargs: Any) -> Any:
    async with gp.AsyncClient(url) as client:
        return await client.execute_batched(*args, **kwargs)


# --------------------------------------------------------------------------
# Rows, batches and order


@pytest.mark.parametrize(
    ("rows", "batch_size"),
    [(10, 3), (10, 5), (10, 10), (10, 64), (1, 1)],
    ids=["uneven-last", "even", "one-batch", "batch-larger-than-rows", "one-row"],
)
def test_outputs_match_one_big_call(doubler: GraphPipeServer, rows: int, batch_size: int) -> None:
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    before = doubler.requests_served
    with gp.Client(doubler.url) as client:
        y = client.execute_batched(x, batch_size, concurrency=3)
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y, x * 2)
    assert y.dtype == np.float32 and y.flags.c_contiguous and y.flags.owndata
    assert doubler.requests_served - before == -(-rows // batch_size)


def test_zero_rows_send_one_empty_batch(doubler: GraphPipeServer) -> None:
    x = np.zeros((0, 4), np.int32)
    before = doubler.requests_served
    with gp.Client(doubler.url) as client:
        y = client.execute_batched(x, 8)
    assert isinstance(y, np.ndarray)
    assert y.shape == (0, 4) and y.dtype == np.int32
    assert doubler.requests_served - before == 1
    assert run(async_batched(doubler.url, x, 8)).shape == (0, 4)


def test_row_order_under_random_latency() -> None:
    rng = random.Random(7)
    lock = threading.Lock()

    def jittery(x: np.ndarray) -> np.ndarray:
        with lock:
            delay = rng.uniform(0, 0.02)
        time.sleep(delay)
        return x + 1

    x = np.arange(403, dtype=np.int64).reshape(-1, 1)
    with serve(jittery) as server, gp.Client(server.url) as client:
        y = client.execute_batched(x, 7, concurrency=6)
        y_async = run(async_batched(server.url, x, 7, concurrency=6))
        streamed = list(
            client.execute_stream((x[i : i + 7] for i in range(0, 403, 7)), concurrency=6)
        )
    np.testing.assert_array_equal(y, x + 1)
    np.testing.assert_array_equal(y_async, x + 1)
    np.testing.assert_array_equal(np.concatenate(streamed), x + 1)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_at_most_concurrency_requests_in_flight(concurrency: int) -> None:
    gauge = Gauge()

    def slow(x: np.ndarray) -> np.ndarray:
        with gauge:
            time.sleep(0.02)
        return x

    x = np.arange(24.0).reshape(12, 2)
    with serve(slow) as server, gp.Client(server.url) as client:
        client.execute_batched(x, 1, concurrency=concurrency)
        assert gauge.most == concurrency  # reached, never exceeded
        gauge.most = 0
        run(async_batched(server.url, x, 1, concurrency=concurrency))
        assert gauge.most == concurrency
    assert gauge.calls == 24


def test_several_inputs_and_outputs_with_names_and_config() -> None:
    seen: list[str] = []

    def model(a: np.ndarray, b: np.ndarray, config: str = "") -> dict[str, np.ndarray]:
        seen.append(config)
        return {"sum": a + b, "diff": a - b, "prod": a * b}

    a = np.arange(10.0).reshape(5, 2)
    b = np.ones((5, 2))
    with serve(model) as server, gp.Client(server.url) as client:
        out = client.execute_batched(
            [b, a],
            2,
            input_names=["input1", "input0"],
            output_names=["prod", "sum"],
            config="c=1",
        )
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_array_equal(out[0], a * b)
    np.testing.assert_array_equal(out[1], a + b)
    assert seen == ["c=1"] * 3


def test_one_input_several_outputs_is_a_list(doubler: GraphPipeServer) -> None:
    with serve(lambda x: (x, -x)) as server, gp.Client(server.url) as client:
        out = client.execute_batched(np.arange(5), 2)
    assert isinstance(out, list)
    np.testing.assert_array_equal(out[1], -np.arange(5))


def test_string_tensors_in_and_out() -> None:
    def shout(words: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        upper = np.array([w.upper() for w in words.reshape(-1)], dtype=object).reshape(words.shape)
        return upper, n * 10

    words = np.array([b"a", b"bb", b"ccc", "d\u00e9".encode(), b"", b"ff", b"g"], dtype=object)
    n = np.arange(7)
    with serve(shout) as server, gp.Client(server.url) as client:
        upper, tens = client.execute_batched([words, n], 3)
        upper_async, _ = run(async_batched(server.url, [words, n], 3))
    assert upper.dtype == object and upper.shape == (7,)
    assert list(upper) == [w.upper() for w in words]
    assert list(upper_async) == list(upper)
    np.testing.assert_array_equal(tens, n * 10)


def test_anything_numpy_accepts_as_one_input(doubler: GraphPipeServer) -> None:
    with gp.Client(doubler.url) as client:
        y = client.execute_batched(np.asarray([[1, 2], [3, 4], [5, 6]]), 2)
        from_list = client.execute_batched([[[1, 2], [3, 4], [5, 6]]], 2)  # a list: one input
    np.testing.assert_array_equal(y, [[2, 4], [6, 8], [10, 12]])
    np.testing.assert_array_equal(from_list[0], y)


def test_non_contiguous_input(doubler: GraphPipeServer) -> None:
    x = np.arange(40.0).reshape(10, 4)[:, ::2]
    with gp.Client(doubler.url) as client:
        np.testing.assert_array_equal(client.execute_batched(x, 3), x * 2)


# --------------------------------------------------------------------------
# Refused before anything is sent


def test_mismatched_row_counts_name_the_input(doubler: GraphPipeServer) -> None:
    before = doubler.requests_served
    with gp.Client(doubler.url) as client:
        with pytest.raises(
            gp.EncodeError, match=r"input 1 \('b'\) has 4 rows but input 0 \('a'\) has 5"
        ):
            client.execute_batched([np.zeros(5), np.zeros(4)], 2, input_names=["a", "b"])
        with pytest.raises(gp.EncodeError, match=r"input 2 has 3 rows but input 0 has 5"):
            client.execute_batched([np.zeros(5), np.zeros(5), np.zeros(3)], 2)
        with pytest.raises(gp.EncodeError, match="input 0 is a scalar"):
            client.execute_batched(np.float32(1.0), 2)
        with pytest.raises(gp.EncodeError, match="one item per model input"):
            client.execute_batched(["a", "b", "c"], 2)  # three inputs, not one
    with pytest.raises(gp.EncodeError, match="has 4 rows"):
        run(async_batched(doubler.url, [np.zeros(5), np.zeros(4)], 2))
    assert doubler.requests_served == before


def test_unsendable_dtype_fails_once_before_any_request(doubler: GraphPipeServer) -> None:
    before = doubler.requests_served
    with gp.Client(doubler.url) as client, pytest.raises(gp.EncodeError, match="no boolean"):
        client.execute_batched(np.zeros(10, bool), 2)
    assert doubler.requests_served == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an int >= 1"),
        ({"batch_size": True}, "batch_size must be an int >= 1"),
        ({"batch_size": 2, "concurrency": 0}, "concurrency must be an int >= 1"),
    ],
)
def test_bad_options(doubler: GraphPipeServer, kwargs: dict[str, Any], message: str) -> None:
    with gp.Client(doubler.url) as client, pytest.raises(gp.InvalidOption, match=message):
        client.execute_batched(np.zeros(4), **kwargs)


def test_a_generator_is_pointed_to_execute_stream(doubler: GraphPipeServer) -> None:
    with gp.Client(doubler.url) as client, pytest.raises(TypeError, match="execute_stream"):
        client.execute_batched(np.zeros(2) for _ in range(3))


def test_closed_client(doubler: GraphPipeServer) -> None:
    client = gp.Client(doubler.url)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.execute_batched(np.zeros(4), 2)


# --------------------------------------------------------------------------
# Failures


def test_poisoned_batch_names_exactly_its_rows(poison_server: GraphPipeServer) -> None:
    x = np.arange(100.0).reshape(50, 2)
    x[23, 0] = MARKER  # batch 2 of 10-row batches: rows 20:30
    with gp.Client(poison_server.url) as client:
        with pytest.raises(gp.BatchError) as info:
            client.execute_batched(x, 10, concurrency=3)
        exc = info.value
        assert (exc.start, exc.stop, exc.index, exc.rows) == (20, 30, 2, range(20, 30))
        assert isinstance(exc.error, gp.HTTPStatusError) and exc.error.status_code == 400
        assert exc.__cause__ is exc.error
        assert "a poisoned row" in str(exc) and str(exc).startswith("rows 20:30 (batch 2) failed: ")
        # still usable
        np.testing.assert_array_equal(client.execute(np.ones((1, 2))), [[2.0, 2.0]])
    with pytest.raises(gp.BatchError) as ainfo:
        run(async_batched(poison_server.url, x, 10, concurrency=3))
    assert (ainfo.value.start, ainfo.value.stop) == (20, 30)
    assert isinstance(ainfo.value.error, gp.HTTPStatusError)


def test_first_failure_stops_sending_and_drains() -> None:
    x = np.arange(400.0).reshape(200, 2)
    x[0, 0] = MARKER
    with serve(poisoned) as server:  # its own: no request of another test arrives late
        with gp.Client(server.url) as client, pytest.raises(gp.BatchError):
            client.execute_batched(x, 1, concurrency=4)
        sent = server.requests_served
        assert sent < 20  # not the 200 batches
        time.sleep(0.05)
        assert server.requests_served == sent  # drained: nothing goes on after


def test_on_error_collects_failures_and_goes_on(poison_server: GraphPipeServer) -> None:
    x = np.arange(1.0, 101.0).reshape(50, 2)
    x[3, 0] = MARKER
    x[41, 0] = MARKER
    failures: list[gp.BatchError] = []
    with gp.Client(poison_server.url) as client:
        y = client.execute_batched(x, 10, concurrency=2, on_error=failures.append)
    assert sorted((f.start, f.stop) for f in failures) == [(0, 10), (40, 50)]
    assert isinstance(y, np.ndarray)
    np.testing.assert_array_equal(y[10:40], x[10:40] * 2)
    assert not y[:10].any() and not y[40:].any()  # failed rows are zeros

    afailures: list[gp.BatchError] = []
    ay = run(async_batched(poison_server.url, x, 10, concurrency=2, on_error=afailures.append))
    assert sorted((f.start, f.stop) for f in afailures) == [(0, 10), (40, 50)]
    np.testing.assert_array_equal(ay, y)


def test_on_error_when_every_batch_fails_raises_the_first(poison_server: GraphPipeServer) -> None:
    x = np.full((4, 2), MARKER)
    failures: list[gp.BatchError] = []
    with gp.Client(poison_server.url) as client, pytest.raises(gp.BatchError):
        client.execute_batched(x, 2, concurrency=1, on_error=failures.append)
    assert [(f.start, f.stop) for f in failures] == [(0, 2), (2, 4)]


def test_on_error_that_raises_stops_the_run(poison_server: GraphPipeServer) -> None:
    x = np.ones((20, 2))
    x[0, 0] = MARKER

    def stop(exc: gp.BatchError) -> None:
        raise RuntimeError(f"stop at {exc.start}")

    with gp.Client(poison_server.url) as client, pytest.raises(RuntimeError, match="stop at 0"):
        client.execute_batched(x, 2, concurrency=2, on_error=stop)


def test_outputs_without_one_row_per_input_row() -> None:
    with (
        serve(lambda x: np.array([x.sum()])) as server,
        gp.Client(server.url) as client,
        pytest.raises(gp.BatchError) as info,
    ):
        client.execute_batched(np.ones((6, 2)), 3)
    assert isinstance(info.value.error, gp.DecodeError)
    assert "one row per input row" in str(info.value)


def test_transport_errors_are_batch_errors() -> None:
    with serve(lambda x: x, faults=Faults(delay=1.0)) as server:
        with (
            gp.Client(server.url, timeout=(1, 0.1)) as client,
            pytest.raises(gp.BatchError) as info,
        ):
            client.execute_batched(np.ones(4), 2)
        assert isinstance(info.value.error, gp.ReadTimeout)
        server.clear_faults()


def test_batch_error_pickles_and_is_exported() -> None:
    cause = gp.HTTPStatusError("HTTP 400: no", status_code=400, body="no", url="http://h/")
    exc = gp.BatchError(start=5, stop=9, index=1, error=cause)
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is gp.BatchError and str(clone) == str(exc)
    assert (clone.start, clone.stop, clone.index) == (5, 9, 1)
    assert isinstance(clone.error, gp.HTTPStatusError) and clone.error.body == "no"
    assert clone.__cause__ is clone.error
    assert issubclass(gp.BatchError, gp.GraphPipeError)
    assert "BatchError" in gp.__all__


# --------------------------------------------------------------------------
# Ctrl-C and cancellation


def test_keyboard_interrupt_stops_promptly_and_the_client_stays_usable() -> None:
    with (
        serve(lambda x: x * 2, faults=Faults(delay=1.5)) as server,
        gp.Client(server.url) as client,
    ):
        timer = threading.Timer(0.3, _thread.interrupt_main)
        started = time.monotonic()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                client.execute_batched(np.ones((40, 2)), 2, concurrency=2)
        finally:
            timer.cancel()
        took = time.monotonic() - started
        assert took < 1.0, took  # not the 1.5 s of the requests on the wire, let alone 20 of them
        server.clear_faults()
        np.testing.assert_array_equal(
            client.execute_batched(np.ones((4, 2)), 2), np.full((4, 2), 2.0)
        )


def test_keyboard_interrupt_in_a_stream() -> None:
    with serve(lambda x: x, faults=Faults(delay=1.5)) as server, gp.Client(server.url) as client:
        timer = threading.Timer(0.3, _thread.interrupt_main)
        started = time.monotonic()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                for _ in client.execute_stream((np.ones(2) for _ in range(10)), concurrency=2):
                    pass
        finally:
            timer.cancel()
        assert time.monotonic() - started < 1.0
        server.clear_faults()
        np.testing.assert_array_equal(client.execute(np.ones(2)), np.ones(2))


def test_async_cancellation_cancels_the_batches_in_flight() -> None:
    async def main(url: str) -> np.ndarray:
        async with gp.AsyncClient(url) as client:
            task = asyncio.ensure_future(client.execute_batched(np.ones((40, 2)), 2, concurrency=3))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert time.monotonic() - started < 0.5
            y = await client.execute(np.ones(3))
            assert isinstance(y, np.ndarray)
            return y

    with serve(lambda x: x * 2, faults=Faults(delay=1.0, times=3)) as server:
        np.testing.assert_array_equal(run(main(server.url)), np.full(3, 2.0))


# --------------------------------------------------------------------------
# Streams


def test_stream_keeps_at_most_concurrency_batches(doubler: GraphPipeServer) -> None:
    pulled = 0

    def batches() -> Iterator[np.ndarray]:
        nonlocal pulled
        for i in range(30):
            pulled += 1
            yield np.full((3, 1), i)

    consumed = 0
    with gp.Client(doubler.url) as client:
        for i, y in enumerate(client.execute_stream(batches(), concurrency=4)):
            assert pulled - consumed <= 4
            np.testing.assert_array_equal(y, np.full((3, 1), 2 * i))
            consumed += 1
    assert consumed == 30


def test_stream_items_of_several_inputs_and_failures() -> None:
    def model(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if (a < 0).any():
            raise ValueError("negative")
        return a + b

    items = [(np.full(2, i), np.ones(2)) for i in range(6)]
    items[4] = (np.full(2, -1), np.ones(2))
    with serve(model) as server, gp.Client(server.url) as client:
        with pytest.raises(gp.BatchError) as info:
            list(client.execute_stream(items, concurrency=2))
        assert (info.value.index, info.value.start, info.value.stop) == (4, 8, 10)
        failures: list[gp.BatchError] = []
        out = list(client.execute_stream(items, concurrency=2, on_error=failures.append))
        assert [f.index for f in failures] == [4]
        assert len(out) == 5 and all(isinstance(o, list) for o in out)
        with pytest.raises(gp.BatchError) as bad:
            list(client.execute_stream([np.ones(2), [np.ones(2), np.ones(3)]]))
    assert isinstance(bad.value.error, gp.EncodeError) and bad.value.index == 1
    assert "batch 1: input 1 has 3 rows but input 0 has 2" in str(bad.value)


def test_async_stream_over_an_async_generator(doubler: GraphPipeServer) -> None:
    pulled = 0

    async def batches() -> AsyncIterator[np.ndarray]:
        nonlocal pulled
        for i in range(12):
            pulled += 1
            yield np.full(2, i)

    async def main() -> list[Any]:
        out = []
        async with gp.AsyncClient(doubler.url) as client:
            async for y in client.execute_stream(batches(), concurrency=3):
                assert pulled - len(out) <= 3
                out.append(y)
            # a plain iterable works too
            out2 = [y async for y in client.execute_stream([np.ones(2)] * 2)]
        return out + out2

    out = run(main())
    assert [int(y[0]) for y in out] == [2 * i for i in range(12)] + [2, 2]


def test_leaving_a_stream_early_stops_it(doubler: GraphPipeServer) -> None:
    before = doubler.requests_served
    with gp.Client(doubler.url) as client:
        stream = client.execute_stream((np.ones(1) for _ in range(1000)), concurrency=2)
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()  # type: ignore[attr-defined]
        time.sleep(0.1)  # the batches that were on the wire finish in the background
        assert doubler.requests_served - before <= 3 + 2
        np.testing.assert_array_equal(client.execute(np.ones(1)), [2.0])


# --------------------------------------------------------------------------
# Progress


def test_progress_callable(doubler: GraphPipeServer) -> None:
    seen: list[tuple[int, int | None]] = []
    with gp.Client(doubler.url) as client:
        client.execute_batched(np.ones(10), 3, progress=lambda d, t: seen.append((d, t)))
    assert [t for _, t in seen] == [10] * 4
    assert sorted(d for d, _ in seen) == [d for d, _ in seen]
    assert seen[-1] == (10, 10)
    streamed: list[tuple[int, int | None]] = []
    with gp.Client(doubler.url) as client:
        list(
            client.execute_stream(
                [np.ones(3), np.ones(2)], progress=lambda d, t: streamed.append((d, t))
            )
        )
    assert streamed == [(3, None), (5, None)]


def test_progress_true_draws_a_tqdm_bar(
    doubler: GraphPipeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    with gp.Client(doubler.url) as client:
        client.execute_batched(np.ones(1000), 100, progress=True)
    err = capsys.readouterr().err
    assert "1.00k/1.00k" in err and "rows/s" in err and "100%" in err


def test_progress_true_without_tqdm_falls_back_to_a_status_line_with_one_note(
    doubler: GraphPipeServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As the command line does: the run goes on, with a plain status line on stderr, and a
    # warning, once per process, that says how to get the bar.
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(progress_module, "_noted_no_tqdm", False)
    with gp.Client(doubler.url) as client:
        with pytest.warns(UserWarning, match=r"tqdm is not installed") as notes:
            y = client.execute_batched(np.ones(10), 2, progress=True)
        np.testing.assert_array_equal(y, np.full(10, 2.0))
        (note,) = notes
        assert str(note.message) == progress_module.NO_TQDM_NOTE
        assert "pip install 'graphpipe-client[progress]'" in str(note.message)
        assert note.filename == __file__  # points at the caller's line, not the library's
        assert capsys.readouterr().err.startswith("10/10 rows, ")  # captured: not a terminal
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second note
            assert len(list(client.execute_stream([np.ones(2)] * 3, progress=True))) == 3
            run(async_batched(doubler.url, np.ones(10), 2, progress=True))
    err = capsys.readouterr().err
    assert err.splitlines() == [line for line in err.splitlines() if line.endswith(" rows/s")]
    assert err.startswith("6 rows, ") and "\n10/10 rows, " in err and "\r" not in err


def test_progress_of_the_wrong_type(doubler: GraphPipeServer) -> None:
    with gp.Client(doubler.url) as client, pytest.raises(TypeError, match="progress must be"):
        client.execute_batched(np.ones(10), 2, progress="yes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Parity and the module functions


def test_sync_async_and_module_functions_agree(poison_server: GraphPipeServer) -> None:
    x = np.arange(60.0).reshape(30, 2)
    with gp.Client(poison_server.url) as client:
        sync = client.execute_batched(x, 7, concurrency=3)
    asynchronous = run(async_batched(poison_server.url, x, 7, concurrency=3))
    module = remote.execute_batched(poison_server.url, x, 7, concurrency=3)

    async def via_aio() -> Any:
        return await aio.execute_batched(poison_server.url, x, 7, concurrency=3)

    module_async = run(via_aio())
    for y in (asynchronous, module, module_async):
        np.testing.assert_array_equal(y, sync)
        assert y.dtype == sync.dtype


# --------------------------------------------------------------------------
# A memory-mapped file larger than the batches: bounded RSS, in a fresh process

_RSS_PROBE = """
import json, sys, threading, time, tracemalloc
import numpy as np
import graphpipe_client as gp

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")

url, path = sys.argv[1], sys.argv[2]
x = np.load(path, mmap_mode="r")
with gp.Client(url) as client:
    client.execute_batched(x[:256], 256)  # warm-up: imports, connections, threads
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.0005)

    base = rss()
    sampler = threading.Thread(target=sample)
    sampler.start()
    tracemalloc.start()
    y = client.execute_batched(x, 256, concurrency=2)
    traced = tracemalloc.get_traced_memory()[1]
    rss_batched = peak[0] - base
    base = peak[0] = rss()
    chunks = (x[i : i + 256] for i in range(0, len(x), 256))
    parts = list(client.execute_stream(chunks, concurrency=2))
    rss_stream = peak[0] - base
    stop.set()
    sampler.join()
ok = bool(np.array_equal(y, x[:, :2])) and bool(np.array_equal(np.concatenate(parts), y))
print(json.dumps({"file": x.nbytes, "rss_extra": rss_batched, "rss_stream": rss_stream,
                  "traced": traced, "ok": ok}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_memmap_input_keeps_rss_bounded(tmp_path: Any) -> None:
    import json
    import subprocess

    path = tmp_path / "big.npy"
    rows, width = 16384, 1024  # 64 MiB of float32; a batch of 256 rows is 1 MiB
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, width))
    out[:] = np.random.default_rng(0).random((rows, width), dtype=np.float32)
    out.flush()
    del out
    with serve(lambda x: x[:, :2].copy()) as server:
        proc = subprocess.run(
            [sys.executable, "-W", "error", "-c", _RSS_PROBE, server.url, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["ok"]
    assert m["file"] == 64 << 20
    # 2 batches in flight (2 MiB) and the outputs (128 KiB), plus slack for
    # the interpreter: far below the 64 MiB of the file that went through.
    assert m["rss_extra"] < 16 << 20, m
    assert m["rss_stream"] < 16 << 20, m  # a stream of memory-mapped slices too
    assert m["traced"] < 4 << 20, m


def test_url_and_timeout_per_call_and_async_progress(doubler: GraphPipeServer) -> None:
    with gp.Client() as client:  # bound to no URL
        y = client.execute_batched(np.ones(5), 2, url=doubler.url, timeout=5)
        np.testing.assert_array_equal(y, np.full(5, 2.0))
        with pytest.raises(ValueError, match="no model URL"):
            client.execute_batched(np.ones(5), 2)
    seen: list[tuple[int, int | None]] = []

    async def main() -> Any:
        async with gp.AsyncClient() as aclient:
            return await aclient.execute_batched(
                np.ones(5), 2, url=doubler.url, progress=lambda d, t: seen.append((d, t))
            )

    np.testing.assert_array_equal(run(main()), np.full(5, 2.0))
    assert sorted(seen) == seen and seen[-1] == (5, 5) and len(seen) == 3


_ASYNC_RUN = """
import asyncio, sys
import numpy as np
import graphpipe_client as gp

async def main(url):
    async with gp.AsyncClient(url) as client:
        print("started", flush=True)
        await client.execute_batched(np.ones((40, 2)), 2, concurrency=2)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_stops_an_asyncio_run_promptly() -> None:
    import signal
    import subprocess

    with serve(lambda x: x, faults=Faults(delay=3.0)) as server:
        proc = subprocess.Popen(
            [sys.executable, "-W", "error", "-c", _ASYNC_RUN, server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"started\n"
            time.sleep(0.3)  # the first batches are on the wire
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode in (-signal.SIGINT, 130), err  # died of SIGINT, as Python does
    assert b"KeyboardInterrupt" in err
    assert took < 2.0, took  # not the 3 s the requests on the wire would take


def test_a_mapping_of_named_inputs() -> None:
    def model(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    a, b = np.arange(7.0), np.ones(7)
    with serve(model) as server, gp.Client(server.url) as client:
        y = client.execute_batched({"input1": b, "input0": a}, 3)  # by name, in any order
        np.testing.assert_array_equal(y, a - b)
        np.testing.assert_array_equal(
            run(async_batched(server.url, {"input0": a, "input1": b}, 3)), a - b
        )
        with pytest.raises(gp.EncodeError, match=r"input 1 \('input1'\) has 6 rows"):
            client.execute_batched({"input0": a, "input1": b[:6]}, 3)
        with pytest.raises(gp.InvalidOption, match="not both"):
            client.execute_batched({"input0": a}, 3, input_names=["input0"])
