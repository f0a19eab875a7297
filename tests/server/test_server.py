"""The bundled GraphPipe server (graphpipe_client.testing), over real sockets on 127.0.0.1.

Everything here talks to the server with ``http.client`` or plain sockets
(never with the library's own client), so that the server is tested on its
own: requests from our encoder, from the old Python client (a wire sample)
and from the official ``flatbuffers`` Builder; every answer and error path;
every fault knob, observed at the socket level; connection handling; TLS;
the pytest fixture; the demo model; and ``python -m graphpipe_client.testing``.
"""

from __future__ import annotations

import errno
import http.client
import importlib.metadata
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest

import graphpipe_client
from graphpipe_client import codec
from graphpipe_client.codec import DataType, IOMetadata, ModelMetadata
from graphpipe_client.testing import (
    DEMO_CLASSES,
    Faults,
    GraphPipeServer,
    ServeFactory,
    _server,
    demo_metadata,
    demo_model,
    serve,
)

PLUGIN = "graphpipe_client.testing.pytest_plugin"


def _plugin_autoloaded() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))


# The fixture comes from the installed entry point; from a bare source tree,
# load it here (registering it twice would be an error).
PLUGIN_ARGS = [] if _plugin_autoloaded() else ["-p", PLUGIN]
pytest_plugins = ["pytester"] + ([] if _plugin_autoloaded() else [PLUGIN])


# --------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def _quiet_stderr(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """No server thread may print anything (tracebacks, request logs) to stderr."""
    yield
    assert capfd.readouterr().err == ""


def double(x: np.ndarray) -> np.ndarray:
    return x * 2


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def outputs(self) -> list[np.ndarray]:
        assert self.status == 200, (self.status, self.body)
        resp = codec.decode_infer_response(self.body)
        assert resp.errors == ()
        return resp.outputs


def request(
    server: GraphPipeServer,
    body: bytes | None = None,
    *,
    method: str = "POST",
    path: str = "/",
    headers: dict[str, str] | None = None,
) -> Response:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def infer(server: GraphPipeServer, inputs: Any, **kwargs: Any) -> Response:
    return request(server, codec.encode_infer_request(inputs, **kwargs).tobytes())


def raw_post(body: bytes, *, close: bool = True, extra: bytes = b"") -> bytes:
    head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % len(body)
    if close:
        head += b"Connection: close\r\n"
    return head + extra + b"\r\n" + body


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the peer sends until it closes (or ``timeout`` of silence)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def recv_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, leaving the connection open."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(1 << 16)
        assert chunk, raw
        raw += chunk
    _, headers, body = split(raw)
    missing = int(headers["content-length"]) - len(body)
    while missing > 0:
        chunk = sock.recv(missing)
        assert chunk
        raw += chunk
        missing -= len(chunk)
    return raw


