"""Untrusted input: every decoder raises DecodeError, and only DecodeError, quickly.

Real messages are truncated at every length, bit-flipped at every bit,
overwritten, spliced and replaced by random bytes; hand-made hostile messages
attack each bound the decoder must check. Every decode is timed: a hang or a
quadratic blow-up fails the test, not just the CI job's patience.
"""

from __future__ import annotations

import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphpipe_client import codec
from graphpipe_client.codec import DecodeError, ErrorEntry, IOMetadata, ModelMetadata

DATA = Path(__file__).parents[1] / "data"

DECODERS: dict[str, Callable[[Any], Any]] = {
    "request": codec.decode_request,
    "infer_response": codec.decode_infer_response,
    "metadata_response": codec.decode_metadata_response,
}

#: The time any one decode of a message under 10 KB may take. Generous (a
#: decode of such a message takes well under a millisecond): it is there to
#: catch hangs and blow-ups, not to benchmark.
FAST = 0.05


def attempt(decode: Callable[[Any], Any], buf: Any, limit: float = FAST) -> Any:
    """Decode ``buf``: return the result or the DecodeError; fail on anything else or if slow.

    Time is CPU time (other processes on a busy CI host do not count), and a
    slow case is retried twice before failing: a hang or a blow-up is slow
    every time, a garbage collection or a preemption is not.
    """
    elapsed = []
    for _ in range(3):
        t0 = time.process_time()
        try:
            result = decode(buf)
        except DecodeError as exc:
            result = exc
        except Exception as exc:  # pragma: no cover - that is the failure we look for
            raise AssertionError(
                f"{decode.__name__} raised {type(exc).__name__} (not DecodeError) on {bytes(buf)[:64]!r}..."
            ) from exc
        elapsed.append(time.process_time() - t0)
        if elapsed[-1] < limit:
            return result
    raise AssertionError(
        f"{decode.__name__} took {min(elapsed):.3f}s CPU on a {len(buf)}-byte message"
    )


def attempt_all(buf: Any) -> dict[str, Any]:
    return {name: attempt(decode, buf) for name, decode in DECODERS.items()}


def canonical(result: Any) -> Any:
    """A comparable form of a decoder's result (numpy arrays compared by bytes)."""
    if isinstance(result, (codec.InferResponse, codec.InferRequest)):
        arrays = result.outputs if isinstance(result, codec.InferResponse) else result.inputs
        tensors = [
            (a.dtype.str, a.shape, a.reshape(-1).tolist() if a.dtype == object else a.tobytes())
            for a in arrays
        ]
        rest = (
            result.errors
            if isinstance(result, codec.InferResponse)
            else (result.input_names, result.output_names, result.config)
        )
        return type(result).__name__, tensors, rest
    return result


