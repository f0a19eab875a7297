"""graphpipe-client: a fast, typed client for the GraphPipe model-serving protocol.

Example:
    >>> import numpy as np
    >>> from graphpipe_client import codec
    >>> msg = codec.encode_infer_request([np.ones(3, np.float32)])
    >>> codec.decode_request(msg.tobytes()).inputs[0]
    array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

import typing as _typing

from . import codec
from ._client import Client
from ._exceptions import (
    BatchError,
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    DecodeError,
    EncodeError,
    ErrorEntry,
    GraphPipeError,
    HTTPStatusError,
    InvalidHeader,
    InvalidOption,
    InvalidURL,
    ReadTimeout,
    RemoteError,
    ResponseTooLargeError,
    TimeoutError,  # noqa: A004 - ours, like concurrent.futures.TimeoutError
    TLSError,
    TransportError,
)
from ._http.config import UNSET, ClientConfig, RetryPolicy, Timeout
from ._jobs.coalesce import Coalesce
from ._version import __version__
from ._wire.dtypes import DataType
from ._wire.messages import IOMetadata, ModelMetadata

if _typing.TYPE_CHECKING:
    from . import aio, remote
    from ._async_client import AsyncClient
    from ._jobs.row_cache import CacheStats, RowCache
    from ._replicas.hedging import Hedge, HedgeStats
    from ._replicas.routing import ReplicaStats
    from .remote import execute, execute_multi, execute_named, metadata

__all__ = [
    "UNSET",
    "AsyncClient",
    "BatchError",
    "CacheStats",
    "Client",
    "ClientConfig",
    "Coalesce",
    "ConnectError",
    "ConnectTimeout",
    "DataType",
    "DeadlineExceeded",
    "DecodeError",
    "EncodeError",
    "ErrorEntry",
    "GraphPipeError",
    "HTTPStatusError",
    "Hedge",
    "HedgeStats",
    "IOMetadata",
    "InvalidHeader",
    "InvalidOption",
    "InvalidURL",
    "ModelMetadata",
    "ReadTimeout",
    "RemoteError",
    "ReplicaStats",
    "ResponseTooLargeError",
    "RetryPolicy",
    "RowCache",
    "TLSError",
    "Timeout",
    "TimeoutError",
    "TransportError",
    "__version__",
    "aio",
    "codec",
    "execute",
    "execute_multi",
    "execute_named",
    "metadata",
    "remote",
]


# What a plain Client call does not need loads on first use (PEP 562), not with the
# package: the async side (asyncio, httpx, anyio), the row cache, hedging, replicas and
# the module-level functions of ``remote``. ``from graphpipe_client import RowCache``
# works as before; see docs/performance.md, "Import".
_LAZY: dict[str, str] = {
    "AsyncClient": "._async_client",
    "CacheStats": "._jobs.row_cache",
    "Hedge": "._replicas.hedging",
    "HedgeStats": "._replicas.hedging",
    "ReplicaStats": "._replicas.routing",
    "RowCache": "._jobs.row_cache",
    "aio": ".aio",
    "execute": ".remote",
    "execute_multi": ".remote",
    "execute_named": ".remote",
    "metadata": ".remote",
    "remote": ".remote",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    mod = import_module(module, __name__)
    value = mod if name in ("aio", "remote") else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
