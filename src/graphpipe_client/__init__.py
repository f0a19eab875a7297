"""graphpipe-client: a fast, typed client for the GraphPipe model-serving protocol.

Example:
    >>> import numpy as np
    >>> from graphpipe_client import codec
    >>> msg = codec.encode_infer_request([np.ones(3, np.float32)])
    >>> codec.decode_request(msg.tobytes()).inputs[0]
    array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

from . import aio, codec, remote
from ._async_client import AsyncClient
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
from ._jobs.row_cache import CacheStats, RowCache
from ._replicas.hedging import Hedge, HedgeStats
from ._replicas.routing import ReplicaStats
from ._version import __version__
from ._wire.dtypes import DataType
from ._wire.messages import IOMetadata, ModelMetadata
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
