"""The fast reader of ``decode_infer_response`` against the full reader.

The fast reader may decline a message (the full reader then decodes it), but
whatever it accepts, the full reader must accept too, with equal arrays: it
is checked on valid messages of every kind and on many thousands of
corruptions of them.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from graphpipe_client import codec
from graphpipe_client._wire import decode as _decode
from graphpipe_client._wire.dtypes import DataType

MESSAGES = [
    codec.encode_infer_response([np.arange(6, dtype=np.float32).reshape(2, 3)]).tobytes(),
    codec.encode_infer_response([np.float64(3.5), np.zeros((0, 4), np.int16)]).tobytes(),
    codec.encode_infer_response(
        [np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.ones(3, np.int64)]
    ).tobytes(),
    codec.encode_infer_response(
        [np.array(["ab", "c"], dtype=object), np.ones(2, np.float16)]
    ).tobytes(),
    codec.encode_infer_response([np.ones(1, np.int32)], errors=[(1, "bad")]).tobytes(),
    codec.encode_infer_response([]).tobytes(),
] + [
    codec.encode_infer_response([np.ones((2,) * rank, DataType(code).dtype)]).tobytes()
    for code in range(1, 12)
    for rank in (0, 1, 8, 9)
]


def full(buf: bytes | bytearray) -> list[np.ndarray] | str:
    """What the full reader alone makes of ``buf``: the outputs, or the error text."""
    original = _decode._fast_outputs
    _decode._fast_outputs = lambda mv, n: None  # type: ignore[assignment]
    try:
        return codec.decode_infer_response(buf).outputs
    except codec.DecodeError as exc:
        return str(exc)
    finally:
        _decode._fast_outputs = original


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype
        and x.shape == y.shape
        and (x.tolist() == y.tolist() if x.dtype == object else x.tobytes() == y.tobytes())
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("wire", MESSAGES)
def test_valid_messages_decode_the_same(wire: bytes) -> None:
    buf = bytearray(wire)
    expected = full(buf)
    assert not isinstance(expected, str)
    got = codec.decode_infer_response(buf).outputs
    assert same(got, expected)
    for arr in got:
        if arr.dtype != object and arr.size:
            assert arr.flags.writeable and np.shares_memory(arr, np.frombuffer(buf, np.uint8))


def test_the_common_case_takes_the_fast_reader() -> None:
    mv = memoryview(MESSAGES[0])
    assert _decode._fast_outputs(mv, len(mv)) is not None
    for wire in MESSAGES[3:5]:  # strings, errors: declined
        mv = memoryview(wire)
        assert _decode._fast_outputs(mv, len(mv)) is None


def test_the_fast_reader_never_accepts_what_the_full_reader_refuses() -> None:
    rng = random.Random(2018)
    checked = accepted = 0
    for wire in MESSAGES:
        for _ in range(600):
            buf = bytearray(wire)
            for _ in range(rng.choice((1, 1, 2, 4))):
                i = rng.randrange(len(buf))
                buf[i] = rng.choice((0, 1, 2, 4, 8, 0x7F, 0x80, 0xFF, rng.randrange(256)))
            if rng.random() < 0.1:
                buf = buf[: rng.randrange(len(buf) + 1)]
            mv = memoryview(bytes(buf))
            fast = _decode._fast_outputs(mv, len(mv))
            checked += 1
            if fast is None:
                continue
            accepted += 1
            expected = full(bytes(buf))
            assert not isinstance(expected, str), (bytes(buf), expected)
            assert same(fast, expected), bytes(buf)
    assert checked > 20_000 and accepted > 1_000
