"""The request layout cache: a repeated request is the same bytes as a fresh encoding.

``encode_infer_request`` remembers, per dtypes, shapes, names and config, the
bytes of a request but for its tensor data; these tests compare every cached
encoding with one made from scratch (the cache emptied first).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from graphpipe_client import codec
from graphpipe_client._wire import encode

F32 = np.arange(10, dtype=np.float32).reshape(1, 10)

CASES: list[tuple[list[Any], Any, Any, Any]] = [
    ([F32], None, None, None),
    ([F32], ["x"], ["y"], "cfg"),
    ([F32], ["x"], ["y"], b"other"),
    ([F32, np.arange(3, dtype=np.int64), np.zeros((2, 2))], ["a", "b", "c"], ["out"], None),
    ([np.zeros((0, 3), np.float32)], None, None, None),
    ([np.zeros(3, np.uint8), np.zeros(5, np.float16)], None, None, None),
    ([np.arange(6, dtype=">i4").reshape(2, 3)], None, None, None),  # big-endian: converted
    ([np.arange(6, dtype=np.float64).reshape(2, 3).T], None, None, None),  # not contiguous
    ([np.array(["a", "bc"])], None, None, None),  # strings: not cached
    ([np.ones((1, 10), np.float32), np.array([b"x"])], None, None, None),
]


def _fresh(arrays: list[Any], names: Any, outs: Any, cfg: Any) -> bytes:
    encode._LAYOUTS.clear()
    return codec.encode_infer_request(arrays, names, outs, cfg).tobytes()


@pytest.mark.parametrize(("arrays", "names", "outs", "cfg"), CASES)
def test_a_cached_layout_gives_the_same_bytes(
    arrays: list[Any], names: Any, outs: Any, cfg: Any
) -> None:
    expected = _fresh(arrays, names, outs, cfg)
    # New data, same dtypes and shapes: the layout comes from the cache.
    other = [
        a if a.dtype.kind in "USO" else (np.asarray(a) + 1).astype(a.dtype, order="K")
        for a in arrays
    ]
    cached = codec.encode_infer_request(other, names, outs, cfg)
    assert cached.tobytes() == _fresh(other, names, outs, cfg)
    again = codec.encode_infer_request(arrays, names, outs, cfg)
    assert again.tobytes() == expected
    decoded = codec.decode_request(again.tobytes())
    for got, want in zip(decoded.inputs, arrays, strict=True):
        if want.dtype.kind not in "USO":
            assert np.array_equal(got, want)


def test_the_key_tells_apart_what_changes_the_bytes() -> None:
    encode._LAYOUTS.clear()
    variants = [
        ([np.zeros((1, 10), np.float32)], None, None, None),
        ([np.zeros((10, 1), np.float32)], None, None, None),
        ([np.zeros((1, 10), np.int32)], None, None, None),
        ([np.zeros((1, 10), np.float32)], ["x"], None, None),
        ([np.zeros((1, 10), np.float32)], None, ["x"], None),
        ([np.zeros((1, 10), np.float32)], None, None, "x"),
        ([np.zeros((1, 10), np.float32)] * 2, None, None, None),
    ]
    first = [codec.encode_infer_request(*v).tobytes() for v in variants]
    assert len(set(first)) == len(variants)
    # The second round comes from the cache: each its own bytes still.
    assert [codec.encode_infer_request(*v).tobytes() for v in variants] == first


def test_the_data_is_still_not_copied() -> None:
    x = np.ones((4, 4), np.float32)
    codec.encode_infer_request([x])
    msg = codec.encode_infer_request([x])
    assert np.shares_memory(np.frombuffer(msg.segments[-1], np.float32), x)
    assert isinstance(msg.segments[0], bytes)  # the cached head is immutable


def test_the_cache_is_bounded() -> None:
    encode._LAYOUTS.clear()
    for n in range(encode.MAX_LAYOUTS + 10):
        codec.encode_infer_request([np.zeros(n + 1, np.float32)])
    assert len(encode._LAYOUTS) <= encode.MAX_LAYOUTS