def examples(n: int) -> settings:
    """``n`` examples in a normal run, proportionally more under a bigger hypothesis
    profile (``HYPOTHESIS_PROFILE=fuzz``, see tests/conftest.py)."""
    return settings(max_examples=n * max(1, settings.default.max_examples // 100))


# --------------------------------------------------------------------------
# Real messages.


def real_messages() -> dict[str, tuple[str, bytes]]:
    out = {
        name: (kind, (DATA / f"{name}.bin").read_bytes())
        for name, kind in [
            ("meta_req", "request"),
            ("infer_req", "request"),
            ("go_f32_resp", "infer_response"),
            ("go_str_resp", "infer_response"),
            ("go_meta_resp", "metadata_response"),
        ]
    }
    strings = np.empty(3, dtype=object)
    strings[:] = [b"abc", b"", "d\u00e9f"]
    out["our_request"] = (
        "request",
        codec.encode_infer_request(
            [np.arange(6, dtype=np.float32).reshape(2, 3), strings, np.int64(7)],
            input_names=["a", None, "c"],
            output_names=["y"],
            config="cfg",
        ).tobytes(),
    )
    out["our_response"] = (
        "infer_response",
        codec.encode_infer_response(
            [np.arange(4, dtype=np.uint16), strings], errors=[(3, "bad"), (-1, "")]
        ).tobytes(),
    )
    out["our_metadata"] = (
        "metadata_response",
        codec.encode_metadata_response(
            ModelMetadata(
                name="m",
                version="1",
                inputs=(IOMetadata("x", "d", (None, 3), np.dtype("f4")),),
                outputs=(IOMetadata("y", shape=None, dtype=np.dtype(object)),),
            )
        ).tobytes(),
    )
    for kind, wire in out.values():
        assert len(wire) < 10_000
        assert not isinstance(attempt(DECODERS[kind], wire), DecodeError)
    return out


REAL = real_messages()


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_truncation_raises_decode_error(name: str) -> None:
    kind, wire = REAL[name]
    full = canonical(DECODERS[kind](wire))
    refused = 0
    for n in range(len(wire)):
        results = attempt_all(wire[:n])
        got = results[kind]
        if isinstance(got, DecodeError):
            refused += 1
        else:
            # Only padding or a trailing NUL was cut: the same message.
            assert canonical(got) == full, f"prefix of {n} bytes decodes differently"
    # Nearly every prefix is refused (a few bytes of tail padding may go unnoticed).
    assert refused >= len(wire) - 8


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_bit_flip_is_safe(name: str) -> None:
    _, wire = REAL[name]
    buf = bytearray(wire)
    for i in range(len(buf)):
        for bit in range(8):
            buf[i] ^= 1 << bit
            attempt_all(bytes(buf))
            buf[i] ^= 1 << bit


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_byte_overwrite_is_safe(name: str) -> None:
    _, wire = REAL[name]
    buf = bytearray(wire)
    for i in range(len(buf)):
        keep = buf[i]
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            buf[i] = value
            attempt_all(bytes(buf))
        buf[i] = keep
    # Whole offsets and counts: every aligned word set to extreme values.
    for i in range(0, len(buf) - 3, 4):
        keep4 = bytes(buf[i : i + 4])
        for word in (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(buf), len(buf) - 4):
            struct.pack_into("<I", buf, i, word)
            attempt_all(bytes(buf))
        buf[i : i + 4] = keep4


messages = st.sampled_from(sorted(REAL)).map(lambda n: REAL[n][1])


@examples(300)
@given(a=messages, b=messages, data=st.data())
def test_spliced_messages_are_safe(a: bytes, b: bytes, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(a)))
    j = data.draw(st.integers(0, len(b)))
    attempt_all(a[:i] + b[j:])
    attempt_all(b[:j] + a[i:])


@examples(300)
@given(wire=messages, data=st.data())
def test_overwritten_windows_are_safe(wire: bytes, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(wire)))
    junk = data.draw(st.binary(max_size=16))
    attempt_all(wire[:start] + junk + wire[start + len(junk) :])
    # Insertions and deletions shift everything after them.
    attempt_all(wire[:start] + junk + wire[start:])
    attempt_all(wire[:start] + wire[start + len(junk) :])


@examples(300)
@given(garbage=st.binary(max_size=512))
def test_random_bytes_raise_only_decode_error(garbage: bytes) -> None:
    attempt_all(garbage)


@examples(300)
@given(words=st.lists(st.integers(0, 2**32 - 1) | st.sampled_from([0, 4, 8, 12, 16]), max_size=64))
def test_random_words_raise_only_decode_error(words: list[int]) -> None:
    # Small words make plausible offsets and sizes, so more of the decoder is reached.
    attempt_all(struct.pack(f"<{len(words)}I", *words))


def test_non_buffers_and_short_buffers() -> None:
    for decode in DECODERS.values():
        for bad in (None, 12, "text", [1, 2, 3], object()):
            with pytest.raises(DecodeError, match="expected bytes, bytearray or another buffer"):
                decode(bad)
        for short in (b"", b"\x08\x00\x00\x00", bytes(7)):
            with pytest.raises(
                DecodeError, match=r"too short to be a FlatBuffers message \(fewer than 8 bytes\)"
            ):
                decode(short)
        # A strided view is not one message.
        with pytest.raises(DecodeError, match="C-contiguous"):
            decode(memoryview(bytes(64))[::2])


def test_multidimensional_buffers_are_read_as_bytes() -> None:
    wire = REAL["our_response"][1]
    pad = -len(wire) % 8
    as_u64 = np.frombuffer(wire + bytes(pad), np.uint64)
    want = canonical(codec.decode_infer_response(wire))
    assert canonical(codec.decode_infer_response(as_u64)) == want
    assert (
        canonical(
            codec.decode_infer_response(
                memoryview(as_u64.reshape(-1, 2 if len(as_u64) % 2 == 0 else 1))
            )
        )
        == want
    )


# --------------------------------------------------------------------------
# Finding fields in a message, to patch them (plain struct, not the codec).


