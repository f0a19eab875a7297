"""Drop-in replacement for the 2018 ``graphpipe.remote`` module.

Same names, same argument order, same return shapes, with a process-wide
connection pool (repeated calls do not reconnect), metadata cached per URL,
timeouts, and typed exceptions instead of bare ``Exception``::

    # before: from graphpipe import remote
    from graphpipe_client import remote

    y = remote.execute("http://127.0.0.1:9000", x)

The shared client uses the default settings of :class:`~graphpipe_client.Client`
(5 s connect, 60 s read timeouts, 2 retries of requests that never reached the
server). For other settings, create your own ``Client``. The pool is reset in
a child process after ``fork`` (connections are never shared across processes).
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._client import Client
from ._client_common import URLArg
from ._http.config import UNSET, TimeoutTypes, Unset
from ._jobs.options import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
from ._process_client import SharedClient, io_names, io_shapes, io_types
from ._wire.messages import ModelMetadata

if TYPE_CHECKING:
    from ._jobs.plan import OnError
    from ._jobs.progress import ProgressArg

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

_shared: SharedClient[Client] = SharedClient(Client)


def shared_client() -> Client:
    """The process-wide :class:`~graphpipe_client.Client` behind the module functions."""
    return _shared.get()


def _close_shared() -> None:
    client = _shared.take()
    if client is not None:
        client.close()


atexit.register(_close_shared)


def execute(
    uri: URLArg,
    inp: Any,
    input_name: str | None = None,
    output_name: str | None = None,
    *,
    config: str | bytes | None = None,
    timeout: TimeoutTypes | Unset = UNSET,
) -> np.ndarray | list[np.ndarray]:
    """Run the model at ``uri`` on one input; the array, or the list when there are several outputs.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import remote
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x + 1) as server:
        ...     remote.execute(server.url, np.zeros(2, np.int32))
        array([1, 1], dtype=int32)
    """
    return shared_client().execute(
        inp, input_name, output_name, config=config, url=uri, timeout=timeout
    )


def execute_multi(
    uri: URLArg,
    inputs: Sequence[Any],
    input_names: Sequence[str | None] | None = None,
    output_names: Sequence[str] | None = None,
    config: str | bytes | None = None,
    *,
    timeout: TimeoutTypes | Unset = UNSET,
) -> list[np.ndarray]:
    """Run the model at ``uri`` on several inputs; always returns a list of arrays."""
    return shared_client().execute_multi(
        inputs, input_names, output_names, config, url=uri, timeout=timeout
    )


def execute_named(
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
    return shared_client().execute_named(
        inputs, output_names, config=config, url=uri, timeout=timeout
    )


def execute_batched(
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

    See :meth:`Client.execute_batched <graphpipe_client.Client.execute_batched>`
    (the shared client keeps up to 10 connections per host: keep
    ``concurrency`` at or below that).

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import remote
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x + 1) as server:
        ...     remote.execute_batched(server.url, np.zeros((5, 2)), batch_size=2).shape
        (5, 2)
    """
    return shared_client().execute_batched(
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


def metadata(uri: URLArg, *, refresh: bool = False) -> ModelMetadata:
    """The model's metadata (a typed :class:`~graphpipe_client.ModelMetadata`), cached per URL."""
    return shared_client().metadata(url=uri, refresh=refresh)


def get_input_names(uri: URLArg) -> list[str]:
    """The names of the model's inputs."""
    return io_names(metadata(uri).inputs)


def get_output_names(uri: URLArg) -> list[str]:
    """The names of the model's outputs."""
    return io_names(metadata(uri).outputs)


def get_input_types(uri: URLArg) -> list[np.dtype[Any] | None]:
    """The numpy dtypes of the inputs (``None`` where the server does not say).

    The 2018 client read the outputs' types here by mistake; this reads the inputs'.
    """
    return io_types(metadata(uri).inputs)


def get_output_types(uri: URLArg) -> list[np.dtype[Any] | None]:
    """The numpy dtypes of the outputs (``None`` where the server does not say)."""
    return io_types(metadata(uri).outputs)


def get_input_shapes(uri: URLArg) -> list[list[int | None]]:
    """The shapes of the inputs, ``None`` for any size (the wire's ``-1``)."""
    return io_shapes(metadata(uri).inputs)


def get_output_shapes(uri: URLArg) -> list[list[int | None]]:
    """The shapes of the outputs, ``None`` for any size (the wire's ``-1``)."""
    return io_shapes(metadata(uri).outputs)
