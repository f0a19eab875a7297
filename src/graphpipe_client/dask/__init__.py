"""Score dask arrays on a Dask cluster: ``pip install 'graphpipe-client[dask]'``.

:func:`predict` turns a dask array (or several, one per model input) into
lazy dask arrays of the model's outputs, chunked along the rows as the input
is. Nothing runs until you compute them; then each block is scored on a
worker with :meth:`Client.execute_batched <graphpipe_client.Client.execute_batched>`
(``batch_size`` rows per request, ``concurrency`` requests in flight), and
the same code runs on the threaded scheduler, a ``LocalCluster`` or a real
cluster (``docs/dask.md``).

- **One client per worker process**: the task graph carries the client's
  configuration (URLs and options, plain data), never a client; each worker
  process builds one pooled client per configuration on first use and every
  later block (and thread) reuses it and its connections
  (:func:`worker_client` gives it to your own tasks too).
- **Dtypes and shapes** of the outputs come from the model's metadata (one
  metadata request, when :func:`predict` is called) or from ``meta``
  (no request): ``meta=np.empty((0, 10), np.float32)`` for rows of 10
  float32, a list of such arrays for several outputs, or a mapping
  ``{output name: array}``. Every block is checked against them.
- **Dataframes**: :func:`predict_frame` scores a dask dataframe's numeric
  columns and returns the outputs as new columns, with the same index and
  divisions (needs ``dask[dataframe]``).
- **Errors**: a failed block raises :class:`~graphpipe_client.BatchError` on
  the driver, with the rows of the whole array (``.start``, ``.stop``) and
  the typed error (``.error``). Retries are Dask's: ``client.compute(y,
  retries=2)`` or ``with dask.annotate(retries=2):`` around :func:`predict`.

Example:
    >>> import dask.array as da
    >>> import numpy as np
    >>> from graphpipe_client.dask import predict
    >>> from graphpipe_client.testing import serve
    >>> x = da.arange(12, dtype=np.float32, chunks=4).reshape(6, 2)
    >>> with serve(lambda x: x.sum(axis=1)) as server:
    ...     y = predict(x, server.url, meta=np.empty((0,), np.float32))
    ...     y.compute(scheduler="threads")
    array([ 1.,  5.,  9., 13., 17., 21.], dtype=float32)
"""

from __future__ import annotations

try:
    from ._arrays import predict, predict_named, worker_client
    from ._frames import predict_frame
except ImportError as exc:
    if not (exc.name or "").startswith("dask"):
        raise
    raise ImportError(
        f"graphpipe_client.dask needs Dask ({exc}): pip install 'graphpipe-client[dask]'",
        name=exc.name,
    ) from exc

__all__ = ["predict", "predict_frame", "predict_named", "worker_client"]
