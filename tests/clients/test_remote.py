"""The drop-in surface of the 2018 ``graphpipe.remote`` module."""

from __future__ import annotations

import inspect
import multiprocessing
import os

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import remote
from graphpipe_client.testing import serve

# name -> the positional parameters of the 2018 function, in order
OLD_SIGNATURES = {
    "execute": ["uri", "inp", "input_name", "output_name"],
    "execute_multi": ["uri", "inputs", "input_names", "output_names", "config"],
    "metadata": ["uri"],
    "get_input_names": ["uri"],
    "get_output_names": ["uri"],
    "get_input_types": ["uri"],
    "get_output_types": ["uri"],
    "get_input_shapes": ["uri"],
    "get_output_shapes": ["uri"],
}


@pytest.mark.parametrize("name", sorted(OLD_SIGNATURES))
def test_same_names_and_argument_order(name: str) -> None:
    params = inspect.signature(getattr(remote, name)).parameters.values()
    positional = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == OLD_SIGNATURES[name]


def test_top_level_functions_are_the_remote_ones() -> None:
    assert gp.execute is remote.execute
    assert gp.execute_multi is remote.execute_multi
    assert gp.metadata is remote.metadata


def single(x: np.ndarray) -> np.ndarray:
    return x + 1


def pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x + y, x - y


META = gp.ModelMetadata(
    name="pair",
    inputs=(
        gp.IOMetadata("x", "", (None, 2), np.dtype("float32")),
        gp.IOMetadata("y", "", (None, 2), np.dtype("float32")),
    ),
    outputs=(
        gp.IOMetadata("sum", "", (None, 2), np.dtype("float32")),
        gp.IOMetadata("diff", "", (None,), np.dtype("int64")),
    ),
)


def test_return_shapes_match_the_2018_client() -> None:
    with serve(single) as one, serve(pair, metadata=META) as two:
        y = remote.execute(one.url, np.zeros(3))
        assert isinstance(y, np.ndarray)  # one output: the array itself
        outs = remote.execute_multi(
            two.url, [np.ones((1, 2), np.float32), np.ones((1, 2), np.float32)]
        )
        assert isinstance(outs, list)
        assert len(outs) == 2
    with serve(lambda x: (x, -x)) as split:
        both = remote.execute(split.url, np.ones(2))
        assert isinstance(both, list)  # several outputs: the list, as the 2018 client did
        np.testing.assert_array_equal(both[1], [-1, -1])


def test_execute_names_select_inputs_and_outputs() -> None:
    with serve(pair, metadata=META) as server:
        x = np.full((1, 2), 5, np.float32)
        y = np.full((1, 2), 2, np.float32)
        outs = remote.execute_multi(server.url, [y, x], ["y", "x"], ["diff"])
        np.testing.assert_array_equal(outs[0], [[3, 3]])
        only = remote.execute_multi(server.url, [x, y], None, ["sum"], config="")
        np.testing.assert_array_equal(only[0], [[7, 7]])


def test_metadata_helpers_read_inputs_and_outputs() -> None:
    with serve(pair, metadata=META) as server:
        assert remote.get_input_names(server.url) == ["x", "y"]
        assert remote.get_output_names(server.url) == ["sum", "diff"]
        assert remote.get_input_types(server.url) == [np.dtype("float32")] * 2
        assert remote.get_output_types(server.url) == [np.dtype("float32"), np.dtype("int64")]
        assert remote.get_input_shapes(server.url) == [[None, 2], [None, 2]]
        assert remote.get_output_shapes(server.url) == [[None, 2], [None]]
        assert isinstance(remote.metadata(server.url), gp.ModelMetadata)
        # cached per URL: seven calls above, one request
        assert server.requests_served == 1


def test_module_functions_share_one_pool() -> None:
    with serve(single) as server:
        for _ in range(10):
            remote.execute(server.url, np.ones(2))
        remote.execute_multi(server.url, [np.ones(2)])
        assert server.connections_accepted == 1


def _child(url: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        queue.put(remote.execute(url, np.arange(3)).tolist())
    except Exception as exc:  # report, do not hang the parent
        queue.put(repr(exc))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_shared_pool_is_not_inherited_across_fork() -> None:
    with serve(single) as server:
        remote.execute(server.url, np.ones(1))  # the parent now holds a pooled connection
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(server.url, queue))
        proc.start()
        result = queue.get(timeout=20)
        proc.join(20)
        queue.close()
        queue.join_thread()
        assert result == [1, 2, 3]
        assert proc.exitcode == 0
        assert remote.execute(server.url, np.zeros(1)).tolist() == [1]  # parent's pool unharmed
        assert server.connections_accepted == 2  # the child opened its own
