"""Real wire samples from the reference implementations decode to their flatc JSON.

Each ``tests/data/*.bin`` was written by a 2018 reference peer (the old Python
client, the Go server) and rendered to JSON by ``flatc --json --raw-binary``
from the schema. The JSON is the independent truth: these tests parse it and
compare every field our decoders return against it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from graphpipe_client import codec
from graphpipe_client.codec import DataType

# Which decoder reads each sample (responses carry no type tag on the wire).
SAMPLES = {
    "meta_req": "request",
    "infer_req": "request",
    "go_f32_resp": "infer_response",
    "go_str_resp": "infer_response",
    "go_meta_resp": "metadata_response",
}


def load(data_dir: Path, name: str) -> tuple[bytes, dict[str, Any]]:
    wire = (data_dir / f"{name}.bin").read_bytes()
    rendering = json.loads((data_dir / f"{name}.json").read_text(encoding="utf-8"))
    return wire, rendering


def expected_array(t: dict[str, Any]) -> np.ndarray:
    """The array a flatc-rendered ``Tensor`` stands for, built from the JSON alone."""
    shape = tuple(t.get("shape", []))
    type_name = t.get("type", "Null")
    if type_name == "String":
        values = [s.encode("utf-8") for s in t.get("string_val", [])]
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out.reshape(shape)
    dtype = DataType[type_name].dtype
    assert dtype is not None
    return np.frombuffer(bytes(t.get("data", [])), dtype=dtype).reshape(shape)


def assert_tensor_matches(actual: np.ndarray, t: dict[str, Any]) -> None:
    expected = expected_array(t)
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if expected.dtype == object:
        assert all(type(v) is bytes for v in actual.reshape(-1))
        assert actual.reshape(-1).tolist() == expected.reshape(-1).tolist()
    else:
        # Bit-exact: compare the bytes, not the values (NaN, -0.0).
        assert actual.tobytes() == expected.tobytes()


def expected_io(io: dict[str, Any]) -> codec.IOMetadata:
    shape = io.get("shape")
    return codec.IOMetadata(
        name=io.get("name", ""),
        description=io.get("description", ""),
        shape=None if shape is None else tuple(None if d == -1 else d for d in shape),
        dtype=DataType[io.get("type", "Null")].dtype,
    )


# --------------------------------------------------------------------------
# Generic: every sample against its rendering.


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_decodes_to_its_flatc_rendering(data_dir: Path, name: str) -> None:
    wire, rendering = load(data_dir, name)
    kind = SAMPLES[name]
    if kind == "request":
        decoded = codec.decode_request(wire)
        req_type = rendering["req_type"]
        if req_type == "MetadataRequest":
            assert isinstance(decoded, codec.MetadataRequest)
            return
        assert req_type == "InferRequest"
        assert isinstance(decoded, codec.InferRequest)
        body = rendering["req"]
        assert decoded.config == body.get("config", "").encode("utf-8")
        assert decoded.input_names == tuple(body.get("input_names", []))
        assert decoded.output_names == tuple(body.get("output_names", []))
        tensors = body.get("input_tensors", [])
        assert len(decoded.inputs) == len(tensors)
        for arr, t in zip(decoded.inputs, tensors, strict=True):
            assert_tensor_matches(arr, t)
    elif kind == "infer_response":
        resp = codec.decode_infer_response(wire)
        tensors = rendering.get("output_tensors", [])
        assert len(resp.outputs) == len(tensors)
        for arr, t in zip(resp.outputs, tensors, strict=True):
            assert_tensor_matches(arr, t)
        assert resp.errors == tuple(
            codec.ErrorEntry(e.get("code", 0), e.get("message", ""))
            for e in rendering.get("errors", [])
        )
    else:
        meta = codec.decode_metadata_response(wire)
        assert meta == codec.ModelMetadata(
            name=rendering.get("name", ""),
            version=rendering.get("version", ""),
            server=rendering.get("server", ""),
            description=rendering.get("description", ""),
            inputs=tuple(expected_io(io) for io in rendering.get("inputs", [])),
            outputs=tuple(expected_io(io) for io in rendering.get("outputs", [])),
        )


# --------------------------------------------------------------------------
# The samples one by one, with their literal values (so a broken JSON helper
# above cannot make the generic test vacuous).


def test_meta_req(data_dir: Path) -> None:
    wire, _ = load(data_dir, "meta_req")
    assert len(wire) == 32
    assert codec.decode_request(wire) == codec.MetadataRequest()


def test_infer_req_from_the_old_python_client(data_dir: Path) -> None:
    wire, _ = load(data_dir, "infer_req")
    req = codec.decode_request(wire)
    assert isinstance(req, codec.InferRequest)
    assert req.config == b"cfg"
    assert req.input_names == ("input0", "input1")
    assert req.output_names == ("output0",)
    x, s = req.inputs
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.array([[1, 2], [3, 4]], np.float32))
    assert s.dtype == object
    assert s.shape == (1,)
    assert s[0] == b"hi"


def test_go_f32_resp(data_dir: Path) -> None:
    wire, _ = load(data_dir, "go_f32_resp")
    resp = codec.decode_infer_response(wire)
    assert resp.errors == ()
    (y,) = resp.outputs
    assert y.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(y, np.array([[0, 1], [2, 3]], np.float32))


def test_go_str_resp_without_nul_terminators(data_dir: Path) -> None:
    wire, rendering = load(data_dir, "go_str_resp")
    # The quirk itself, checked on the raw bytes: the last string is the last
    # thing in the buffer (length prefix 4, then "abcd", then nothing), and the
    # first one is directly followed by the next length prefix, not by a NUL.
    assert wire.endswith(struct.pack("<I", 4) + b"abcd")
    assert b"efgh" + struct.pack("<I", 4) in wire
    assert b"abcd\0" not in wire
    assert b"efgh\0" not in wire

    (s,) = codec.decode_infer_response(wire).outputs
    assert s.dtype == object
    assert s.shape == (2,)
    assert s.tolist() == [b"abcd", b"efgh"]
    assert rendering["output_tensors"][0]["string_val"] == ["abcd", "efgh"]


def test_go_meta_resp(data_dir: Path) -> None:
    wire, _ = load(data_dir, "go_meta_resp")
    meta = codec.decode_metadata_response(wire)
    assert meta.name == "gp-testserver-identity"
    assert meta.version == "0.1"
    assert meta.server == "gp-testserver"
    assert meta.description.startswith("identity: outputN <- inputN")
    assert meta.input_names == ("input0", "input1", "input2", "input3")
    assert meta.output_names == ("output0", "output1", "output2", "output3")
    for io in meta.inputs + meta.outputs:
        assert io.shape == (None,)  # -1 on the wire: any size
        assert io.dtype is None  # the type field is absent: Null
        assert io.description == ""


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_samples_decode_from_any_buffer_type(data_dir: Path, name: str, kind: str) -> None:
    wire, _ = load(data_dir, name)
    buf: bytes | bytearray | memoryview = {
        "bytes": wire,
        "bytearray": bytearray(wire),
        "memoryview": memoryview(bytearray(wire)).toreadonly(),
    }[kind]
    decoder = {
        "request": codec.decode_request,
        "infer_response": codec.decode_infer_response,
        "metadata_response": codec.decode_metadata_response,
    }[SAMPLES[name]]
    assert repr(decoder(buf)) == repr(decoder(wire))


def test_go_f32_resp_is_a_view_of_the_receive_buffer(data_dir: Path) -> None:
    wire, _ = load(data_dir, "go_f32_resp")
    buf = bytearray(wire)
    (y,) = codec.decode_infer_response(buf).outputs
    assert np.shares_memory(y, np.frombuffer(buf, np.uint8))
    assert y.flags.writeable
    y[0, 0] = 42.0
    assert codec.decode_infer_response(buf).outputs[0][0, 0] == 42.0