def split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def exchange(server: GraphPipeServer, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(data)
        return read_all(s, timeout)


X = np.arange(6, dtype=np.float32).reshape(2, 3)
X_BODY = codec.encode_infer_request([X]).tobytes()
X2_WIRE = codec.encode_infer_response([X * 2]).tobytes()  # what double(X) answers


# --------------------------------------------------------------------------
# Requests from every kind of writer


def test_round_trip_from_our_encoder() -> None:
    with serve(double) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        r = infer(server, [X])
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert int(r.headers["Content-Length"]) == len(r.body)
        (out,) = r.outputs()
        np.testing.assert_array_equal(out, X * 2)
        assert out.dtype == np.float32


def test_inputs_are_writable_zero_copy_views() -> None:
    seen: list[np.ndarray] = []

    def model(x: np.ndarray, s: np.ndarray) -> np.ndarray:
        seen.extend([x, s])
        x += 1  # allowed: the buffer belongs to this request
        return x

    with serve(model) as server:
        (out,) = infer(server, [X, np.array([b"a", b"bc"], dtype=object)]).outputs()
    x, s = seen
    assert not x.flags.owndata and x.base is not None and x.flags.writeable and x.flags.aligned
    np.testing.assert_array_equal(out, X + 1)
    assert s.dtype == object and s.tolist() == [b"a", b"bc"]


def test_wire_sample_from_the_old_python_client(data_dir: Path) -> None:
    calls: list[dict[str, Any]] = []

    def model(a: np.ndarray, b: np.ndarray, *, config: str, output_names: list[str]) -> np.ndarray:
        calls.append({"b": b.tolist(), "config": config, "output_names": output_names})
        return a * 2

    with serve(model) as server:
        r = request(server, (data_dir / "infer_req.bin").read_bytes())
        (out,) = r.outputs()
        assert isinstance(server.last_request, codec.InferRequest)
        assert server.last_request.input_names == ("input0", "input1")
    np.testing.assert_array_equal(out, np.array([[2, 4], [6, 8]], np.float32))
    assert calls == [{"b": [b"hi"], "config": "cfg", "output_names": ["output0"]}]


def _fb_strings(b: flatbuffers.Builder, values: list[str]) -> int:
    offsets = [b.CreateString(v) for v in values]
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return int(b.EndVector())


def old_client_request(
    arrays: list[np.ndarray], input_names: list[str], output_names: list[str], config: str
) -> bytes:
    """An InferRequest built with the flatbuffers Builder, the way the old clients do."""
    b = flatbuffers.Builder(1024)
    tensors = []
    for arr in arrays:
        data = b.CreateNumpyVector(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))
        b.StartVector(8, arr.ndim, 8)
        for d in reversed(arr.shape):
            b.PrependInt64(d)
        shape = b.EndVector()
        b.StartObject(4)
        b.PrependUint8Slot(0, int(codec.DataType[arr.dtype.name.capitalize()]), 0)
        b.PrependUOffsetTRelativeSlot(1, shape, 0)
        b.PrependUOffsetTRelativeSlot(2, data, 0)
        tensors.append(b.EndObject())
    cfg = b.CreateString(config)
    in_names = _fb_strings(b, input_names)
    out_names = _fb_strings(b, output_names)
    b.StartVector(4, len(tensors), 4)
    for t in reversed(tensors):
        b.PrependUOffsetTRelative(t)
    tensor_vec = b.EndVector()
    b.StartObject(4)
    b.PrependUOffsetTRelativeSlot(0, cfg, 0)
    b.PrependUOffsetTRelativeSlot(1, in_names, 0)
    b.PrependUOffsetTRelativeSlot(2, tensor_vec, 0)
    b.PrependUOffsetTRelativeSlot(3, out_names, 0)
    infer_req = b.EndObject()
    b.StartObject(2)
    b.PrependUint8Slot(0, 1, 0)  # Req.InferRequest
    b.PrependUOffsetTRelativeSlot(1, infer_req, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def test_request_from_the_flatbuffers_builder() -> None:
    a = np.arange(3, dtype=np.float64) + 0.5
    i = np.array([[1, 2], [3, 4]], dtype=np.int32)
    wire = old_client_request([i, a], ["b", "a"], ["diff", "sum"], "k=v")
    # The old writers aligned data to 4 bytes only. Shift everything after
    # the root offset by 4 bytes (offsets are relative): the float64 data
    # lands misaligned.
    (root,) = struct.unpack_from("<I", wire)
    shifted = struct.pack("<I", root + 4) + bytes(4) + wire[4:]
    decoded = codec.decode_request(np.frombuffer(shifted, np.uint8).copy().data)
    assert isinstance(decoded, codec.InferRequest)
    assert not decoded.inputs[1].flags.aligned
    seen = []

    def model(a: np.ndarray, b: np.ndarray, config: str = "") -> dict[str, np.ndarray]:
        seen.append((a.flags.aligned, config))
        return {"sum": a.sum() + b.sum(), "diff": a - 1}

    meta = ModelMetadata(name="m", inputs=(IOMetadata("a"), IOMetadata("b")))
    with serve(model, metadata=meta) as server:
        for body in (wire, shifted):
            diff, total = request(server, body).outputs()
            np.testing.assert_array_equal(diff, a - 1)
            assert total == a.sum() + 10
    assert seen == [(True, "k=v")] * 2  # the misaligned input was given aligned


def test_metadata_request_and_empty_union() -> None:
    b = flatbuffers.Builder(64)
    b.StartObject(2)
    b.Finish(b.EndObject())
    empty_union = bytes(b.Output())
    with serve(double, metadata=demo_metadata) as server:
        for body in (codec.encode_metadata_request().tobytes(), empty_union):
            r = request(server, body)
            assert r.status == 200
            assert codec.decode_metadata_response(r.body) == demo_metadata


# --------------------------------------------------------------------------
# The model call: names, metadata, outputs, config


def subtract(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Subtract b from a.

    More text.
    """
    return a - b


A = np.array([10.0, 20.0])
B = np.array([1.0, 2.0])


@pytest.mark.parametrize(
    ("inputs", "names", "expected"),
    [
        ([A, B], None, A - B),  # positional
        ([A, B], ["input0", "input1"], A - B),
        ([B, A], ["input1", "input0"], A - B),  # by name, in any order
        ([A, B], ["", "input1"], A - B),
    ],
)
def test_input_names_and_positions(
    inputs: list[np.ndarray], names: list[str] | None, expected: np.ndarray
) -> None:
    with serve(subtract) as server:
        (out,) = infer(server, inputs, input_names=names).outputs()
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("inputs", "names", "text"),
    [
        ([A, B], ["x", "input1"], "no input named 'x'"),
        ([A, B, B], None, "too many inputs: input 2 has no name and the model takes 2 inputs"),
        ([A], None, "missing input 'input1'"),
        ([B], ["input1"], "missing input 'input0'"),
        # tensor 1 has no name, so it takes position 1, which tensor 0 took
        ([B, A], ["input1", ""], "input 'input1' given more than once"),
    ],
)
def test_input_name_errors(inputs: list[np.ndarray], names: list[str] | None, text: str) -> None:
    with serve(subtract) as server:
        r = infer(server, inputs, input_names=names)
    assert r.status == 400
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.body.decode() == text + "\n"


def test_names_from_given_metadata() -> None:
    meta = ModelMetadata(
        name="sub", inputs=(IOMetadata("a"), IOMetadata("b")), outputs=(IOMetadata("d"),)
    )
    with serve(subtract, metadata=meta) as server:
        (out,) = infer(server, [B, A], input_names=["b", "a"], output_names=["d"]).outputs()
        np.testing.assert_array_equal(out, A - B)
        assert (
            infer(server, [A, B], input_names=["input0", "b"]).body == b"no input named 'input0'\n"
        )
        assert server.metadata is meta


def test_default_metadata() -> None:
    class Scaler:
        def __call__(self, x: np.ndarray, *, config: str = "") -> np.ndarray:
            return x

    with serve(subtract) as server:
        meta = codec.decode_metadata_response(
            request(server, codec.encode_metadata_request().tobytes()).body
        )
    assert meta == ModelMetadata(
        name="subtract",
        server="graphpipe-client testing server",
        description="Subtract b from a.",
        inputs=(IOMetadata("input0"), IOMetadata("input1")),
        outputs=(IOMetadata("output0"),),
    )
    with serve(Scaler()) as server:
        assert server.metadata.name == "Scaler"
        assert server.metadata.input_names == ("input0",)  # config is not an input


def test_var_positional_model_takes_any_number() -> None:
    def count(*xs: np.ndarray) -> np.ndarray:
        return np.array([len(xs)], np.int64)

    with serve(count) as server:
        assert server.metadata.input_names == ()
        for n in (0, 1, 5):
            (out,) = infer(server, [A] * n).outputs()
            assert out.tolist() == [n]
        (out,) = infer(server, [A, B], input_names=["input1", "input0"]).outputs()
        assert out.tolist() == [2]
        assert infer(server, [A], input_names=["input2"]).body == b"missing input 'input0'\n"


def three(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return x, x + 1, x + 2


@pytest.mark.parametrize(
    ("names", "offsets"),
    [
        (None, [0, 1, 2]),
        ([], [0, 1, 2]),
        (["output2", "output0"], [2, 0]),
        (["output1"], [1]),
        (["output1", "output1"], [1, 1]),
        (["", "output0"], [0, 0]),  # an empty name means position j
    ],
)
def test_output_selection_and_order(names: list[str] | None, offsets: list[int]) -> None:
    with serve(three) as server:
        outs = infer(server, [A], output_names=names).outputs()
    assert [o.tolist() for o in outs] == [(A + k).tolist() for k in offsets]


def test_dict_outputs_and_metadata_output_names() -> None:
    def stats(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"mean": x.mean(), "max": x.max(), "min": x.min()}

    meta = ModelMetadata(inputs=(IOMetadata("x"),), outputs=(IOMetadata("lo"), IOMetadata("hi")))
    with serve(stats) as server:
        assert [o.item() for o in infer(server, [A]).outputs()] == [15.0, 20.0, 10.0]
        assert [o.item() for o in infer(server, [A], output_names=["min", "mean"]).outputs()] == [
            10.0,
            15.0,
        ]
        r = infer(server, [A], output_names=["mean", "nope"])
        assert (r.status, r.body) == (400, b"no output named 'nope'\n")
    with serve(lambda x: (x.min(), x.max()), metadata=meta) as server:
        assert [o.item() for o in infer(server, [A], output_names=["hi"]).outputs()] == [20.0]
        assert infer(server, [A], output_names=["output0"]).body == b"no output named 'output0'\n"


def test_config_and_output_names_reach_models_that_accept_them() -> None:
    def with_config(x: np.ndarray, *, config: str) -> np.ndarray:
        return np.array([config.encode("utf-8", "surrogateescape")], dtype=object)

    got: list[dict[str, Any]] = []

    def with_kwargs(x: np.ndarray, **extras: Any) -> np.ndarray:
        got.append(extras)
        return x

    with serve(with_config) as server:
        (out,) = infer(server, [A], config="temperature=2").outputs()
        assert out.tolist() == [b"temperature=2"]
        (out,) = infer(server, [A], config=b"\xff\xfe").outputs()  # not UTF-8: round-trips
        assert out.tolist() == [b"\xff\xfe"]
    with serve(with_kwargs) as server:
        infer(server, [A], config="c", output_names=["output0"]).outputs()
    assert got == [{"config": "c", "output_names": ["output0"]}]
    with serve(lambda x: x) as server:  # accepts neither: still works
        (out,) = infer(server, [A], config="c").outputs()
        np.testing.assert_array_equal(out, A)


def test_response_is_sent_in_one_gather_write_without_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[list[Any]] = []
    original = _server._send_segments

    def record(sock: socket.socket, segments: Any) -> None:
        writes.append(list(segments))
        original(sock, segments)

    monkeypatch.setattr(_server, "_send_segments", record)
    out = np.arange(1 << 16, dtype=np.float32)
    with serve(lambda x: out) as server:
        (got,) = infer(server, [A]).outputs()
    np.testing.assert_array_equal(got, out)
    (buffers,) = writes  # status line, headers and body: one write
    assert bytes(buffers[0]).startswith(b"HTTP/1.1 200 OK\r\n")
    shared = [b for b in buffers if np.shares_memory(np.frombuffer(b, np.uint8), out)]
    assert len(shared) == 1 and memoryview(shared[0]).nbytes == out.nbytes


def test_large_response_is_sent_whole() -> None:
    big = np.arange(4 << 20, dtype=np.float32)  # 16 MiB: many partial sends
    with serve(lambda x: big) as server:
        (out,) = infer(server, [A]).outputs()
    np.testing.assert_array_equal(out, big)


# --------------------------------------------------------------------------
# Errors


class CodedError(Exception):
    code = 7


def test_model_exception_is_a_400_with_its_text() -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("bad input shape (2, 3)")

    with serve(broken) as server:
        r = infer(server, [A])
    assert r.status == 400
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.body == b"bad input shape (2, 3)\n"


def test_model_exception_as_errors_entries() -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        if x.size == 1:
            raise CodedError("coded")
        raise RuntimeError("plain")

    with serve(broken, errors_as_response=True) as server:
        for inputs, names, expected in [
            ([A], None, codec.ErrorEntry(1, "plain")),
            ([A[:1]], None, codec.ErrorEntry(7, "coded")),
            ([A], ["zz"], codec.ErrorEntry(1, "no input named 'zz'")),
        ]:
            r = infer(server, inputs, input_names=names)
            assert r.status == 200
            resp = codec.decode_infer_response(r.body)
            assert (resp.outputs, resp.errors) == ([], (expected,))


def test_malformed_body_is_a_400_with_the_decoder_message() -> None:
    bad = bytearray(X_BODY)
    bad[0:4] = struct.pack("<I", 1 << 30)  # root offset past the end
    with serve(double) as server:
        for body in (bytes(bad), b"", b"\x00" * 3, X_BODY[: len(X_BODY) // 2]):
            with pytest.raises(codec.DecodeError) as info:
                codec.decode_request(body)
            r = request(server, body)
            assert (r.status, r.body.decode()) == (400, str(info.value) + "\n")
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_outputs_that_cannot_be_encoded_are_a_500() -> None:
    with serve(lambda x: x > 0) as server:
        r = infer(server, [A])
        assert r.status == 500
        assert b"bool" in r.body
    with serve(lambda x: None) as server:
        r = infer(server, [A])
        assert r.status == 500
        assert r.body.startswith(b"the model returned None")


def test_body_over_the_limit_is_a_413_without_reading_it() -> None:
    called = []
    with serve(lambda x: called.append(x) or x, max_request_bytes=1000) as server:
        r = request(server, b"\0" * 200_000)
        assert r.status == 413
        assert r.headers["Connection"] == "close"
        assert b"200000 bytes exceeds this server's limit of 1000 bytes" in r.body
        # With Expect: 100-continue, the refusal comes before the body is sent.
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
            )
            status, headers, _ = split(read_all(s))
        assert (status, headers["connection"]) == (413, "close")
        assert infer(server, [A[:1]]).status == 200  # small enough
    assert len(called) == 1


def test_post_without_content_length_is_a_411() -> None:
    with serve(double) as server:
        chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        for raw in (chunked, b"POST / HTTP/1.1\r\nHost: t\r\n\r\n"):
            status, headers, body = split(exchange(server, raw))
            assert (status, headers["connection"]) == (411, "close")
            assert b"Content-Length" in body
        status, _, body = split(exchange(server, raw_post(b"", extra=b"Content-Length: 1x\r\n")))
        assert status == 400


# --------------------------------------------------------------------------
# GET endpoints


def test_get_root_is_the_metadata_as_go_json() -> None:
    with serve(demo_model, metadata=demo_metadata) as server:
        r = request(server, method="GET")
        assert (r.status, r.headers["Content-Type"]) == (200, "application/json")
        doc = json.loads(r.body)
    assert list(doc) == ["Name", "Version", "Server", "Description", "Inputs", "Outputs"]
    assert (doc["Name"], doc["Version"]) == ("iris", "1")
    assert doc["Inputs"] == [
        {
            "Name": "features",
            "Description": demo_metadata.inputs[0].description,
            "Shape": [-1, 4],
            "Type": DataType.Float32,
        }
    ]
    assert [(o["Name"], o["Shape"], o["Type"]) for o in doc["Outputs"]] == [
        ("probabilities", [-1, 3], 10),
        ("label", [-1], 8),
    ]
    with serve(double) as server:  # unknown shape and type
        doc = json.loads(request(server, method="GET").body)
    assert doc["Inputs"] == [{"Name": "input0", "Description": "", "Shape": None, "Type": 0}]


GO_META = ModelMetadata(
    name="m",
    version="1",
    server="s",
    description="d",
    inputs=(IOMetadata("x", "in", (None, 2), np.dtype(np.float32)),),
    outputs=(IOMetadata("y"),),
)
# What graphpipe-go's GET handler writes for GO_META: json.MarshalIndent(meta, "", "    ").
GO_META_JSON = b"""{
    "Name": "m",
    "Version": "1",
    "Server": "s",
    "Description": "d",
    "Inputs": [
        {
            "Name": "x",
            "Description": "in",
            "Shape": [
                -1,
                2
            ],
            "Type": 10
        }
    ],
    "Outputs": [
        {
            "Name": "y",
            "Description": "",
            "Shape": null,
            "Type": 0
        }
    ]
}"""


def get(server: GraphPipeServer, path: str, *, method: str = "GET", body: bytes = b"") -> bytes:
    """One request on a fresh connection: the raw response, up to the server's close."""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return exchange(server, head.encode() + b"\r\n" + body)


@pytest.mark.parametrize("path", ["/", "/nope", "/control", "/control/is_ready/", "/a/b?c=d"])
def test_get_on_any_other_path_is_the_metadata_as_go_indented_json(path: str) -> None:
    with serve(double, metadata=GO_META) as server:
        status, headers, body = split(get(server, path))
    assert (status, headers["content-type"], body) == (200, "application/json", GO_META_JSON)
    assert "x-content-type-options" not in headers


def test_metadata_json_escapes_strings_as_go() -> None:
    meta = ModelMetadata(name='a<b>&c \u00e9\u2028\x01\n\t"\\')
    with serve(double, metadata=meta) as server:
        body = split(get(server, "/"))[2]
    assert body.startswith(
        b'{\n    "Name": "a\\u003cb\\u003e\\u0026c \xc3\xa9\\u2028\\u0001\\n\\t\\"\\\\",\n'
    )
    assert json.loads(body)["Name"] == meta.name


def test_unset_and_scalar_shapes_differ_in_json_and_in_our_flatbuffers() -> None:
    meta = ModelMetadata(inputs=(IOMetadata("unset"), IOMetadata("scalar", shape=())))
    with serve(double, metadata=meta) as server:
        doc = json.loads(split(get(server, "/"))[2])
        got = codec.decode_metadata_response(
            request(server, codec.encode_metadata_request().tobytes()).body
        )
    assert [i["Shape"] for i in doc["Inputs"]] == [None, []]  # as Go: nil -> null, empty -> []
    assert [i.shape for i in got.inputs] == [None, ()]  # absent vs empty vector


def test_get_and_control_calls_read_their_body_and_keep_the_connection() -> None:
    with serve(double) as server, socket.create_connection((server.host, server.port)) as s:
        s.settimeout(5)
        for method, path in [("GET", "/"), ("POST", "/control/is_alive"), ("GET", "/x")]:
            body = b"ignored body"
            s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\n".encode())
            s.sendall(body)
            assert split(recv_response(s))[0] == 200
        s.sendall(raw_post(X_BODY))  # the same connection still serves
        assert split(read_all(s))[2] == X2_WIRE


def test_error_answers_are_go_http_error_bytes() -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("bad input")

    with serve(broken) as server:
        raw = exchange(server, raw_post(X_BODY))
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 400 Bad Request"
        assert b"Content-Type: text/plain; charset=utf-8" in lines
        assert b"X-Content-Type-Options: nosniff" in lines
        assert b"Content-Length: 10" in lines
        assert body == b"bad input\n"
        # A malformed body, and outputs that cannot be encoded, likewise.
        status, headers, body = split(exchange(server, raw_post(b"\0" * 3)))
        assert (status, headers["x-content-type-options"]) == (400, "nosniff")
        assert body.endswith(b"bytes)\n")
    with serve(lambda x: x > 0) as server:
        status, headers, body = split(exchange(server, raw_post(X_BODY)))
    assert (status, headers["x-content-type-options"]) == (500, "nosniff")
    assert body.startswith(b"cannot encode") and body.endswith(b"\n")


def test_a_200_answer_has_no_nosniff() -> None:
    with serve(double) as server:
        _, headers, _ = split(exchange(server, raw_post(X_BODY)))
    assert "x-content-type-options" not in headers


def test_request_types_other_than_infer_get_the_metadata() -> None:
    b = flatbuffers.Builder(64)
    b.StartObject(2)
    b.PrependUint8Slot(0, 7, 0)  # an unknown union tag
    b.Finish(b.EndObject())
    unknown = bytes(b.Output())
    # A MetadataRequest whose table offset leads out of the message.
    broken_meta = bytearray(codec.encode_metadata_request().tobytes())
    (root,) = struct.unpack_from("<I", broken_meta)
    vtable = root - struct.unpack_from("<i", broken_meta, root)[0]
    (req_field,) = struct.unpack_from("<H", broken_meta, vtable + 6)
    struct.pack_into("<I", broken_meta, root + req_field, 1 << 20)
    with serve(double, metadata=GO_META) as server:
        for body in (unknown, bytes(broken_meta)):
            with pytest.raises(codec.DecodeError):
                codec.decode_request(body)
            r = request(server, body)
            assert r.status == 200
            assert codec.decode_metadata_response(r.body) == GO_META
        assert server.last_request == codec.MetadataRequest()
        # An InferRequest that does not decode is still a 400.
        assert request(server, X_BODY[:-8]).status == 400


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_is_ready_and_is_alive_answer_ok_newline(method: str) -> None:
    with serve(double) as server:
        for path in ("/control/is_ready", "/control/is_alive", "/control/is_alive?x=1"):
            status, headers, body = split(get(server, path, method=method))
            assert (status, headers["content-type"], body) == (
                200,
                "text/plain; charset=utf-8",
                b"ok\n",
            )
            assert "x-content-type-options" not in headers
        server.ready = False
        status, headers, body = split(get(server, "/control/is_ready", method=method))
        assert (status, body, headers["x-content-type-options"]) == (503, b"not ready\n", "nosniff")
        assert split(get(server, "/control/is_alive", method=method))[2] == b"ok\n"
        server.ready = True
        server._shutting_down = True  # what stop() sets first
        assert split(get(server, "/control/is_ready", method=method))[:3:2] == (503, b"not ready\n")
        assert split(get(server, "/control/is_alive", method=method))[:3:2] == (503, b"not alive\n")
        server._shutting_down = False
        # Percent-encoded, the path is the same (Go's ServeMux decodes it).
        assert split(get(server, "/control/is%5Fready"))[2] == b"ok\n"
        assert request(server, X_BODY, path="/any/path?x=1").outputs()  # POST: any path


def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_client_count_is_the_number_of_open_connections() -> None:
    with serve(double) as server:
        assert get(server, "/control/client_count").endswith(b"\r\n\r\n1\n")
        idle = [socket.create_connection((server.host, server.port)) for _ in range(2)]
        try:
            wait_until(lambda: server.open_connections == 2)
            status, headers, body = split(get(server, "/control/client_count"))
            assert (status, headers["content-type"], body) == (
                200,
                "text/plain; charset=utf-8",
                b"3\n",
            )
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: server.open_connections == 0)
        assert split(get(server, "/control/client_count", method="POST"))[2] == b"1\n"


def test_tcp_keepalive_every_3_minutes_as_go() -> None:
    with serve(double) as server, socket.create_connection((server.host, server.port)) as s:
        s.sendall(raw_post(X_BODY, close=False))
        recv_response(s)  # the options are set before the connection is served
        (conn,) = server._connections
        assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
            if hasattr(socket, name):
                assert conn.sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name)) == 180


