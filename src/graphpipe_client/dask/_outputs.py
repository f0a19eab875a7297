"""What each output of a lazy (Dask) prediction is declared to be, and the check of each block.

A lazy array must know its dtype and the shape of its rows before anything
runs. They come from the caller's ``meta`` or, failing that, from the
model's metadata; :func:`declare_outputs` works out which, and
:func:`check_block_outputs` makes sure that every block the model returns
matches what was declared (a dask array whose blocks disagree with its
declared dtype or shape would be silently wrong). Sans I/O: no Dask, no
sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._exceptions import DecodeError, InvalidOption
from .._wire.messages import IOMetadata, ModelMetadata

__all__ = ["OutputDecl", "check_block_outputs", "declare_outputs"]


@dataclass(frozen=True, slots=True)
class OutputDecl:
    """One output of a lazy prediction: its name, its dtype, the shape of one of its rows."""

    name: str | None  # None: the model's default output, unnamed in the call
    dtype: np.dtype[Any]
    row_shape: tuple[int, ...]
    source: str  # where it was declared, for messages: "meta" or "the model's metadata"

    @property
    def label(self) -> str:
        return repr(self.name) if self.name is not None else "the default output"


def _from_meta(name: str | None, example: Any) -> OutputDecl:
    dtype = getattr(example, "dtype", None)
    shape = getattr(example, "shape", None)
    if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple) or len(shape) < 1:
        raise InvalidOption(
            "meta describes an output with an array of its dtype and row shape, e.g. "
            f"np.empty((0, 10), np.float32) for rows of 10 float32; got {type(example).__name__}"
            + ("" if not isinstance(shape, tuple) else f" of shape {shape}")
        )
    return OutputDecl(name, dtype, tuple(int(n) for n in shape[1:]), "meta")


def _from_metadata(name: str, io: IOMetadata, model: str) -> OutputDecl:
    missing = "meta=np.empty((0, ...), dtype) for it (or a list or mapping of them)"
    if io.dtype is None or io.shape is None or any(n is None for n in io.shape[1:]):
        said = f"dtype {io.dtype}, shape {io.shape}"
        raise InvalidOption(
            f"the metadata of the model{model} does not give output {name!r} both a dtype and the "
            f"size of every axis but the first ({said}), which a dask array needs before it "
            f"runs: pass {missing}"
        )
    if not io.shape:
        raise InvalidOption(
            f"the metadata of the model{model} gives output {name!r} no axes (a scalar), so it has "
            f"no rows to chunk: pass {missing}"
        )
    return OutputDecl(
        name, io.dtype, tuple(int(n) for n in io.shape[1:] if n is not None), "the model's metadata"
    )


def declare_outputs(
    meta: Any,
    output_names: Sequence[str] | None,
    metadata: Callable[[], ModelMetadata],
) -> tuple[list[str] | None, list[OutputDecl]]:
    """The output names to request (``None``: the model's defaults) and every output's declaration.

    ``meta`` is ``None`` (ask the model's metadata, through ``metadata()``,
    which is called only then), one array (one output), a list or tuple of
    arrays (outputs in order), or a mapping ``{output name: array}`` (which
    also names the outputs to request). Each array gives the dtype and, past
    its first axis, the row shape: ``np.empty((0, 10), np.float32)``.

    Raises:
        InvalidOption: ``meta`` and ``output_names`` disagree, a ``meta``
            entry is not an array, or the metadata does not say enough (the
            message says what to pass).
    """
    names = None if output_names is None else list(output_names)
    if meta is None:
        md = metadata()
        model = f" {md.name!r}" if md.name else ""
        by_name = {io.name: io for io in md.outputs}
        wanted = names if names is not None else list(md.output_names)
        if not wanted:
            raise InvalidOption(
                f"the model{model}'s metadata lists no outputs: pass output_names=[...] and "
                "meta= to say what it returns"
            )
        decls = []
        for name in wanted:
            if name not in by_name:
                raise InvalidOption(
                    f"the model{model} has no output named {name!r}; its metadata lists "
                    f"{list(md.output_names)[:8]!r}"
                )
            decls.append(_from_metadata(name, by_name[name], model))
        # Name every output in the request, so that the answer's order is the declared one.
        return wanted, decls
    if isinstance(meta, Mapping):
        keys = list(meta)
        if not all(isinstance(k, str) and k for k in keys):
            raise InvalidOption("a meta mapping's keys are output names (non-empty str)")
        if names is not None and names != keys:
            raise InvalidOption(
                f"meta names the outputs {keys!r} and output_names asks for {names!r}: give one"
            )
        return keys, [_from_meta(k, meta[k]) for k in keys]
    examples = list(meta) if isinstance(meta, (list, tuple)) else [meta]
    if not examples:
        raise InvalidOption("meta is an empty list: describe at least one output")
    if names is not None and len(names) != len(examples):
        raise InvalidOption(
            f"meta describes {len(examples)} output(s) and output_names asks for {len(names)}"
        )
    decls = [_from_meta(None if names is None else names[i], ex) for i, ex in enumerate(examples)]
    return names, decls


def check_block_outputs(
    outputs: Sequence[np.ndarray], decls: Sequence[OutputDecl], rows: int
) -> None:
    """Refuse a block whose outputs are not what the lazy arrays declared.

    Raises:
        DecodeError: another number of outputs, of rows, another dtype or row
            shape than declared (the message says where the declaration came
            from, and to pass ``meta=`` to correct it).
    """
    if len(outputs) != len(decls):
        raise DecodeError(
            f"the model returned {len(outputs)} output(s) where {len(decls)} were declared "
            f"(from {decls[0].source if decls else 'meta'}); name the outputs with "
            "output_names=[...] or describe what the model returns with meta="
        )
    for out, decl in zip(outputs, decls, strict=True):
        got_rows = out.shape[0] if out.ndim else None
        if got_rows != rows:
            raise DecodeError(
                f"the model returned {got_rows if got_rows is not None else 'no'} row(s) of "
                f"{decl.label} for a block of {rows} rows: a model scored row by row returns "
                "one output row per input row"
            )
        if out.dtype != decl.dtype or tuple(out.shape[1:]) != decl.row_shape:
            raise DecodeError(
                f"the model returned {decl.label} as {out.dtype} rows of shape "
                f"{tuple(out.shape[1:])}, but {decl.source} declared {decl.dtype} rows of "
                f"shape {decl.row_shape}: pass meta= with what the model returns"
            )