def u32(b: bytes | bytearray, p: int) -> int:
    return int(struct.unpack_from("<I", b, p)[0])


def deref(b: bytes | bytearray, p: int) -> int:
    return p + u32(b, p)


def field_pos(b: bytes | bytearray, table: int, slot: int) -> int:
    vt = table - struct.unpack_from("<i", b, table)[0]
    vt_size, _ = struct.unpack_from("<HH", b, vt)
    assert 4 + 2 * slot < vt_size, "field absent"
    (off,) = struct.unpack_from("<H", b, vt + 4 + 2 * slot)
    assert off, "field absent"
    return table + off


def vector(b: bytes | bytearray, table: int, slot: int) -> int:
    """Position of the length prefix of the vector (or string) in field ``slot``."""
    return deref(b, field_pos(b, table, slot))


def element(b: bytes | bytearray, vec: int, i: int) -> int:
    """Target of the ``i``-th offset of the vector of offsets at ``vec``."""
    return deref(b, vec + 4 + 4 * i)


def patched(wire: bytes, at: int, fmt: str, value: int) -> bytes:
    buf = bytearray(wire)
    struct.pack_into(fmt, buf, at, value)
    return bytes(buf)


def refuse(
    decode: Callable[[Any], Any], wire: bytes, *phrases: str, limit: float = FAST
) -> DecodeError:
    """Assert that ``decode`` raises a DecodeError whose message holds every phrase."""
    result = attempt(decode, wire, limit)
    assert isinstance(result, DecodeError), f"accepted: {result!r}"
    for phrase in phrases:
        assert phrase in str(result), f"{phrase!r} not in {str(result)!r}"
    return result


def response(*outputs: Any, errors: Sequence[tuple[int, str]] = ()) -> bytes:
    return codec.encode_infer_response(list(outputs), list(errors)).tobytes()


F32 = np.arange(4, dtype=np.float32)


def strings(*values: bytes | str) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


# --------------------------------------------------------------------------
# Hostile counts, offsets and vtables.


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("tensors", "InferResponse.output_tensors:"),
        ("errors", "InferResponse.errors:"),
        ("shape", "InferResponse.output_tensors[0].shape:"),
        ("data", "InferResponse.output_tensors[0].data:"),
        ("string_val", "InferResponse.output_tensors[1].string_val:"),
        ("message", "InferResponse.errors[0].message:"),
    ],
)
@pytest.mark.parametrize("count", [0xFFFFFFFF, 0x40000000, 0x80000000])
def test_huge_vector_counts(path: str, field: str, count: int) -> None:
    wire = response(F32, strings(b"a"), errors=[(1, "e")])
    root = deref(wire, 0)
    tensors = vector(wire, root, 0)
    errors = vector(wire, root, 1)
    at = {
        "tensors": tensors,
        "errors": errors,
        "shape": vector(wire, element(wire, tensors, 0), 1),
        "data": vector(wire, element(wire, tensors, 0), 2),
        "string_val": vector(wire, element(wire, tensors, 1), 3),
        "message": vector(wire, element(wire, errors, 0), 1),
    }[path]
    refuse(
        codec.decode_infer_response,
        patched(wire, at, "<I", count),
        field,
        f"vector of {count} x",
        "runs past the end",
    )


def test_huge_counts_in_requests_and_metadata() -> None:
    wire = codec.encode_infer_request(
        [F32], input_names=["x"], output_names=["y"], config="c"
    ).tobytes()
    infer = deref(wire, field_pos(wire, deref(wire, 0), 1))
    for slot, name in [
        (0, "config"),
        (1, "input_names"),
        (2, "input_tensors"),
        (3, "output_names"),
    ]:
        bad = patched(wire, vector(wire, infer, slot), "<I", 0xFFFFFFFF)
        refuse(codec.decode_request, bad, f"InferRequest.{name}", "runs past the end")
    meta = codec.encode_metadata_response(
        ModelMetadata(name="n", inputs=(IOMetadata("x", shape=(1,)),), outputs=(IOMetadata("y"),))
    ).tobytes()
    root = deref(meta, 0)
    for slot, name in [(0, "name"), (4, "inputs"), (5, "outputs")]:
        bad = patched(meta, vector(meta, root, slot), "<I", 0xFFFFFFFF)
        refuse(codec.decode_metadata_response, bad, f"MetadataResponse.{name}", "runs past the end")
    io = element(meta, vector(meta, root, 4), 0)
    for slot, name in [(0, "name"), (1, "description"), (2, "shape")]:
        bad = patched(meta, vector(meta, io, slot), "<I", 0xFFFFFFFF)
        refuse(
            codec.decode_metadata_response,
            bad,
            f"MetadataResponse.inputs[0].{name}",
            "runs past the end",
        )


