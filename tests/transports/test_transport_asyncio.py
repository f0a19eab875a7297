"""The asyncio fast path (``_transports/asyncio_direct.py``): the asyncio properties it relies on, its pool.

The first tests check, on the standard event loop and on uvloop, each property
listed in the module's docstring, with bare asyncio code: an event loop
upgrade that changes one of them fails here, by name. The others check the
fast path itself: which requests take it, the pool (bounded, LIFO, no leak
on cancellation, no collapse with many waiting calls), zero copy and memory.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client._transports import asyncio_direct as _transport_asyncio
from graphpipe_client._transports import send_thread as _send_thread
from graphpipe_client.testing import serve

LOOPS = ["asyncio", "uvloop"]


def run_on(loop_kind: str, main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop_kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())


class Sink:
    """A TCP server thread that reads and discards, or holds still until released."""

    def __init__(self, *, read: bool = True) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.read = read
        self.release = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.conns.append(conn)
        if not self.read:
            self.release.wait(10)
        with conn:
            while conn.recv(1 << 20):
                pass

    def close(self) -> None:
        self.release.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


class Recorder(asyncio.BufferedProtocol):
    def __init__(self, target: memoryview) -> None:
        self.target = target
        self.filled = 0
        self.buffers: list[memoryview] = []
        self.done = asyncio.get_running_loop().create_future()
        self.paused = 0
        self.resumed_at: list[int] = []
        self.transport: Any = None
        self.gone = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self.target[self.filled :]
        self.buffers.append(view)
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        if self.filled == len(self.target) and not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed_at.append(self.transport.get_write_buffer_size())

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone.set_result(None)
        if not self.done.done():
            self.done.set_exception(exc or ConnectionError("closed"))


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_property_1_buffered_protocol_receives_into_the_buffer_it_returns(
    loop_kind: str, tls: bool, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    payload = np.random.default_rng(1).integers(0, 255, 3 << 20, dtype=np.uint8).tobytes()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_once() -> None:
        conn, _ = listener.accept()
        if tls:
            conn = tls_pair[0].wrap_socket(conn, server_side=True)
        with conn:
            conn.sendall(payload)
            conn.recv(1)

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    target = np.zeros(len(payload), np.uint8)

    async def main() -> Recorder:
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"ssl": tls_pair[1], "server_hostname": "127.0.0.1"} if tls else {}
        transport, proto = await loop.create_connection(
            lambda: Recorder(memoryview(target)), "127.0.0.1", port, **kwargs
        )
        await asyncio.wait_for(proto.done, 10)
        transport.close()
        await asyncio.wait_for(proto.gone, 10)
        return proto

    proto = run_on(loop_kind, main)
    thread.join(10)
    listener.close()
    assert target.tobytes() == payload
    # Every receive went into a view of the target: nothing went through a buffer of its own.
    views = [np.frombuffer(b, np.uint8) for b in proto.buffers if b.nbytes]
    assert views and all(np.shares_memory(v, target) for v in views)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_property_2_with_limits_at_zero_resume_writing_means_all_was_handed_over(
    loop_kind: str,
) -> None:
    sink = Sink(read=False)  # holds still: the kernel buffers fill up
    data = memoryview(bytes(32 << 20))

    async def main() -> Recorder:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(
            lambda: Recorder(memoryview(bytearray(1))), "127.0.0.1", sink.port
        )
        transport.set_write_buffer_limits(0, 0)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        assert proto.paused == 1  # paused at once: the write did not block
        loop.call_later(0.1, sink.release.set)
        while not proto.resumed_at:
            await asyncio.sleep(0.01)
        transport.close()
        return proto

    proto = run_on(loop_kind, main)
    sink.close()
    assert proto.resumed_at == [0]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_property_3_the_socket_can_be_polled_without_reading(loop_kind: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def main() -> tuple[bool, bool, bytes]:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(
            lambda: Recorder(memoryview(bytearray(2))), "127.0.0.1", port
        )
        conn, _ = listener.accept()
        poller = select.poll()
        poller.register(transport.get_extra_info("socket").fileno(), select.POLLIN)
        idle = bool(poller.poll(0))
        conn.sendall(b"hi")
        time.sleep(0.05)  # the loop does not run: only polling can see the bytes
        readable = bool(poller.poll(0))
        await asyncio.wait_for(proto.done, 5)  # and the loop still receives them
        transport.close()
        conn.close()
        return idle, readable, bytes(proto.target)

    idle, readable, got = run_on(loop_kind, main)
    listener.close()
    assert (idle, readable, got) == (False, True, b"hi")


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_property_4_a_failed_write_leaves_the_transport_closing(loop_kind: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    async def main() -> tuple[bool, BaseException | None]:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(
            lambda: Recorder(memoryview(bytearray(1))), "127.0.0.1", port
        )
        conn, _ = listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()  # a reset
        time.sleep(0.05)  # the loop has not seen it
        transport.write(b"x" * 100)
        closing = transport.is_closing()
        try:
            await asyncio.wait_for(proto.done, 5)
        except Exception as exc:
            return closing, exc
        return closing, None

    closing, exc = run_on(loop_kind, main)
    listener.close()
    assert closing
    assert isinstance(exc, OSError)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_property_5_bytes_sent_on_a_duplicate_of_an_idle_transports_socket_go_out_in_order(
    loop_kind: str,
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def serve_one() -> None:
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                received.extend(chunk)

    server = threading.Thread(target=serve_one, daemon=True)
    server.start()
    body = np.random.default_rng(5).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes()

    async def main() -> tuple[bool, list[int]]:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(
            lambda: Recorder(memoryview(bytearray(1))), "127.0.0.1", port
        )
        transport.set_write_buffer_limits(0, 0)
        transport.write(b"HEAD")
        assert transport.get_write_buffer_size() == 0  # handed over: the transport is idle
        fd = os.dup(transport.get_extra_info("socket").fileno())
        blocking = os.get_blocking(fd)  # the duplicate shares the loop's non-blocking mode
        sizes: list[int] = []

        def send_body() -> None:
            with socket.socket(fileno=fd) as dup:
                view, pos = memoryview(body), 0
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
                while pos < len(body):
                    try:
                        pos += dup.send(view[pos : pos + (1 << 20)])
                    except BlockingIOError:
                        poller.poll(1000)
                    sizes.append(transport.get_write_buffer_size())

        await loop.run_in_executor(None, send_body)
        transport.write(b"TAIL")
        while transport.get_write_buffer_size():
            await asyncio.sleep(0.01)
        transport.close()
        await asyncio.wait_for(proto.gone, 5)
        return blocking, sizes

    blocking, sizes = run_on(loop_kind, main)
    server.join(10)
    listener.close()
    assert not blocking
    assert set(sizes) == {0}  # the transport wrote nothing of its own meanwhile
    assert bytes(received) == b"HEAD" + body + b"TAIL"


# --------------------------------------------------------------------------
# The fast path itself


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_direct_requests_take_the_fast_path_and_reuse_one_connection(loop_kind: str) -> None:
    async def main(url: str) -> tuple[Any, Any]:
        async with gp.AsyncClient(url) as client:
            for i in range(5):
                np.testing.assert_array_equal(
                    await client.execute(np.full(3, i)), np.full(3, 2 * i)
                )
            transport = client._transport
            loop = asyncio.get_running_loop()
            (pool,) = transport._fast._loops[loop].hosts.values()
            return transport._pools.get(loop), (pool.count, len(pool.idle))

    with serve(double) as server:
        httpx_pool, (count, idle) = run_on(loop_kind, lambda: main(server.url))
        assert server.connections_accepted == 1
    assert httpx_pool is None  # httpx was never used
    assert (count, idle) == (1, 1)


def test_a_proxied_request_takes_the_httpx_path() -> None:
    with serve(double) as server:
        # The bundled server takes the absolute-form request as its own.
        async def main() -> Any:
            async with gp.AsyncClient(
                "http://model.invalid:9000", proxy=server.url, retries=0
            ) as client:
                np.testing.assert_array_equal(await client.execute(np.ones(2)), np.full(2, 2.0))
                loop = asyncio.get_running_loop()
                return client._transport._pools.get(loop), client._transport._fast._loops.get(loop)

        httpx_pool, fast = asyncio.run(main())
    assert httpx_pool is not None and fast is None


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_many_tasks_share_a_bounded_pool_and_each_gets_its_own_answer(loop_kind: str) -> None:
    async def main(url: str) -> list[bool]:
        async with gp.AsyncClient(url, pool_size=5) as client:
            xs = [np.full(4, i, np.int64) for i in range(300)]
            outs = await asyncio.gather(*(client.execute(x) for x in xs))
            return [bool(np.array_equal(o, x * 2)) for o, x in zip(outs, xs, strict=True)]

    with serve(double) as server:
        ok = run_on(loop_kind, lambda: main(server.url))
        assert server.connections_accepted <= 5
    assert all(ok) and len(ok) == 300


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_cancelled_calls_give_their_connection_back(loop_kind: str) -> None:
    async def main(url: str) -> Any:
        async with gp.AsyncClient(url, pool_size=1, retries=0) as client:
            for _ in range(3):
                task = asyncio.ensure_future(client.execute(np.ones(2)))
                waiting = [asyncio.ensure_future(client.execute(np.ones(2))) for _ in range(3)]
                await asyncio.sleep(0.05)
                task.cancel()
                for w in waiting:
                    w.cancel()
                await asyncio.gather(task, *waiting, return_exceptions=True)
            server.clear_faults()
            out = await asyncio.wait_for(client.execute(np.ones(2)), 5)
            (pool,) = client._transport._fast._loops[asyncio.get_running_loop()].hosts.values()
            return out, pool.count, len(pool.waiters)

    with serve(double) as server:
        server.set_faults(delay=0.5)
        out, count, waiters = run_on(loop_kind, lambda: main(server.url))
    np.testing.assert_array_equal(out, np.full(2, 2.0))
    assert count == 1 and waiters == 0


def test_the_pool_never_scans_its_connections() -> None:
    # Taking and giving back a connection costs the same with 1 idle connection or 1,000.
    pool = _transport_asyncio._HostPool(1000)

    class Idle(_transport_asyncio._Connection):
        checks = 0

        def usable(self, peer: object) -> bool:
            Idle.checks += 1
            return True

    pool.idle = [Idle() for _ in range(1000)]
    pool.count = 1000

    async def main() -> None:
        for _ in range(100):
            conn = await pool.acquire()
            pool.release(conn, keep=True)

    asyncio.run(main())
    assert Idle.checks == 100  # one liveness check per call, never one per connection
    assert len(pool.idle) == 1000


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_large_response_costs_no_more_memory_than_with_the_sync_client(loop_kind: str) -> None:
    # The server shares the process (its allocations are traced too), so the
    # measure is relative: the async call's peak against the sync call's.
    x = np.arange(4 << 20, dtype=np.float32)  # 16 MiB out, 16 MiB back

    def measured(call: Callable[[], Any]) -> int:
        tracemalloc.start()
        try:
            out = call()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        np.testing.assert_array_equal(out, x)
        return peak

    async def main(url: str) -> int:
        async with gp.AsyncClient(url) as client:
            await client.execute(x[:16])  # connect outside the measurement
            task: list[Any] = []
            tracemalloc.start()
            try:
                task.append(await client.execute(x))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            np.testing.assert_array_equal(task[0], x)
            return peak

    with serve(lambda a: a) as server:
        with gp.Client(server.url) as client:
            client.execute(x[:16])
            sync_peak = measured(lambda: client.execute(x))
        async_peak = run_on(loop_kind, lambda: main(server.url))
    assert async_peak <= sync_peak + (512 << 10), (async_peak, sync_peak)


# --------------------------------------------------------------------------
# Large request bodies written from a thread (``_transports/send_thread.py``)

BIG = np.arange(2 << 20, dtype=np.float32)  # 8 MiB: over THREAD_SEND_BYTES


@pytest.fixture
def senders(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the bodies written from a thread, and the most threads writing at once."""
    counts = {"made": 0, "peak": 0}
    real = _send_thread.BodySender
    claim = _send_thread.claim_thread

    class Counted(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            counts["made"] += 1
            super().__init__(*args)

    def claim_counted() -> bool:
        taken = claim()
        counts["peak"] = max(counts["peak"], _send_thread._busy)
        return taken

    monkeypatch.setattr(_transport_asyncio, "BodySender", Counted)
    monkeypatch.setattr(_transport_asyncio, "claim_thread", claim_counted)
    return counts


def send_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "graphpipe-send"]


