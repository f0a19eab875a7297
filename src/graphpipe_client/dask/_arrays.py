"""Lazy predictions on Dask: the task graph of :func:`predict`, and each block's task.

The public face is :mod:`graphpipe_client.dask` (its docstring says what a
user gets); this module builds the graph: every input aligned on the first
input's row chunks, one task per block (:func:`_score_block`, which runs on
a worker with the process's shared client, ``_worker_clients.py``), and one
lazy array per output, declared by ``_outputs.py``. Only Dask's public API
is used: ``dask.delayed``, ``to_delayed``, ``from_delayed``, ``concatenate``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.delayed import delayed

from .._client import Client
from .._client_common import ClientBase, named_inputs
from .._exceptions import BatchError, EncodeError, GraphPipeError, InvalidOption
from .._jobs.plan import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, check_run_options
from .._wire.encode import encode_infer_request
from .._wire.messages import ModelMetadata
from ._outputs import OutputDecl, check_block_outputs, declare_outputs
from ._worker_clients import ClientSpec, client_for

__all__ = ["predict", "predict_named", "worker_client"]

#: What :func:`predict` takes as the model: a URL, the URLs of its replicas, or a client.
Target = str | Sequence[str] | ClientBase[Any]


def worker_client(target: Target, **options: Any) -> Client:
    """This process's shared client for a model and options: built once, then reused.

    What :func:`predict` uses on each worker, for your own tasks
    (``map_blocks``, ``delayed``): call it inside the task, where it runs. The
    client is shared by every task and thread of the process and closed when
    the process exits: do not close it.

    Args:
        target: the model's URL, the URLs of its replicas, or a ``Client``
            (its URLs and settings; the client itself is not used).
        options: ``Client``'s keyword arguments (``timeout=``, ``headers=``,
            ...); not with a client.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client.dask import worker_client
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x + 1) as server:
        ...     worker_client(server.url) is worker_client(server.url)
        True
    """
    return client_for(ClientSpec.of(target, options))


@dataclass(frozen=True)
class _BlockJob:
    """What every block's task needs besides its rows (plain data: it travels in the graph)."""

    spec: ClientSpec
    input_names: tuple[str | None, ...] | None
    output_names: tuple[str, ...] | None
    config: str | bytes | None
    batch_size: int
    concurrency: int
    outputs: tuple[OutputDecl, ...]

    @classmethod
    def of(
        cls,
        spec: ClientSpec,
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        batch_size: int,
        concurrency: int,
        outputs: Sequence[OutputDecl],
    ) -> _BlockJob:
        """The job, with its sequences made tuples (hashable, as the graph's tokens need)."""
        return cls(
            spec,
            None if input_names is None else tuple(input_names),
            None if output_names is None else tuple(output_names),
            config,
            batch_size,
            concurrency,
            tuple(outputs),
        )

    def score(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One block's outputs, scored with this process's shared client and checked.

        Raises:
            GraphPipeError: a batch failed (``BatchError``, rows within the
                block), or the outputs are not what was declared (``DecodeError``).
        """
        outputs = client_for(self.spec).execute_batched(
            list(arrays),
            self.batch_size,
            concurrency=self.concurrency,
            input_names=self.input_names,
            output_names=self.output_names,
            config=self.config,
        )
        assert isinstance(outputs, list)  # a list of inputs gives a list of outputs
        check_block_outputs(outputs, self.outputs, len(arrays[0]))
        return outputs

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        decls = tuple((d.name, d.dtype.str, d.row_shape) for d in self.outputs)
        return (
            "graphpipe-predict",
            self.spec._key(),
            self.input_names,
            self.output_names,
            self.config,
            self.batch_size,
            self.concurrency,
            decls,
        )


def _block_failure(
    exc: GraphPipeError,
    rows: int,
    block: int,
    start: int | None,
    first_batch: int,
    unit: str = "block",
) -> BatchError:
    """A block's error as the driver sees it: the rows of the whole array, the block's number.

    ``start`` is the block's first row in the whole array, ``None`` when not
    known (chunks of unknown size, dataframe partitions): rows are then
    counted within the block (the ``unit``, ``"block"`` or ``"partition"``).
    """
    if isinstance(exc, BatchError):
        lo, hi, index, error = exc.start, exc.stop, first_batch + exc.index, exc.error
    else:  # the block as a whole: its outputs do not match what was declared
        lo, hi, index, error = 0, rows, first_batch, exc
    if start is None:  # unknown chunk sizes: rows counted within the block
        where = f"rows {lo}:{hi} of {unit} {block}"
    else:
        lo, hi = start + lo, start + hi
        where = f"rows {lo}:{hi} ({unit} {block}, batch {index})"
    return BatchError(f"{where} failed: {error}", start=lo, stop=hi, index=index, error=error)


def _score_block(
    job: _BlockJob, block: int, start: int | None, first_batch: int, *arrays: np.ndarray
) -> tuple[np.ndarray, ...]:
    """One block's task, on a worker: its rows scored with the process's shared client."""
    try:
        return tuple(job.score(arrays))
    except GraphPipeError as exc:
        raise _block_failure(exc, len(arrays[0]), block, start, first_batch) from None


def _split_inputs(
    inputs: Any, input_names: Sequence[str | None] | None
) -> tuple[bool, list[Any], Sequence[str | None] | None]:
    """``(single, arrays, names)`` as ``execute_batched`` reads its inputs."""
    if isinstance(inputs, Mapping):
        if input_names is not None:
            raise InvalidOption(
                "give the inputs either as a mapping {name: array} or with input_names=, not both"
            )
        names, arrays = named_inputs(inputs)
        return True, arrays, names
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise EncodeError("no inputs: give at least one array")
        return False, list(inputs), input_names
    return True, [inputs], input_names


def _label(i: int, names: Sequence[str | None] | None) -> str:
    name = names[i] if names is not None and i < len(names) else None
    return f"input {i} ({name!r})" if name else f"input {i}"


def _aligned(arrays: list[Any], names: Sequence[str | None] | None) -> list[da.Array]:
    """Every input as a dask array chunked only along its rows, as the first input is."""
    xs = [x if isinstance(x, da.Array) else da.asarray(x) for x in arrays]
    for i, x in enumerate(xs):
        if x.ndim == 0:
            raise EncodeError(
                f"{_label(i, names)} is a scalar: predict splits inputs along their first "
                "axis, so each needs at least one dimension"
            )
        if any(math.isnan(n) for n in x.shape[1:]):
            raise EncodeError(
                f"{_label(i, names)} has unknown sizes past its first axis {x.shape}: call "
                "x.compute_chunk_sizes() first"
            )
    first = xs[0]
    rows = first.shape[0]
    for i, x in enumerate(xs[1:], start=1):
        if not (x.shape[0] == rows or (math.isnan(x.shape[0]) and math.isnan(rows))):
            raise EncodeError(
                f"{_label(i, names)} has {x.shape[0]} rows but {_label(0, names)} has {rows}: "
                "every input must have the same number of rows (axis 0)"
            )
    row_chunks = first.chunks[0]
    out = []
    for i, x in enumerate(xs):
        whole = dict.fromkeys(range(1, x.ndim), -1)
        if x.chunks[0] == row_chunks:
            out.append(x.rechunk(whole) if whole else x)
        elif any(math.isnan(n) for n in row_chunks + x.chunks[0]):
            raise EncodeError(
                f"{_label(i, names)} and {_label(0, names)} have unknown row chunks that may "
                "differ: call compute_chunk_sizes() on them first"
            )
        else:
            out.append(x.rechunk({0: row_chunks, **whole}))
    return out


def _metadata_of(target: Target, spec: ClientSpec) -> ModelMetadata:
    """The model's metadata, asked on the driver: through the given client, or a short-lived one.

    Raises:
        GraphPipeError: of the type the request raised, its message saying that
            this is the driver's metadata request and that ``meta=`` avoids it.
    """
    try:
        if isinstance(target, Client):
            return target.metadata()
        with spec.build() as client:
            return client.metadata()
    except GraphPipeError as exc:
        # Same type (a ConnectError stays a ConnectError), with the context in the message.
        kwargs = exc._init_kwargs()
        kwargs["message"] = (
            "the driver's metadata request failed (predict asks the model's metadata now, "
            "while the graph is built, for the outputs' dtypes and shapes; pass "
            "meta=np.empty((0, ...), dtype) per output and nothing is asked before compute): "
            f"{exc.message}"
        )
        raise type(exc)(**kwargs) from exc


def _lazy_outputs(
    inputs: Any,
    target: Target,
    batch_size: int,
    concurrency: int,
    input_names: Sequence[str | None] | None,
    output_names: Sequence[str] | None,
    config: str | bytes | None,
    meta: Any,
    client_options: Mapping[str, Any] | None,
) -> tuple[bool, list[da.Array], list[OutputDecl], Any]:
    check_run_options(batch_size, concurrency)
    spec = ClientSpec.of(target, client_options)
    single, arrays, names = _split_inputs(inputs, input_names)
    xs = _aligned(arrays, names)
    wanted, decls = declare_outputs(meta, output_names, lambda: _metadata_of(target, spec))
    # A dtype, a name list or a config that cannot be sent fails now, before any task.
    encode_infer_request(
        [np.empty((0, *(int(n) for n in x.shape[1:])), x.dtype) for x in xs],
        names,
        wanted,
        config,
    )
    job = _BlockJob.of(spec, names, wanted, config, batch_size, concurrency, decls)
    score = delayed(_score_block, pure=True, nout=len(decls))
    row_chunks = xs[0].chunks[0]
    blocks = [x.to_delayed().ravel() for x in xs]
    pieces: list[list[da.Array]] = [[] for _ in decls]
    start: int | None = 0
    first_batch = 0
    for k, rows in enumerate(row_chunks):
        known = not math.isnan(rows)
        task = score(job, k, start if known else None, first_batch, *(b[k] for b in blocks))
        for j, decl in enumerate(decls):
            pieces[j].append(
                da.from_delayed(
                    task[j],
                    shape=(rows, *decl.row_shape),
                    dtype=decl.dtype,
                    meta=np.empty((0,) * (1 + len(decl.row_shape)), decl.dtype),
                )
            )
        if known and start is not None:
            start += int(rows)
            first_batch += max(1, -(-int(rows) // batch_size))
        else:
            start = None
    outputs = [p[0] if len(p) == 1 else da.concatenate(p, axis=0) for p in pieces]
    return single, outputs, decls, spec


def predict(
    inputs: Any,
    target: Target,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
    meta: Any = None,
    client_options: Mapping[str, Any] | None = None,
) -> da.Array | list[da.Array]:
    """Lazy dask arrays of the model's outputs for dask array inputs, scored block by block.

    Each input is chunked along its rows only (other axes are merged into
    one chunk) and the other inputs follow the first input's row chunks;
    each block becomes one task, which scores it with ``execute_batched``
    on the process's shared client (:func:`worker_client`).

    Args:
        inputs: a dask array (anything else numpy or Dask accepts is made
            one), a list/tuple of them (one per model input, as
            ``execute_multi`` takes them) or a mapping ``{input name: array}``;
            every input with the same number of rows.
        target: the model's URL, a list of its replicas' URLs (each worker
            routes over them, ``docs/replicas.md``), or a ``Client``, whose
            URLs and settings each worker's client copies.
        batch_size: rows per request within a block.
        concurrency: requests in flight per block (a worker running ``t``
            threads has up to ``t * concurrency``: keep it within
            ``pool_size``).
        input_names: as for ``execute_multi``.
        output_names: which outputs, in which order; default: every output
            the model's metadata lists (or what ``meta`` names).
        config: as for ``execute_multi``.
        meta: what the outputs are: an array of an output's dtype and row
            shape (``np.empty((0, 10), np.float32)``), a list of them, or a
            mapping ``{output name: array}``. Default: from the model's
            metadata, asked once now, on the driver.
        client_options: ``Client``'s keyword arguments for every worker's
            client (``timeout``, ``retries``, ``headers``, ``verify`` as a
            path, ``cache``, ...); not with a ``Client`` as ``target``. They
            travel in the task graph, headers included.

    Returns:
        Like ``execute_batched``: for one input or a mapping, the dask array
        (a list of them when there are several outputs); for a list/tuple of
        inputs, a list.

    Raises:
        InvalidOption: bad options, or neither ``meta`` nor the metadata
            says an output's dtype and row shape (the message says what to
            pass).
        EncodeError: the inputs disagree on their rows, or cannot be sent.
        BatchError: when computed, a block failed: ``.start``/``.stop`` are
            rows of the whole array, ``.error`` the typed error.
    """
    single, outputs, _, _ = _lazy_outputs(
        inputs, target, batch_size, concurrency, input_names, output_names, config, meta,
        client_options,
    )  # fmt: skip
    if single and len(outputs) == 1:
        return outputs[0]
    return outputs


def predict_named(
    inputs: Any,
    target: Target,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
    meta: Any = None,
    client_options: Mapping[str, Any] | None = None,
) -> dict[str, da.Array]:
    """As :func:`predict`, but every output under its name: ``{name: dask array}``.

    The names are ``output_names``, the keys of a ``meta`` mapping, or the
    model's outputs from its metadata.

    Example:
        >>> import dask.array as da
        >>> import numpy as np
        >>> from graphpipe_client.dask import predict_named
        >>> from graphpipe_client.testing import demo_metadata, demo_model, serve
        >>> x = da.from_array(np.array([[5.1, 3.5, 1.4, 0.2]] * 4, np.float32), chunks=2)
        >>> with serve(demo_model, metadata=demo_metadata) as server:
        ...     out = predict_named(x, server.url)
        ...     sorted(out), out["label"].compute(scheduler="threads")
        (['label', 'probabilities'], array([0, 0, 0, 0]))
    """
    _, outputs, decls, spec = _lazy_outputs(
        inputs, target, batch_size, concurrency, input_names, output_names, config, meta,
        client_options,
    )  # fmt: skip
    names = [d.name for d in decls]
    if any(n is None for n in names):
        md = _metadata_of(target, spec)
        if len(md.output_names) != len(outputs):
            raise InvalidOption(
                f"meta describes {len(outputs)} output(s) and the model's metadata names "
                f"{len(md.output_names)}: name them, with output_names=[...] or a meta mapping"
            )
        names = list(md.output_names)
    return {str(n): y for n, y in zip(names, outputs, strict=True)}
