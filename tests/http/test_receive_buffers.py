"""Large receive buffers are used again once nothing views them (``_http/receive_buffers.py``).

First the pool alone: when a buffer is handed out again, and when never. Then
both clients against the bundled server over real sockets: an answer the
caller still holds is never overwritten by a later call's, whatever the
concurrency, and an answer let go gives its memory to the next call.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client._http import receive_buffers as rb
from graphpipe_client._http.exchange import new_receive_buffer
from graphpipe_client.testing import serve

MiB = 1 << 20


def address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


# --------------------------------------------------------------------------
# The pool alone


def test_a_buffer_nothing_views_is_handed_out_again() -> None:
    pool = rb.ReceiveBuffers()
    first = pool.take(5 * MiB)
    where = address(first)
    del first
    assert address(pool.take(5 * MiB)) == where


@pytest.mark.parametrize(
    "view",
    [
        lambda b: b[10:20],  # a numpy view
        lambda b: memoryview(b)[5:],  # a memoryview
        lambda b: np.frombuffer(memoryview(b[64:]), dtype=np.float32),  # a view of a view
    ],
    ids=["ndarray", "memoryview", "frombuffer"],
)
def test_a_buffer_something_still_views_is_never_handed_out(view: object) -> None:
    pool = rb.ReceiveBuffers()
    first = pool.take(5 * MiB)
    kept = view(first)  # type: ignore[operator]
    where = address(first)
    del first
    again = pool.take(5 * MiB)
    assert address(again) != where
    del kept
    del again
    taken = [pool.take(5 * MiB) for _ in range(2)]  # now free: one of the two is it
    assert where in {address(t) for t in taken}


def test_a_free_buffer_serves_only_bodies_at_least_half_its_size() -> None:
    pool = rb.ReceiveBuffers()
    big = pool.take(8 * MiB)
    where = address(big)
    del big
    assert address(pool.take(3 * MiB)) != where  # 3 MiB would keep 8 alive
    assert address(pool.take(4 * MiB)) == where


def test_small_buffers_are_never_kept_and_the_pool_stays_bounded() -> None:
    pool = rb.ReceiveBuffers()
    pool.take(rb.MIN_BYTES - 1)
    assert pool.held() == 0
    held = [pool.take(20 * MiB) for _ in range(5)]  # all busy: 3 kept (60 MiB), 2 not
    assert pool.held() == 60 * MiB <= rb.POOL_BYTES
    del held
    # Free buffers that do not fit give way to a new one: two of the three go.
    pool.take(40 * MiB)
    assert pool.held() == 60 * MiB
    pool.clear()
    assert pool.held() == 0


def test_threads_never_share_a_buffer() -> None:
    pool = rb.ReceiveBuffers()
    clashes: list[int] = []

    def work(mark: int) -> None:
        for _ in range(200):
            buf = pool.take(2 * MiB)
            buf[:8] = mark
            buf[-8:] = mark
            if buf[0] != mark or buf[-1] != mark:
                clashes.append(mark)
            threading.Event().wait(0.0001)
            if buf[0] != mark or buf[-1] != mark:
                clashes.append(mark)

    threads = [threading.Thread(target=work, args=(m,)) for m in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clashes == []
    assert pool.held() <= rb.POOL_BYTES


def test_a_placed_receive_buffer_holds_its_pool_buffer() -> None:
    pool = rb.ReceiveBuffers()
    head = bytes(range(256)) * 16
    buf = new_receive_buffer(3 * MiB, head, pool)
    assert buf.nbytes == 3 * MiB and bytes(buf[: len(head)]) == head
    base = buf.base
    assert isinstance(base, np.ndarray)
    where = address(base)
    del base
    other = pool.take(3 * MiB + 72)
    assert address(other) != where  # held through buf
    del other, buf
    assert address(pool.take(3 * MiB + 72)) == where  # free again: the first kept, first out


# --------------------------------------------------------------------------
# Both clients, real sockets


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


#: 2 MiB of float32 in, 2 MiB out: over MIN_BYTES.
N = 512 * 1024


def x_of(k: int) -> np.ndarray:
    return np.full(N, k, dtype=np.float32)


def test_sync_answers_held_are_never_overwritten_and_let_go_are_reused() -> None:
    with serve(double) as server, gp.Client(server.url) as client:
        held = [client.execute(x_of(k)) for k in range(1, 6)]
        for k, out in enumerate(held, 1):
            assert (out == 2 * k).all()  # each intact after the later calls
        assert len({address(o) for o in held}) == 5
        where = address(held[2])
        del held[2]
        again = client.execute(x_of(9))
        assert (again == 18).all()
        assert address(again) == where  # its memory went to the next call
        for k, out in zip((1, 2, 4, 5), held, strict=True):
            assert (out == 2 * k).all()


def test_sync_threads_each_get_their_own_answer_intact() -> None:
    bad: list[int] = []
    with serve(double) as server, gp.Client(server.url) as client:

        def work(k: int) -> None:
            kept = []
            for i in range(6):
                out = client.execute(x_of(k * 10 + i))
                if i % 2:
                    kept.append((k * 10 + i, out))  # every other answer held to the end
            for v, out in kept:
                if not (out == 2 * v).all():
                    bad.append(v)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert bad == []


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_async_tasks_answers_held_are_never_overwritten(loop_kind: str) -> None:
    async def main(url: str) -> list[int]:
        bad: list[int] = []
        async with gp.AsyncClient(url) as client:

            async def work(k: int) -> None:
                kept = []
                for i in range(6):
                    v = k * 10 + i
                    out = await client.execute(x_of(v))
                    if i % 2:
                        kept.append((v, out))
                for v, out in kept:
                    if not (out == 2 * v).all():
                        bad.append(v)

            await asyncio.gather(*(work(k) for k in range(1, 6)))
            held = client._transport._fast.buffers.held()  # type: ignore[attr-defined]
            assert 0 < held <= rb.POOL_BYTES
        return bad

    with serve(double) as server:
        if loop_kind == "uvloop":
            uvloop = pytest.importorskip("uvloop")
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                bad = runner.run(main(server.url))
        else:
            bad = asyncio.run(main(server.url))
    assert bad == []
