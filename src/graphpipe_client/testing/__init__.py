"""A real GraphPipe server for tests, demos and a first try: ``graphpipe_client.testing``.

:func:`serve` runs any Python callable as a GraphPipe model behind a real
HTTP/1.1 server (the standard library's ``http.server``) on 127.0.0.1, in
background threads, for the duration of a ``with`` block. It speaks the
protocol as the Go reference server does (errors as HTTP 400 text, metadata
as JSON on ``GET /``, the ``/control`` probes), and it can misbehave on
demand (:class:`Faults`: delays, dropped connections, truncated or lying
bodies, arbitrary statuses) so that you can test how your code copes.

- :func:`serve`, :class:`GraphPipeServer`: the server.
- :class:`Faults`: the misbehaviour knobs (``server.set_faults(...)``).
- :func:`demo_model`, :data:`demo_metadata`, :data:`DEMO_CLASSES`: a tiny iris
  classifier to try things with (``python -m graphpipe_client.testing``
  serves it).
- The pytest fixture ``graphpipe_serve`` (installed with the package) starts
  servers that are stopped at the end of the test; :class:`ServeFactory` is
  its type.

Example:
    >>> import http.client
    >>> import numpy as np
    >>> from graphpipe_client import codec
    >>> from graphpipe_client.testing import demo_metadata, demo_model, serve
    >>> with serve(demo_model, metadata=demo_metadata) as server:
    ...     conn = http.client.HTTPConnection(server.host, server.port)
    ...     body = codec.encode_infer_request([[[5.1, 3.5, 1.4, 0.2]]], output_names=["label"])
    ...     conn.request("POST", "/", body.tobytes())
    ...     label = codec.decode_infer_response(conn.getresponse().read()).outputs[0]
    ...     conn.close()
    >>> label
    array([0])

See ``docs/testing.md`` for a guide.
"""

from __future__ import annotations

from ._demo import DEMO_CLASSES, demo_metadata, demo_model
from ._faults import Faults
from ._server import GraphPipeServer, ServeFactory, serve

__all__ = [
    "DEMO_CLASSES",
    "Faults",
    "GraphPipeServer",
    "ServeFactory",
    "demo_metadata",
    "demo_model",
    "serve",
]
