"""Encoding of GraphPipe messages straight from numpy buffers (no I/O).

The writer lays a message out front to back: the root offset, then every
table, vector and string (the small "head", one ``bytearray``), then each
tensor's ``data`` vector. A data vector's bytes are not copied: the caller's
array appears in the segment list as a ``memoryview``, preceded by a few
bytes of padding and its length prefix, placed so that the data starts at a
multiple of 64 bytes from the start of the message. All references point
forward, as FlatBuffers requires, and every scalar is naturally aligned, so
strict verifiers accept the result.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final, cast

import numpy as np

from .._exceptions import EncodeError, ErrorEntry
from .decode import REQ_INFER, REQ_METADATA
from .dtypes import SUPPORTED_TYPES_TEXT, DataType, type_of_dtype, wire_dtype
from .messages import EncodedMessage, IOMetadata, ModelMetadata

__all__ = [
    "DATA_ALIGNMENT",
    "MAX_MESSAGE_BYTES",
    "encode_infer_request",
    "encode_infer_response",
    "encode_metadata_request",
    "encode_metadata_response",
    "infer_request_layout",
    "prepare_tensor",
]

#: Each tensor's data starts at a multiple of this many bytes in our messages.
DATA_ALIGNMENT: Final = 64

#: FlatBuffers' limit: offsets are signed 32-bit, so a message is < 2 GiB.
MAX_MESSAGE_BYTES: Final = 2**31 - 1

_pack_u32 = struct.Struct("<I").pack
_pack_into_u32 = struct.Struct("<I").pack_into
_pack_into_i32 = struct.Struct("<i").pack_into

ArrayLike = Any


# --------------------------------------------------------------------------
# Inputs: anything np.asarray accepts, converted at most once.


class _StringTensor:
    """A string tensor: its shape and its elements as ``bytes``, row-major."""

    __slots__ = ("shape", "values")

    def __init__(self, shape: tuple[int, ...], values: list[bytes]) -> None:
        self.shape = shape
        self.values = values


Prepared = np.ndarray | _StringTensor


def _utf8(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates, e.g. from os.fsdecode
        raise EncodeError(
            f"{where}: {text[:40]!r} is not valid UTF-8 text ({exc.reason} at index {exc.start})"
        ) from None


def _to_bytes(value: object, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return _utf8(value, where)
    if isinstance(value, (bytearray, memoryview, np.bytes_)):
        return bytes(value)
    raise EncodeError(
        f"{where}: an object array may hold only str or bytes, found "
        f"{type(value).__name__}; GraphPipe supports {SUPPORTED_TYPES_TEXT}"
    )


def _as_array(value: ArrayLike, where: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, bytes)):
        return np.array(value, dtype=object)
    # CPU tensors from other libraries: DLPack gives a zero-copy view where
    # the producer allows it; __array__ and the buffer protocol go through
    # np.asarray.
    if hasattr(value, "__dlpack__") and not hasattr(value, "__array__"):
        try:
            return np.from_dlpack(value)
        except (TypeError, ValueError, RuntimeError, BufferError) as exc:
            raise EncodeError(f"{where}: cannot read this DLPack tensor on the CPU: {exc}") from exc
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            f"{where}: cannot make an array of {type(value).__name__}: {exc}"
        ) from exc


def prepare_tensor(value: ArrayLike, where: str = "input") -> Prepared:
    """Turn one input into what the writer needs, copying only when it must.

    A C-contiguous little-endian numeric array is returned as is (its bytes
    will be sent from the caller's memory). Non-contiguous, Fortran-ordered,
    big-endian or foreign inputs are converted exactly once. Strings (``str``,
    ``bytes``, ``U``/``S`` arrays, object arrays of ``str``/``bytes``) become a
    string tensor, ``str`` as UTF-8.
    """
    arr = _as_array(value, where)
    dt = arr.dtype
    kind = dt.kind
    if kind in "UOST":
        if kind == "S":
            values = [bytes(v) for v in arr.reshape(-1).tolist()]
        else:
            values = [_to_bytes(v, where) for v in arr.reshape(-1).tolist()]
        return _StringTensor(tuple(arr.shape), values)
    wire = type_of_dtype(dt)
    if wire is None:
        hint = ""
        if kind == "b":
            hint = " (GraphPipe has no boolean type: send x.astype(np.uint8))"
        elif kind == "c":
            hint = " (GraphPipe has no complex type: send the real and imaginary parts as two float tensors)"
        elif kind in "mM":
            hint = " (send x.astype(np.int64) or x.view(np.int64))"
        raise EncodeError(
            f"{where}: dtype {dt} is not supported{hint}; GraphPipe supports {SUPPORTED_TYPES_TEXT}"
        )
    if dt.byteorder == ">" or (dt.byteorder == "=" and not _LITTLE):
        return np.asarray(arr, dtype=dt.newbyteorder("<"), order="C")
    if not arr.flags.c_contiguous:
        return np.ascontiguousarray(arr)
    return arr


_LITTLE: Final = np.little_endian


def _wire_type(t: Prepared) -> int:
    if isinstance(t, _StringTensor):
        return DataType.String
    wire = type_of_dtype(t.dtype)
    assert wire is not None  # prepare_tensor checked it
    return wire


def _check_size(arrays: Sequence[np.ndarray], where: str) -> None:
    # Before any conversion: numeric tensor bytes alone must fit in a message
    # (strings and the head are checked once the message is laid out).
    total = sum(a.nbytes for a in arrays if a.dtype.kind not in "OUST")
    if total > MAX_MESSAGE_BYTES:
        raise EncodeError(
            f"{where}: {total} bytes of tensor data exceed the 2 GiB limit of a "
            "FlatBuffers message (offsets are 32-bit); split the batch into smaller requests"
        )


# --------------------------------------------------------------------------
# The forward writer.


class _Writer:
    """Lays out one message front to back; see the module docstring."""

    __slots__ = ("buf", "data_links", "vtables")

    def __init__(self) -> None:
        self.buf = bytearray(4)  # the root offset, patched by root()
        # (field position, array) of each data vector to place after the head.
        self.data_links: list[tuple[int, np.ndarray]] = []
        self.vtables: dict[bytes, int] = {}

    def align(self, alignment: int, extra: int = 0) -> int:
        """Pad so that ``len(buf) + extra`` is a multiple of ``alignment``."""
        pad = -(len(self.buf) + extra) % alignment
        if pad:
            self.buf += bytes(pad)
        return len(self.buf)

    def link(self, field_pos: int, target: int) -> None:
        _pack_into_u32(self.buf, field_pos, target - field_pos)

    def table(self, field_offsets: Sequence[int], size: int, alignment: int = 4) -> int:
        """Write a vtable (shared when identical) and a zeroed table; return the table's position.

        ``field_offsets`` holds each field's offset within the table (0 for an
        absent field); ``size`` is the table's size including its 4-byte
        vtable offset.
        """
        vt = struct.pack(
            f"<HH{len(field_offsets)}H", 4 + 2 * len(field_offsets), size, *field_offsets
        )
        vt_pos = self.vtables.get(vt)
        if vt_pos is None:
            self.align(2)
            vt_pos = len(self.buf)
            self.buf += vt
            self.vtables[vt] = vt_pos
        pos = self.align(alignment)
        self.buf += bytes(-(-size // 4) * 4)
        _pack_into_i32(self.buf, pos, pos - vt_pos)
        return pos

    def string(self, value: bytes) -> int:
        pos = self.align(4)
        self.buf += _pack_u32(len(value))
        self.buf += value
        self.buf += b"\0"
        return pos

    def string_vector(self, values: Sequence[bytes]) -> int:
        pos = self.offset_vector(len(values))
        for i, v in enumerate(values):
            self.link(pos + 4 + 4 * i, self.string(v))
        return pos

    def offset_vector(self, count: int) -> int:
        """A vector of ``count`` offsets, zeroed; link each slot ``pos + 4 + 4*i`` later."""
        pos = self.align(4)
        self.buf += _pack_u32(count)
        self.buf += bytes(4 * count)
        return pos

    def long_vector(self, values: Sequence[int]) -> int:
        pos = self.align(8, extra=4)
        self.buf += _pack_u32(len(values))
        try:
            self.buf += struct.pack(f"<{len(values)}q", *values)
        except struct.error as exc:
            raise EncodeError(f"shape {list(values)} does not fit in int64: {exc}") from None
        return pos

    def tensor(self, t: Prepared) -> int:
        # Tensor fields: type (slot 0), shape (1), data (2), string_val (3).
        if isinstance(t, _StringTensor):
            pos = self.table((16, 4, 0, 8), 17)
            self.buf[pos + 16] = DataType.String
            self.link(pos + 4, self.long_vector(t.shape))
            self.link(pos + 8, self.string_vector(t.values))
        else:
            pos = self.table((16, 4, 8, 0), 17)
            self.buf[pos + 16] = _wire_type(t)
            self.link(pos + 4, self.long_vector(t.shape))
            self.data_links.append((pos + 8, t))
        return pos

    def tensor_vector(self, tensors: Sequence[Prepared]) -> int:
        vec = self.offset_vector(len(tensors))
        for i, t in enumerate(tensors):
            self.link(vec + 4 + 4 * i, self.tensor(t))
        return vec

    def finish(self, root: int, layout: list[bytes | int] | None = None) -> EncodedMessage:
        """Place the data vectors after the head and return the segments.

        With ``layout`` (an empty list), also describe the message for
        :data:`_LAYOUTS`: each segment that is not tensor data as ``bytes``,
        and the data of ``data_links[i]`` as ``i``.
        """
        self.link(0, root)
        buf = self.buf
        segments: list[bytes | bytearray | memoryview] = [buf]
        pos = len(buf)
        for i, (field_pos, arr) in enumerate(self.data_links):
            pad = -(pos + 4) % DATA_ALIGNMENT
            prefix = bytes(pad) + _pack_u32(arr.nbytes)
            _pack_into_u32(buf, field_pos, pos + pad - field_pos)
            if len(segments) == 1:
                buf += prefix  # nothing follows the head yet: extend it
            else:
                segments.append(prefix)
                if layout is not None:
                    layout.append(prefix)
            pos += pad + 4
            if arr.nbytes:
                segments.append(memoryview(cast(Any, arr.reshape(-1))).cast("B"))
                if layout is not None:
                    layout.append(i)
                pos += arr.nbytes
        if pos > MAX_MESSAGE_BYTES:
            raise EncodeError(
                f"the message would be {pos} bytes, over the 2 GiB limit of a FlatBuffers "
                "message; split the batch into smaller requests"
            )
        if layout is not None:
            layout.insert(0, bytes(buf))
        return EncodedMessage(tuple(segments), pos)


# --------------------------------------------------------------------------
# Messages.


def _names(names: Sequence[str | bytes | None] | None, count: int | None, what: str) -> list[bytes]:
    if names is None:
        return []
    if isinstance(names, (str, bytes)):
        raise EncodeError(f"{what} must be a list of names, not a single {type(names).__name__}")
    out = [b"" if n is None else _to_bytes(n, what) for n in names]
    if count is not None and len(out) != count:
        raise EncodeError(
            f"{what} has {len(out)} names for {count} inputs; give one name per input "
            "(or None/'' for the server's default)"
        )
    return out


def _config(config: str | bytes | None) -> bytes:
    if config is None:
        return b""
    if isinstance(config, str):
        return _utf8(config, "config")
    if isinstance(config, (bytes, bytearray, memoryview)):
        return bytes(config)
    raise EncodeError(f"config must be str or bytes, not {type(config).__name__}")


#: The dtypes whose C-contiguous arrays go out as they are (numeric, little-endian).
_READY: Final = frozenset(wire_dtype(code) for code in DataType if wire_dtype(code) is not None)


def _prepare_all(values: Sequence[ArrayLike] | ArrayLike, what: str) -> list[Prepared]:
    items = list(values) if isinstance(values, (list, tuple)) else [values]
    if all(type(v) is np.ndarray and v.dtype in _READY and v.flags.c_contiguous for v in items):
        # What prepare_tensor would return as is: no conversion to make or to check.
        _check_size(cast(list[np.ndarray], items), what)
        return cast(list[Prepared], items)
    arrays = [_as_array(v, f"{what}[{i}]") for i, v in enumerate(items)]
    _check_size(arrays, what)
    return [prepare_tensor(a, f"{what}[{i}]") for i, a in enumerate(arrays)]


def encode_infer_request(
    inputs: Sequence[ArrayLike] | ArrayLike,
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
) -> EncodedMessage:
    """Encode a ``Request`` holding an ``InferRequest``.

    ``inputs`` is a list or tuple of inputs, or a single input (anything
    ``np.asarray`` accepts). Tensor bytes of C-contiguous little-endian numeric
    arrays are not copied: they appear in the returned segments as views of
    the caller's arrays. ``config`` and both name vectors are always written
    (empty when not given), as the reference clients do.

    Raises:
        EncodeError: an input has an unsupported type (``bool``, complex,
            datetime, objects other than ``str``/``bytes``), the names do not
            match the inputs, a str is not valid UTF-8 text (a lone surrogate),
            or the message would exceed 2 GiB.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import codec
        >>> x = np.zeros((2, 3), np.float32)
        >>> msg = codec.encode_infer_request([x], input_names=["x"])
        >>> np.shares_memory(np.frombuffer(msg.segments[-1], np.float32), x)
        True
    """
    tensors = _prepare_all(inputs, "inputs")
    in_names = _names(input_names, len(tensors), "input_names")
    out_names = _names(output_names, None, "output_names")
    cfg = _config(config)
    key = _layout_key(tensors, in_names, out_names, cfg)
    if key is not None:
        cached = _LAYOUTS.get(key)
        if cached is not None:
            layout, nbytes = cached
            # (numeric tensors only: the key of a request with strings is None)
            views = [memoryview(cast(Any, t).reshape(-1)).cast("B") for t in tensors]
            return EncodedMessage(
                tuple(part if isinstance(part, bytes) else views[part] for part in layout), nbytes
            )

    if key is None:
        return _write_infer(tensors, in_names, out_names, cfg, None)
    new: list[bytes | int] = []
    msg = _write_infer(tensors, in_names, out_names, cfg, new)
    if len(_LAYOUTS) >= MAX_LAYOUTS:
        _LAYOUTS.clear()
    _LAYOUTS[key] = (tuple(new), msg.nbytes)
    return msg


def infer_request_layout(
    arrays: Sequence[np.ndarray],
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
) -> tuple[tuple[bytes | int, ...], int] | None:
    """The bytes of an ``InferRequest`` of ``arrays`` but for their data; ``None`` if it has none.

    ``(layout, nbytes)``: the message's segments in order, each one that is not
    tensor data as ``bytes`` and the data of ``arrays[i]`` as ``i``, and the
    message's size. Any request with the same names, config, dtypes and shapes
    is these bytes with its arrays' data in place: a caller that repeats such
    requests writes only their data. ``None`` when an array would not go out
    as it is (not a C-contiguous numeric little-endian ``ndarray``): such a
    request is encoded in full each time.

    Raises:
        EncodeError: as :func:`encode_infer_request`.
    """
    if not all(
        type(v) is np.ndarray and v.dtype in _READY and v.flags.c_contiguous for v in arrays
    ):
        return None
    tensors = _prepare_all(list(arrays), "inputs")
    in_names = _names(input_names, len(tensors), "input_names")
    out_names = _names(output_names, None, "output_names")
    layout: list[bytes | int] = []
    msg = _write_infer(tensors, in_names, out_names, _config(config), layout)
    return tuple(layout), msg.nbytes


def _write_infer(
    tensors: Sequence[Prepared],
    in_names: list[bytes],
    out_names: list[bytes],
    cfg: bytes,
    layout: list[bytes | int] | None,
) -> EncodedMessage:
    """Write an ``InferRequest``; with ``layout`` (an empty list), describe it there too."""
    w = _Writer()
    # Request: req_type (slot 0, u8 at +8), req (slot 1, offset at +4).
    request = w.table((8, 4), 9)
    w.buf[request + 8] = REQ_INFER
    # InferRequest: config, input_names, input_tensors, output_names.
    infer = w.table((4, 8, 12, 16), 20)
    w.link(request + 4, infer)
    w.link(infer + 4, w.string(cfg))
    w.link(infer + 8, w.string_vector(in_names))
    w.link(infer + 16, w.string_vector(out_names))
    w.link(infer + 12, w.tensor_vector(tensors))
    return w.finish(request, layout)


#: Layouts remembered (then all forgotten at once: a cache of the requests a process repeats).
MAX_LAYOUTS: Final = 256

#: The layout of each request already encoded, by everything it depends on
#: (see :func:`_layout_key`): the message's segments, with each tensor's data
#: as its index, and the message's size. A repeated call only views its data.
_LAYOUTS: dict[tuple[object, ...], tuple[tuple[bytes | int, ...], int]] = {}


def _layout_key(
    tensors: Sequence[Prepared], in_names: list[bytes], out_names: list[bytes], cfg: bytes
) -> tuple[object, ...] | None:
    """What an ``InferRequest``'s bytes depend on, but for its tensor data; ``None`` with strings.

    Each tensor's dtype (byte order and item size included) and shape, the
    names and the config: two requests with the same key are the same bytes
    up to the tensor data (tested: ``tests/wire/test_layouts.py``). String
    tensors carry their values in the layout: those requests are not cached.
    """
    parts: list[object] = []
    for t in tensors:
        if isinstance(t, _StringTensor):
            return None
        parts.append(t.dtype.str)
        parts.append(t.shape)
    parts.append(tuple(in_names))
    parts.append(tuple(out_names))
    parts.append(cfg)
    return tuple(parts)


def encode_metadata_request() -> EncodedMessage:
    """Encode a ``Request`` holding a ``MetadataRequest``.

    Example:
        >>> from graphpipe_client import codec
        >>> codec.decode_request(codec.encode_metadata_request().tobytes())
        MetadataRequest()
    """
    w = _Writer()
    request = w.table((8, 4), 9)
    w.buf[request + 8] = REQ_METADATA
    w.link(request + 4, w.table((), 4))
    return w.finish(request)


def encode_infer_response(
    outputs: Sequence[ArrayLike] | ArrayLike = (),
    errors: Sequence[ErrorEntry | tuple[int, str]] = (),
) -> EncodedMessage:
    """Encode an ``InferResponse`` (the root table of its own message).

    Same zero-copy rules as :func:`encode_infer_request`. ``errors`` are
    ``(code, message)`` pairs or :class:`ErrorEntry` objects.

    Example:
        >>> from graphpipe_client import codec
        >>> wire = codec.encode_infer_response(errors=[(1, "no such input")]).tobytes()
        >>> codec.decode_infer_response(wire).errors
        (ErrorEntry(code=1, message='no such input'),)
    """
    tensors = _prepare_all(outputs, "outputs")
    entries: list[tuple[int, bytes]] = []
    for i, entry in enumerate(errors):
        try:
            code, text = (entry.code, entry.message) if isinstance(entry, ErrorEntry) else entry
            entries.append((int(code), _to_bytes(text, f"errors[{i}].message")))
        except (TypeError, ValueError) as exc:
            raise EncodeError(f"errors[{i}] must be (code, message): {exc}") from None
    w = _Writer()
    # InferResponse: output_tensors (slot 0), errors (slot 1).
    resp = w.table((4, 8) if entries else (4,), 12 if entries else 8)
    w.link(resp + 4, w.tensor_vector(tensors))
    if entries:
        vec = w.offset_vector(len(entries))
        w.link(resp + 8, vec)
        for i, (code, message) in enumerate(entries):
            # Error: code (slot 0, i64 at +8), message (slot 1, offset at +4).
            err = w.table((8, 4), 16, alignment=8)
            try:
                struct.pack_into("<q", w.buf, err + 8, code)
            except struct.error:
                raise EncodeError(f"errors[{i}].code {code} does not fit in int64") from None
            w.link(vec + 4 + 4 * i, err)
            w.link(err + 4, w.string(message))
    return w.finish(resp)


def _io(w: _Writer, io: IOMetadata) -> int:
    # IOMetadata: name, description, shape, type.
    t = w.table((4, 8, 12 if io.shape is not None else 0, 16), 17)
    dtype_code = DataType.Null
    if io.dtype is not None:
        dt = np.dtype(io.dtype)
        wire = DataType.String if dt.kind in "OUST" else type_of_dtype(dt)
        if wire is None:
            raise EncodeError(f"metadata of {io.name!r}: dtype {dt} is not a GraphPipe type")
        dtype_code = wire
    w.buf[t + 16] = dtype_code
    w.link(t + 4, w.string(_utf8(io.name, "metadata: an input or output name")))
    w.link(t + 8, w.string(_utf8(io.description, f"metadata of {io.name!r}: description")))
    if io.shape is not None:
        w.link(t + 12, w.long_vector([-1 if d is None else d for d in io.shape]))
    return t


def encode_metadata_response(metadata: ModelMetadata) -> EncodedMessage:
    """Encode a ``MetadataResponse`` (the root table of its own message).

    All four strings are written (possibly empty), as the Go server does;
    ``None`` dimensions become ``-1``.
    """
    w = _Writer()
    m = w.table((4, 8, 12, 16, 20, 24), 28)
    for off, text in (
        (4, metadata.name),
        (8, metadata.version),
        (12, metadata.server),
        (16, metadata.description),
    ):
        w.link(m + off, w.string(_utf8(text, "metadata")))
    for off, ios in ((20, metadata.inputs), (24, metadata.outputs)):
        vec = w.offset_vector(len(ios))
        w.link(m + off, vec)
        for i, io in enumerate(ios):
            w.link(vec + 4 + 4 * i, _io(w, io))
    return w.finish(m)
