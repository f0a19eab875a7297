"""The fast path of repeated small calls (``Client.execute``): after the first calls have
taught it the request's bytes and the answer's head, every call still returns its own
answer, and every misbehaviour of the server gets what the general path gives it."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import Faults, GraphPipeServer, serve

X = np.arange(10, dtype=np.float32).reshape(1, 10)


@pytest.fixture
def server() -> Iterator[GraphPipeServer]:
    with serve(lambda x: x * 2) as s:
        yield s


def warm(client: gp.Client, x: np.ndarray = X) -> None:
    """Calls until the fast path knows this call and its answer (checked, so that the
    test exercises it, not the general path)."""
    for _ in range(4):
        np.testing.assert_array_equal(client.execute(x), x * 2)
    assert client._small is not None
    learned = [c for c in client._small.values() if c is not None and c.answer is not None]
    assert learned, "the fast path did not learn this call"


def test_each_call_gets_its_own_answer(server: GraphPipeServer) -> None:
    with gp.Client(server.url) as client:
        warm(client)
        for i in range(50):
            x = np.full((1, 10), i, np.float32)
            y = client.execute(x)
            np.testing.assert_array_equal(y, x * 2)
            assert y.flags.writeable and y.flags.aligned


def test_threads_sharing_a_client_each_get_their_own_rows(server: GraphPipeServer) -> None:
    wrong: list[str] = []
    with gp.Client(server.url) as client:
        warm(client)

        def work(t: int) -> None:
            for i in range(100):
                x = np.full((1, 10), t * 1000 + i, np.float32)
                y = client.execute(x)
                if not np.array_equal(y, x * 2):
                    wrong.append(f"thread {t} call {i}: {y}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert wrong == []


def test_calls_of_other_shapes_and_names_are_their_own(server: GraphPipeServer) -> None:
    with gp.Client(server.url) as client:
        shapes = [(1, 10), (2, 10), (1, 3), (5,)]
        for _ in range(4):
            for k, shape in enumerate(shapes):
                x = np.full(shape, k + 1, np.float64)
                np.testing.assert_array_equal(client.execute(x), x * 2)
                np.testing.assert_array_equal(client.execute(x, config="c"), x * 2)
        xf = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
        np.testing.assert_array_equal(client.execute(xf), xf * 2)  # not C-contiguous
        xb = np.arange(3, dtype=">f4")  # converted: the general path
        np.testing.assert_array_equal(client.execute(xb), xb * 2)


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (Faults(status=500, body="boom", times=1), gp.HTTPStatusError),
        (Faults(garbage=b"not a flatbuffer", times=1), gp.DecodeError),
        (Faults(truncate_body=3, times=1), gp.TransportError),
        (Faults(content_length_delta=5, times=1), gp.TransportError),
        (Faults(drop=True, times=1), gp.TransportError),
    ],
    ids=["status", "garbage", "truncated", "short", "dropped"],
)
def test_a_misbehaving_answer_is_the_general_paths_error(
    server: GraphPipeServer, faults: Faults, error: type[Exception]
) -> None:
    with gp.Client(server.url, timeout=(5, 2)) as client:
        warm(client)
        served = server.requests_served
        server.faults = faults
        with pytest.raises(error):
            client.execute(X)
        assert server.requests_served - served == 1  # not sent again: it may have run
        np.testing.assert_array_equal(client.execute(X), X * 2)  # and the next call is right


def test_a_surplus_byte_after_the_body_is_not_read_as_the_next_answer(
    server: GraphPipeServer,
) -> None:
    with gp.Client(server.url) as client:
        warm(client)
        server.faults = Faults(content_length_delta=-2, times=1)
        with pytest.raises(gp.GraphPipeError):
            client.execute(X)  # (its message cut 2 bytes short)
        for i in range(3):
            x = np.full((1, 10), i, np.float32)
            np.testing.assert_array_equal(client.execute(x), x * 2)


def test_a_dropped_call_is_retried_when_idempotent(server: GraphPipeServer) -> None:
    with gp.Client(server.url, idempotent=True) as client:
        warm(client)
        served = server.requests_served
        server.faults = Faults(drop=True, times=1)
        np.testing.assert_array_equal(client.execute(X), X * 2)
        assert server.requests_served - served == 2


def test_a_503_is_retried_by_the_retry_rules(server: GraphPipeServer) -> None:
    with gp.Client(server.url) as client:
        warm(client)
        served = server.requests_served
        server.faults = Faults(status=503, body="busy", retry_after=0, times=1)
        np.testing.assert_array_equal(client.execute(X), X * 2)
        assert server.requests_served - served == 2


def test_a_stalled_answer_is_a_read_timeout(server: GraphPipeServer) -> None:
    with gp.Client(server.url, timeout=(5, 0.3)) as client:
        warm(client)
        server.faults = Faults(stall_after_headers=2, times=1)
        with pytest.raises(gp.ReadTimeout):
            client.execute(X)
        server.faults = Faults(delay=2, times=1)
        with pytest.raises(gp.ReadTimeout):
            client.execute(X)
        server.clear_faults()
        np.testing.assert_array_equal(client.execute(X), X * 2)


def test_a_chunked_answer_is_read_by_the_general_path(server: GraphPipeServer) -> None:
    with gp.Client(server.url) as client:
        warm(client)
        server.faults = Faults(chunked=True, times=2)
        for _ in range(2):
            np.testing.assert_array_equal(client.execute(X), X * 2)
        np.testing.assert_array_equal(client.execute(X), X * 2)


def test_an_error_entry_in_a_200_is_a_remote_error() -> None:
    state = {"fail": False}

    def model(x: np.ndarray) -> np.ndarray:
        if state["fail"]:
            raise ValueError("no such row")
        return x * 2

    with serve(model) as server, gp.Client(server.url) as client:
        warm(client)
        state["fail"] = True
        with pytest.raises(gp.GraphPipeError, match="no such row"):
            client.execute(X)
        state["fail"] = False
        np.testing.assert_array_equal(client.execute(X), X * 2)


def test_a_closed_client_refuses_calls(server: GraphPipeServer) -> None:
    client = gp.Client(server.url)
    warm(client)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.execute(X)


def test_the_connection_is_reused(server: GraphPipeServer) -> None:
    with gp.Client(server.url) as client:
        warm(client)
        opened = server.connections_accepted
        for _ in range(20):
            client.execute(X)
        assert server.connections_accepted == opened


def test_named_calls_on_the_fast_path_get_their_own_answers() -> None:
    with serve(lambda a, b: a + b) as server, gp.Client(server.url) as client:
        for i in range(8):
            a = np.full((1, 4), i, np.float32)
            b = np.arange(4, dtype=np.float32).reshape(1, 4)
            got = client.execute_named({"input0": a, "input1": b}, ["output0"])
            assert list(got) == ["output0"]
            np.testing.assert_array_equal(got["output0"], a + b)
            got = client.execute_named({"input0": a, "input1": b})  # names from the metadata
            np.testing.assert_array_equal(got["output0"], a + b)
        assert client._small is not None
        assert any(c is not None and c.answer is not None for c in client._small.values())
        with pytest.raises(gp.InvalidOption, match="non-empty str keys"):
            client.execute_named({"": a})


def test_a_large_answer_to_a_small_call_is_right_every_time() -> None:
    # (an answer over MAX_SMALL_ANSWER is not learned: each is received as the general
    # path receives it; one under it is, and is received by the fast path)
    for rows in (8192, 1024):  # 320 KiB, 40 KiB
        model = functools.partial(np.repeat, repeats=rows, axis=0)
        with serve(model) as server, gp.Client(server.url) as client:
            for i in range(6):
                x = np.full((1, 10), i, np.float32)
                y = client.execute(x)
                assert y.shape == (rows, 10) and (y == i).all() and y.flags.aligned


def test_a_large_request_is_right_every_time(server: GraphPipeServer) -> None:
    # 1 MiB: one writev when the socket's buffer takes it, else the general path goes on
    with gp.Client(server.url) as client:
        for i in range(6):
            x = np.full((256, 1024), i, np.float32)
            np.testing.assert_array_equal(client.execute(x), x * 2)


def test_a_remembered_call_does_not_keep_its_arrays_alive(server: GraphPipeServer) -> None:
    import gc
    import weakref

    with gp.Client(server.url) as client:
        x = np.full((1, 10), 3, np.float32)
        ref = weakref.ref(x)
        np.testing.assert_array_equal(client.execute(x), x * 2)
        del x
        gc.collect()
        assert ref() is None


def test_a_first_call_not_c_contiguous_does_not_keep_its_kind_off_the_fast_path(
    server: GraphPipeServer,
) -> None:
    with gp.Client(server.url) as client:
        xf = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
        np.testing.assert_array_equal(client.execute(xf), xf * 2)  # the general path
        warm(client, np.arange(6, dtype=np.float32).reshape(2, 3))  # then the fast path learns
