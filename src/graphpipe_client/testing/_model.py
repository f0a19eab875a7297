"""How the bundled server calls a Python callable as a GraphPipe model."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np

from .._wire.messages import InferRequest, IOMetadata, ModelMetadata

__all__ = ["SERVER_NAME", "ModelAdapter", "RequestError", "ResultError"]

SERVER_NAME: Final = "graphpipe-client testing server"

_EXTRAS: Final = ("config", "output_names")
_DEFAULT_INPUT: Final = re.compile(r"input(0|[1-9][0-9]*)")


class RequestError(Exception):
    """The request does not fit the model (an unknown name, a missing input).

    Answered like an exception of the model itself: HTTP 400 with the text.
    """

    code = 1


class ResultError(Exception):
    """The model returned something that is not outputs (``None``): a server failure (500)."""


class _Signature:
    """What the server needs to know about the callable, inspected once."""

    __slots__ = ("accepts", "max_inputs", "positional", "required")

    def __init__(self, model: Callable[..., Any]) -> None:
        self.accepts: frozenset[str] = frozenset()
        self.positional: tuple[str, ...] = ()
        self.required = 0
        self.max_inputs: int | None = None  # None: any number (*args, or unknown)
        try:
            sig = inspect.signature(model)
        except (TypeError, ValueError):  # some builtins have no signature
            return
        params = list(sig.parameters.values())
        kinds = inspect.Parameter
        var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params)
        self.accepts = frozenset(
            name
            for name in _EXTRAS
            if var_kw
            or (
                name in sig.parameters
                and sig.parameters[name].kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
            )
        )
        positional = []
        for p in params:
            if p.kind not in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
                break
            if p.name in _EXTRAS and p.kind is kinds.POSITIONAL_OR_KEYWORD:
                break  # config / output_names are passed by keyword
            positional.append(p)
        self.positional = tuple(p.name for p in positional)
        self.required = sum(1 for p in positional if p.default is kinds.empty)
        if not any(p.kind is kinds.VAR_POSITIONAL for p in params):
            self.max_inputs = len(positional)


def _model_name(model: Callable[..., Any]) -> str:
    name = getattr(model, "__name__", None)
    return name if isinstance(name, str) and name else type(model).__name__


def _first_doc_line(model: Callable[..., Any]) -> str:
    doc = inspect.getdoc(model)
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


class ModelAdapter:
    """Calls ``model(*inputs, **extras)`` for decoded requests; see :func:`serve`."""

    def __init__(self, model: Callable[..., Any], metadata: ModelMetadata | None) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, not {type(model).__name__}")
        self.model = model
        self.sig = _Signature(model)
        self.default_metadata = metadata is None
        if metadata is None:
            metadata = ModelMetadata(
                name=_model_name(model),
                server=SERVER_NAME,
                description=_first_doc_line(model),
                inputs=tuple(IOMetadata(f"input{i}") for i in range(len(self.sig.positional))),
                outputs=(IOMetadata("output0"),),
            )
        elif not isinstance(metadata, ModelMetadata):
            raise TypeError(f"metadata must be a ModelMetadata, not {type(metadata).__name__}")
        self.metadata = metadata
        self.input_index = {name: i for i, name in reversed(list(enumerate(metadata.input_names)))}
        self.output_names = metadata.output_names

    # -- inputs ------------------------------------------------------------

    def _input_label(self, pos: int) -> str:
        names = self.metadata.input_names
        return names[pos] if pos < len(names) else f"input{pos}"

    def _input_position(self, name: str) -> int:
        pos = self.input_index.get(name)
        if pos is None and self.default_metadata and self.sig.max_inputs is None:
            m = _DEFAULT_INPUT.fullmatch(name)
            if m:
                pos = int(m.group(1))
        if pos is None:
            raise RequestError(f"no input named {name!r}")
        return pos

    def arrange_inputs(self, req: InferRequest) -> list[np.ndarray]:
        """The request's tensors in the model's positional order."""
        slots: dict[int, np.ndarray] = {}
        limit = self.sig.max_inputs
        for i, arr in enumerate(req.inputs):
            name = req.input_names[i] if i < len(req.input_names) else ""
            if name:
                pos = self._input_position(name)
            else:
                pos = i
                if limit is not None and pos >= limit:
                    raise RequestError(
                        f"too many inputs: input {i} has no name and the model takes "
                        f"{limit} input{'s' if limit != 1 else ''}"
                    )
            if pos in slots:
                raise RequestError(f"input {self._input_label(pos)!r} given more than once")
            # Old writers align 8-byte data to 4 only: give the model aligned arrays.
            slots[pos] = arr if arr.flags.aligned else arr.copy()
        count = max(max(slots) + 1 if slots else 0, self.sig.required)
        for pos in range(count):
            if pos not in slots:
                raise RequestError(f"missing input {self._input_label(pos)!r}")
        return [slots[pos] for pos in range(count)]

    # -- the call ----------------------------------------------------------

    def extras(self, req: InferRequest) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        if "config" in self.sig.accepts:
            extras["config"] = req.config.decode("utf-8", "surrogateescape")
        if "output_names" in self.sig.accepts:
            extras["output_names"] = list(req.output_names)
        return extras

    def __call__(self, req: InferRequest) -> list[Any]:
        """Run the model on ``req``; return the outputs asked for, in order.

        Raises:
            RequestError: the names do not fit the model.
            ResultError: the model returned ``None``.
            Exception: whatever the model raised.
        """
        args = self.arrange_inputs(req)
        result = self.model(*args, **self.extras(req))
        return self.select_outputs(result, req.output_names)

    # -- outputs -----------------------------------------------------------

    def _output_names(self, count: int) -> list[str]:
        meta = self.output_names
        return [meta[i] if i < len(meta) else f"output{i}" for i in range(count)]

    def select_outputs(self, result: object, requested: Sequence[str]) -> list[Any]:
        if result is None:
            raise ResultError(
                "the model returned None; return an array, a tuple or list of arrays, "
                "or a dict of name -> array"
            )
        if isinstance(result, Mapping):
            names = [str(k) for k in result]
            values = list(result.values())
        elif isinstance(result, (tuple, list)):
            values = list(result)
            names = self._output_names(len(values))
        else:
            values = [result]
            names = self._output_names(1)
        if not requested:
            return values
        index = {name: i for i, name in reversed(list(enumerate(names)))}
        out = []
        for j, name in enumerate(requested):
            if not name:
                if j >= len(values):
                    raise RequestError(
                        f"no output at position {j}: the model returned {len(values)}"
                    )
                pos = j
            else:
                found = index.get(name)
                if found is None:
                    raise RequestError(f"no output named {name!r}")
                pos = found
            out.append(values[pos])
        return out
