"""graphpipe-client: a fast, typed client for the GraphPipe model-serving protocol.

Example:
    >>> import numpy as np
    >>> from graphpipe_client import codec
    >>> msg = codec.encode_infer_request([np.ones(3, np.float32)])
    >>> codec.decode_request(msg.tobytes()).inputs[0]
    array([1., 1., 1.], dtype=float32)
"""

from __future__ import annotations

from . import codec
from ._dtypes import DataType
from ._exceptions import (
    ConnectError,
    ConnectTimeout,
    DecodeError,
    EncodeError,
    ErrorEntry,
    GraphPipeError,
    HTTPStatusError,
    ReadTimeout,
    RemoteError,
    ResponseTooLargeError,
    TimeoutError,
    TransportError,
)
from ._messages import IOMetadata, ModelMetadata
from ._version import __version__

__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "DataType",
    "DecodeError",
    "EncodeError",
    "ErrorEntry",
    "GraphPipeError",
    "HTTPStatusError",
    "IOMetadata",
    "ModelMetadata",
    "ReadTimeout",
    "RemoteError",
    "ResponseTooLargeError",
    "TimeoutError",
    "TransportError",
    "__version__",
    "codec",
]
