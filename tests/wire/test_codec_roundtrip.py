"""Property tests of the codec: round trips, zero copy, conversions, refusals.

Expected values come from numpy (``tobytes``, ``tolist``) and from the inputs
themselves; the only codec functions used are the ones under test.
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphpipe_client import codec
from graphpipe_client.codec import EncodeError, ErrorEntry, IOMetadata, ModelMetadata

NUMERIC = ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"]
TYPE_CODES = {dt: code for code, dt in enumerate(NUMERIC, start=1)}
STRING = 12


def examples(n: int) -> settings:
    """``n`` examples in a normal run, proportionally more under a bigger hypothesis
    profile (``HYPOTHESIS_PROFILE=fuzz``, see tests/conftest.py)."""
    return settings(max_examples=n * max(1, settings.default.max_examples // 100))


# --------------------------------------------------------------------------
# Strategies.


def object_array(values: Sequence[object], shape: tuple[int, ...] | None = None) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out if shape is None else out.reshape(shape)


# Shapes of rank 0 to 8 (zeros included), at most 256 elements.
shapes = st.lists(st.integers(0, 3), max_size=8).map(tuple).filter(lambda s: math.prod(s) <= 256)


@st.composite
def numeric_arrays(draw: st.DrawFn, dtypes: Sequence[str] = NUMERIC) -> np.ndarray:
    """Arbitrary bit patterns (NaN payloads, -0.0, subnormals) of any numeric dtype and shape."""
    dt = np.dtype("<" + draw(st.sampled_from(dtypes)))
    shape = draw(shapes)
    raw = draw(
        st.binary(min_size=math.prod(shape) * dt.itemsize, max_size=math.prod(shape) * dt.itemsize)
    )
    return np.frombuffer(bytearray(raw), dtype=dt).reshape(shape)


@st.composite
def string_arrays(draw: st.DrawFn) -> Any:
    """str, bytes, object arrays of str/bytes, U and S arrays, of any shape."""
    kind = draw(
        st.sampled_from(["bytes-objects", "str-objects", "mixed-objects", "U", "S", "str", "bytes"])
    )
    if kind == "str":
        return draw(st.text(max_size=10))
    if kind == "bytes":
        return draw(st.binary(max_size=10))
    shape = draw(shapes.filter(lambda s: math.prod(s) <= 24))
    n = math.prod(shape)
    # Trailing NULs and empty strings are the interesting bytes values.
    binary = (
        st.binary(max_size=8) | st.binary(max_size=4).map(lambda b: b + b"\0" * 3) | st.just(b"")
    )
    element = {
        "bytes-objects": binary,
        "str-objects": st.text(max_size=8),
        "mixed-objects": binary | st.text(max_size=8),
        "U": st.text(max_size=8),
        "S": st.binary(max_size=8),
    }[kind]
    values = draw(st.lists(element, min_size=n, max_size=n))
    if kind == "U":
        return np.array(values, dtype="U8").reshape(shape)
    if kind == "S":
        return np.array(values, dtype="S8").reshape(shape)
    return object_array(values, shape)


any_tensor = numeric_arrays() | string_arrays()
names = st.text(max_size=8)
configs = st.none() | st.text(max_size=12) | st.binary(max_size=12)


def expected_strings(value: Any) -> tuple[tuple[int, ...], list[bytes]]:
    arr = np.array(value, dtype=object) if isinstance(value, (str, bytes)) else np.asarray(value)
    flat = arr.reshape(-1).tolist()
    return arr.shape, [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat]


def assert_same_tensor(got: np.ndarray, sent: Any) -> None:
    """``got`` (decoded) holds exactly what ``sent`` (an input) holds."""
    if isinstance(sent, (str, bytes)) or np.asarray(sent).dtype.kind in "OUS":
        shape, values = expected_strings(sent)
        assert got.dtype == object
        assert got.shape == shape
        assert [type(v) for v in got.reshape(-1)] == [bytes] * len(values)
        assert got.reshape(-1).tolist() == values
        return
    x = np.asarray(sent)
    le = x.dtype.newbyteorder("<")
    assert got.dtype == le
    assert got.dtype.byteorder in "<|="
    assert got.shape == x.shape
    # Bit-exact: NaN payloads and the sign of zero survive.
    assert got.tobytes() == x.astype(le).tobytes(order="C")


def message_offsets(wire: bytes | bytearray, arrays: Sequence[np.ndarray]) -> list[int]:
    """Where each decoded (non-empty, numeric) array's data starts in ``wire``."""
    base = np.frombuffer(wire, np.uint8).ctypes.data
    return [a.ctypes.data - base for a in arrays if a.dtype != object and a.size]