def no_send_thread_within(seconds: float) -> bool:
    end = time.monotonic() + seconds
    while send_threads():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return _send_thread._busy == 0


async def keep_company(url: str, seconds: float) -> Any:
    """A call that stays in flight on this loop for ``seconds`` (the server's delay)."""
    async with gp.AsyncClient(url, timeout=30) as other:
        return await other.execute(np.ones(2))


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_large_body_goes_out_from_a_thread_only_while_calls_share_the_loop(
    loop_kind: str, senders: dict[str, int]
) -> None:
    async def main(url: str) -> tuple[int, list[bool]]:
        async with gp.AsyncClient(url) as client:
            np.testing.assert_array_equal(await client.execute(BIG), BIG * 2)
            alone = senders["made"]  # one call: the loop's thread writes its body
            xs = [BIG + i for i in range(4)]
            outs = await asyncio.gather(*(client.execute(x) for x in xs))
            return alone, [bool(np.array_equal(o, x * 2)) for o, x in zip(outs, xs, strict=True)]

    with serve(double) as server:
        alone, ok = run_on(loop_kind, lambda: main(server.url))
    assert alone == 0
    assert ok == [True] * 4  # each call got its own answer
    assert senders["made"] >= 1
    assert no_send_thread_within(2)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_no_more_bodies_go_out_from_threads_at_once_than_the_cap(
    loop_kind: str, senders: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert no_send_thread_within(5), (send_threads(), _send_thread._busy)
    monkeypatch.setattr(_send_thread, "MAX_SEND_THREADS", 1)

    async def main(url: str) -> list[bool]:
        async with gp.AsyncClient(url) as client:
            xs = [BIG + i for i in range(4)]
            outs = await asyncio.gather(*(client.execute(x) for x in xs))
            return [bool(np.array_equal(o, x * 2)) for o, x in zip(outs, xs, strict=True)]

    with serve(double) as server:
        ok = run_on(loop_kind, lambda: main(server.url))
    assert ok == [True] * 4  # the calls beyond the cap wrote from the loop
    assert senders["peak"] == 1 and senders["made"] >= 1, senders
    assert no_send_thread_within(2)


class HeadOnlyServer:
    """One connection: reads a request's head, never its body, then runs ``after(conn)``."""

    def __init__(self, after: Callable[[socket.socket], object]) -> None:
        self.after = after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            self.after(conn)

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


@pytest.mark.parametrize("how", ["deadline", "read-timeout", "cancel"])
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_threaded_send_to_a_server_that_stops_reading_ends_in_time(
    loop_kind: str, how: str, senders: dict[str, int]
) -> None:
    # 64 MiB to a server that stops reading: the kernel buffers fill and the
    # thread waits for room. The deadline, the read timeout or a cancel ends it,
    # thread and all, as on the loop.
    big = np.arange(16 << 20, dtype=np.float32)
    timeout = {
        "deadline": gp.Timeout(connect=2, read=10, total=0.5),
        "read-timeout": gp.Timeout(connect=2, read=0.5),
        "cancel": gp.Timeout(connect=2, read=10),
    }[how]

    async def main(deaf: str, slow: str) -> tuple[BaseException | None, float, bool]:
        company = asyncio.ensure_future(keep_company(slow, 3))
        await asyncio.sleep(0.2)  # in flight: the big call shares the loop
        async with gp.AsyncClient(deaf, timeout=timeout, retries=0) as client:
            call = asyncio.ensure_future(client.execute(big))
            started = time.monotonic()
            if how == "cancel":
                await asyncio.sleep(0.5)
                call.cancel()
            try:
                await call
            except BaseException as exc:
                outcome: BaseException | None = exc
            else:
                outcome = None
            elapsed = time.monotonic() - started
            # The server still holds the connection open: only the client can end the thread.
            ended = await asyncio.to_thread(no_send_thread_within, 1)
        company.cancel()
        await asyncio.gather(company, return_exceptions=True)
        return outcome, elapsed, ended

    release = threading.Event()
    deaf = HeadOnlyServer(lambda conn: release.wait(30))  # then reads nothing more
    try:
        with serve(double) as slow:
            slow.set_faults(delay=3)
            outcome, elapsed, ended = run_on(loop_kind, lambda: main(deaf.url, slow.url))
    finally:
        release.set()
        deaf.close()
    expected = {
        "deadline": gp.DeadlineExceeded,
        "read-timeout": gp.ReadTimeout,
        "cancel": asyncio.CancelledError,
    }[how]
    assert isinstance(outcome, expected), repr(outcome)
    assert elapsed < 0.5 + 1.0, elapsed
    assert senders["made"] == 1  # the body was being written from a thread
    assert ended  # and that thread ended with the call


def answer_413(then: str) -> Callable[[socket.socket], None]:
    """Answer 413 at once, without reading the body; then drain the body, or close."""

    def after(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 7\r\nConnection: close\r\n\r\ntoo big"
        )
        if then == "drain":
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(10)
            while conn.recv(1 << 20):
                pass

    return after


@pytest.mark.parametrize("then", ["drain", "close"])
@pytest.mark.parametrize("loop_kind", LOOPS)
def test_an_early_answer_during_a_threaded_send(
    loop_kind: str, then: str, senders: dict[str, int]
) -> None:
    big = np.arange(16 << 20, dtype=np.float32)

    async def main(url: str, slow: str) -> BaseException | None:
        company = asyncio.ensure_future(keep_company(slow, 2))
        await asyncio.sleep(0.2)
        async with gp.AsyncClient(url, timeout=10, retries=0) as client:
            try:
                await client.execute(big)
            except BaseException as exc:
                outcome: BaseException | None = exc
            else:
                outcome = None
        await asyncio.gather(company, return_exceptions=True)
        return outcome

    server = HeadOnlyServer(answer_413(then))
    try:
        with serve(double) as slow:
            slow.set_faults(delay=2)
            outcome = run_on(loop_kind, lambda: main(server.url, slow.url))
    finally:
        server.close()
    assert senders["made"] == 1
    if then == "drain" or isinstance(outcome, gp.HTTPStatusError):
        assert isinstance(outcome, gp.HTTPStatusError), repr(outcome)
        assert outcome.status_code == 413 and outcome.body == "too big"
    else:  # the server's kernel may reset the connection, and the 413 be lost
        assert isinstance(outcome, gp.TransportError), repr(outcome)
    assert no_send_thread_within(1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_every_send_thread_place_free() -> None:
    # In a fresh interpreter (no threads: fork is clean there): the parent holds
    # every place; the child, which has none of the parent's threads, holds none.
    script = """
import os
from graphpipe_client._transports import send_thread as st
while st.claim_thread():
    pass
pid = os.fork()
if pid == 0:
    os._exit(0 if st._busy == 0 and st.claim_thread() else 1)
_, status = os.waitpid(pid, 0)
print(st._busy, os.waitstatus_to_exitcode(status))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == [str(_send_thread.MAX_SEND_THREADS), "0"]