class Gate:
    """A model that holds each call until released, and says when one has begun."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.release.wait(10)
        return x * 2


def in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out


def test_shutdown_refuses_new_work_drains_in_flight_then_stops() -> None:
    gate = Gate()
    with serve(gate) as server:
        port = server.port
        # A kept-alive connection, idle once it has its first answer.
        idle = socket.create_connection((server.host, port), timeout=5)
        idle.sendall(raw_post(codec.encode_metadata_request().tobytes(), close=False))
        recv_response(idle)
        # One request in flight, held by the model.
        busy = socket.create_connection((server.host, port), timeout=5)
        busy.sendall(raw_post(X_BODY, close=False))
        assert gate.entered.wait(5)
        caller, answer = in_thread(get, server, "/control/shutdown")
        wait_until(lambda: split(get(server, "/control/is_ready"))[0] == 503)

        # During the drain: probes answer, new work gets 503 and a close.
        assert split(get(server, "/control/is_ready"))[2] == b"not ready\n"
        assert split(get(server, "/control/is_alive"))[2] == b"ok\n"
        assert split(get(server, "/control/client_count"))[2] == b"4\n"
        for raw in (
            raw_post(X_BODY, close=False),
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n",
        ):
            status, headers, body = split(exchange(server, raw))  # and the server closes
            assert (status, headers["connection"], body) == (503, "close", b"shutting down\n")
            assert headers["x-content-type-options"] == "nosniff"
        idle.sendall(raw_post(X_BODY, close=False))
        status, headers, body = split(read_all(idle))
        assert (status, headers["connection"], body) == (503, "close", b"shutting down\n")
        assert caller.is_alive() and server.running

        # The request in flight completes, on a connection that then closes.
        gate.release.set()
        status, headers, body = split(read_all(busy))
        assert (status, headers["connection"], body) == (200, "close", X2_WIRE)
        caller.join(5)
        status, headers, body = split(answer[0])
        assert (status, headers["content-type"], body) == (
            200,
            "text/plain; charset=utf-8",
            b"shutdown\n",
        )
        assert headers["connection"] == "close"

        # Then the server stops: nothing listens any more.
        wait_until(lambda: not server.running)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, port), timeout=5).close()
        server.stop()  # nothing left to do
        for s in (idle, busy):
            s.close()
        # It can start again, on the same port, ready.
        server.start()
        assert server.port == port
        assert split(get(server, "/control/is_ready"))[2] == b"ok\n"
        assert request(server, X_BODY).outputs()
    assert server._httpd is None  # stopped (by the with block)
    assert not [t for t in threading.enumerate() if f":{port}" in t.name]


def test_shutdown_with_nothing_in_flight_answers_at_once_and_closes_idle_connections() -> None:
    with serve(double) as server:
        idle = socket.create_connection((server.host, server.port), timeout=5)
        idle.sendall(raw_post(X_BODY, close=False))
        recv_response(idle)
        t0 = time.monotonic()
        status, _, body = split(get(server, "/control/shutdown", method="POST"))
        assert (status, body) == (200, b"shutdown\n")
        assert time.monotonic() - t0 < 2
        with idle:
            assert read_all(idle) == b""  # the server's FIN
        wait_until(lambda: not server.running)


def test_stop_during_a_drain_cuts_it_short() -> None:
    gate = Gate()
    with serve(gate) as server:
        port = server.port
        busy = socket.create_connection((server.host, port), timeout=5)
        busy.sendall(raw_post(X_BODY))
        assert gate.entered.wait(5)
        caller, answer = in_thread(get, server, "/control/shutdown")
        wait_until(lambda: server._draining)
        t0 = time.monotonic()
        threading.Timer(0.2, gate.release.set).start()  # the model returns after stop()
        server.stop()
        assert time.monotonic() - t0 < 3
        caller.join(5)
        assert answer == [b""]  # closed without an answer
        with busy:
            assert not read_all(busy).startswith(b"HTTP/1.1 200")
    assert not server.running


# --------------------------------------------------------------------------
# Faults, observed on the socket


def test_fault_delay() -> None:
    with serve(double, faults=Faults(delay=0.3)) as server:
        t0 = time.monotonic()
        status, _, body = split(exchange(server, raw_post(X_BODY)))
        assert time.monotonic() - t0 >= 0.3
        assert (status, body) == (200, X2_WIRE)


def test_fault_drop() -> None:
    with serve(double) as server:
        server.set_faults(drop=True)
        assert exchange(server, raw_post(X_BODY, close=False)) == b""
        assert exchange(server, raw_post(X_BODY, close=False)) == b""  # times=None: until cleared
        server.clear_faults()
        assert split(exchange(server, raw_post(X_BODY)))[2] == X2_WIRE
        assert server.requests_served == 3


def test_fault_truncate_body() -> None:
    with serve(double) as server:
        server.set_faults(truncate_body=10)
        status, headers, body = split(exchange(server, raw_post(X_BODY, close=False)))
    assert status == 200
    assert int(headers["content-length"]) == len(X2_WIRE)
    assert body == X2_WIRE[:10]  # and then the connection closed


def test_fault_content_length_longer() -> None:
    with serve(double) as server:
        server.set_faults(content_length_delta=50)
        _, headers, body = split(exchange(server, raw_post(X_BODY, close=False)))
    assert int(headers["content-length"]) == len(X2_WIRE) + 50
    assert body == X2_WIRE  # then closed: 50 bytes never come


def test_fault_content_length_shorter() -> None:
    with serve(double) as server:
        server.set_faults(content_length_delta=-8)
        # Keep-alive: two requests on one connection; the first answer's
        # surplus bytes come before the second answer.
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(raw_post(X_BODY, close=False) + raw_post(X_BODY, close=True))
            raw = read_all(s)
    _, headers, rest = split(raw)
    assert int(headers["content-length"]) == len(X2_WIRE) - 8
    assert rest.startswith(X2_WIRE + b"HTTP/1.1 200 OK\r\n")


def test_fault_stall_after_headers() -> None:
    with serve(double) as server:
        server.set_faults(stall_after_headers=0.3)
        with socket.create_connection((server.host, server.port), timeout=5) as s:
            s.sendall(raw_post(X_BODY))
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            t_headers = time.monotonic()
            first = s.recv(1)
            t_body = time.monotonic()
            rest = read_all(s)
    assert t_body - t_headers >= 0.25
    assert first + rest == X2_WIRE


def test_fault_status_and_body() -> None:
    with serve(double) as server:
        server.set_faults(status=503, body="busy, try later", retry_after=2)
        r = request(server, X_BODY)
        assert (r.status, r.body, r.headers["Retry-After"]) == (503, b"busy, try later", "2")
        assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
        server.set_faults(status=500, body=b"\x00\x01")
        r = request(server, X_BODY)
        assert (r.status, r.body, r.headers["Content-Type"]) == (
            500,
            b"\x00\x01",
            "application/octet-stream",
        )
        assert r.headers["Retry-After"] is None  # set_faults replaced every knob


def test_fault_garbage() -> None:
    with serve(double) as server:
        server.set_faults(garbage=b"\xde\xad\xbe\xef" * 3)
        r = request(server, X_BODY)
    assert (r.status, r.body) == (200, b"\xde\xad\xbe\xef" * 3)


def test_fault_chunked() -> None:
    with serve(double) as server:
        server.set_faults(chunked=True)
        r = request(server, X_BODY)  # http.client undoes the chunking
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.headers["Content-Length"] is None
        assert r.body == X2_WIRE
        _, _, body = split(exchange(server, raw_post(X_BODY)))
    assert body.endswith(b"\r\n0\r\n\r\n") and body != X2_WIRE


def test_fault_retry_after_alone() -> None:
    with serve(double, faults=Faults(retry_after="Wed, 21 Oct 2015 07:28:00 GMT")) as server:
        r = request(server, X_BODY)
    assert r.status == 200 and r.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"


def test_fault_times_clears_itself() -> None:
    with serve(double) as server:
        server.set_faults(status=503, body="busy", times=2)
        statuses = [request(server, X_BODY).status for _ in range(3)]
        assert statuses == [503, 503, 200]
        assert not server.faults.active
        assert server.faults == Faults()


def test_faults_leave_get_alone_and_change_while_running() -> None:
    with serve(double) as server:
        server.faults.drop = True  # plain attribute assignment works too
        assert request(server, method="GET", path="/control/is_ready").status == 200
        assert exchange(server, raw_post(X_BODY)) == b""
        server.faults = Faults(status=418)
        assert request(server, X_BODY).status == 418


def test_faults_validation() -> None:
    with pytest.raises(TypeError, match="unknown fault knob"):
        Faults().set(dealy=1)
    with pytest.raises(ValueError, match="status"):
        Faults(status=42)
    with pytest.raises(ValueError, match="times"):
        Faults(times=-1)
    f = Faults(delay=1)
    with pytest.raises(ValueError, match="truncate_body"):
        f.set(truncate_body=-1)
    assert f.delay == 1  # unchanged after a refused set()


# --------------------------------------------------------------------------
# Connections


def test_keep_alive_reuses_one_connection() -> None:
    with serve(double) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
        try:
            for body in (X_BODY, codec.encode_metadata_request().tobytes(), X_BODY):
                conn.request("POST", "/", body)
                r = conn.getresponse()
                assert r.status == 200
                r.read()
            conn.request("GET", "/control/is_alive")
            assert conn.getresponse().read() == b"ok\n"
        finally:
            conn.close()
        assert (server.connections_accepted, server.requests_served) == (1, 4)


def test_close_connections_closes_idle_keep_alive_connections() -> None:
    with serve(double) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
        try:
            conn.request("POST", "/", X_BODY)
            conn.getresponse().read()
            assert server.open_connections == 1
            assert server.close_connections() == 1
            assert server.open_connections == 0
            assert conn.sock is not None
            assert conn.sock.recv(1) == b""  # the server sent its FIN
        finally:
            conn.close()
        assert request(server, X_BODY).status == 200
        assert server.connections_accepted == 2


def test_restart_keeps_the_port_and_drops_connections() -> None:
    with serve(double) as server:
        port = server.port
        with socket.create_connection((server.host, port), timeout=5) as s:
            s.sendall(raw_post(X_BODY, close=False))
            recv_response(s)
            server.restart()
            assert read_all(s) == b""
        assert server.port == port and server.running
        assert request(server, X_BODY).outputs()


def test_stop_closes_connections_and_joins_threads() -> None:
    server = GraphPipeServer(double)
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    assert repr(server).endswith("running>")
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(raw_post(X_BODY, close=False))
        recv_response(s)
        mine = [t for t in threading.enumerate() if f":{server.port}" in t.name]
        assert len(mine) == 2  # the accept loop and this connection
        server.stop()
        assert read_all(s) == b""
    assert not any(t.is_alive() for t in mine)
    server.stop()  # again: nothing
    assert not server.running


def test_stop_interrupts_fault_sleeps() -> None:
    with serve(double, faults=Faults(delay=30)) as server:
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(raw_post(X_BODY))
        time.sleep(0.1)
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 2
    with s:
        assert read_all(s) == b""


def test_clients_that_vanish_are_handled_quietly() -> None:
    big = np.zeros(8 << 20, np.uint8)
    with serve(lambda x: big) as server:
        # Reset mid-body.
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(raw_post(b"\0" * 1000)[:-900])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        # Gone while the server writes a large answer.
        s = socket.create_connection((server.host, server.port), timeout=5)
        s.sendall(raw_post(X_BODY))
        s.recv(10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        # Garbage instead of HTTP (http.server answers it HTTP/0.9 style: no status line).
        assert exchange(server, b"\x16\x03\x01 not http\r\n\r\n").startswith(b"400 Bad request")
        time.sleep(0.2)
        assert request(server, method="GET", path="/control/is_alive").status == 200
    # _quiet_stderr checks that nothing was printed


def test_client_timeout_drops_silent_clients() -> None:
    with pytest.raises(ValueError, match="client_timeout"):
        GraphPipeServer(double, client_timeout=0)
    with serve(double, client_timeout=0.3) as server:
        assert request(server, X_BODY).outputs()  # a prompt client is served
        for data in (b"", b"POST / HTTP/1.1\r\nHost: t\r\n", raw_post(X_BODY)[:-10]):
            # idle, stalled in the headers, stalled in the body
            t0 = time.monotonic()
            with socket.create_connection((server.host, server.port), timeout=5) as s:
                s.sendall(data)
                assert read_all(s) == b""
            assert 0.25 <= time.monotonic() - t0 < 3
        assert server.open_connections == 0


def test_many_concurrent_connections() -> None:
    n = 100

    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return x * 2

    barrier = threading.Barrier(n)
    results: list[bool] = []
    with serve(slow) as server:

        def client() -> None:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
            try:
                conn.connect()
                barrier.wait()
                for _ in range(3):
                    conn.request("POST", "/", X_BODY)
                    r = conn.getresponse()
                    results.append(r.status == 200 and r.read() == X2_WIRE)
            finally:
                conn.close()

        threads = [threading.Thread(target=client) for _ in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        assert server.connections_accepted == n
        assert server.requests_served == 3 * n
    assert results == [True] * (3 * n)
    assert elapsed < 5, elapsed  # serialised, it would take 15 s


def test_log_option_prints_requests(capfd: pytest.CaptureFixture[str]) -> None:
    with serve(double, log=True) as server:
        request(server, X_BODY)
    assert '"POST / HTTP/1.1" 200' in capfd.readouterr().err


# --------------------------------------------------------------------------
# TLS


def test_tls() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with serve(double, ssl_context=server_ctx) as server:
        assert server.url.startswith("https://127.0.0.1:")
        # A client that does not speak TLS: the handshake fails, quietly.
        assert not exchange(server, raw_post(X_BODY)).startswith(b"HTTP")
        # One that stalls in the handshake does not block the others.
        with socket.create_connection((server.host, server.port)):
            conn = http.client.HTTPSConnection(
                server.host, server.port, context=client_ctx, timeout=5
            )
            try:
                for _ in range(2):
                    conn.request("POST", "/", X_BODY)
                    assert conn.getresponse().read() == X2_WIRE
                assert server.close_connections() == 2  # the stalled one and this one
            finally:
                conn.close()
        assert server.connections_accepted == 3


# --------------------------------------------------------------------------
# The pytest fixture


def test_graphpipe_serve_fixture(graphpipe_serve: ServeFactory) -> None:
    a = graphpipe_serve(double)
    b = graphpipe_serve(demo_model, metadata=demo_metadata, errors_as_response=True)
    assert a.running and b.running and a.port != b.port
    assert b.errors_as_response and b.metadata.name == "iris"
    assert infer(a, [X]).outputs()[0].tolist() == (X * 2).tolist()


def test_graphpipe_serve_fixture_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import http.client

        STARTED = []

        def test_start(graphpipe_serve):
            server = graphpipe_serve(lambda x: x, max_request_bytes=10)
            STARTED.append(server)
            conn = http.client.HTTPConnection(server.host, server.port)
            conn.request("GET", "/control/is_alive")
            assert conn.getresponse().read() == b"ok\\n"
            conn.close()

        def test_stopped_after_the_test():
            assert STARTED and not STARTED[0].running
        """
    )
    result = pytester.runpytest_inprocess(*PLUGIN_ARGS, "-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


# --------------------------------------------------------------------------
# The demo model


MEANS = np.array(
    [[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]], dtype=np.float32
)


def test_demo_model() -> None:
    out = demo_model(MEANS)
    p, label = out["probabilities"], out["label"]
    assert (p.dtype, p.shape, label.dtype, label.shape) == (np.float32, (3, 3), np.int64, (3,))
    assert label.tolist() == [0, 1, 2]
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert (p.argmax(axis=1) == label).all() and (p.max(axis=1) > 0.6).all()
    soft = demo_model(MEANS, config="temperature=4")
    assert soft["label"].tolist() == [0, 1, 2]
    assert (soft["probabilities"].max(axis=1) < p.max(axis=1)).all()
    assert len(DEMO_CLASSES) == 3
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        demo_model(np.ones((2, 3), np.float32))
    for bad in ("temperature=0", "temperature=x", "temp=1"):
        with pytest.raises(ValueError, match="temp"):
            demo_model(MEANS, config=bad)
    np.testing.assert_array_equal(demo_model(MEANS.astype(np.float64))["label"], [0, 1, 2])


def test_demo_model_served() -> None:
    with serve(demo_model, metadata=demo_metadata) as server:
        probabilities, label = infer(server, [MEANS]).outputs()
        assert label.tolist() == [0, 1, 2]
        np.testing.assert_array_equal(probabilities, demo_model(MEANS)["probabilities"])
        (label,) = infer(
            server, [MEANS[::-1]], output_names=["label"], config="temperature=2"
        ).outputs()
        assert label.tolist() == [2, 1, 0]
        r = infer(server, [MEANS], config="temperature=-1")
        assert (r.status, r.body) == (400, b"temperature must be > 0, not -1\n")


# --------------------------------------------------------------------------
# python -m graphpipe_client.testing


def test_main_serves_the_demo_until_sigint() -> None:
    src = str(Path(graphpipe_client.__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    with subprocess.Popen(
        [sys.executable, "-m", "graphpipe_client.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            port = int(url.rsplit(":", 1)[1])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("POST", "/", codec.encode_infer_request([MEANS]).tobytes())
                _, label = codec.decode_infer_response(conn.getresponse().read()).outputs
            finally:
                conn.close()
            assert label.tolist() == [0, 1, 2]
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "Ctrl-C" in err


def test_a_port_in_use_names_the_address_and_port_0() -> None:
    with serve(lambda x: x) as busy:
        with (
            pytest.raises(OSError, match="cannot listen") as info,
            serve(lambda x: x, port=busy.port),
        ):
            pass  # pragma: no cover - never reached
        # Still an OSError with its errno (code that catches OSError keeps working).
        assert type(info.value) is OSError and info.value.errno == errno.EADDRINUSE
        assert str(info.value) == (
            f"[Errno {errno.EADDRINUSE}] cannot listen on 127.0.0.1:{busy.port}: "
            f"{os.strerror(errno.EADDRINUSE)} (another server holds that port): stop it, "
            "or pass port=0 for a free port (server.url then says which)"
        )
        assert isinstance(info.value.__cause__, OSError)
        server = GraphPipeServer(lambda x: x, port=busy.port)
        with pytest.raises(OSError, match=r"pass port=0 for a free port"):
            server.start()