def test_offsets_past_the_end() -> None:
    wire = response(F32, F32)
    n = len(wire)
    refuse(
        codec.decode_infer_response,
        patched(wire, 0, "<I", n),
        "InferResponse:",
        f"offset {n} at 0 points outside the message",
    )
    root = deref(wire, 0)
    tensors = vector(wire, root, 0)
    refuse(
        codec.decode_infer_response,
        patched(wire, field_pos(wire, root, 0), "<I", 0x7FFFFFFF),
        "InferResponse.output_tensors:",
        "points outside",
    )
    refuse(
        codec.decode_infer_response,
        patched(wire, tensors + 8, "<I", n),
        "InferResponse.output_tensors[1]:",
        "points outside",
    )
    refuse(
        codec.decode_infer_response,
        patched(wire, tensors + 4, "<I", 0),
        "InferResponse.output_tensors[0]:",
        "offset 0",
    )
    t0 = element(wire, tensors, 0)
    refuse(
        codec.decode_infer_response,
        patched(wire, field_pos(wire, t0, 2), "<I", n),
        "InferResponse.output_tensors[0].data:",
        "points outside",
    )
    refuse(
        codec.decode_infer_response,
        patched(wire, field_pos(wire, t0, 1), "<I", 0xFFFFFFFF),
        "InferResponse.output_tensors[0].shape:",
        "points outside",
    )


def test_vtables_outside_the_buffer() -> None:
    wire = response(F32)
    root = deref(wire, 0)
    t0 = element(wire, vector(wire, root, 0), 0)
    # soffset: vtable = table - soffset.
    refuse(
        codec.decode_infer_response,
        patched(wire, t0, "<i", t0 + 4),
        "InferResponse.output_tensors[0]:",
        "vtable at -4",
        "outside the message",
    )
    refuse(
        codec.decode_infer_response,
        patched(wire, t0, "<i", -(len(wire) - t0)),
        "InferResponse.output_tensors[0]:",
        "vtable at",
        "outside the message",
    )
    refuse(
        codec.decode_infer_response,
        patched(wire, root, "<i", 2**31 - 1),
        "InferResponse:",
        "vtable at",
        "outside the message",
    )
    refuse(
        codec.decode_infer_response,
        patched(wire, root, "<i", -(2**31)),
        "InferResponse:",
        "vtable at",
        "outside the message",
    )


def test_bad_vtable_and_table_sizes() -> None:
    wire = response(F32)
    root = deref(wire, 0)
    t0 = element(wire, vector(wire, root, 0), 0)
    vt = t0 - struct.unpack_from("<i", wire, t0)[0]
    what = "InferResponse.output_tensors[0]:"
    refuse(codec.decode_infer_response, patched(wire, vt, "<H", 7), what, "invalid size 7")
    refuse(codec.decode_infer_response, patched(wire, vt, "<H", 2), what, "invalid size 2")
    refuse(codec.decode_infer_response, patched(wire, vt, "<H", 0xFFFE), what, "invalid size 65534")
    refuse(
        codec.decode_infer_response, patched(wire, vt + 2, "<H", 0xFFFF), what, "runs past the end"
    )
    refuse(codec.decode_infer_response, patched(wire, vt + 2, "<H", 0), what, "of size 0")
    # A field whose offset lies outside its own table.
    refuse(
        codec.decode_infer_response,
        patched(wire, vt + 6, "<H", 200),
        what,
        "field 1 at table offset 200 lies outside its table",
    )


def test_unknown_request_types() -> None:
    wire = codec.encode_metadata_request().tobytes()
    root = deref(wire, 0)
    refuse(
        codec.decode_request,
        patched(wire, field_pos(wire, root, 0), "<B", 9),
        "Request.req_type:",
        "unknown request type 9",
    )
    infer = codec.encode_infer_request([F32]).tobytes()
    root = deref(infer, 0)
    no_req = bytearray(infer)
    vt = root - struct.unpack_from("<i", infer, root)[0]
    struct.pack_into("<H", no_req, vt + 6, 0)  # the req field: absent
    refuse(codec.decode_request, bytes(no_req), "Request.req:", "InferRequest announced but absent")