# --------------------------------------------------------------------------
# Round trips.


@examples(200)
@given(
    inputs=st.lists(any_tensor, max_size=5),
    output_names=st.none() | st.lists(names, max_size=4),
    config=configs,
    data=st.data(),
)
def test_infer_request_round_trip(
    inputs: list[Any], output_names: list[str] | None, config: Any, data: st.DataObject
) -> None:
    input_names = data.draw(
        st.none() | st.lists(st.none() | names, min_size=len(inputs), max_size=len(inputs))
    )
    msg = codec.encode_infer_request(inputs, input_names, output_names, config)
    wire = msg.tobytes()
    assert len(wire) == msg.nbytes == len(msg)
    req = codec.decode_request(wire)
    assert isinstance(req, codec.InferRequest)
    assert len(req.inputs) == len(inputs)
    for got, sent in zip(req.inputs, inputs, strict=True):
        assert_same_tensor(got, sent)
    assert req.input_names == tuple("" if n is None else n for n in input_names or ())
    assert req.output_names == tuple(output_names or ())
    assert req.config == (
        b"" if config is None else config.encode() if isinstance(config, str) else config
    )
    # Every numeric data vector starts at a multiple of 64 in the message.
    assert all(off % 64 == 0 for off in message_offsets(wire, req.inputs))


@examples(200)
@given(
    outputs=st.lists(any_tensor, max_size=5),
    errors=st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=12)), max_size=3),
    as_entries=st.booleans(),
)
def test_infer_response_round_trip(
    outputs: list[Any], errors: list[tuple[int, str]], as_entries: bool
) -> None:
    given_errors = [ErrorEntry(c, m) for c, m in errors] if as_entries else errors
    wire = codec.encode_infer_response(outputs, given_errors).tobytes()
    resp = codec.decode_infer_response(wire)
    assert len(resp.outputs) == len(outputs)
    for got, sent in zip(resp.outputs, outputs, strict=True):
        assert_same_tensor(got, sent)
    assert resp.errors == tuple(ErrorEntry(c, m) for c, m in errors)
    assert all(off % 64 == 0 for off in message_offsets(wire, resp.outputs))


io_metadata = st.builds(
    IOMetadata,
    name=names,
    description=st.text(max_size=20),
    shape=st.none() | st.lists(st.none() | st.integers(0, 2**62), max_size=8).map(tuple),
    dtype=st.none() | st.sampled_from([*NUMERIC, "O"]).map(lambda d: np.dtype(d).newbyteorder("<")),
)


@examples(100)
@given(
    meta=st.builds(
        ModelMetadata,
        name=names,
        version=names,
        server=names,
        description=st.text(max_size=30),
        inputs=st.lists(io_metadata, max_size=4).map(tuple),
        outputs=st.lists(io_metadata, max_size=4).map(tuple),
    )
)
def test_metadata_response_round_trip(meta: ModelMetadata) -> None:
    assert codec.decode_metadata_response(codec.encode_metadata_response(meta).tobytes()) == meta


def test_metadata_request_round_trip() -> None:
    assert (
        codec.decode_request(codec.encode_metadata_request().tobytes()) == codec.MetadataRequest()
    )


@pytest.mark.parametrize("dt", NUMERIC)
@pytest.mark.parametrize(
    "shape", [(), (0,), (5,), (2, 0, 3), (3, 4), (1, 2, 1, 2, 1, 2, 1, 2)], ids=str
)
def test_every_dtype_and_rank(dt: str, shape: tuple[int, ...]) -> None:
    x = np.arange(math.prod(shape), dtype=dt).reshape(shape)
    req = codec.decode_request(codec.encode_infer_request([x]).tobytes())
    assert isinstance(req, codec.InferRequest)
    assert_same_tensor(req.inputs[0], x)
    (y,) = codec.decode_infer_response(codec.encode_infer_response([x]).tobytes()).outputs
    assert_same_tensor(y, x)


