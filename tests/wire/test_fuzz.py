"""Fuzzed decoding: every decoder, every seed, mutated; only DecodeError, linear time and memory.

Seeds are every wire sample in ``tests/data/*.bin``, messages of every dtype
we encode, and hand-made hostile messages (shared tables and strings).
Mutations: truncation, bit flips, byte overwrites, splices of another seed,
random insertion and deletion, rewrites of offset and length fields with
interesting values. The invariants are in ``tests/fuzzing.py``.

Budget: ``GP_FUZZ_EXAMPLES`` hypothesis examples per property (default 150,
which keeps this file well under 30 s) and, for the systematic pass, every
``GP_FUZZ_STRIDE``-th byte (default 8; 1 = every byte). ``nox -s fuzz``
raises both and adds atheris.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fuzzing as fz
import graphpipe_client as gp
from graphpipe_client import codec

# Interpreter-independent and long: run by `nox -s tests` and `oldest`, not `tests_newer`.
pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("GP_FUZZ_EXAMPLES", "150"))
STRIDE = max(1, int(os.environ.get("GP_FUZZ_STRIDE", "8")))

SEEDS = fz.all_seeds()
HOSTILE = fz.hostile_seeds()
SEED_NAMES = sorted(SEEDS)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None if os.environ.get("GP_FUZZ_NO_DB") else settings.default.database,
)


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> object:
    yield
    line = fz.STATS.summary(f"fuzz (GP_FUZZ_EXAMPLES={EXAMPLES}, GP_FUZZ_STRIDE={STRIDE})")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(line)
    path = os.environ.get("GP_FUZZ_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _check_all(data: bytes, measure_alloc: bool = True) -> None:
    for name in fz.DECODERS:
        fz.check(name, data, measure_alloc=measure_alloc)
    fz.check_head_alignment(data)


# --------------------------------------------------------------------------
# Regression tests: every crash the fuzzers found (fixed in the codec)


def test_zero_size_string_tensor_with_a_huge_shape_is_a_decode_error() -> None:
    # numpy's reshape raised ValueError ("array is too big") out of the decoder.
    with pytest.raises(gp.DecodeError, match="numpy cannot represent shape"):
        codec.decode_infer_response(HOSTILE["string-huge-zero-shape"])
    with pytest.raises(gp.DecodeError, match="numpy cannot represent shape"):
        codec.decode_infer_response(HOSTILE["f32-huge-zero-shape"])


@pytest.mark.parametrize("decode", list(fz.DECODERS.values()), ids=list(fz.DECODERS))
def test_non_contiguous_buffer_is_a_decode_error(decode: fz.Decoder) -> None:
    # A strided 1-d byte view passed as_byte_view and struct raised BufferError.
    wire = SEEDS["go_f32_resp.bin"] * 2
    for buf in (memoryview(wire)[::2], np.frombuffer(wire, np.uint8)[::2]):
        with pytest.raises(gp.DecodeError, match="C-contiguous"):
            decode(buf)


@pytest.mark.parametrize(
    ("name", "decode", "wire"),
    [
        # 10,000 names / error entries / IO entries sharing one 40 KB string
        # or shape: each entry decoded its own copy (about 400 MB, 1 s).
        ("names", codec.decode_request, fz.shared_names_request(10_000, 40_000)),
        ("errors", codec.decode_infer_response, fz.shared_errors_response(10_000, 40_000)),
        ("io", codec.decode_metadata_response, fz.shared_io_metadata(5_000, 5_000, 10_000)),
    ],
)
def test_shared_strings_and_tables_are_decoded_once(
    name: str, decode: fz.Decoder, wire: bytes
) -> None:
    peak = fz._peak(decode, wire)
    assert peak < 16 * len(wire), (name, peak, len(wire))
    out = decode(wire)
    if name == "names":
        assert isinstance(out, codec.InferRequest)
        assert len(out.input_names) == 10_000
        assert len({id(s) for s in out.input_names}) == 1  # one str, shared
    elif name == "errors":
        assert isinstance(out, codec.InferResponse)
        assert len(out.errors) == 10_000 and out.errors[0] == gp.ErrorEntry(9, "m" * 40_000)
    else:
        assert isinstance(out, codec.ModelMetadata)
        assert len(out.inputs) == len(out.outputs) == 5_000
        assert out.inputs[0].shape == (None,) * 5_000


def test_remote_error_message_is_bounded_for_shared_error_entries() -> None:
    # The message joined every entry's text: 10,000 x 40 KB = 400 MB.
    resp = codec.decode_infer_response(fz.shared_errors_response(10_000, 40_000))
    exc = gp.RemoteError(errors=resp.errors)
    assert len(exc.errors) == 10_000  # every entry is kept
    assert len(str(exc)) < 500_000
    assert "and 9900 more" in str(exc)
    assert "(35904 more characters)" in str(exc)
    small = gp.RemoteError(errors=[gp.ErrorEntry(1, "a"), gp.ErrorEntry(2, "b")])
    assert str(small) == "the server reported 2 errors: [code 1] a; [code 2] b"


# --------------------------------------------------------------------------
# Systematic mutations of every seed


@pytest.mark.parametrize("seed", sorted({**SEEDS, **HOSTILE}))
def test_every_seed_and_every_truncation(seed: str) -> None:
    data = {**SEEDS, **HOSTILE}[seed]
    _check_all(data)
    for cut in range(0, len(data), STRIDE):
        _check_all(data[:cut], measure_alloc=cut % (STRIDE * 8) == 0)


@pytest.mark.parametrize("seed", SEED_NAMES)
def test_offset_and_length_rewrites(seed: str) -> None:
    data = SEEDS[seed]
    positions = fz.positions_of_offsets(data)
    for i, pos in enumerate(positions):
        if i % max(1, STRIDE // 4):
            continue
        for value in [*fz.INTERESTING_U32, len(data) - pos, len(data) - pos - 4, len(data)]:
            mutated = bytearray(data)
            struct.pack_into("<I", mutated, pos, value & 0xFFFFFFFF)
            _check_all(bytes(mutated), measure_alloc=False)
    # i64 rewrites (shapes, error codes) at every 8-aligned position
    for pos in range(0, len(data) - 7, 8 * STRIDE):
        for value in fz.INTERESTING_I64:
            mutated = bytearray(data)
            struct.pack_into("<q", mutated, pos, value)
            _check_all(bytes(mutated), measure_alloc=False)


@pytest.mark.parametrize("seed", SEED_NAMES)
def test_bit_flips(seed: str) -> None:
    data = SEEDS[seed]
    for pos in range(0, len(data), STRIDE):
        for bit in range(8):
            mutated = bytearray(data)
            mutated[pos] ^= 1 << bit
            _check_all(bytes(mutated), measure_alloc=False)


# --------------------------------------------------------------------------
# Property-based mutation fuzzing (hypothesis)


def _mutation(data: bytes, draw: st.DrawFn) -> bytes:
    n = len(data)
    kind = draw(
        st.sampled_from(
            ["truncate", "flip", "set", "splice", "insert", "delete", "u32", "i64", "dup", "swap"]
        )
    )
    pos = draw(st.integers(0, max(0, n - 1)))
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[:pos])
    if kind == "flip" and n:
        buf[pos] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set" and n:
        buf[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
    elif kind == "splice":
        other = SEEDS[draw(st.sampled_from(SEED_NAMES))]
        a = draw(st.integers(0, len(other)))
        b = draw(st.integers(a, min(len(other), a + 256)))
        buf[pos:pos] = other[a:b]
    elif kind == "insert":
        buf[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    elif kind == "delete":
        del buf[pos : pos + draw(st.integers(1, 16))]
    elif kind == "u32" and n >= 4:
        offsets = fz.positions_of_offsets(data)
        p = draw(st.sampled_from(offsets)) if offsets and draw(st.booleans()) else min(pos, n - 4)
        value = draw(
            st.one_of(
                st.sampled_from(fz.INTERESTING_U32), st.integers(0, 2**32 - 1), st.integers(0, n)
            )
        )
        struct.pack_into("<I", buf, p, value)
    elif kind == "i64" and n >= 8:
        p = min(pos - pos % 8, n - 8)
        struct.pack_into("<q", buf, p, draw(st.sampled_from(fz.INTERESTING_I64)))
    elif kind == "dup":
        b = draw(st.integers(pos, min(n, pos + 64)))
        buf[b:b] = buf[pos:b]
    elif kind == "swap" and n >= 8:
        a, b = sorted(draw(st.lists(st.integers(0, n - 4), min_size=2, max_size=2)))
        buf[a : a + 4], buf[b : b + 4] = buf[b : b + 4], buf[a : a + 4]
    return bytes(buf)


@st.composite
def mutated_seeds(draw: st.DrawFn) -> bytes:
    data = SEEDS[draw(st.sampled_from(SEED_NAMES))]
    for _ in range(draw(st.integers(1, 6))):
        data = _mutation(data, draw)
    return data


_DTYPES = st.sampled_from(fz.NUMERIC)


@st.composite
def encoded_messages(draw: st.DrawFn) -> bytes:
    """A fresh message of any kind and dtype, from our encoder."""
    kind = draw(st.sampled_from(["request", "response", "strings", "errors", "metadata"]))
    arrays = draw(
        st.lists(
            _DTYPES.flatmap(
                lambda dt: hnp.arrays(
                    np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
                )
            ),
            min_size=0,
            max_size=3,
        )
    )
    text = st.text(max_size=12)
    if kind == "request":
        names = draw(st.lists(text, min_size=len(arrays), max_size=len(arrays)))
        return codec.encode_infer_request(
            arrays,
            input_names=names,
            output_names=draw(st.lists(text, max_size=3)),
            config=draw(text),
        ).tobytes()
    if kind == "response":
        return codec.encode_infer_response(arrays).tobytes()
    if kind == "strings":
        values = draw(st.lists(st.binary(max_size=8), min_size=0, max_size=6))
        return codec.encode_infer_response([np.array(values, dtype=object)]).tobytes()
    if kind == "errors":
        errors = draw(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), text), max_size=3))
        return codec.encode_infer_response(errors=errors).tobytes()
    ios = st.builds(
        codec.IOMetadata,
        text,
        text,
        st.none() | st.lists(st.none() | st.integers(0, 2**40), max_size=4).map(tuple),
        st.none() | _DTYPES.map(np.dtype),
    )
    meta = codec.ModelMetadata(
        name=draw(text),
        version=draw(text),
        inputs=tuple(draw(st.lists(ios, max_size=3))),
        outputs=tuple(draw(st.lists(ios, max_size=3))),
    )
    return codec.encode_metadata_response(meta).tobytes()


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = draw(encoded_messages())
    for _ in range(draw(st.integers(0, 4))):
        data = _mutation(data, draw)
    return data


@FUZZ
@given(mutated_seeds())
def test_mutated_seeds(data: bytes) -> None:
    _check_all(data)


@FUZZ
@given(mutated_messages())
def test_mutated_messages_of_every_dtype(data: bytes) -> None:
    _check_all(data)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(data: bytes) -> None:
    _check_all(data)


@FUZZ
@given(st.sampled_from(sorted(HOSTILE)), st.data())
def test_mutated_hostile_messages(seed: str, data: st.DataObject) -> None:
    wire = HOSTILE[seed]
    for _ in range(data.draw(st.integers(1, 3))):
        wire = _mutation(wire, data.draw)
    _check_all(wire)