# --------------------------------------------------------------------------
# Hostile tensors, written with the official Builder.


def fb_longs(b: flatbuffers.Builder, values: Sequence[int]) -> int:
    b.StartVector(8, len(values), 8)
    for v in reversed(values):
        b.PrependInt64(v)
    return b.EndVector()


def fb_offsets(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def fb_tensor(
    b: flatbuffers.Builder,
    type_: int | None = None,
    shape: int | Sequence[int] | None = None,
    data: int | bytes | None = None,
    string_val: int | Sequence[bytes] | None = None,
) -> int:
    """A Tensor table; each of shape/data/string_val is a value or an existing vector's offset."""
    if shape is not None and not isinstance(shape, int):
        shape = fb_longs(b, shape)
    if isinstance(data, bytes):
        data = b.CreateByteVector(data)
    if string_val is not None and not isinstance(string_val, int):
        string_val = fb_offsets(b, [b.CreateString(s) for s in string_val])
    b.StartObject(4)
    if type_ is not None:
        b.PrependUint8Slot(0, type_, 0)
    if shape is not None:
        b.PrependUOffsetTRelativeSlot(1, shape, 0)
    if data is not None:
        b.PrependUOffsetTRelativeSlot(2, data, 0)
    if string_val is not None:
        b.PrependUOffsetTRelativeSlot(3, string_val, 0)
    return int(b.EndObject())


def fb_response(build: Callable[[flatbuffers.Builder], Sequence[int]]) -> bytes:
    """An InferResponse whose output_tensors are the tables ``build`` makes."""
    b = flatbuffers.Builder(0)
    vec = fb_offsets(b, build(b))
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, vec, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


T0 = "InferResponse.output_tensors[0]"


@pytest.mark.parametrize(
    ("tensor", "phrases"),
    [
        pytest.param(
            {"type_": 10, "shape": [2, -3], "data": bytes(24)},
            [f"{T0}.shape:", "negative dimension -3 in [2, -3]"],
            id="negative-dim",
        ),
        pytest.param(
            {"type_": 8, "shape": [-1], "data": b""},
            [f"{T0}.shape:", "negative dimension -1"],
            id="minus-one",
        ),
        pytest.param(
            {"type_": 10, "shape": [-(2**63)], "data": b""},
            [f"{T0}.shape:", "negative dimension"],
            id="min-int64",
        ),
        pytest.param(
            {"type_": 10, "shape": [2, 2], "data": bytes(12)},
            [f"{T0}.data:", "12 bytes for shape [2, 2] of Float32 (expected 16)"],
            id="short-data",
        ),
        pytest.param(
            {"type_": 11, "shape": [3], "data": bytes(25)},
            [f"{T0}.data:", "25 bytes for shape [3] of Float64 (expected 24)"],
            id="long-data",
        ),
        pytest.param(
            {"type_": 10, "shape": [4]}, [f"{T0}.data:", "0 bytes for shape [4]"], id="absent-data"
        ),
        pytest.param(
            {"type_": 1, "shape": [2**62, 2**62], "data": bytes(16)},
            [f"{T0}.data:", "expected"],
            id="huge-shape",
        ),
        pytest.param(
            {"type_": 1, "shape": [1] * 65, "data": b"\x01"},
            # numpy 2 allows 64 dimensions, numpy 1.x 32 (the oldest session)
            [f"{T0}.shape:", "rank 65 exceeds numpy's limit of"],
            id="rank-65",
        ),
        pytest.param(
            {"type_": 1, "shape": [0] * 1000, "data": b""},
            [f"{T0}.shape:", "rank 1000"],
            id="rank-1000",
        ),
        pytest.param(
            {"type_": 0, "shape": [4], "data": bytes(4)},
            [f"{T0}.type:", "type Null cannot hold tensor data"],
            id="null-type",
        ),
        pytest.param({"shape": [0], "data": b""}, [f"{T0}.type:", "type Null"], id="absent-type"),
        pytest.param(
            {"type_": 13, "shape": [1], "data": b"\x00"},
            [f"{T0}.type:", "unknown (13)"],
            id="type-13",
        ),
        pytest.param(
            {"type_": 255, "shape": [1], "data": b"\x00"},
            [f"{T0}.type:", "unknown (255)"],
            id="type-255",
        ),
        pytest.param(
            {"type_": 12, "shape": [3], "string_val": [b"a", b"b"]},
            [f"{T0}.string_val:", "2 strings for shape [3] (3 elements)"],
            id="string-count",
        ),
        pytest.param(
            {"type_": 12, "shape": [1], "string_val": [b"a"], "data": b"\x01"},
            [f"{T0}.data:", "a String tensor carries numeric data"],
            id="string-with-data",
        ),
        pytest.param(
            {"type_": 5, "shape": [1], "data": bytes(4), "string_val": [b"a"]},
            [f"{T0}.string_val:", "a Uint32 tensor carries strings"],
            id="numbers-with-strings",
        ),
        pytest.param(
            {"type_": 12, "shape": [0, 2**62, 2**62], "string_val": []},
            [f"{T0}.shape:", "numpy cannot represent shape"],
            id="huge-empty-strings",
        ),
        pytest.param(
            {"type_": 4, "shape": [0, 2**62, 2**62], "data": b""},
            [f"{T0}.shape:", "numpy cannot represent shape"],
            id="huge-empty-numbers",
        ),
    ],
)
def test_hostile_tensors(tensor: dict[str, Any], phrases: list[str]) -> None:
    wire = fb_response(lambda b: [fb_tensor(b, **tensor)])
    refuse(codec.decode_infer_response, wire, *phrases)


def test_empty_vectors_of_odd_shapes_are_fine() -> None:
    wire = fb_response(
        lambda b: [
            fb_tensor(b, type_=10, shape=[0, 2**40], data=b""),
            fb_tensor(b, type_=12, shape=[2**40, 0], string_val=[]),
            fb_tensor(b, type_=12, shape=[0]),
        ]
    )
    x, s, e = codec.decode_infer_response(wire).outputs
    assert x.shape == (0, 2**40)
    assert s.shape == (2**40, 0)
    assert e.shape == (0,)


def test_non_utf8_names_are_refused() -> None:
    def request(input_names: list[bytes], output_names: list[bytes]) -> bytes:
        b = flatbuffers.Builder(0)
        tensors = fb_offsets(
            b, [fb_tensor(b, type_=1, shape=[1], data=b"\x00") for _ in input_names]
        )
        ins = fb_offsets(b, [b.CreateString(n) for n in input_names])
        outs = fb_offsets(b, [b.CreateString(n) for n in output_names])
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(1, ins, 0)
        b.PrependUOffsetTRelativeSlot(2, tensors, 0)
        b.PrependUOffsetTRelativeSlot(3, outs, 0)
        infer = b.EndObject()
        b.StartObject(2)
        b.PrependUint8Slot(0, 1, 0)
        b.PrependUOffsetTRelativeSlot(1, infer, 0)
        b.Finish(b.EndObject())
        return bytes(b.Output())

    req = codec.decode_request(request([b"ok", b"\xc3\xa9"], [b"out"]))
    assert isinstance(req, codec.InferRequest)
    assert req.input_names == ("ok", "\u00e9")
    assert req.output_names == ("out",)
    refuse(
        codec.decode_request,
        request([b"ok", b"\xff\xfe"], []),
        "InferRequest.input_names[1]:",
        "not valid UTF-8",
        "invalid start byte at byte 0",
    )
    refuse(
        codec.decode_request,
        request([], [b"a\xc3"]),
        "InferRequest.output_names[0]:",
        "not valid UTF-8",
    )
    refuse(
        codec.decode_request,
        request([b"\xed\xa0\x80"], []),
        "InferRequest.input_names[0]:",
        "not valid UTF-8",
    )


def test_non_utf8_in_metadata_and_errors() -> None:
    b = flatbuffers.Builder(0)
    good, bad = b.CreateString(b"x"), b.CreateString(b"\xff")

    def io(name: int, description: int) -> int:
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependUOffsetTRelativeSlot(1, description, 0)
        return int(b.EndObject())

    lenient = fb_offsets(b, [io(good, bad)])
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(0, bad, 0)
    b.PrependUOffsetTRelativeSlot(4, lenient, 0)
    b.Finish(b.EndObject())
    # Free text (name, description) is shown with replacement characters.
    meta = codec.decode_metadata_response(bytes(b.Output()))
    assert meta.name == "\ufffd"
    assert meta.inputs == (IOMetadata("x", "\ufffd"),)

    b = flatbuffers.Builder(0)
    bad = b.CreateString(b"\xff")
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, bad, 0)
    vec = fb_offsets(b, [b.EndObject()])
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(5, vec, 0)
    b.Finish(b.EndObject())
    # But an IO's name is an identifier to send back: refused.
    refuse(
        codec.decode_metadata_response,
        bytes(b.Output()),
        "MetadataResponse.outputs[0].name:",
        "not valid UTF-8",
    )

    b = flatbuffers.Builder(0)
    msg = b.CreateString(b"caf\xe9")
    b.StartObject(2)
    b.PrependInt64Slot(0, 5, 0)
    b.PrependUOffsetTRelativeSlot(1, msg, 0)
    vec = fb_offsets(b, [b.EndObject()])
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(1, vec, 0)
    b.Finish(b.EndObject())
    assert codec.decode_infer_response(bytes(b.Output())).errors == (ErrorEntry(5, "caf\ufffd"),)


