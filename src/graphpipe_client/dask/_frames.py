"""Lazy predictions for Dask dataframes: numeric columns in, new columns out.

:func:`predict_frame` stacks the chosen numeric columns of each partition
into one ``(rows, columns)`` matrix, the model's one input, scores it on the
worker's shared client (as :func:`~graphpipe_client.dask.predict` scores an
array block) and returns the outputs as the columns of a new dask dataframe
with the input's index and divisions: ``df.join(predict_frame(df, url))``
puts them side by side. Needs Dask's dataframe support
(``pip install 'dask[dataframe]'``, which brings pandas).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._exceptions import EncodeError, GraphPipeError, InvalidOption
from .._jobs.plan import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, check_run_options
from .._wire.encode import encode_infer_request
from ._arrays import Target, _block_failure, _BlockJob, _metadata_of
from ._outputs import OutputDecl, declare_outputs
from ._worker_clients import ClientSpec

__all__ = ["predict_frame"]


def _column_names(decls: Sequence[OutputDecl]) -> list[list[str]]:
    """Each output's column names: its name for rows of one value, ``name_i`` for vectors."""
    out = []
    for j, decl in enumerate(decls):
        base = decl.name if decl.name is not None else f"output{j}"
        if decl.row_shape == ():
            out.append([base])
        elif len(decl.row_shape) == 1:
            out.append([f"{base}_{i}" for i in range(decl.row_shape[0])])
        else:
            raise InvalidOption(
                f"output {base!r} has rows of shape {decl.row_shape}, which do not fit in "
                "dataframe columns: use predict(df.to_dask_array(lengths=True), ...) for it"
            )
    return out


def _frame(outputs: Sequence[np.ndarray], names: Sequence[Sequence[str]], index: Any) -> Any:
    import pandas as pd  # dask[dataframe] brings it

    columns: dict[str, Any] = {}
    for out, cols in zip(outputs, names, strict=True):
        if out.ndim == 1:
            columns[cols[0]] = out
        else:
            for i, col in enumerate(cols):
                columns[col] = out[:, i]
    return pd.DataFrame(columns, index=index)


def _score_partition(
    part: Any,
    job: _BlockJob,
    columns: list[str],
    dtype: np.dtype[Any],
    names: list[list[str]],
    partition_info: dict[str, Any] | None = None,
) -> Any:
    """One partition's task, on a worker: its columns as one matrix, scored, as new columns."""
    x = part[columns].to_numpy(dtype=dtype)
    number = partition_info["number"] if partition_info else 0
    try:
        outputs = job.score([x])
    except GraphPipeError as exc:
        raise _block_failure(exc, len(x), number, None, 0, "partition") from None
    return _frame(outputs, names, part.index)


def predict_frame(
    df: Any,
    target: Target,
    *,
    columns: Sequence[str] | None = None,
    dtype: Any = None,
    input_name: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
    meta: Any = None,
    client_options: Mapping[str, Any] | None = None,
) -> Any:
    """The model's outputs for a dask dataframe's numeric columns, as a new lazy dataframe.

    Each partition's ``columns`` (default: every numeric column, in order;
    booleans excluded) become one ``(rows, len(columns))`` input of
    ``dtype`` (default: the columns' common dtype). Each output becomes
    columns of the result: one named after the output for one value per row,
    ``name_0``, ``name_1``, ... for a vector per row (rows of higher rank do
    not fit: use :func:`predict` on ``df.to_dask_array(lengths=True)``). The
    result has the input's index and divisions. The other arguments are
    :func:`predict`'s.

    Raises:
        InvalidOption: no numeric column, an unknown column, or an output that
            does not fit in columns (and :func:`predict`'s reasons).
        BatchError: when computed, a partition failed; rows are counted within
            the partition, which the message names.

    Example:
        >>> import dask.dataframe as dd
        >>> import numpy as np
        >>> import pandas as pd
        >>> from graphpipe_client.dask import predict_frame
        >>> from graphpipe_client.testing import serve
        >>> df = dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [10.0, 20.0, 30.0],
        ...                                   "name": ["x", "y", "z"]}), npartitions=2)
        >>> with serve(lambda x: x.sum(axis=1)) as server:
        ...     out = predict_frame(df, server.url, meta=np.empty((0,)))  # "a" and "b"
        ...     out.compute(scheduler="threads")["output0"].tolist()
        [11.0, 22.0, 33.0]
    """
    try:
        import dask.dataframe as dd
    except ImportError as exc:
        raise ImportError(
            f"predict_frame needs Dask's dataframes ({exc}): pip install 'dask[dataframe]'",
            name=exc.name,
        ) from exc
    if not isinstance(df, dd.DataFrame):
        raise InvalidOption(
            f"predict_frame takes a dask DataFrame, not {type(df).__name__}; for arrays use predict"
        )
    check_run_options(batch_size, concurrency)
    spec = ClientSpec.of(target, client_options)
    dtypes = df.dtypes
    if columns is None:
        cols = [c for c, t in dtypes.items() if t.kind in "iuf"]
        if not cols:
            raise InvalidOption(
                f"the dataframe has no numeric columns (it has {list(dtypes.index)[:8]}): "
                "pass columns=[...]"
            )
    else:
        cols = list(columns)
        unknown = [c for c in cols if c not in dtypes.index]
        if unknown:
            raise InvalidOption(f"no column(s) {unknown} in the dataframe {list(dtypes.index)[:8]}")
        if not cols:
            raise InvalidOption("columns is empty: name at least one column")
    try:
        matrix = np.dtype(dtype) if dtype is not None else np.result_type(*dtypes[cols])
    except TypeError as exc:
        raise EncodeError(
            f"the columns {cols[:8]} have no common numeric dtype ({exc}): pass dtype= or "
            "choose numeric columns"
        ) from None
    names = None if input_name is None else [input_name]
    wanted, decls = declare_outputs(meta, output_names, lambda: _metadata_of(target, spec))
    encode_infer_request([np.empty((0, len(cols)), matrix)], names, wanted, config)
    out_columns = _column_names(decls)
    job = _BlockJob.of(spec, names, wanted, config, batch_size, concurrency, decls)
    import pandas as pd

    empty = [np.empty((0, *d.row_shape), d.dtype) for d in decls]
    frame_meta = _frame(empty, out_columns, pd.Index([], dtype=df.index.dtype, name=df.index.name))
    return df.map_partitions(_score_partition, job, cols, matrix, out_columns, meta=frame_meta)
