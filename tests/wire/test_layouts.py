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


# -- responses: a frame already read -------------------------------------------


def _response(*arrays: np.ndarray) -> bytes:
    return codec.encode_infer_response(list(arrays)).tobytes()


def test_a_response_laid_out_as_one_already_read_decodes_the_same() -> None:
    from graphpipe_client._wire import decode

    decode._FRAMES.clear()
    first = np.arange(10, dtype=np.float32).reshape(1, 10)
    codec.decode_infer_response(_response(first))
    assert decode._FRAMES  # remembered
    other = first + 100
    (out,) = codec.decode_infer_response(_response(other)).outputs
    assert out.shape == (1, 10) and np.array_equal(out, other)
    # Same size, another shape: not the same frame bytes, read in full.
    (out,) = codec.decode_infer_response(_response(other.reshape(10, 1))).outputs
    assert out.shape == (10, 1) and np.array_equal(out, other.reshape(10, 1))
    # Same size, another dtype of the same item size.
    ints = np.arange(10, dtype=np.int32).reshape(1, 10)
    (out,) = codec.decode_infer_response(_response(ints)).outputs
    assert out.dtype == np.int32 and np.array_equal(out, ints)
    # Two outputs.
    two = codec.decode_infer_response(_response(first, ints)).outputs
    again = codec.decode_infer_response(_response(other, ints + 1)).outputs
    assert np.array_equal(two[1], ints) and np.array_equal(again[0], other)
    assert np.array_equal(again[1], ints + 1)


def test_a_broken_response_the_size_of_a_remembered_one_is_still_refused() -> None:
    from graphpipe_client._wire import decode

    good = _response(np.arange(10, dtype=np.float32).reshape(1, 10))
    codec.decode_infer_response(good)
    assert len(good) in decode._FRAMES
    _spans, outputs = decode._FRAMES[len(good)]
    (offset,) = [off for _, _, off in outputs]
    for i in range(len(good)):
        if offset <= i < offset + 40:
            continue  # tensor data: any bytes are valid
        bad = bytearray(good)
        bad[i] ^= 0xFF
        try:
            got = codec.decode_infer_response(bytes(bad))
        except codec.DecodeError:
            continue
        # A flip the full reader accepts (padding, an unused byte): the full reader's answer.
        decode._FRAMES.clear()
        want = codec.decode_infer_response(bytes(bad))
        codec.decode_infer_response(good)  # remembered again for the next flip
        assert [o.shape for o in got.outputs] == [o.shape for o in want.outputs]
        assert all(np.array_equal(a, b) for a, b in zip(got.outputs, want.outputs, strict=True))


def test_a_message_whose_data_overlaps_its_own_structure_is_never_remembered() -> None:
    """A hostile layout: the data vector of a uint8 tensor starts on its own shape vector.

    The reader accepts it (shape (1,), one byte of data that is also the shape's first
    byte). Remembering it would let a message equal to it outside "the data" reuse the
    first reading although its shape is different; so it is not remembered, and a
    message that differs in that byte is read in full (and refused).
    """
    import struct

    from graphpipe_client._wire import decode

    wire = bytearray(_response(np.array([7], np.uint8)))
    root = struct.unpack_from("<I", wire, 0)[0]

    def field(table: int, slot: int) -> int:
        vt = table - struct.unpack_from("<i", wire, table)[0]
        (off,) = struct.unpack_from("<H", wire, vt + 4 + 2 * slot)
        return table + off

    def target(p: int) -> int:
        return p + struct.unpack_from("<I", wire, p)[0]

    vec = target(field(root, 0))
    tensor = target(vec + 4)
    shape_at = target(field(tensor, 1))
    data_field = field(tensor, 2)
    assert shape_at > data_field
    struct.pack_into("<I", wire, data_field, shape_at - data_field)  # data: [rank][shape[0]...]
    decode._FRAMES.clear()
    (out,) = codec.decode_infer_response(bytes(wire)).outputs
    assert out.shape == (1,) and out[0] == 1  # the low byte of shape[0], read as data
    assert len(wire) not in decode._FRAMES
    other = bytearray(wire)
    other[shape_at + 4] = 2  # "the data", and the shape's first byte: now shape (2,)
    try:
        got = codec.decode_infer_response(bytes(other)).outputs
    except codec.DecodeError:
        return
    assert got[0].shape == (2,)  # whatever a full reading says; never the remembered (1,)
