"""Shared by the decoder fuzzers (tests/wire/test_fuzz.py, tests/fuzz_atheris.py): seeds and invariants.

Not a test module (pytest collects only ``test_*.py``). The invariants of
every decoder, checked by :func:`check` on any input bytes:

1. only :class:`~graphpipe_client.codec.DecodeError` is raised;
2. the time taken is at most ``TIME_BASE + TIME_PER_KB * KB`` (linear);
3. the tracemalloc peak is at most ``ALLOC_BASE + ALLOC_RATIO * len`` bytes.

Timing and allocation are measured in separate runs (tracemalloc slows
allocation-heavy code), and :class:`Stats` keeps the worst figures seen.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from graphpipe_client import codec

DATA = Path(__file__).parent / "data"

#: Invariant bounds. The decoder does O(1) work and allocates O(1) Python
#: objects per message byte; an offset vector of n entries costs n Python
#: ints and list slots (about 10x its 4n bytes), a tensor table of 12 bytes a
#: numpy view (about 20x). A quadratic path blows through these at once.
TIME_BASE = float(os.environ.get("GP_FUZZ_TIME_BASE", "0.02"))  # seconds, for scheduling noise
TIME_PER_KB = float(os.environ.get("GP_FUZZ_TIME_PER_KB", "0.003"))  # seconds per KiB
ALLOC_BASE = 64 * 1024  # bytes: exception objects, numpy scalars, small dicts
ALLOC_RATIO = 48

Decoder = Callable[[Any], object]

DECODERS: dict[str, Decoder] = {
    "infer_response": codec.decode_infer_response,
    "infer_response_aligned": lambda b: codec.decode_infer_response(b, align=True),
    "metadata_response": codec.decode_metadata_response,
    "request": codec.decode_request,
}

# Every numeric wire type, from the package's own table (Null and String excluded).
NUMERIC = [t.dtype.name for t in codec.DataType if t.dtype is not None and t.dtype.kind != "O"]


# --------------------------------------------------------------------------
# Seeds: every wire sample, and our own messages of every dtype


def wire_samples() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(DATA.glob("*.bin"))}


def generated_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out: dict[str, bytes] = {}
    for dt in NUMERIC:
        x = (rng.random((2, 3)) * 100).astype(dt)
        out[f"req-{dt}"] = codec.encode_infer_request(
            [x, x[:1]], input_names=["a", "b"], output_names=["y"], config="c"
        ).tobytes()
        out[f"resp-{dt}"] = codec.encode_infer_response([x, x.reshape(-1)]).tobytes()
    strings = np.array([b"abc", b"", "h\u00e9".encode(), b"\0\xff"], dtype=object).reshape(2, 2)
    out["req-string"] = codec.encode_infer_request([strings]).tobytes()
    out["resp-string"] = codec.encode_infer_response([strings]).tobytes()
    out["resp-scalar"] = codec.encode_infer_response([np.float64(1.5)]).tobytes()
    out["resp-empty"] = codec.encode_infer_response([np.zeros((0, 4), np.float32)]).tobytes()
    out["resp-errors"] = codec.encode_infer_response(
        errors=[(1, "bad"), (2**40, "w\u00f6rse")]
    ).tobytes()
    out["req-metadata"] = codec.encode_metadata_request().tobytes()
    meta = codec.ModelMetadata(
        name="m",
        version="1",
        server="s",
        description="d",
        inputs=(codec.IOMetadata("x", "in", (None, 4), np.dtype("float32")),),
        outputs=(
            codec.IOMetadata("y", "", (None,), np.dtype("int64")),
            codec.IOMetadata("z", "", None, np.dtype(object)),
        ),
    )
    out["resp-metadata"] = codec.encode_metadata_response(meta).tobytes()
    return out


def all_seeds() -> dict[str, bytes]:
    return {**wire_samples(), **generated_seeds()}


# --------------------------------------------------------------------------
# Hostile messages that a mutator rarely finds: shared tables and strings


def _finish_request(b: flatbuffers.Builder, infer: int) -> bytes:
    b.StartObject(2)
    b.PrependUint8Slot(0, 1, 0)
    b.PrependUOffsetTRelativeSlot(1, infer, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def _offsets(b: flatbuffers.Builder, targets: list[int]) -> int:
    b.StartVector(4, len(targets), 4)
    for t in reversed(targets):
        b.PrependUOffsetTRelative(t)
    return b.EndVector()


def shared_names_request(entries: int, name_len: int) -> bytes:
    """An InferRequest whose ``input_names`` repeat one long string ``entries`` times."""
    b = flatbuffers.Builder(0)
    s = b.CreateString("x" * name_len)
    names = _offsets(b, [s] * entries)
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(1, names, 0)
    return _finish_request(b, b.EndObject())


def shared_errors_response(entries: int, message_len: int) -> bytes:
    """An InferResponse whose ``errors`` point ``entries`` times at one long message."""
    b = flatbuffers.Builder(0)
    s = b.CreateString("m" * message_len)
    b.StartObject(2)
    b.PrependInt64Slot(0, 9, 0)
    b.PrependUOffsetTRelativeSlot(1, s, 0)
    e = b.EndObject()
    errs = _offsets(b, [e] * entries)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(1, errs, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def shared_io_metadata(entries: int, dims: int, name_len: int = 0) -> bytes:
    """A MetadataResponse whose inputs and outputs are one IOMetadata with a long shape."""
    b = flatbuffers.Builder(0)
    name = b.CreateString("n" * name_len)
    b.StartVector(8, dims, 8)
    for _ in range(dims):
        b.PrependInt64(-1)
    shape = b.EndVector()
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    b.PrependUOffsetTRelativeSlot(2, shape, 0)
    io = b.EndObject()
    ios = _offsets(b, [io] * entries)
    b.StartObject(6)
    b.PrependUOffsetTRelativeSlot(4, ios, 0)
    b.PrependUOffsetTRelativeSlot(5, ios, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def tensor_response(
    dtype: int, shape: list[int], data: bytes | None = None, strings: int = 0
) -> bytes:
    """An InferResponse with one tensor, any type code, shape and data (no checks)."""
    b = flatbuffers.Builder(0)
    data_off = b.CreateByteVector(data) if data is not None else None
    s = b.CreateString("s") if strings else None
    sv = _offsets(b, [s] * strings) if s is not None else None
    b.StartVector(8, len(shape), 8)
    for d in reversed(shape):
        b.PrependInt64(d)
    shape_off = b.EndVector()
    b.StartObject(4)
    b.PrependUint8Slot(0, dtype, 0)
    b.PrependUOffsetTRelativeSlot(1, shape_off, 0)
    if data_off is not None:
        b.PrependUOffsetTRelativeSlot(2, data_off, 0)
    if sv is not None:
        b.PrependUOffsetTRelativeSlot(3, sv, 0)
    t = b.EndObject()
    ts = _offsets(b, [t])
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, ts, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def many_tensors_response(entries: int, distinct: bool) -> bytes:
    """An InferResponse of ``entries`` empty float32 tensors (distinct tables, or one shared)."""
    b = flatbuffers.Builder(0)
    b.StartVector(8, 1, 8)
    b.PrependInt64(0)
    shape = b.EndVector()
    tables = []
    for _ in range(entries if distinct else 1):
        b.StartObject(4)
        b.PrependUint8Slot(0, codec.DataType.Float32, 0)
        b.PrependUOffsetTRelativeSlot(1, shape, 0)
        tables.append(b.EndObject())
    ts = _offsets(b, tables if distinct else tables * entries)
    b.StartObject(2)
    b.PrependUOffsetTRelativeSlot(0, ts, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def hostile_seeds() -> dict[str, bytes]:
    return {
        "shared-names": shared_names_request(500, 2000),
        "shared-errors": shared_errors_response(500, 2000),
        "shared-io": shared_io_metadata(300, 300, 500),
        "many-tensors": many_tensors_response(500, distinct=True),
        "shared-tensors": many_tensors_response(2000, distinct=False),
        "string-huge-zero-shape": tensor_response(12, [2**62, 2**62, 0]),
        "f32-huge-zero-shape": tensor_response(10, [0, 2**62, 2**62]),
        "strings-for-shape": tensor_response(12, [3], strings=3),
    }


# --------------------------------------------------------------------------
# Mutations (deterministic given their arguments; the fuzzers draw them)


def positions_of_offsets(buf: bytes) -> list[int]:
    """4-aligned positions whose u32 points inside the buffer: likely offsets or lengths."""
    n = len(buf)
    out = []
    for pos in range(0, n - 3, 4):
        (v,) = struct.unpack_from("<I", buf, pos)
        if 0 < v < n:
            out.append(pos)
    return out


INTERESTING_U32 = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
]
INTERESTING_I64 = [0, 1, -1, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63)]


# --------------------------------------------------------------------------
# The invariants


@dataclass
class Stats:
    """The worst figures seen, per decoder and overall."""

    cases: int = 0
    decode_errors: int = 0
    decoded: int = 0
    max_ms_per_kb: float = 0.0
    max_ms: float = 0.0
    max_alloc_ratio: float = 0.0  # peak / len, over inputs of at least 1 KiB
    max_alloc_bytes: int = 0
    per_decoder: dict[str, int] = field(default_factory=dict)

    def summary(self, label: str) -> str:
        return (
            f"{label}: {self.cases} cases ({self.decoded} decoded, {self.decode_errors} DecodeError), "
            f"max {self.max_ms:.2f} ms per case, max {self.max_ms_per_kb:.3f} ms/KiB, "
            f"max allocation {self.max_alloc_ratio:.1f}x input (inputs >= 1 KiB), "
            f"max peak {self.max_alloc_bytes} bytes"
        )


STATS = Stats()


class InvariantError(AssertionError):
    pass


def _peak(fn: Decoder, data: bytes) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        with contextlib.suppress(codec.DecodeError):
            fn(data)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def check(name: str, data: bytes, *, measure_alloc: bool = True, stats: Stats = STATS) -> None:
    """Run decoder ``name`` on ``data`` and assert the three invariants."""
    fn = DECODERS[name]
    start = time.perf_counter()
    try:
        fn(data)
    except codec.DecodeError as exc:
        stats.decode_errors += 1
        if not str(exc):
            raise InvariantError(f"{name} raised a DecodeError without a message") from exc
    except Exception as exc:
        raise InvariantError(
            f"{name} raised {type(exc).__name__}: {exc!r} on {data[:64]!r}... ({len(data)} bytes)"
        ) from exc
    else:
        stats.decoded += 1
    elapsed = time.perf_counter() - start
    kb = len(data) / 1024
    if elapsed > TIME_BASE + TIME_PER_KB * kb:
        # Once more: a run preempted on a busy machine is not a finding.
        start = time.perf_counter()
        with contextlib.suppress(codec.DecodeError):
            fn(data)
        elapsed = min(elapsed, time.perf_counter() - start)
        if elapsed > TIME_BASE + TIME_PER_KB * kb:
            raise InvariantError(f"{name} took {elapsed * 1e3:.1f} ms on {len(data)} bytes")
    stats.cases += 1
    stats.per_decoder[name] = stats.per_decoder.get(name, 0) + 1
    stats.max_ms = max(stats.max_ms, elapsed * 1e3)
    if kb >= 1:
        stats.max_ms_per_kb = max(stats.max_ms_per_kb, elapsed * 1e3 / kb)
    if measure_alloc:
        peak = _peak(fn, data)
        stats.max_alloc_bytes = max(stats.max_alloc_bytes, peak)
        if len(data) >= 1024:
            stats.max_alloc_ratio = max(stats.max_alloc_ratio, peak / len(data))
        if peak > ALLOC_BASE + ALLOC_RATIO * len(data):
            raise InvariantError(f"{name} allocated {peak} bytes (peak) on {len(data)} bytes")


def check_head_alignment(data: bytes) -> None:
    """``head_alignment_shift`` is a hint: any prefix, any total, never raises."""
    for total in (len(data), len(data) + 4096, 2**31 - 1):
        shift = codec.head_alignment_shift(data, total)
        assert 0 <= shift < 8
