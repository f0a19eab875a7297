"""The plain data types that the codec reads and writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .._exceptions import ErrorEntry

__all__ = [
    "EncodedMessage",
    "IOMetadata",
    "InferRequest",
    "InferResponse",
    "MetadataRequest",
    "ModelMetadata",
]


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A GraphPipe message as a short list of buffer segments.

    Write the segments to a socket one after the other: together they are the
    message, ``nbytes`` long. Tensor data appears in ``segments`` as views of the
    caller's own arrays (no copy), so keep those arrays unchanged until the
    message is sent.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import codec
        >>> msg = codec.encode_infer_request([np.ones((2, 2), np.float32)])
        >>> msg.nbytes == sum(memoryview(s).nbytes for s in msg.segments)
        True
    """

    segments: tuple[bytes | bytearray | memoryview, ...]
    nbytes: int

    def __iter__(self) -> Iterator[bytes | bytearray | memoryview]:
        return iter(self.segments)

    def __len__(self) -> int:
        return self.nbytes

    def tobytes(self) -> bytes:
        """Join the segments into one ``bytes`` (a copy: for tests and small messages)."""
        return b"".join(self.segments)


@dataclass(frozen=True, slots=True)
class IOMetadata:
    """One input or output of a model, as its metadata describes it.

    Attributes:
        name: the name to use in ``input_names`` / ``output_names``.
        description: free text, possibly empty.
        shape: the dimensions, with ``None`` where any size is accepted (the
            wire's ``-1``); ``None`` if the server did not say.
        dtype: the numpy dtype (``object`` for strings), or ``None`` when the
            server said ``Null`` or an unknown type.
    """

    name: str
    description: str = ""
    shape: tuple[int | None, ...] | None = None
    dtype: np.dtype[np.generic] | None = None

    def __str__(self) -> str:
        return io_text(self)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a GraphPipe server says about its model.

    Example:
        >>> from graphpipe_client import ModelMetadata, IOMetadata
        >>> m = ModelMetadata(name="m", inputs=(IOMetadata("x"),))
        >>> m.input_names
        ('x',)
    """

    name: str = ""
    version: str = ""
    server: str = ""
    description: str = ""
    inputs: tuple[IOMetadata, ...] = ()
    outputs: tuple[IOMetadata, ...] = ()

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names of the inputs, in order."""
        return tuple(io.name for io in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of the outputs, in order."""
        return tuple(io.name for io in self.outputs)

    def __str__(self) -> str:
        return metadata_text(self)

    def _repr_html_(self) -> str:
        return metadata_html(self)


@dataclass(frozen=True, slots=True)
class InferResponse:
    """A decoded ``InferResponse``: the output arrays and the server's error entries."""

    outputs: list[np.ndarray] = field(default_factory=list)
    errors: tuple[ErrorEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A decoded ``InferRequest``, as a server sees it.

    ``input_names`` and ``output_names`` are as sent (possibly empty, or with
    empty entries meaning "the default"); ``config`` is the raw config bytes.
    """

    inputs: list[np.ndarray] = field(default_factory=list)
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    config: bytes = b""


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    """A decoded ``MetadataRequest`` (it has no fields)."""


# Plain-text and HTML renderings (terminals, Jupyter): the reprs above call them.


def _shape_text(io: IOMetadata) -> str:
    if io.shape is None:
        return "?"
    return (
        "("
        + ", ".join("?" if d is None else str(d) for d in io.shape)
        + ("," if len(io.shape) == 1 else "")
        + ")"
    )


def _dtype_text(io: IOMetadata) -> str:
    if io.dtype is None:
        return "?"
    return "string" if io.dtype.kind == "O" else str(io.dtype)


def io_text(io: IOMetadata) -> str:
    """``name: dtype shape  description`` on one line."""
    text = f"{io.name}: {_dtype_text(io)} {_shape_text(io)}"
    return f"{text}  {io.description}" if io.description else text


def _rows(m: ModelMetadata) -> list[tuple[str, IOMetadata]]:
    return [("input", io) for io in m.inputs] + [("output", io) for io in m.outputs]


def metadata_text(m: ModelMetadata) -> str:
    """A readable, aligned table of a model's metadata, under labelled lines (``model: ...``)."""
    head = f"model: {m.name or '(unnamed)'}"
    if m.version:
        head += f", version {m.version}"
    lines = [head]
    if m.server:
        lines.append(f"server: {m.server}")
    if m.description:
        lines.append(m.description)
    rows = [
        (kind, io.name, _dtype_text(io), _shape_text(io), io.description) for kind, io in _rows(m)
    ]
    if rows:
        header = ("", "name", "dtype", "shape", "description")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
        for r in [header, *rows]:
            cells = [r[i].ljust(widths[i]) for i in range(4)] + [r[4]]
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def metadata_html(m: ModelMetadata) -> str:
    """An HTML table of a model's metadata, for Jupyter."""
    import html  # with the first rendering: html.entities is ~1 ms of import

    e = html.escape
    title = e(m.name or "(unnamed model)") + (
        f" <small>{e(m.version)}</small>" if m.version else ""
    )
    parts = [f"<div><strong>{title}</strong>"]
    if m.server:
        parts.append(f"<br><small>server: {e(m.server)}</small>")
    if m.description:
        parts.append(f"<p>{e(m.description)}</p>")
    parts.append(
        "<table><thead><tr><th></th><th>name</th><th>dtype</th><th>shape</th><th>description</th></tr></thead><tbody>"
    )
    for kind, io in _rows(m):
        parts.append(
            f"<tr><td>{kind}</td><td><code>{e(io.name)}</code></td><td>{e(_dtype_text(io))}</td>"
            f"<td>{e(_shape_text(io))}</td><td>{e(io.description)}</td></tr>"
        )
    parts.append("</tbody></table></div>")
    return "".join(parts)