# --------------------------------------------------------------------------
# Amplification: small messages that would make a naive decoder do (or
# allocate) far more than the message's size.


#: CPU seconds a decode of these hostile messages may take. Linear work takes
#: about 1 s here under tracemalloc (2 shared cores); quadratic work would take hours. The
#: bound is loose so that a loaded machine (shared cores) cannot fail it.
LINEAR_CPU_SECONDS = 3.0


def timed_and_traced(decode: Callable[[bytes], Any], wire: bytes) -> tuple[Any, float, int]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        t0 = time.process_time()
        try:
            result = decode(wire)
        except DecodeError as exc:
            result = exc
        elapsed = time.process_time() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, elapsed, peak


def test_a_tensor_vector_of_100k_entries_pointing_at_one_table() -> None:
    def build(b: flatbuffers.Builder) -> list[int]:
        one = fb_tensor(b, type_=12, shape=[100], string_val=[b"%03d" % i for i in range(100)])
        return [one] * 100_000

    wire = fb_response(build)
    assert len(wire) < 500_000
    resp, elapsed, peak = timed_and_traced(codec.decode_infer_response, wire)
    assert isinstance(resp, codec.InferResponse)
    assert elapsed < LINEAR_CPU_SECONDS
    # 100k entries need 100k references, not 100k decoded copies (10M strings).
    assert peak < 32 * len(wire)
    assert len(resp.outputs) == 100_000
    assert resp.outputs[0].tolist() == [b"%03d" % i for i in range(100)]
    assert resp.outputs[-1].tolist() == resp.outputs[0].tolist()


