"""Trying to break the receive-buffer pool (``_http/receive_buffers.py``).

The property under attack: whatever the caller still holds of an answer (the
array, a view, a memoryview, a ctypes object, a zero-copy unpickled copy, ...)
is never overwritten by a later call's response, whichever client, transport,
job or failure took the buffer back. Each test holds something, makes more
large calls (each answer a value of its own), and checks what it holds.

Each can fail: with the pool made to count a buffer that one held reference
still views as free (``_counts`` reading one less for every pooled buffer),
each test of what is held fails; a coalesced row views its answer through two
references, and that test fails when two are counted as free. The tracer and
fork tests fail on the pool as it was (a count measured once at import; one
lock, kept by the child), and the stale-bytes test when a body reaches past its
length into the pooled buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from aio_modes import run_in
from graphpipe_client._http import receive_buffers as rb
from graphpipe_client.testing import Faults, serve
from hostile import Server, answer, response, sends

MiB = 1 << 20

#: 2 MiB of float32: answers over MIN_BYTES, so they come from the pool.
N = 512 * 1024


def x_of(k: float) -> np.ndarray:
    return np.full(N, k, dtype=np.float32)


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


def pool_of(client: gp.Client | gp.AsyncClient) -> rb.ReceiveBuffers:
    transport: Any = client._transport
    if isinstance(client, gp.Client):
        return transport._buffers  # type: ignore[no-any-return]
    return transport._fast.buffers  # type: ignore[no-any-return]


def churn(client: gp.Client, start: int, calls: int = 4) -> None:
    """Large calls, each answer its own value, none kept."""
    for k in range(start, start + calls):
        assert (client.execute(x_of(k)) == 2 * k).all()


# --------------------------------------------------------------------------
# What the caller may hold


def _pickled_out_of_band(y: np.ndarray) -> object:
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(y, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(data, buffers=buffers)  # zero copy: views the same memory


def _ctypes(y: np.ndarray) -> object:
    if not y.flags.writeable:
        return (ctypes.c_char * 64).from_buffer(np.frombuffer(y.data, np.uint8).copy())
    return (ctypes.c_float * 16).from_buffer(y, 4 * 100)


class _Interface:
    """An object that exposes an array's memory through ``__array_interface__``."""

    def __init__(self, y: np.ndarray) -> None:
        self._keep = y
        self.__array_interface__ = y.__array_interface__


HOLDERS: dict[str, Callable[[np.ndarray], object]] = {
    "slice": lambda y: y[1000:2000],
    "reshape": lambda y: y.reshape(512, -1)[3],
    "memoryview": lambda y: memoryview(y)[10:],
    "memoryview-cast": lambda y: memoryview(y).cast("B")[64:],
    "frombuffer": lambda y: np.frombuffer(y.data, dtype=np.uint8, offset=8),
    "frombuffer-of-memoryview": lambda y: np.frombuffer(memoryview(y)[8:], dtype=np.int32),
    "ctypes": _ctypes,
    "pickle5-out-of-band": _pickled_out_of_band,
    "array-interface": lambda y: np.asarray(_Interface(y)),
    "dlpack": lambda y: np.from_dlpack(y),
    "in-a-dict": lambda y: {"out": [y[5:9]]},
}


def _snapshot(held: object) -> bytes:
    if isinstance(held, dict):
        return bytes(memoryview(held["out"][0]).cast("B"))
    if isinstance(held, memoryview):
        return bytes(held)
    if isinstance(held, ctypes.Array):
        return bytes(memoryview(held).cast("B"))
    return np.asarray(held).tobytes()


@pytest.mark.parametrize("holder", list(HOLDERS))
def test_sync_whatever_still_views_an_answer_is_never_overwritten(holder: str) -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        y = client.execute(x_of(1))
        held = HOLDERS[holder](y)
        before = _snapshot(held)
        del y
        churn(client, 2)
        assert _snapshot(held) == before


def test_an_answer_held_only_by_a_reference_cycle_is_never_overwritten() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        gc.disable()  # the cycle stays uncollected: only it refers to the answer
        try:
            cycle: list[Any] = [client.execute(x_of(1))[100:200]]
            cycle.append(cycle)
            probe = weakref.WeakValueDictionary({"y": cycle[0]})
            del cycle
            churn(client, 2)
            assert (probe["y"] == 2).all()
        finally:
            gc.enable()


