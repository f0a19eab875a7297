"""``AsyncClient``: the asyncio GraphPipe client on httpx, the same surface as ``Client``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ._client_common import ClientBase, URLArg, outputs_by_name
from ._exceptions import GraphPipeError
from ._exceptions import TimeoutError as GPTimeoutError
from ._http.config import UNSET, Timeout, TimeoutTypes, Unset
from ._http.exchange import (
    PreparedRequest,
    RawResponse,
    interpret_infer,
    interpret_metadata,
    shape_outputs,
)
from ._http.retries import RetryState
from ._jobs.coalesce import Batch, Coalesce, Member
from ._jobs.coalesce_tasks import TaskCoalescer
from ._jobs.drivers import run_tasks, stream_tasks
from ._jobs.plan import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, OnError, check_run_options
from ._jobs.progress import ProgressArg
from ._jobs.row_cache import InferCall
from ._observe.metrics import ametered, count_rows
from ._observe.tracing import start_span
from ._replicas.attempts import cancel_probes, probe_all_async, replica_attempts_async
from ._transports.asynchronous import AsyncTransport
from ._wire.messages import ModelMetadata

if TYPE_CHECKING:
    from ._http.small_calls import Attempt, SmallCall

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

    _coalescer: TaskCoalescer | None

    def _create_transport(self) -> AsyncTransport:
        return AsyncTransport(self._config)

    def _create_coalescer(self, options: Coalesce) -> TaskCoalescer:
        async def send(batch: Batch) -> list[np.ndarray]:
            return await self._infer(self._batch_call(batch))

        return TaskCoalescer(options, send, self._config.idempotent)

    async def execute(
        self,
        inp: Any,
        input_name: str | None = None,
        output_name: str | None = None,
        *,
        config: str | bytes | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> np.ndarray | list[np.ndarray]:
        """Run the model on one input; see :meth:`Client.execute <graphpipe_client.Client.execute>`."""
        call = self._small_execute(inp, input_name, output_name, config, url, timeout)
        if call is not None:
            outputs = await self._send_small(call, inp)
            if outputs is not None:
                return outputs[0] if len(outputs) == 1 else outputs
        req = self._prepare_execute(inp, input_name, output_name, config, url, timeout)
        return shape_outputs(await self._infer(req))

    async def _send_small(self, call: SmallCall, *arrays: np.ndarray) -> list[np.ndarray] | None:
        """A repeated small call on the fast path; ``None``: nothing sent, take the general path."""
        views = self._small_views(arrays)
        if views is None:
            return None
        sending = self._transport.send_small(call, views)
        if sending is None:
            return None
        got = await sending
        if isinstance(got, tuple):
            return self._small_outputs(call, *got)
        if got is None:
            return None
        outputs = interpret_infer(got.req, await self._attempts(got.req, got))
        count_rows(outputs)
        return outputs

    async def execute_multi(
        self,
        inputs: Sequence[Any],
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        *,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> list[np.ndarray]:
        """Run the model on several inputs; see :meth:`Client.execute_multi <graphpipe_client.Client.execute_multi>`."""
        req = self._prepare_execute_multi(inputs, input_names, output_names, config, url, timeout)
        return await self._infer(req)

    async def execute_named(
        self,
        inputs: Any,
        output_names: Sequence[str] | None = None,
        *,
        config: str | bytes | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> dict[str, np.ndarray]:
        """Run the model; every output under its name. See :meth:`Client.execute_named <graphpipe_client.Client.execute_named>`."""
        small = self._small_named(inputs, output_names, config, url, timeout)
        if small is not None:
            outputs = await self._send_small(small[0], *small[1])
            if outputs is not None:
                meta = None if output_names is not None else await self.metadata()
                return outputs_by_name(output_names, meta, outputs)
        req = self._prepare_named(inputs, output_names, config, url, timeout)
        meta = None if output_names is not None else await self.metadata(url=url, timeout=timeout)
        return outputs_by_name(output_names, meta, await self._infer(req))

    async def metadata(
        self,
        *,
        url: URLArg | None = None,
        refresh: bool = False,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> ModelMetadata:
        """The model's metadata, cached per URL; ``refresh=True`` asks the server again."""
        key, cached = self._cached_metadata(url, refresh)
        if cached is not None:
            return cached
        req = self._prepare_metadata(key, timeout)
        return self._store_metadata(key, interpret_metadata(req, await self._send(req)))

    async def execute_batched(
        self,
        inputs: Any,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        progress: ProgressArg = None,
        on_error: OnError | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> np.ndarray | list[np.ndarray]:
        """Run the model on a whole dataset; see :meth:`Client.execute_batched <graphpipe_client.Client.execute_batched>`.

        The batches are tasks of the running loop, at most ``concurrency`` at
        once. On the first failed batch the others in flight are cancelled and
        :class:`BatchError` is raised; cancelling the awaiting task (as
        ``asyncio.run`` does on Ctrl-C) cancels them too.

        Example:
            >>> import asyncio
            >>> import numpy as np
            >>> from graphpipe_client import AsyncClient
            >>> from graphpipe_client.testing import serve
            >>> async def main(url):
            ...     async with AsyncClient(url) as client:
            ...         return await client.execute_batched(np.arange(5), batch_size=2)
            >>> with serve(lambda x: x * 2) as server:
            ...     asyncio.run(main(server.url))
            array([0, 2, 4, 6, 8])
        """
        plan, prepare = self._plan_batched(
            inputs, batch_size, concurrency, input_names, output_names, config, url, timeout
        )

        async def call(arrays: list[np.ndarray]) -> list[np.ndarray]:
            req = prepare(arrays)
            return await self._infer(req)

        reporter = self._reporter(progress, plan.rows)
        outputs = await run_tasks(plan, call, concurrency, reporter, on_error)
        return shape_outputs(outputs) if plan.single else outputs

    def execute_stream(
        self,
        batches: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        progress: ProgressArg = None,
        on_error: OnError | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> AsyncIterator[np.ndarray | list[np.ndarray]]:
        """Run the model on each batch of an iterable or async iterable; ``async for`` the results.

        See :meth:`Client.execute_stream <graphpipe_client.Client.execute_stream>`.

        Example:
            >>> import asyncio
            >>> import numpy as np
            >>> from graphpipe_client import AsyncClient
            >>> from graphpipe_client.testing import serve
            >>> async def chunks():
            ...     for i in range(3):
            ...         yield np.full(2, i)
            >>> async def main(url):
            ...     async with AsyncClient(url) as client:
            ...         return [y async for y in client.execute_stream(chunks())]
            >>> with serve(lambda x: x + 1) as server:
            ...     asyncio.run(main(server.url))
            [array([1, 1]), array([2, 2]), array([3, 3])]
        """
        self._check_open()
        check_run_options(1, concurrency)
        prepare = self._batch_request(input_names, output_names, config, url, timeout)

        async def call(arrays: list[np.ndarray]) -> list[np.ndarray]:
            req = prepare(arrays)
            return await self._infer(req)

        reporter = self._stream_reporter(progress)
        return stream_tasks(batches, call, concurrency, reporter, on_error, input_names)

    async def is_ready(
        self, *, url: URLArg | None = None, timeout: TimeoutTypes | Unset = UNSET
    ) -> bool:
        """Whether the server is ready; see :meth:`Client.is_ready <graphpipe_client.Client.is_ready>`."""
        return (await self._probe("ready", url, timeout))[0]

    async def is_alive(
        self, *, url: URLArg | None = None, timeout: TimeoutTypes | Unset = UNSET
    ) -> bool:
        """Whether the server answers; see :meth:`Client.is_alive <graphpipe_client.Client.is_alive>`."""
        return (await self._probe("alive", url, timeout))[0]

    async def wait_until_ready(
        self, timeout: float = 30.0, *, url: URLArg | None = None, interval: float = 0.1
    ) -> None:
        """Wait until the server is ready; see :meth:`Client.wait_until_ready <graphpipe_client.Client.wait_until_ready>`.

        Raises:
            TimeoutError: not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        delay = max(0.01, interval)
        while True:
            left = deadline - time.monotonic()
            t = self._config.timeout
            probe_timeout = Timeout(
                connect=max(0.01, min(left, t.connect if t.connect is not None else left)),
                read=max(0.01, min(left, t.read if t.read is not None else left)),
            )
            ready, why = await self._probe("ready", url, probe_timeout)
            if ready:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                where = self._where(self._resolve(url))
                raise GPTimeoutError(
                    f"{where} was not ready within {timeout:g} s; the last probe got: {why}",
                    url=where,
                )
            await self._transport.sleep(min(delay, left))
            delay = min(1.0, delay * 1.5)

    async def _probe(
        self, which: str, url: URLArg | None, timeout: TimeoutTypes | Unset
    ) -> tuple[bool, str]:
        rs = self._replica_sets.get(self._resolve(url))
        if rs is not None:
            return await probe_all_async(self, rs, which, timeout)
        key, control, metadata = self._probe_request(which, url, timeout)
        try:
            if control is not None:
                answer = self._control_answer(key, await self._transport.send(control))
                if answer is not None:
                    return answer
            return self._metadata_answer(which, metadata, await self._transport.send(metadata))
        except GraphPipeError as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def _infer(self, call: InferCall | Member) -> list[np.ndarray]:
        """Send a request and interpret its answer; through the row cache, as it directs."""
        if isinstance(call, PreparedRequest):
            outputs = interpret_infer(call, await self._send(call))
            count_rows(outputs)
            return outputs
        if isinstance(call, Member):
            assert self._coalescer is not None
            return await self._coalescer.run(call)
        while call.req is not None:
            outputs = interpret_infer(call.req, await self._send(call.req))
            count_rows(outputs)  # the rows the server scored: those not cached
            call.feed(outputs)
        return call.result

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

    async def _attempts(self, req: PreparedRequest, first: Attempt | None = None) -> RawResponse:
        """Send ``req`` until an answer or a final error, as its retry rules say; ``first``:
        its first attempt, made already (by the fast path)."""
        if req.replicas is not None:
            return await replica_attempts_async(self, req, req.replicas)
        state = RetryState(self._config, req)
        while True:
            try:
                if first is None:
                    raw = await ametered(self._transport.send, req, state.deadline)
                else:
                    taken, first = first, None
                    raw = taken.outcome()
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
        if self._replica_sets:
            await cancel_probes(self)
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