def test_many_tensors_sharing_one_string_vector() -> None:
    # 4000 distinct tables, each pointing at one 4000-entry string_val vector:
    # decoding each table separately would be 16M entries from a 100 KB message.
    def build(b: flatbuffers.Builder) -> list[int]:
        s = b.CreateString(b"x")
        vals = fb_offsets(b, [s] * 4000)
        shape = fb_longs(b, [4000])
        return [fb_tensor(b, type_=12, shape=shape, string_val=vals) for _ in range(4000)]

    wire = fb_response(build)
    resp, elapsed, peak = timed_and_traced(codec.decode_infer_response, wire)
    assert isinstance(resp, codec.InferResponse), resp
    assert elapsed < LINEAR_CPU_SECONDS
    assert peak < 32 * len(wire)
    assert len(resp.outputs) == 4000
    assert resp.outputs[-1].shape == (4000,)
    assert resp.outputs[-1][-1] == b"x"


def test_many_io_metadata_sharing_one_shape_vector() -> None:
    b = flatbuffers.Builder(0)
    shape = fb_longs(b, [-1] * 8000)
    name = b.CreateString(b"x")
    ios = []
    for _ in range(6000):
        b.StartObject(4)
        b.PrependUOffsetTRelativeSlot(0, name, 0)
        b.PrependUOffsetTRelativeSlot(2, shape, 0)
        ios.append(b.EndObject())
    vec = fb_offsets(b, ios)
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(4, vec, 0)
    b.Finish(b.EndObject())
    wire = bytes(b.Output())
    meta, elapsed, peak = timed_and_traced(codec.decode_metadata_response, wire)
    assert isinstance(meta, ModelMetadata), meta
    assert elapsed < LINEAR_CPU_SECONDS
    assert peak < 32 * len(wire)
    assert len(meta.inputs) == 6000
    assert meta.inputs[-1].shape == (None,) * 8000


