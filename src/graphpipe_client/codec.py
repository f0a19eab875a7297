"""The sans-I/O GraphPipe codec: arrays to message bytes and back, no sockets.

Every shell of graphpipe-client (the sync client, the async client, the
bundled server) is built on these functions, and they are public so that you
can use GraphPipe over any transport.

Client side:

- :func:`encode_infer_request`, :func:`encode_metadata_request` build a
  request as an :class:`EncodedMessage`: a short list of buffer segments in
  which tensor data are views of your arrays (no copy);
- :func:`decode_infer_response`, :func:`decode_metadata_response` read a
  response; numeric outputs are zero-copy views into the buffer you pass.

Server side: :func:`decode_request`, :func:`encode_infer_response`,
:func:`encode_metadata_response`.

Example:
    >>> import numpy as np
    >>> from graphpipe_client import codec
    >>> msg = codec.encode_infer_request([np.arange(4, dtype=np.float32)], config="x")
    >>> req = codec.decode_request(msg.tobytes())
    >>> req.inputs[0], req.config
    (array([0., 1., 2., 3.], dtype=float32), b'x')
"""

from __future__ import annotations

from ._exceptions import DecodeError, EncodeError, ErrorEntry
from ._wire.decode import (
    Buffer,
    decode_infer_response,
    decode_metadata_response,
    decode_request,
    head_alignment_shift,
)
from ._wire.dtypes import DataType
from ._wire.encode import (
    DATA_ALIGNMENT,
    MAX_MESSAGE_BYTES,
    encode_infer_request,
    encode_infer_response,
    encode_metadata_request,
    encode_metadata_response,
)
from ._wire.messages import (
    EncodedMessage,
    InferRequest,
    InferResponse,
    IOMetadata,
    MetadataRequest,
    ModelMetadata,
)

__all__ = [
    "DATA_ALIGNMENT",
    "MAX_MESSAGE_BYTES",
    "Buffer",
    "DataType",
    "DecodeError",
    "EncodeError",
    "EncodedMessage",
    "ErrorEntry",
    "IOMetadata",
    "InferRequest",
    "InferResponse",
    "MetadataRequest",
    "ModelMetadata",
    "decode_infer_response",
    "decode_metadata_response",
    "decode_request",
    "encode_infer_request",
    "encode_infer_response",
    "encode_metadata_request",
    "encode_metadata_response",
    "head_alignment_shift",
]