def test_strings_keep_trailing_nuls_and_empties() -> None:
    x = object_array([b"", b"a\0", b"\0", b"\0\0\0", b"b\0c", "t\u00e9xt", ""], (7,))
    req = codec.decode_request(codec.encode_infer_request([x]).tobytes())
    assert isinstance(req, codec.InferRequest)
    assert req.inputs[0].tolist() == [
        b"",
        b"a\0",
        b"\0",
        b"\0\0\0",
        b"b\0c",
        "t\u00e9xt".encode(),
        b"",
    ]


def test_string_inputs_of_every_kind() -> None:
    cases: list[tuple[Any, tuple[int, ...], list[bytes]]] = [
        ("h\u00e9", (), ["h\u00e9".encode()]),
        (b"raw\0", (), [b"raw\0"]),
        (np.array(["ab", "c"]), (2,), [b"ab", b"c"]),
        (np.array([[b"ab"], [b"c"]]), (2, 1), [b"ab", b"c"]),
        (np.array([], dtype="U3"), (0,), []),
        (object_array([b"x", "y"]), (2,), [b"x", b"y"]),
        (["list", "of", "str"], (3,), [b"list", b"of", b"str"]),
    ]
    msg = codec.encode_infer_request([c[0] for c in cases])
    req = codec.decode_request(msg.tobytes())
    assert isinstance(req, codec.InferRequest)
    for got, (_, shape, values) in zip(req.inputs, cases, strict=True):
        assert got.dtype == object
        assert got.shape == shape
        assert got.reshape(-1).tolist() == values


# --------------------------------------------------------------------------
# Inputs that are not C-contiguous little-endian arrays: converted once.


