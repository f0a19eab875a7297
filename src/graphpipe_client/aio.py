"""The asyncio twin of :mod:`graphpipe_client.remote`: the same functions, awaited.

::

    from graphpipe_client import aio

    y = await aio.execute("http://127.0.0.1:9000", x)

The functions share one :class:`~graphpipe_client.AsyncClient`, which keeps a
connection pool per event loop: calls within a loop reuse connections, and a
connection of one loop is never used by another (so repeated ``asyncio.run``
and notebook kernels keep working). A loop's pool is closed when the loop
shuts down its async generators, as ``asyncio.run`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._async_client import AsyncClient
from ._client_common import URLArg
from ._http.config import UNSET, TimeoutTypes, Unset
from ._jobs.plan import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, OnError
from ._jobs.progress import ProgressArg
from ._process_client import SharedClient, io_names, io_shapes, io_types
from ._wire.messages import ModelMetadata

__all__ = [
    "execute",
    "execute_batched",
    "execute_multi",
    "execute_named",
    "get_input_names",
    "get_input_shapes",
    "get_input_types",
    "get_output_names",
    "get_output_shapes",
    "get_output_types",
    "metadata",
    "shared_client",
]

_shared: SharedClient[AsyncClient] = SharedClient(AsyncClient)


def shared_client() -> AsyncClient:
    """The process-wide :class:`~graphpipe_client.AsyncClient` behind the module functions."""
    return _shared.get()


async def execute(
    uri: URLArg,
    inp: Any,
    input_name: str | None = None,
    output_name: str | None = None,
    *,
    config: str | bytes | None = None,
    timeout: TimeoutTypes | Unset = UNSET,
) -> np.ndarray | list[np.ndarray]:
    """Run the model at ``uri`` on one input; the array, or the list when there are several outputs."""
    return await shared_client().execute(
        inp, input_name, output_name, config=config, url=uri, timeout=timeout
    )


async def execute_multi(
    uri: URLArg,
    inputs: Sequence[Any],
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
    *,
    timeout: TimeoutTypes | Unset = UNSET,
) -> list[np.ndarray]:
    """Run the model at ``uri`` on several inputs; always returns a list of arrays."""
    return await shared_client().execute_multi(
        inputs, input_names, output_names, config, url=uri, timeout=timeout
    )


async def execute_named(
    uri: URLArg,
    inputs: Any,
    output_names: Sequence[str] | None = None,
    *,
    config: str | bytes | None = None,
    timeout: TimeoutTypes | Unset = UNSET,
) -> dict[str, np.ndarray]:
    """Run the model at ``uri``; every output under its name (see ``Client.execute_named``).

    Not in the 2018 module: ``inputs`` may be a mapping ``{name: array}``, and
    the result is always a ``dict``, whatever the number of outputs.
    """
    return await shared_client().execute_named(
        inputs, output_names, config=config, url=uri, timeout=timeout
    )


async def execute_batched(
    uri: URLArg,
    inputs: Any,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
    progress: ProgressArg = None,
    on_error: OnError | None = None,
    timeout: TimeoutTypes | Unset = UNSET,
) -> np.ndarray | list[np.ndarray]:
    """Run the model at ``uri`` on a whole dataset, ``batch_size`` rows per request.

    See :meth:`AsyncClient.execute_batched <graphpipe_client.AsyncClient.execute_batched>`
    (the shared client keeps up to 10 connections per host: keep
    ``concurrency`` at or below that).
    """
    return await shared_client().execute_batched(
        inputs,
        batch_size,
        concurrency=concurrency,
        input_names=input_names,
        output_names=output_names,
        config=config,
        progress=progress,
        on_error=on_error,
        url=uri,
        timeout=timeout,
    )


async def metadata(uri: URLArg, *, refresh: bool = False) -> ModelMetadata:
    """The model's metadata, cached per URL."""
    return await shared_client().metadata(url=uri, refresh=refresh)


async def get_input_names(uri: URLArg) -> list[str]:
    """The names of the model's inputs."""
    return io_names((await metadata(uri)).inputs)


async def get_output_names(uri: URLArg) -> list[str]:
    """The names of the model's outputs."""
    return io_names((await metadata(uri)).outputs)


async def get_input_types(uri: URLArg) -> list[np.dtype[Any] | None]:
    """The numpy dtypes of the inputs (``None`` where the server does not say)."""
    return io_types((await metadata(uri)).inputs)


async def get_output_types(uri: URLArg) -> list[np.dtype[Any] | None]:
    """The numpy dtypes of the outputs (``None`` where the server does not say)."""
    return io_types((await metadata(uri)).outputs)


async def get_input_shapes(uri: URLArg) -> list[list[int | None]]:
    """The shapes of the inputs, ``None`` for any size."""
    return io_shapes((await metadata(uri)).inputs)


async def get_output_shapes(uri: URLArg) -> list[list[int | None]]:
    """The shapes of the outputs, ``None`` for any size."""
    return io_shapes((await metadata(uri)).outputs)
