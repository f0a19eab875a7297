"""``AsyncClient``: the asyncio GraphPipe client on httpx, the same surface as ``Client``."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np

from ._client_base import ClientBase, outputs_by_name
from ._config import UNSET, TimeoutTypes, Unset
from ._core import (
    PreparedRequest,
    RawResponse,
    RetryState,
    interpret_infer,
    interpret_metadata,
    shape_outputs,
)
from ._exceptions import GraphPipeError
from ._messages import ModelMetadata
from ._tracing import start_span
from ._transport_async import AsyncTransport

__all__ = ["AsyncClient"]


class AsyncClient(ClientBase[AsyncTransport]):
    """The asyncio twin of :class:`~graphpipe_client.Client`: same options, same methods, awaited.

    Keep hundreds of calls in flight on one client with ``asyncio.gather``;
    they share a keep-alive pool of ``pool_size`` connections per event loop.
    The client may be created outside a running loop and used from several
    loops one after the other (each loop gets its own connections, closed
    when that loop shuts down), so it works in notebooks and with repeated
    ``asyncio.run``. Close it with ``aclose()`` (or use ``async with``): a
    client collected unclosed gives a ``ResourceWarning``.

    Example:
        >>> import asyncio
        >>> import numpy as np
        >>> from graphpipe_client import AsyncClient
        >>> from graphpipe_client.testing import serve
        >>> async def main(url):
        ...     async with AsyncClient(url) as client:
        ...         return await asyncio.gather(*(client.execute(np.full(2, i)) for i in range(3)))
        >>> with serve(lambda x: x * 10) as server:
        ...     asyncio.run(main(server.url))
        [array([0, 0]), array([10, 10]), array([20, 20])]
    """

    _close_hint = "await aclose() or use 'async with'"

    def _create_transport(self) -> AsyncTransport:
        return AsyncTransport(self._config)

    async def execute(
        self,
        inp: Any,
        input_name: str | None = None,
        output_name: str | None = None,
        *,
        config: str | bytes | None = None,
        url: str | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> np.ndarray | list[np.ndarray]:
        """Run the model on one input; see :meth:`Client.execute <graphpipe_client.Client.execute>`."""
        req = self._prepare_execute(inp, input_name, output_name, config, url, timeout)
        return shape_outputs(interpret_infer(req, await self._send(req)))

    async def execute_multi(
        self,
        inputs: Sequence[Any],
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        *,
        url: str | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> list[np.ndarray]:
        """Run the model on several inputs; see :meth:`Client.execute_multi <graphpipe_client.Client.execute_multi>`."""
        req = self._prepare_execute_multi(inputs, input_names, output_names, config, url, timeout)
        return interpret_infer(req, await self._send(req))

    async def execute_named(
        self,
        inputs: Any,
        output_names: Sequence[str] | None = None,
        *,
        config: str | bytes | None = None,
        url: str | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> dict[str, np.ndarray]:
        """Run the model; every output under its name. See :meth:`Client.execute_named <graphpipe_client.Client.execute_named>`."""
        req = self._prepare_named(inputs, output_names, config, url, timeout)
        meta = None if output_names is not None else await self.metadata(url=url, timeout=timeout)
        return outputs_by_name(output_names, meta, interpret_infer(req, await self._send(req)))

    async def metadata(
        self,
        *,
        url: str | None = None,
        refresh: bool = False,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> ModelMetadata:
        """The model's metadata, cached per URL; ``refresh=True`` asks the server again."""
        key, cached = self._cached_metadata(url, refresh)
        if cached is not None:
            return cached
        req = self._prepare_metadata(key, timeout)
        return self._store_metadata(key, interpret_metadata(req, await self._send(req)))

    async def _send(self, req: PreparedRequest) -> RawResponse:
        span = start_span(req, req.tensor_count)
        if span is None:
            return await self._attempts(req)
        try:
            raw = await self._attempts(span.req)
        except BaseException as exc:
            span.failed(exc)
            raise
        span.succeeded(raw)
        return raw

    async def _attempts(self, req: PreparedRequest) -> RawResponse:
        state = RetryState(self._config, req)
        while True:
            try:
                raw = await self._transport.send(req, state.deadline)
            except GraphPipeError as exc:
                delay = state.after_error(exc)
            else:
                retry_delay = state.after_response(raw)
                if retry_delay is None:
                    return raw
                delay = retry_delay
            await self._transport.sleep(delay)

    async def aclose(self) -> None:
        """Close the connections of the running loop. The client cannot be used afterwards."""
        self._closed = True
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
