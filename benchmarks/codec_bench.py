"""Serialisation benchmarks: the seed's four columns, for each format, against a memcpy.

For the seed's request (128x224x224x3 float32, 77 MB) and response
(128x7x7x512 float32, 12.8 MB): serialise and deserialise each, with

- graphpipe-client's codec (segments that view the caller's array; zero-copy views out),
- the 2018 client's ``graphpipe.convert`` (flatbuffers Builder, one memmove in, views out),
- the conventional FlatBuffers way: ``Builder.CreateNumpyVector`` to write,
  the flatbuffers runtime's ``Table``/``GetVectorAsNumpy`` to read,
- JSON with orjson (nested lists, as JSON model servers take them); timed on
  a slice of the rows and scaled linearly to the whole batch, which the
  output says,
- and, as the yardstick, a memcpy of the same bytes: ``np.copyto`` into a
  preallocated array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from graphpipe_client import codec

from . import legacy
from .timing import Figure, interleaved, median
from .workloads import WORKLOADS

__all__ = ["JSON_SLICE_ROWS", "run"]

#: JSON is timed on this many of the 128 rows, then scaled to 128.
JSON_SLICE_ROWS = 4

OPS = ("encode request", "decode request", "encode response", "decode response")


# --------------------------------------------------------------------------
# The conventional FlatBuffers way (no generated code needed: the runtime's
# Builder and Table, with the schema's field slots).


def _fb() -> Any:
    import flatbuffers

    return flatbuffers


def fb_tensor(b: Any, arr: np.ndarray) -> int:
    data = b.CreateNumpyVector(arr.reshape(-1).view(np.uint8))
    b.StartVector(8, arr.ndim, 8)
    for d in reversed(arr.shape):
        b.PrependInt64(d)
    shape = b.EndVector()
    b.StartObject(4)  # Tensor: type, shape, data, string_val
    b.PrependUOffsetTRelativeSlot(2, data, 0)
    b.PrependUOffsetTRelativeSlot(1, shape, 0)
    b.PrependUint8Slot(0, 10, 0)  # Float32
    return int(b.EndObject())


def _offsets(b: Any, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return int(b.EndVector())


def fb_encode_request(arr: np.ndarray) -> bytearray:
    b = _fb().Builder(arr.nbytes + 1024)
    tensor = fb_tensor(b, arr)
    tensors = _offsets(b, [tensor])
    names = _offsets(b, [])
    outs = _offsets(b, [])
    cfg = b.CreateString("")
    b.StartObject(4)  # InferRequest: config, input_names, input_tensors, output_names
    b.PrependUOffsetTRelativeSlot(0, cfg, 0)
    b.PrependUOffsetTRelativeSlot(1, names, 0)
    b.PrependUOffsetTRelativeSlot(2, tensors, 0)
    b.PrependUOffsetTRelativeSlot(3, outs, 0)
    infer = b.EndObject()
    b.StartObject(2)  # Request: req_type, req
    b.PrependUint8Slot(0, 1, 0)
    b.PrependUOffsetTRelativeSlot(1, infer, 0)
    b.Finish(b.EndObject())
    return b.Output()  # type: ignore[no-any-return]


def fb_encode_response(arr: np.ndarray) -> bytearray:
    b = _fb().Builder(arr.nbytes + 1024)
    tensors = _offsets(b, [fb_tensor(b, arr)])
    b.StartObject(2)  # InferResponse: output_tensors, errors
    b.PrependUOffsetTRelativeSlot(0, tensors, 0)
    b.Finish(b.EndObject())
    return b.Output()  # type: ignore[no-any-return]


def _fb_tensors(fb: Any, buf: Any, table: Any, slot_offset: int) -> list[np.ndarray]:
    o = table.Offset(slot_offset)
    if not o:
        return []
    vec = table.Vector(o)
    out = []
    for i in range(table.VectorLen(o)):
        t = fb.table.Table(buf, table.Indirect(vec + 4 * i))
        shape = t.GetVectorAsNumpy(fb.number_types.Int64Flags, t.Offset(6))
        data = t.GetVectorAsNumpy(fb.number_types.Uint8Flags, t.Offset(8))
        out.append(data.view(np.float32).reshape(shape))
    return out


def fb_decode_request(buf: Any) -> list[np.ndarray]:
    fb = _fb()
    root = fb.table.Table(buf, fb.encode.Get(fb.packer.uoffset, buf, 0))
    infer = fb.table.Table(buf, root.Indirect(root.Pos + root.Offset(6)))
    return _fb_tensors(fb, buf, infer, 8)


def fb_decode_response(buf: Any) -> list[np.ndarray]:
    fb = _fb()
    root = fb.table.Table(buf, fb.encode.Get(fb.packer.uoffset, buf, 0))
    return _fb_tensors(fb, buf, root, 4)


# --------------------------------------------------------------------------


def _aligned_copy(data: bytes) -> memoryview:
    """``data`` in a 64-byte-aligned writable buffer, as the clients receive a response."""
    base = np.empty(len(data) + 64, np.uint8)
    start = (-base.ctypes.data) % 64
    buf = base[start : start + len(data)]
    buf[:] = np.frombuffer(data, np.uint8)
    return memoryview(buf)  # type: ignore[arg-type]


def run(runs: int, log: Callable[[str], None] = print) -> tuple[list[Figure], dict[str, Any]]:
    """Measure every format's four operations; return the figures and the raw table."""
    import orjson

    w = WORKLOADS["seed"]
    x, y = w.request, w.response
    k = JSON_SLICE_ROWS
    scale = x.shape[0] / k
    xs, ys = np.ascontiguousarray(x[:k]), np.ascontiguousarray(y[:k])

    ours_req = _aligned_copy(w.request_bytes())
    ours_resp = _aligned_copy(w.response_bytes())
    fb_req = bytearray(fb_encode_request(x))
    fb_resp = bytearray(fb_encode_response(y))
    json_req = orjson.dumps({"instances": xs}, option=orjson.OPT_SERIALIZE_NUMPY)
    json_resp = orjson.dumps({"predictions": ys}, option=orjson.OPT_SERIALIZE_NUMPY)
    dst_x, dst_y = np.empty_like(x), np.empty_like(y)
    np.copyto(dst_x, x)
    np.copyto(dst_y, y)

    formats: dict[str, dict[str, Callable[[], object]]] = {
        "memcpy (np.copyto)": {
            "encode request": lambda: np.copyto(dst_x, x),
            "decode request": lambda: np.copyto(dst_x, x),
            "encode response": lambda: np.copyto(dst_y, y),
            "decode response": lambda: np.copyto(dst_y, y),
        },
        "graphpipe-client": {
            "encode request": lambda: codec.encode_infer_request([x]),
            "decode request": lambda: codec.decode_request(ours_req),
            "encode response": lambda: codec.encode_infer_response([y]),
            "decode response": lambda: codec.decode_infer_response(ours_resp),
        },
        "FlatBuffers Builder": {
            "encode request": lambda: fb_encode_request(x),
            "decode request": lambda: fb_decode_request(fb_req),
            "encode response": lambda: fb_encode_response(y),
            "decode response": lambda: fb_decode_response(fb_resp),
        },
        f"JSON orjson (x{scale:g} of {k} rows)": {
            "encode request": lambda: orjson.dumps(
                {"instances": xs}, option=orjson.OPT_SERIALIZE_NUMPY
            ),
            "decode request": lambda: np.asarray(orjson.loads(json_req)["instances"], np.float32),
            "encode response": lambda: orjson.dumps(
                {"predictions": ys}, option=orjson.OPT_SERIALIZE_NUMPY
            ),
            "decode response": lambda: np.asarray(
                orjson.loads(json_resp)["predictions"], np.float32
            ),
        },
    }
    scales = {name: (scale if name.startswith("JSON") else 1.0) for name in formats}

    old = legacy.load()
    if isinstance(old, str):
        log(f"  (2018 client left out: {old})")
    else:
        _remote, convert = old
        old_req = bytearray(
            convert.serialize_infer_request(convert.InferReq(None, [x], None, None))
        )
        # Its own serialize_infer_response writes a malformed errors vector that
        # its reader cannot read back: it reads the well-formed response instead.
        formats["graphpipe 2018 (1.0.4)"] = {
            "encode request": lambda: convert.serialize_infer_request(
                convert.InferReq(None, [x], None, None)
            ),
            "decode request": lambda: convert.deserialize_request(old_req),
            "encode response": lambda: convert.serialize_infer_response([y]),
            "decode response": lambda: convert.deserialize_infer_response(ours_resp),
        }
        scales["graphpipe 2018 (1.0.4)"] = 1.0

    # Sanity: every reader gets the data back.
    assert np.array_equal(codec.decode_request(ours_req).inputs[0], x)  # type: ignore[union-attr]
    assert np.array_equal(codec.decode_infer_response(ours_resp).outputs[0], y)
    assert np.array_equal(fb_decode_request(fb_req)[0], x)
    assert np.array_equal(fb_decode_response(fb_resp)[0], y)

    table: dict[str, dict[str, float]] = {f: {} for f in formats}
    samples: dict[str, dict[str, list[float]]] = {f: {} for f in formats}
    for op in OPS:
        cases: dict[str, tuple[Callable[[], object], int | None]] = {
            f: (ops[op], None) for f, ops in formats.items()
        }
        res = interleaved(cases, runs=runs, warmup=2)
        for f, times in res.items():
            scaled = [t * scales[f] for t in times]
            samples[f][op] = scaled
            table[f][op] = median(scaled)
        log(
            f"  {op}: "
            + ", ".join(f"{f.split(' (')[0]} {table[f][op] * 1e3:.3f} ms" for f in formats)
        )

    figures: list[Figure] = []
    base = "memcpy (np.copyto)"
    sizes = {"request": f"{x.nbytes / 1e6:.1f} MB", "response": f"{y.nbytes / 1e6:.1f} MB"}
    targets = {"encode request": 0.01, "decode response": 0.01}
    for f in formats:
        if f == base:
            continue
        for op in OPS:
            target = targets.get(op) if f == "graphpipe-client" else None
            figures.append(
                Figure(
                    section="codec",
                    name=f"{f}: {op} ({sizes[op.split()[1]]})",
                    unit="s",
                    value=table[f][op],
                    baseline_name=f"memcpy of the {op.split()[1]}",
                    baseline=table[base][op],
                    target=target,
                    target_text="< 1% of memcpy" if target else "",
                    note="timed on 4 of 128 rows, scaled x32" if f.startswith("JSON") else "",
                    samples=samples[f][op],
                    baseline_samples=samples[base][op],
                )
            )
    return figures, {"seconds": table, "json_slice_rows": k, "json_scale": scale}
