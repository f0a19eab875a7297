"""One behaviour, two shells: every scenario runs through Client and AsyncClient.

Each scenario names a model, optional server faults, a call and client
options; both clients must return identical results or raise the identical
exception type (with the same status code, error entries, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from aio_modes import MODES, run_in
from graphpipe_client.testing import GraphPipeServer, serve

# Every numeric wire type, from the package's own table (Null and String excluded).
NUMERIC = [t.dtype.name for t in gp.DataType if t.dtype is not None and t.dtype.kind != "O"]


def identity(*inputs: np.ndarray) -> list[np.ndarray]:
    return list(inputs)


def configured(x: np.ndarray, config: str = "") -> list[np.ndarray]:
    return [x, np.array([config.encode()], dtype=object)]


class ModelFailure(Exception):
    code = 7


def failing(x: np.ndarray) -> np.ndarray:
    raise ModelFailure("the model refused: bad input")


@dataclass
class Scenario:
    name: str
    call: str  # "execute", "execute_multi", "metadata", "execute_batched", "is_ready", ...
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    model: Callable[..., Any] = identity
    serve_kwargs: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    client_kwargs: dict[str, Any] = field(default_factory=dict)
    url: str | None = None  # overrides the server's URL (e.g. a closed port)


def _scenarios() -> Iterator[Scenario]:
    for dt in NUMERIC:
        x = (np.arange(24) % 7).astype(dt).reshape(2, 3, 4)
        yield Scenario(f"dtype-{dt}", "execute", (x,))
    yield Scenario("scalar", "execute", (np.float64(2.5),))
    yield Scenario("empty", "execute", (np.zeros((0, 5), np.float32),))
    yield Scenario(
        "strings", "execute", (np.array([b"a\0", b"", "h\u00e9".encode()], dtype=object),)
    )
    yield Scenario("str-input", "execute", (["hello", "world"],))
    yield Scenario(
        "multi-output",
        "execute_multi",
        ([np.ones(3, np.float32), np.arange(4, dtype=np.int64)],),
    )
    yield Scenario(
        "output-selection",
        "execute_multi",
        ([np.ones(3, np.float32), np.arange(4, dtype=np.int64)],),
        {"output_names": ["output1"]},
    )
    yield Scenario(
        "config", "execute_multi", ([np.ones(2)],), {"config": "temperature=2"}, model=configured
    )
    yield Scenario("metadata", "metadata")
    yield Scenario("http-400", "execute", (np.ones(2),), model=failing)
    yield Scenario(
        "remote-errors",
        "execute",
        (np.ones(2),),
        model=failing,
        serve_kwargs={"errors_as_response": True},
    )
    yield Scenario("http-500", "execute", (np.ones(2),), faults={"status": 500, "body": b"boom"})
    yield Scenario(
        "http-503-retried",
        "execute",
        (np.ones(2),),
        faults={"status": 503, "body": b"busy", "times": 2},
        client_kwargs={"retries": gp.RetryPolicy(retries=2, backoff=0.01)},
    )
    yield Scenario(
        "http-503-exhausted",
        "execute",
        (np.ones(2),),
        faults={"status": 503, "body": b"busy"},
        client_kwargs={"retries": gp.RetryPolicy(retries=1, backoff=0.01)},
    )
    yield Scenario("dropped", "execute", (np.ones(2),), faults={"drop": True})
    yield Scenario("truncated", "execute", (np.ones(1000),), faults={"truncate_body": 100})
    yield Scenario("garbage", "execute", (np.ones(2),), faults={"garbage": b"\xff" * 64})
    yield Scenario("chunked", "execute", (np.arange(10_000.0),), faults={"chunked": True})
    yield Scenario(
        "read-timeout",
        "execute",
        (np.ones(2),),
        faults={"delay": 1.0},
        client_kwargs={"timeout": gp.Timeout(connect=2, read=0.2)},
    )
    yield Scenario(
        "too-large",
        "execute",
        (np.ones(10_000),),
        client_kwargs={"max_response_bytes": 1000},
    )
    yield Scenario(
        "refused",
        "execute",
        (np.ones(2),),
        url="http://127.0.0.1:9/",
        client_kwargs={"retries": gp.RetryPolicy(retries=1, backoff=0.01)},
    )
    yield Scenario("bool-input", "execute", (np.ones(2, bool),))
    # Batched execution: the same batches, the same outputs, the same BatchError.
    yield Scenario("batched", "execute_batched", (np.arange(30.0).reshape(10, 3), 3))
    yield Scenario(
        "batched-multi",
        "execute_batched",
        ([np.arange(7, dtype=np.int32), np.ones((7, 2), np.float32)], 2),
        {"output_names": ["output1", "output0"]},
    )
    yield Scenario(
        "batched-strings",
        "execute_batched",
        (np.array([b"a", b"", "h\u00e9".encode(), b"d", b"e"], dtype=object), 2),
    )
    yield Scenario("batched-empty", "execute_batched", (np.zeros((0, 4), np.float32), 2))
    yield Scenario(
        "batched-http-400",
        "execute_batched",
        (np.ones((6, 2)), 2),
        {"concurrency": 1},
        model=failing,
    )
    yield Scenario("batched-mismatched-rows", "execute_batched", ([np.ones(3), np.ones(4)], 2))
    # Streams: the same results in order, the same BatchError at the same batch.
    yield Scenario(
        "stream", "execute_stream", ([np.full((2, 3), float(i)) for i in range(7)],),
        {"concurrency": 3},
    )  # fmt: skip
    yield Scenario(
        "stream-multi",
        "execute_stream",
        ([[np.arange(3, dtype=np.int32), np.ones((3, 2), np.float32)]] * 3,),
        {"output_names": ["output1", "output0"]},
    )
    yield Scenario(
        "stream-http-400",
        "execute_stream",
        ([np.ones((2, 2)), np.ones((2, 2)), np.ones((0, 2))],),
        {"concurrency": 1},
        model=failing,
    )
    yield Scenario(
        "stream-mismatched-rows",
        "execute_stream",
        ([np.ones(2), [np.ones(2), np.ones(3)]],),
        {"concurrency": 1},
    )
    yield Scenario("is-ready", "is_ready")
    yield Scenario("is-alive", "is_alive")
    yield Scenario("is-ready-refused", "is_ready", url="http://127.0.0.1:9/")


SCENARIOS = list(_scenarios())


@dataclass
class Outcome:
    value: Any = None
    error: type[BaseException] | None = None
    details: tuple[Any, ...] = ()
    requests: int = 0


def _details(exc: BaseException) -> tuple[Any, ...]:
    if isinstance(exc, gp.BatchError):
        return (exc.start, exc.stop, exc.index, type(exc.error), *_details(exc.error))
    if isinstance(exc, gp.HTTPStatusError):
        return (exc.status_code, exc.body)
    if isinstance(exc, gp.RemoteError):
        return exc.errors
    return ()


def _run_sync(sc: Scenario, server: GraphPipeServer) -> Outcome:
    with gp.Client(sc.url or server.url, **sc.client_kwargs) as client:
        try:
            value = getattr(client, sc.call)(*sc.args, **sc.kwargs)
            if sc.call == "execute_stream":
                value = list(value)
            return Outcome(value=value)
        except Exception as exc:
            return Outcome(error=type(exc), details=_details(exc))


def _run_async(sc: Scenario, server: GraphPipeServer, mode: str = "asyncio") -> Outcome:
    async def main() -> Outcome:
        async with gp.AsyncClient(sc.url or server.url, **sc.client_kwargs) as client:
            try:
                if sc.call == "execute_stream":
                    stream = client.execute_stream(*sc.args, **sc.kwargs)
                    return Outcome(value=[y async for y in stream])
                return Outcome(value=await getattr(client, sc.call)(*sc.args, **sc.kwargs))
            except Exception as exc:
                return Outcome(error=type(exc), details=_details(exc))

    return run_in(mode, main)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b))
        )
    return bool(a == b)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
@pytest.mark.parametrize("mode", MODES)
def test_sync_and_async_agree(mode: str, sc: Scenario) -> None:
    # Every async path (the fast one on asyncio and on uvloop; httpx under
    # asyncio and under trio) against the sync client.
    outcomes = []
    for run in (_run_sync, lambda sc, server: _run_async(sc, server, mode)):
        with serve(sc.model, **sc.serve_kwargs) as server:
            if sc.faults:
                server.set_faults(**sc.faults)
            outcome = run(sc, server)
            outcome.requests = server.requests_served
        outcomes.append(outcome)
    sync, async_ = outcomes
    assert sync.error == async_.error, (sync, async_)
    assert sync.details == async_.details
    assert _same(sync.value, async_.value)
    assert sync.requests == async_.requests


EXPECTED_ERRORS: dict[str, type[BaseException]] = {
    "http-400": gp.HTTPStatusError,
    "remote-errors": gp.RemoteError,
    "http-500": gp.HTTPStatusError,
    "http-503-exhausted": gp.HTTPStatusError,
    "dropped": gp.TransportError,
    "truncated": gp.TransportError,
    "garbage": gp.DecodeError,
    "read-timeout": gp.ReadTimeout,
    "too-large": gp.ResponseTooLargeError,
    "refused": gp.ConnectError,
    "bool-input": gp.EncodeError,
    "batched-http-400": gp.BatchError,
    "batched-mismatched-rows": gp.EncodeError,
    "stream-http-400": gp.BatchError,
    "stream-mismatched-rows": gp.BatchError,  # a stream fails at its batch: batch 1
}


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_sync_outcome_is_the_documented_one(sc: Scenario) -> None:
    with serve(sc.model, **sc.serve_kwargs) as server:
        if sc.faults:
            server.set_faults(**sc.faults)
        outcome = _run_sync(sc, server)
        requests = server.requests_served
    expected = EXPECTED_ERRORS.get(sc.name)
    if expected is None:
        assert outcome.error is None, outcome
    else:
        assert outcome.error is expected
    if sc.name == "http-400":
        assert outcome.details[0] == 400
        assert "the model refused: bad input" in outcome.details[1]
    if sc.name == "remote-errors":
        assert outcome.details == (gp.ErrorEntry(7, "the model refused: bad input"),)
    if sc.name == "http-503-retried":
        assert requests == 3  # two 503s, then the answer
    if sc.name == "http-503-exhausted":
        assert requests == 2  # one try, one retry
    if sc.name == "read-timeout":
        assert requests == 1  # never retried: the model may have run
    if sc.name == "stream-http-400":
        assert outcome.details[:3] == (0, 2, 0) and requests == 1  # the first batch, alone
    if sc.name == "stream-mismatched-rows":
        assert outcome.details[:4] == (2, 2, 1, gp.EncodeError) and requests == 1
    if sc.name == "stream":
        assert [float(y[0, 0]) for y in outcome.value] == list(range(7))
    if sc.name.startswith("dtype-"):
        (x,) = sc.args
        assert outcome.value.dtype == x.dtype
        np.testing.assert_array_equal(outcome.value, x)
    if sc.name == "strings":
        assert outcome.value.tolist() == [b"a\0", b"", "h\u00e9".encode()]
    if sc.name == "output-selection":
        np.testing.assert_array_equal(outcome.value[0], np.arange(4))
    if sc.name == "config":
        assert outcome.value[1].tolist() == [b"temperature=2"]
    if sc.name == "batched":
        np.testing.assert_array_equal(outcome.value, sc.args[0])
        assert requests == 4  # 3 + 3 + 3 + 1 rows
    if sc.name == "batched-http-400":
        assert outcome.details[:4] == (0, 2, 0, gp.HTTPStatusError)
        assert requests == 1  # the first failure stops the run
    if sc.name == "batched-mismatched-rows":
        assert requests == 0
    if sc.name in ("is-ready", "is-alive"):
        assert outcome.value is True
    if sc.name == "is-ready-refused":
        assert outcome.value is False
