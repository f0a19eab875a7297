"""Plain-text and HTML renderings of metadata and errors (for terminals and Jupyter).

This module imports none of the types it renders at run time (only for type
checking): the types import it, and the dependency goes one way.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._exceptions import ErrorEntry, GraphPipeError
    from ._messages import IOMetadata, ModelMetadata

__all__ = [
    "MESSAGE_ENTRIES",
    "MESSAGE_ENTRY_CHARS",
    "exception_html",
    "io_text",
    "metadata_html",
    "metadata_text",
    "remote_error_message",
]

#: At most this many entries, each cut to this many characters, are rendered in
#: a :class:`RemoteError`'s message (``.errors`` keeps them all): a hostile
#: response can point thousands of entries at one long message.
MESSAGE_ENTRIES: Final = 100
MESSAGE_ENTRY_CHARS: Final = 4096


def remote_error_message(errors: tuple[ErrorEntry, ...]) -> str:
    """Render the entries of a server's ``errors`` vector, one after the other (bounded)."""
    if not errors:
        return "the server reported an error without entries"
    head = f"the server reported {len(errors)} error{'s' if len(errors) != 1 else ''}"
    lines = []
    for e in errors[:MESSAGE_ENTRIES]:
        text = e.message
        if len(text) > MESSAGE_ENTRY_CHARS:
            text = (
                text[:MESSAGE_ENTRY_CHARS]
                + f"... ({len(e.message) - MESSAGE_ENTRY_CHARS} more characters)"
            )
        lines.append(f"[code {e.code}] {text}")
    if len(errors) > MESSAGE_ENTRIES:
        lines.append(f"... and {len(errors) - MESSAGE_ENTRIES} more")
    return head + ": " + "; ".join(lines)


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


def exception_html(exc: GraphPipeError) -> str:
    """An HTML rendering of a graphpipe-client exception, for Jupyter."""
    e = html.escape
    rows = [("error", type(exc).__name__), ("message", str(exc))]
    for attr in ("status_code", "url"):
        value = getattr(exc, attr, None)
        if value is not None:
            rows.append((attr, str(value)))
    # Bounded like the exception's message: a hostile response may carry
    # thousands of long entries (``exc.errors`` keeps them all).
    entries = getattr(exc, "errors", ())
    for entry in entries[:MESSAGE_ENTRIES]:
        rows.append((f"code {entry.code}", entry.message[:MESSAGE_ENTRY_CHARS]))
    if len(entries) > MESSAGE_ENTRIES:
        rows.append(("", f"... and {len(entries) - MESSAGE_ENTRIES} more entries in .errors"))
    body = "".join(
        f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"