def encode_traced(x: Any) -> tuple[codec.EncodedMessage, int]:
    """Encode one input; return the message and the peak of memory allocated meanwhile."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        msg = codec.encode_infer_request([x])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return msg, peak


def shares_any_segment(msg: codec.EncodedMessage, x: np.ndarray) -> bool:
    return any(np.shares_memory(np.frombuffer(seg, np.uint8), x) for seg in msg.segments)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda a: np.asfortranarray(a), id="fortran"),
        pytest.param(lambda a: a[::2, ::-1], id="strided"),
        pytest.param(lambda a: a.T, id="transposed"),
        pytest.param(lambda a: a.astype(a.dtype.newbyteorder(">")), id="big-endian"),
        pytest.param(
            lambda a: np.asfortranarray(a.astype(a.dtype.newbyteorder(">"))), id="big-fortran"
        ),
        pytest.param(lambda a: a.astype(a.dtype.newbyteorder(">"))[::-1, ::3], id="big-strided"),
    ],
)
@pytest.mark.parametrize("dt", ["f4", "i8", "u2", "f2"])
def test_converted_inputs_are_converted_exactly_once(make: Any, dt: str) -> None:
    base = np.arange(512 * 1024, dtype=dt).reshape(512, 1024)  # 0.5 to 4 MiB
    x = make(base)
    assert not (x.flags.c_contiguous and x.dtype.byteorder in "<=|")
    msg, peak = encode_traced(x)
    converted = x.size * x.dtype.itemsize
    # One converted copy, not two (and not zero: the bytes must be fixed up).
    assert converted <= peak < 1.5 * converted
    assert not shares_any_segment(msg, x)
    req = codec.decode_request(msg.tobytes())
    assert isinstance(req, codec.InferRequest)
    assert_same_tensor(req.inputs[0], x)
    np.testing.assert_array_equal(req.inputs[0], x)


@examples(100)
@given(x=numeric_arrays(), order=st.sampled_from(["F", "strided", "big"]))
def test_converted_inputs_keep_their_values(x: np.ndarray, order: str) -> None:
    if order == "F":
        y = np.asfortranarray(x)
    elif order == "strided":
        y = np.repeat(x[..., None], 2, axis=-1)[..., 0]  # same values, every other element
    else:
        y = x.astype(x.dtype.newbyteorder(">"))
    (got,) = codec.decode_infer_response(codec.encode_infer_response([y]).tobytes()).outputs
    assert_same_tensor(got, y)
    assert got.tobytes() == x.tobytes()


# --------------------------------------------------------------------------
# Zero copy, both ways.


@examples(100)
@given(x=numeric_arrays())
def test_encoded_segments_are_views_of_contiguous_inputs(x: np.ndarray) -> None:
    assert x.flags.c_contiguous
    msg = codec.encode_infer_request([x, x])
    if x.nbytes:
        views = [s for s in msg.segments if np.shares_memory(np.frombuffer(s, np.uint8), x)]
        assert len(views) == 2  # each input is sent from the caller's memory
        assert all(memoryview(v).nbytes == x.nbytes for v in views)
    resp = codec.encode_infer_response([x])
    assert not x.nbytes or shares_any_segment(resp, x)


def test_encoded_view_is_sent_as_is() -> None:
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    msg = codec.encode_infer_request([x])
    x[0, 0] = 99.0  # the message holds a view, not a snapshot
    req = codec.decode_request(msg.tobytes())
    assert isinstance(req, codec.InferRequest)
    assert req.inputs[0][0, 0] == 99.0


@pytest.mark.parametrize(
    ("make", "writable"),
    [
        pytest.param(bytes, False, id="bytes"),
        pytest.param(bytearray, True, id="bytearray"),
        pytest.param(lambda w: memoryview(bytearray(w)), True, id="memoryview"),
        pytest.param(
            lambda w: memoryview(bytearray(w)).toreadonly(), False, id="readonly-memoryview"
        ),
        pytest.param(lambda w: np.frombuffer(bytearray(w), np.uint8), True, id="numpy-uint8"),
    ],
)
def test_decoded_arrays_are_views_writable_iff_the_buffer_is(make: Any, writable: bool) -> None:
    xs = [np.arange(12, dtype=dt).reshape(3, 4) for dt in NUMERIC]
    wire = codec.encode_infer_response(xs).tobytes()
    buf = make(wire)
    backing = np.frombuffer(buf, np.uint8)
    resp = codec.decode_infer_response(buf)
    for got, x in zip(resp.outputs, xs, strict=True):
        np.testing.assert_array_equal(got, x)
        assert np.shares_memory(got, backing)
        assert got.flags.writeable is writable
        assert got.flags.c_contiguous
        assert got.flags.aligned
    if writable:
        resp.outputs[5][0, 0] = -7  # the int32 output, written through to the buffer
        assert codec.decode_infer_response(buf).outputs[5][0, 0] == -7
    else:
        with pytest.raises(ValueError, match="read-only"):
            resp.outputs[0][0, 0] = 1


def test_decoded_requests_are_views_too() -> None:
    x = np.arange(6, dtype=np.int16)
    buf = bytearray(codec.encode_infer_request([x]).tobytes())
    req = codec.decode_request(buf)
    assert isinstance(req, codec.InferRequest)
    assert np.shares_memory(req.inputs[0], np.frombuffer(buf, np.uint8))
    assert req.inputs[0].flags.writeable


def test_decoded_view_keeps_the_buffer_alive() -> None:
    buf = bytearray(codec.encode_infer_response([np.arange(1000, dtype=np.float64)]).tobytes())
    (y,) = codec.decode_infer_response(buf).outputs
    del buf
    assert y.sum() == sum(range(1000))
    copy = np.array(y)
    assert copy.flags.owndata
    assert not np.shares_memory(copy, y)


# --------------------------------------------------------------------------
# Inputs that are not numpy arrays.


def test_lists_scalars_and_buffers_as_inputs() -> None:
    raw = bytearray(b"\x01\x02\x03\x04")
    floats = np.arange(4, dtype=np.float32)
    inputs: list[Any] = [
        [[1.5, 2.5], [3.5, 4.5]],  # nested list: float64
        [1, 2, 3],  # list of ints: int64
        7,  # Python int: 0-d int64
        2.5,  # Python float: 0-d float64
        np.float32(1.25),  # numpy scalar
        np.frombuffer(raw, dtype=np.uint8),  # a bytearray's buffer, as an array
        memoryview(floats),  # typed memoryview
        memoryview(raw),  # untyped memoryview: uint8
    ]
    msg = codec.encode_infer_request(inputs)
    req = codec.decode_request(msg.tobytes())
    assert isinstance(req, codec.InferRequest)
    expected = [
        np.array([[1.5, 2.5], [3.5, 4.5]]),
        np.array([1, 2, 3], dtype=np.int64),
        np.array(7, dtype=np.int64),
        np.array(2.5),
        np.array(1.25, dtype=np.float32),
        np.array([1, 2, 3, 4], dtype=np.uint8),
        floats,
        np.array([1, 2, 3, 4], dtype=np.uint8),
    ]
    for got, want in zip(req.inputs, expected, strict=True):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    # Buffer-protocol inputs are sent from their own memory (no copy).
    assert shares_any_segment(msg, np.frombuffer(raw, np.uint8))
    assert shares_any_segment(msg, floats)
    assert (
        sum(
            np.shares_memory(np.frombuffer(s, np.uint8), np.frombuffer(raw, np.uint8))
            for s in msg.segments
        )
        == 2
    )


def test_a_single_array_is_one_input() -> None:
    x = np.arange(3, dtype=np.int32)
    req = codec.decode_request(codec.encode_infer_request(x).tobytes())
    assert isinstance(req, codec.InferRequest)
    assert len(req.inputs) == 1
    np.testing.assert_array_equal(req.inputs[0], x)


# --------------------------------------------------------------------------
# Refusals: EncodeError (a ValueError), with a useful message.


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param(np.array([True, False]), r"astype\(np\.uint8\)", id="bool"),
        pytest.param(np.ones(2, np.complex64), "complex", id="complex64"),
        pytest.param(np.ones(2, np.complex128), "complex", id="complex128"),
        pytest.param(
            np.array(["2024-01-01"], dtype="datetime64[D]"), "datetime64", id="datetime64"
        ),
        pytest.param(np.array([1, 2], dtype="timedelta64[s]"), "timedelta64", id="timedelta64"),
        pytest.param(object_array([b"ok", 3]), "only str or bytes, found int", id="object-int"),
        pytest.param(object_array([None]), "only str or bytes, found NoneType", id="object-none"),
        pytest.param(np.zeros(2, dtype=[("a", "i4")]), "not supported", id="structured"),
        pytest.param(object_array([[1, 2]]), "found list", id="object-list"),
        pytest.param(2**70, "found int", id="python-int-too-big"),
    ],
)
def test_unsupported_inputs_raise_encode_error(value: Any, match: str) -> None:
    for encode in (codec.encode_infer_request, codec.encode_infer_response):
        with pytest.raises(EncodeError, match=match) as info:
            encode([value])
        assert isinstance(info.value, ValueError)
        assert "inputs[0]" in str(info.value) or "outputs[0]" in str(info.value)


def test_names_must_match_the_inputs() -> None:
    x = np.zeros(2, np.float32)
    with pytest.raises(EncodeError, match="input_names has 1 names for 2 inputs"):
        codec.encode_infer_request([x, x], input_names=["a"])
    with pytest.raises(EncodeError, match="input_names has 3 names for 2 inputs"):
        codec.encode_infer_request([x, x], input_names=["a", "b", "c"])
    with pytest.raises(EncodeError, match="list of names"):
        codec.encode_infer_request([x], input_names="a")
    with pytest.raises(EncodeError, match="list of names"):
        codec.encode_infer_request([x], output_names="out")
    with pytest.raises(ValueError, match="input_names"):
        codec.encode_infer_request([x], input_names=[])


@pytest.mark.parametrize("config", [5, 1.5, ["a"], {"k": "v"}, np.array([1])])
def test_config_must_be_str_or_bytes(config: Any) -> None:
    with pytest.raises(EncodeError, match="config must be str or bytes"):
        codec.encode_infer_request([np.zeros(1)], config=config)


def test_bad_error_entries_raise_encode_error() -> None:
    with pytest.raises(EncodeError, match=r"errors\[0\]"):
        codec.encode_infer_response(errors=[(2**63, "too big")])
    with pytest.raises(EncodeError, match=r"errors\[1\]"):
        codec.encode_infer_response(errors=[(1, "ok"), ("one", "bad code")])


def test_unencodable_text_raises_encode_error() -> None:
    lone = "\ud800"  # a lone surrogate has no UTF-8 encoding
    x = np.zeros(1)
    for call in (
        lambda: codec.encode_infer_request([lone]),
        lambda: codec.encode_infer_request([np.array([lone])]),
        lambda: codec.encode_infer_request([x], input_names=[lone]),
        lambda: codec.encode_infer_request([x], output_names=[lone]),
        lambda: codec.encode_infer_request([x], config=lone),
        lambda: codec.encode_infer_response(errors=[(1, lone)]),
        lambda: codec.encode_metadata_response(ModelMetadata(name=lone)),
        lambda: codec.encode_metadata_response(ModelMetadata(inputs=(IOMetadata(lone),))),
    ):
        with pytest.raises(EncodeError, match="UTF-8"):
            call()


def test_over_2_gib_raises_before_allocating() -> None:
    # A broadcast view: a few bytes of memory standing for terabytes. Copying
    # it (to make it contiguous) would raise MemoryError or exhaust the host.
    huge = np.broadcast_to(np.zeros(1, np.float64), (2**40,))
    with pytest.raises(EncodeError, match="2 GiB"):
        codec.encode_infer_request([huge])
    with pytest.raises(EncodeError, match="2 GiB"):
        codec.encode_infer_response([huge])
    # Just over the limit, in two inputs: refused, and nothing near 2 GiB allocated.
    half = np.broadcast_to(np.zeros(1, np.uint8), (2**30,))
    tracemalloc.start()
    try:
        with pytest.raises(EncodeError, match="2 GiB") as info:
            codec.encode_infer_request([half, half])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------
# Alignment: align=True and head_alignment_shift.


def builder_response(tensors: Sequence[tuple[int, tuple[int, ...], bytes | list[bytes]]]) -> bytes:
    """An InferResponse written with the official Builder, data aligned to 4 only (as in 2018).

    Tensors are ``(type, shape, data bytes or list of strings)``, written in
    order, so the first one ends up last in the buffer.
    """
    b = flatbuffers.Builder(0)
    offsets = []
    for code, shape, payload in tensors:
        b.StartVector(8, len(shape), 8)
        for d in reversed(shape):
            b.PrependInt64(d)
        shp = b.EndVector()
        if isinstance(payload, list):
            strs = [b.CreateString(v) for v in payload]
            b.StartVector(4, len(strs), 4)
            for off in reversed(strs):
                b.PrependUOffsetTRelative(off)
            vec, slot = b.EndVector(), 3
        else:
            vec, slot = b.CreateByteVector(payload), 2
        b.StartObject(4)
        b.PrependUint8Slot(0, code, 0)
        b.PrependUOffsetTRelativeSlot(1, shp, 0)
        b.PrependUOffsetTRelativeSlot(slot, vec, 0)
        offsets.append(b.EndObject())
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    vec = b.EndVector()
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def misaligned_response() -> tuple[bytes, list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """A float64 tensor at 4 mod 8 in its message, among a string, an int32 and a uint8 one.

    The string tensor is written first, so its table (with its own vtable)
    lies at the end of the buffer, after the float64 data.
    """
    big = np.random.default_rng(1).standard_normal(64)  # the largest tensor
    small = np.arange(5, dtype=np.int32)
    tiny = np.arange(3, dtype=np.uint8)
    for pad in range(1, 9):
        words = [b"x" * pad, b"yz"]
        wire = builder_response(
            [
                (12, (2,), words),
                (11, big.shape, big.tobytes()),
                (6, small.shape, small.tobytes()),
                (1, tiny.shape, tiny.tobytes()),
            ]
        )
        if wire.find(big.tobytes()) % 8 == 4:
            return wire, words, big, small, tiny
    raise AssertionError("could not place the float64 data at 4 mod 8")


def place(wire: bytes, shift: int) -> memoryview:
    """A writable copy of ``wire`` at a memory address that is ``shift`` mod 64."""
    block = np.zeros(len(wire) + 128, np.uint8)
    start = (-block.ctypes.data) % 64 + shift
    block[start : start + len(wire)] = np.frombuffer(wire, np.uint8)
    mv = memoryview(block[start : start + len(wire)])
    assert np.frombuffer(mv, np.uint8).ctypes.data % 64 == shift
    return mv


def test_align_true_copies_only_misaligned_tensors() -> None:
    wire, words, big, small, tiny = misaligned_response()
    buf = place(wire, 0)
    backing = np.frombuffer(buf, np.uint8)

    views = codec.decode_infer_response(buf).outputs
    assert not views[1].flags.aligned  # as the peer wrote it
    assert all(np.shares_memory(v, backing) for v in views[1:])
    np.testing.assert_array_equal(views[1], big)

    s, b, sm, t = codec.decode_infer_response(buf, align=True).outputs
    assert s.tolist() == words
    assert b.flags.aligned
    assert not np.shares_memory(b, backing)  # the misaligned one was copied
    assert b.tobytes() == big.tobytes()
    for view, want in ((sm, small), (t, tiny)):  # the aligned ones stayed views
        assert view.flags.aligned
        assert np.shares_memory(view, backing)
        np.testing.assert_array_equal(view, want)


def test_head_alignment_shift_aligns_the_largest_tensor() -> None:
    wire, _, big, _, _ = misaligned_response()
    data_at = wire.find(big.tobytes())
    shift = codec.head_alignment_shift(wire, len(wire))
    assert (shift + data_at) % 8 == 0
    assert shift == 4
    # The head alone (up to the data's length prefix) is enough, although the
    # string tensor's table lies past it.
    assert codec.head_alignment_shift(wire[:data_at], len(wire)) == shift
    # Stored at that shift, the float64 tensor decodes as an aligned view.
    buf = place(wire, shift)
    out = codec.decode_infer_response(buf, align=True).outputs[1]
    assert out.flags.aligned
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))
    np.testing.assert_array_equal(out, big)
    # Nothing readable in the head: no hint.
    assert codec.head_alignment_shift(wire[:20], len(wire)) == 0


@examples(50)
@given(outputs=st.lists(any_tensor, max_size=4))
def test_head_alignment_shift_is_zero_for_our_messages(outputs: list[Any]) -> None:
    wire = codec.encode_infer_response(outputs).tobytes()
    assert codec.head_alignment_shift(wire, len(wire)) == 0
    assert codec.head_alignment_shift(wire[: len(wire) // 2], len(wire)) == 0


@examples(200)
@given(
    garbage=st.binary(max_size=256),
    total=st.integers(0, 2**31),
    alignment=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_head_alignment_shift_never_raises(garbage: bytes, total: int, alignment: int) -> None:
    assert 0 <= codec.head_alignment_shift(garbage, total, alignment=alignment) < alignment


def test_head_alignment_shift_is_zero_for_garbage() -> None:
    rng = np.random.default_rng(2)
    for _ in range(2000):
        garbage = rng.integers(0, 256, size=int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
        assert codec.head_alignment_shift(garbage, len(garbage)) == 0
    for garbage in (b"", b"\0" * 64, b"\xff" * 64, b"GraphPipe" * 10, bytes(range(256))):
        assert codec.head_alignment_shift(garbage, 1 << 20) == 0


def test_head_alignment_shift_on_samples(data_dir: Path) -> None:
    # The Go server aligns its float32 data: nothing to shift.
    wire = (data_dir / "go_f32_resp.bin").read_bytes()
    assert codec.head_alignment_shift(wire, len(wire)) == 0
    wire = (data_dir / "go_str_resp.bin").read_bytes()
    assert codec.head_alignment_shift(wire, len(wire)) == 0  # no numeric tensor