def test_debug_log_records_of_large_calls_hold_no_view_of_the_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A record formatted later (by a handler, a queue listener) must not show a later answer.
    with serve(double) as server, gp.Client(server.url) as client:
        with caplog.at_level("DEBUG", logger="graphpipe_client"):
            client.execute(x_of(1))
            server.faults = Faults(truncate_body=MiB, times=1)
            with pytest.raises(gp.TransportError):
                client.execute(x_of(2))
        assert caplog.records
        for record in caplog.records:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            for value in (*args, *vars(record).values()):
                assert not isinstance(value, memoryview | np.ndarray | bytearray), record
        logged = [r.getMessage() for r in caplog.records]
        churn(client, 3)
        assert [r.getMessage() for r in caplog.records[: len(logged)]] == logged


# --------------------------------------------------------------------------
# Failures mid-body: the buffer is taken, the body never fills it


@pytest.mark.parametrize(
    "fault",
    [
        Faults(truncate_body=3 * MiB // 2, times=1),  # the true length, half the body, close
        Faults(content_length_delta=4096, times=1),  # announces more than comes
    ],
    ids=["truncated", "short-of-announced"],
)
def test_sync_a_body_shorter_than_announced_is_an_error_not_stale_bytes(fault: Faults) -> None:
    with serve(double) as server, gp.Client(server.url, timeout=gp.Timeout(read=1)) as client:
        kept = client.execute(x_of(1))
        churn(client, 2, 2)  # free buffers in the pool, holding old answers' bytes
        server.faults = fault
        with pytest.raises(gp.TransportError):
            client.execute(x_of(50))
        assert (kept == 2).all()
        assert (client.execute(x_of(7)) == 14).all()
        assert (kept == 2).all()


def _half_then(then: str) -> Callable[..., bool]:
    def make(req: Any) -> bytes:
        assert req.seen.x is not None
        whole = response(answer(req.seen.x))
        return whole[: len(whole) // 2]

    return sends("half", make, then=then)


@pytest.mark.parametrize("then", ["close", "reset", "hold"])
def test_sync_an_answer_cut_mid_body_leaves_held_answers_alone(then: str) -> None:
    # Request 1 (the second) gets half its answer, then a FIN, a RST or silence (read timeout).
    timeout = gp.Timeout(connect=2, read=0.5)
    with (
        Server({1: _half_then(then)}, lifetime=4) as server,
        gp.Client(server.url, timeout=timeout) as client,
    ):
        kept = client.execute(x_of(1))
        with pytest.raises(gp.GraphPipeError):
            client.execute(x_of(2))
        for k in range(3, 6):
            assert (client.execute(x_of(k)) == 2 * k).all()
        assert (kept == 2).all()
        assert "half" in server.sent


# --------------------------------------------------------------------------
# The async client: every way a call travels


@pytest.mark.parametrize("mode", ["asyncio", "uvloop", "httpx", "trio"])
def test_async_held_answers_survive_cuts_timeouts_and_cancellation(mode: str) -> None:
    # Request 1 is cut mid-body (FIN), request 2 stalls mid-body (read timeout),
    # request 3 stalls mid-body and its task is cancelled meanwhile.
    script = {1: _half_then("close"), 2: _half_then("hold"), 3: _half_then("hold")}

    async def main(url: str) -> None:
        async with gp.AsyncClient(url, timeout=gp.Timeout(connect=2, read=0.5)) as client:
            kept = await client.execute(x_of(1))
            view = memoryview(kept)[4:]
            before = bytes(view)
            del kept
            with pytest.raises(gp.GraphPipeError):
                await client.execute(x_of(2))
            with pytest.raises(gp.GraphPipeError):
                await client.execute(x_of(3))
            if mode == "trio":
                import trio

                with trio.move_on_after(0.2):
                    await client.execute(x_of(4))
            else:
                task = asyncio.ensure_future(client.execute(x_of(4)))
                await asyncio.sleep(0.2)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, gp.GraphPipeError):
                    await task
            for k in range(5, 8):
                assert (await client.execute(x_of(k)) == 2 * k).all()
            assert bytes(view) == before
            assert pool_of(client).held() <= rb.POOL_BYTES

    with Server(script, lifetime=4) as server:
        run_in(mode, lambda: main(server.url))


@pytest.mark.parametrize("mode", ["asyncio", "uvloop", "httpx", "trio"])
def test_async_concurrent_tasks_keep_their_answers(mode: str) -> None:
    async def main(url: str) -> list[int]:
        bad: list[int] = []
        async with gp.AsyncClient(url) as client:

            async def work(k: int) -> None:
                kept = []
                for i in range(4):
                    v = k * 10 + i
                    out = await client.execute(x_of(v))
                    kept.append((v, out[::3]))  # a strided view, not the array
                    del out
                for v, view in kept:
                    if not (view == 2 * v).all():
                        bad.append(v)

            if mode == "trio":
                import trio

                async with trio.open_nursery() as nursery:
                    for k in range(1, 5):
                        nursery.start_soon(work, k)
            else:
                await asyncio.gather(*(work(k) for k in range(1, 5)))
        return bad

    with serve(double) as server:
        assert run_in(mode, lambda: main(server.url)) == []


# --------------------------------------------------------------------------
# Jobs, cache, replicas


def test_batched_runs_and_row_cache_leave_held_answers_alone() -> None:
    with serve(double) as server, gp.Client(server.url, cache=gp.RowCache()) as client:
        x = np.arange(8 * N, dtype=np.float32).reshape(8, N)
        first = client.execute_batched(x, batch_size=1, concurrency=3)
        assert isinstance(first, np.ndarray)
        row = client.execute(x[:1] + 1)  # cached afterwards
        again = client.execute(x[:1] + 1)  # from the cache
        client.execute_batched(x + 5, batch_size=1, concurrency=3)
        churn(client, 100)
        assert (first == 2 * x).all()
        assert (row == 2 * (x[:1] + 1)).all()
        assert (again == row).all()


def _lagging(runs: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    def model(x: np.ndarray) -> np.ndarray:
        runs.append(1)
        threading.Event().wait(0.05)  # the hedge (after 10 ms) fires while this one still runs
        return x * 2

    return model


def test_hedged_calls_keep_the_winner_s_answer_and_the_loser_leaves_it_alone() -> None:
    runs: list[int] = []
    with (
        serve(_lagging(runs)) as a,
        serve(_lagging(runs)) as b,
        gp.Client(
            [a.url, b.url], idempotent=True, hedge=gp.Hedge(delay=0.01, budget=1.0)
        ) as client,
    ):
        kept = [(k, client.execute(x_of(k))[::7]) for k in range(1, 7)]
        churn(client, 20)
        for k, view in kept:
            assert (view == 2 * k).all()
    assert len(runs) > 10  # hedges went out: two attempts in flight, a loser abandoned


@pytest.mark.parametrize("mode", ["asyncio", "uvloop", "httpx"])
def test_async_hedged_calls_abandon_the_loser_and_keep_the_winner(mode: str) -> None:
    runs: list[int] = []

    async def main(a: str, b: str) -> None:
        hedge = gp.Hedge(delay=0.01, budget=1.0)
        async with gp.AsyncClient([a, b], idempotent=True, hedge=hedge) as client:
            kept = [(k, (await client.execute(x_of(k)))[::7]) for k in range(1, 7)]
            for k in range(20, 24):
                assert (await client.execute(x_of(k)) == 2 * k).all()
            for k, view in kept:
                assert (view == 2 * k).all()

    with serve(_lagging(runs)) as a, serve(_lagging(runs)) as b:
        run_in(mode, lambda: main(a.url, b.url))
    assert len(runs) > 10  # hedges went out


# --------------------------------------------------------------------------
# Lifetimes: close, weak references


def test_close_lets_go_of_every_buffer_and_nothing_outlives_its_last_view() -> None:
    with serve(double) as server:
        client = gp.Client(server.url)
        y = client.execute(x_of(1))
        probe = weakref.ref(y)
        assert pool_of(client).held() > 0
        client.close()
        assert pool_of(client).held() == 0
        assert (y == 2).all()
        del y
        gc.collect()
        assert probe() is None

    async def main(url: str) -> None:
        client = gp.AsyncClient(url)
        await client.execute(x_of(1))
        assert pool_of(client).held() > 0
        await client.aclose()
        assert pool_of(client).held() == 0

    with serve(double) as server:
        asyncio.run(main(server.url))


# --------------------------------------------------------------------------
# How a free buffer is recognised: not fooled by a tracer at import, nor by fork


TRACED_IMPORT = textwrap.dedent(
    """
    import sys
    import threading

    import numpy as np

    def tracer(frame, event, arg):  # what a tracer showing locals does (pysnooper, hunter, ...)
        if frame.f_code.co_name == "_counts":  # (only there: 3.12.1 breaks on comprehensions)
            frame.f_locals
        return tracer

    sys.settrace(tracer)
    import graphpipe_client as gp
    from graphpipe_client._http import receive_buffers as rb
    from graphpipe_client.testing import serve
    sys.settrace(None)

    bad = []
    with serve(lambda x: x * 2) as server, gp.Client(server.url) as client:
        def work():  # a thread the tracer never traced
            held = [client.execute(np.full(1 << 19, k, dtype=np.float32))[1:] for k in range(4)]
            bad.extend(k for k, y in enumerate(held) if not (y == 2 * k).all())
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert bad == [], f"answers overwritten: {bad}"

    pool = rb.ReceiveBuffers()
    first = pool.take(4 << 20)
    view = first[10:20]
    where = first.ctypes.data
    del first
    assert pool.take(4 << 20).ctypes.data != where, "a viewed buffer was handed out again"
    print("ok")
    """
)


def test_a_trace_function_at_import_does_not_make_viewed_buffers_look_free() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TRACED_IMPORT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _wait_child(pid: int, seconds: float) -> int:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1  # hung


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_after_fork_the_child_neither_hangs_on_the_pool_nor_overwrites_held_answers() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        kept = client.execute(x_of(1))[2:]
        churn(client, 2, 2)
        # Another thread is in the pool's take() at the moment of the fork.
        pool = pool_of(client)
        held, release = threading.Event(), threading.Event()

        def inside_take() -> None:
            with pool._lock:
                held.set()
                release.wait(10)

        t = threading.Thread(target=inside_take)
        t.start()
        held.wait(10)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                pid = os.fork()
            if pid == 0:  # the child: large calls, then what it held from before
                code = 1
                try:
                    for k in range(10, 14):
                        if not (client.execute(x_of(k)) == 2 * k).all():
                            break
                    else:
                        code = 0 if (kept == 2).all() else 2
                finally:
                    os._exit(code)
        finally:
            release.set()
            t.join()
        assert _wait_child(pid, 20) == 0  # -1: the child hung on the pool's lock
        churn(client, 30)
        assert (kept == 2).all()


# --------------------------------------------------------------------------
# Stale bytes: a pooled buffer is larger than the body, and holds an old answer


def _cut_answer(req: Any) -> bytes:
    """A whole HTTP response whose body is a true answer less its last 4 KiB: the
    message points past its own end, where a pooled buffer holds an old answer's tail."""
    assert req.seen.x is not None
    return response(answer(req.seen.x)[:-4096])


@pytest.mark.parametrize("mode", ["sync", "asyncio", "httpx"])
def test_a_body_that_points_past_its_end_never_reads_an_old_answer(mode: str) -> None:
    script = {1: sends("cut", _cut_answer)}  # request 1 gets a whole but cut message

    async def main(url: str) -> None:
        async with gp.AsyncClient(url) as client:
            assert (await client.execute(x_of(1)) == 2).all()  # its buffer is free again
            with pytest.raises(gp.DecodeError):
                await client.execute(x_of(2))
            assert (await client.execute(x_of(3)) == 6).all()

    with Server(script, lifetime=4) as server:
        if mode == "sync":
            with gp.Client(server.url) as client:
                assert (client.execute(x_of(1)) == 2).all()
                with pytest.raises(gp.DecodeError):
                    client.execute(x_of(2))
                assert (client.execute(x_of(3)) == 6).all()
        else:
            run_in(mode, lambda: main(server.url))
        assert "cut" in server.sent


def test_coalesced_callers_each_keep_their_rows() -> None:
    rows = 4
    kept: dict[int, list[tuple[int, np.ndarray]]] = {}
    with (
        serve(double) as server,
        gp.Client(server.url, coalesce=gp.Coalesce(max_rows=rows, max_wait=0.01)) as client,
    ):

        def work(k: int) -> None:
            kept[k] = [
                (v, client.execute(np.full((1, N), v, np.float32))[0, ::5])
                for v in range(k * 10, k * 10 + 4)
            ]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(1, rows + 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bad = [v for views in kept.values() for v, view in views if not (view == 2 * v).all()]
        # Only the first caller's rows stay held: each merged answer is viewed by one row.
        mine = kept.pop(1)
        kept.clear()
        for v, r in enumerate((1, 2, 3, 4) * 2, 100):  # answers the size of any merged one
            assert (client.execute(np.full((r, N), v, np.float32)) == 2 * v).all()
        bad += [v for v, view in mine if not (view == 2 * v).all()]
    assert bad == []


def test_dask_blocks_scored_in_threads_are_each_their_own() -> None:
    da = pytest.importorskip("dask.array")
    from graphpipe_client.dask import predict

    x = np.arange(12 * N, dtype=np.float32).reshape(12, N)
    meta = np.empty((0, N), np.float32)
    with serve(double) as server:
        first = predict(da.from_array(x, chunks=(3, N)), server.url, meta=meta, batch_size=1)
        kept = first.compute(scheduler="threads")
        second = predict(da.from_array(x + 1, chunks=(2, N)), server.url, meta=meta, batch_size=1)
        again = second.compute(scheduler="threads")
    assert (kept == 2 * x).all()
    assert (again == 2 * (x + 1)).all()