def overlapping_strings_message(count: int) -> bytes:
    """A String tensor whose ``count`` strings all lie inside one long string.

    The long string's content is a ladder of length prefixes: at every 4th
    byte a u32 giving the bytes left to its end. So each string offset points
    at a "valid" string, and together they claim about count**2 * 2 bytes.
    """
    ladder_len = 4 * count
    ladder = b"".join(struct.pack("<I", ladder_len - 4 * j - 4) for j in range(count))
    wire = fb_response(
        lambda b: [fb_tensor(b, type_=12, shape=[count], string_val=[ladder] + [b""] * (count - 1))]
    )
    buf = bytearray(wire)
    vals = vector(buf, element(buf, vector(buf, deref(buf, 0), 0), 0), 3)
    ladder_at = element(buf, vals, 0) + 4
    assert buf[ladder_at : ladder_at + ladder_len] == ladder
    for i in range(count):
        slot = vals + 4 + 4 * i
        struct.pack_into("<I", buf, slot, ladder_at + 4 * i - slot)
    return bytes(buf)


def test_overlapping_strings_are_refused_without_quadratic_copies() -> None:
    small = overlapping_strings_message(3)
    # Small enough to fit the budget: decodes to the (overlapping) strings.
    (s,) = codec.decode_infer_response(small).outputs
    assert [len(v) for v in s] == [8, 4, 0]
    wire = overlapping_strings_message(20_000)  # 80 KB claiming 800 MB of strings
    result, elapsed, peak = timed_and_traced(codec.decode_infer_response, wire)
    assert isinstance(result, DecodeError)
    assert "InferResponse.output_tensors[0].string_val[" in str(result)
    assert "strings overlap one another" in str(result)
    assert elapsed < LINEAR_CPU_SECONDS
    assert peak < 32 * len(wire)


def test_overlapping_names_are_refused() -> None:
    count = 5000
    # Length prefixes masked to ASCII bytes, so that each name is valid UTF-8.
    ladder = b"".join(struct.pack("<I", (4 * count - 4 * j - 4) & 0x7F7F7F7F) for j in range(count))
    wire = codec.encode_infer_request(
        [], output_names=["\0" * len(ladder)] + [""] * (count - 1)
    ).tobytes()
    buf = bytearray(wire)
    infer = deref(buf, field_pos(buf, deref(buf, 0), 1))
    vec = vector(buf, infer, 3)
    first = element(buf, vec, 0)
    assert u32(buf, first) == len(ladder)
    buf[first + 4 : first + 4 + len(ladder)] = ladder
    for i in range(count):
        slot = vec + 4 + 4 * i
        struct.pack_into("<I", buf, slot, first + 4 + 4 * i - slot)
    refuse(
        codec.decode_request,
        bytes(buf),
        "InferRequest.output_names[",
        "strings overlap one another",
        limit=1.0,
    )


def test_deep_and_wide_requests_stay_linear() -> None:
    # 20k input names sharing one string and 20k tensors sharing one table.
    b = flatbuffers.Builder(0)
    name = b.CreateString(b"n")
    t = fb_tensor(b, type_=10, shape=[1], data=bytes(4))
    tensors = fb_offsets(b, [t] * 20_000)
    names = fb_offsets(b, [name] * 20_000)
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(1, names, 0)
    b.PrependUOffsetTRelativeSlot(2, tensors, 0)
    infer = b.EndObject()
    b.StartObject(2)
    b.PrependUint8Slot(0, 1, 0)
    b.PrependUOffsetTRelativeSlot(1, infer, 0)
    b.Finish(b.EndObject())
    req = attempt(codec.decode_request, bytes(b.Output()), limit=1.0)
    assert isinstance(req, codec.InferRequest)
    assert req.input_names == ("n",) * 20_000
    assert len(req.inputs) == 20_000


# --------------------------------------------------------------------------
# Every decoder on every hostile message of this file.


def hostile_messages() -> Iterator[bytes]:
    yield overlapping_strings_message(50)
    yield fb_response(lambda b: [fb_tensor(b, type_=12, shape=[0, 2**62, 2**62], string_val=[])])
    yield fb_response(lambda b: [fb_tensor(b, type_=1, shape=[1] * 65, data=b"\x01")])
    yield fb_response(lambda b: [fb_tensor(b, type_=0, shape=[4], data=bytes(4))])


@pytest.mark.parametrize("wire", list(hostile_messages()))
def test_hostile_messages_through_every_decoder(wire: bytes) -> None:
    attempt_all(wire)
