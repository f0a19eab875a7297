"""The pytest plugin of graphpipe-client: the ``graphpipe_serve`` fixture.

Installed with the package (entry point ``pytest11``), so the fixture is
available in every test without any import. Without the installed entry
point (for example when running from a source tree on ``PYTHONPATH``),
enable it with ``-p graphpipe_client.testing.pytest_plugin`` or
``pytest_plugins = ["graphpipe_client.testing.pytest_plugin"]`` in your
top-level ``conftest.py``.

Example::

    import numpy as np
    from graphpipe_client.testing import ServeFactory

    def test_doubles(graphpipe_serve: ServeFactory) -> None:
        server = graphpipe_serve(lambda x: 2 * x)
        ...  # call server.url with your client; stopped after the test
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._server import GraphPipeServer, ServeFactory

__all__ = ["graphpipe_serve"]


@pytest.fixture
def graphpipe_serve() -> Iterator[ServeFactory]:
    """Start GraphPipe servers for a test: ``graphpipe_serve(model, **serve_kwargs)``.

    Returns a callable that takes the arguments of
    :func:`graphpipe_client.testing.serve` and returns a running
    :class:`~graphpipe_client.testing.GraphPipeServer`. Every server it
    started is stopped (connections closed, threads joined) when the test
    ends, whatever its outcome.

    Example::

        def test_metadata(graphpipe_serve):
            from graphpipe_client.testing import demo_metadata, demo_model

            server = graphpipe_serve(demo_model, metadata=demo_metadata)
            assert server.metadata.name == "iris"
    """
    # Imported here, not at module level: pytest loads this plugin in every
    # session of every project that has graphpipe-client installed.
    from ._server import GraphPipeServer

    servers: list[GraphPipeServer] = []

    def start(model: Callable[..., Any], **kwargs: Any) -> GraphPipeServer:
        server = GraphPipeServer(model, **kwargs)
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(servers):
            server.stop()
