"""Named tensors: inputs as ``{name: array}``, outputs by name with ``execute_named``.

The 2018 shapes stay: ``execute`` returns the array for one output and a list for
several; ``execute_multi`` always a list; ``execute_named`` always a dict.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import aio, remote
from graphpipe_client.testing import serve

KINDS = ["sync", "async"]
A = np.arange(4, dtype=np.float32)
B = np.full(4, 10, dtype=np.float32)


def two_in_two_out(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    return {"sum": x + y, "diff": x - y}


def run(kind: str, url: str, method: str, *args: Any, **kwargs: Any) -> Any:
    if kind == "sync":
        with gp.Client(url, timeout=5) as client:
            return getattr(client, method)(*args, **kwargs)

    async def main() -> Any:
        async with gp.AsyncClient(url, timeout=5) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(main())


def _io(name: str) -> gp.IOMetadata:
    return gp.IOMetadata(name, "", (None,), np.dtype(np.float32))


META = gp.ModelMetadata(
    name="two-by-two", inputs=(_io("x"), _io("y")), outputs=(_io("sum"), _io("diff"))
)


@pytest.fixture
def server() -> Any:
    with serve(two_in_two_out, metadata=META) as srv:
        yield srv


@pytest.mark.parametrize("kind", KINDS)
def test_execute_takes_a_mapping_of_inputs(kind: str, server: Any) -> None:
    # The model's inputs are x and y: given by name, in any order.
    out = run(kind, server.url, "execute", {"y": B, "x": A})
    assert isinstance(out, list) and len(out) == 2
    np.testing.assert_array_equal(out[0], A + B)
    np.testing.assert_array_equal(out[1], A - B)


@pytest.mark.parametrize("kind", KINDS)
def test_execute_named_returns_outputs_by_their_metadata_names(kind: str, server: Any) -> None:
    out = run(kind, server.url, "execute_named", {"x": A, "y": B})
    assert list(out) == ["sum", "diff"]
    np.testing.assert_array_equal(out["sum"], A + B)
    np.testing.assert_array_equal(out["diff"], A - B)


@pytest.mark.parametrize("kind", KINDS)
def test_execute_named_with_output_names_chooses_and_orders(kind: str, server: Any) -> None:
    out = run(kind, server.url, "execute_named", [A, B], output_names=["diff"])
    assert list(out) == ["diff"]
    np.testing.assert_array_equal(out["diff"], A - B)
    assert server.requests_served == 1  # no metadata call when the names are given


@pytest.mark.parametrize("kind", KINDS)
def test_execute_named_with_one_output_is_still_a_dict(kind: str) -> None:
    with serve(lambda x: x * 3) as srv:
        out = run(kind, srv.url, "execute_named", A)
    assert list(out) == ["output0"]
    np.testing.assert_array_equal(out["output0"], A * 3)


@pytest.mark.parametrize("kind", KINDS)
def test_a_wrong_input_name_is_the_servers_400(kind: str, server: Any) -> None:
    with pytest.raises(gp.HTTPStatusError, match="no input named 'nope'") as info:
        run(kind, server.url, "execute", {"nope": A, "y": B})
    assert info.value.status_code == 400


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [{1: A}, {"": A}])
def test_mapping_keys_must_be_names(kind: str, server: Any, bad: dict[Any, Any]) -> None:
    with pytest.raises(gp.InvalidOption, match="non-empty str keys"):
        run(kind, server.url, "execute", bad)
    assert server.requests_served == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_mapping_and_input_name_together_are_refused(kind: str, server: Any) -> None:
    with pytest.raises(gp.InvalidOption, match="not both"):
        run(kind, server.url, "execute", {"x": A}, "x")


def test_the_module_functions_take_names_too(server: Any) -> None:
    out = remote.execute_named(server.url, {"x": A, "y": B})
    np.testing.assert_array_equal(out["sum"], A + B)
    assert gp.execute_named is remote.execute_named

    async def main() -> dict[str, np.ndarray]:
        return await aio.execute_named(server.url, {"x": A, "y": B}, output_names=["sum"])

    out2 = asyncio.run(main())
    assert list(out2) == ["sum"]


def test_the_2018_shapes_are_unchanged(server: Any) -> None:
    with serve(lambda x: x) as one:
        assert isinstance(remote.execute(one.url, A), np.ndarray)  # one output: the array
        assert isinstance(remote.execute_multi(one.url, [A]), list)  # always a list
    assert isinstance(remote.execute_multi(server.url, [A, B]), list)


def test_names_that_do_not_match_the_outputs_say_what_to_do() -> None:
    # A model whose metadata names fewer outputs than it returns.
    meta = gp.ModelMetadata(name="m", inputs=(_io("x"),), outputs=(_io("only"),))
    with (
        serve(lambda x: [x, x], metadata=meta) as srv,
        gp.Client(srv.url) as client,
        pytest.raises(gp.DecodeError, match=r"pass output_names="),
    ):
        client.execute_named(A)
