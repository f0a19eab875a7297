"""``Client``: the sync GraphPipe client on urllib3."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
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
from ._jobs.options import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, check_run_options
from ._observe.metrics import count_rows, metered
from ._observe.tracing import start_span
from ._wire.messages import ModelMetadata

if TYPE_CHECKING:
    from ._http.small_calls import Attempt, SmallCall
    from ._jobs.coalesce_threads import ThreadCoalescer
    from ._jobs.plan import OnError
    from ._jobs.progress import ProgressArg
    from ._jobs.row_cache import InferCall
    from ._transports.sync import SyncTransport

__all__ = ["Client"]


class Client(ClientBase["SyncTransport"]):
    """A thread-safe GraphPipe client with a keep-alive connection pool per host.

    Bind it to one model (``Client("http://host:9000")``) or pass ``url=`` to
    each call. Share one client between threads; close it (or use ``with``)
    when done: a client collected unclosed gives a ``ResourceWarning``, as an
    unclosed file does.

    Args:
        url: the model URL, e.g. ``http://127.0.0.1:9000``. User-info in the
            URL (``http://user:pass@host``) is sent as HTTP Basic auth and
            never shown in messages.
            A list of URLs is the replicas of one model: each call goes to
            the one with the fewest requests in flight, weighted by how fast
            each has been answering (``balance=``), one that refuses
            connections or answers 503 is taken out of rotation until
            ``is_ready`` says it is back (see ``docs/replicas.md`` and
            :attr:`replicas`).
        timeout: seconds, a ``(connect, read)`` tuple, a :class:`Timeout`
            (which also takes ``total=``, a deadline for the whole call), or
            ``None`` to wait forever. Default: 5 s to connect, 60 s per read,
            no total.
        retries: how many times a call is retried when the request never
            reached the server (connection refused, connect timeout) or the
            server answered 503; an ``int``, a :class:`RetryPolicy`, or
            ``0``/``None`` for none. Default: 2, exponential backoff with jitter,
            ``Retry-After`` honoured up to 30 s.
        headers: extra HTTP headers for every request (e.g. ``Authorization``).
        verify: TLS verification: ``True`` (system CAs), a CA bundle path, an
            ``ssl.SSLContext``, or ``False`` (not recommended).
        cert: a client certificate for mTLS: a PEM path holding cert and key,
            or a ``(cert, key)`` pair of paths.
        max_response_bytes: refuse larger responses before allocating
            (default 2 GiB - 1, FlatBuffers' own limit); ``None`` for no limit.
        pool_size: connections kept alive per host.
        idempotent: ``True`` declares that the model may safely run twice on
            the same input: a call whose connection broke after the request was
            sent is then retried too (within ``retries``). Default ``False``:
            a request the server may have run is never sent again.
        proxy: a proxy for every request, e.g. ``http://user:pass@proxy:3128``
            (``http://`` URLs are forwarded, ``https://`` ones tunnelled with
            ``CONNECT``). Default: from the environment.
        trust_env: honour ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and
            ``NO_PROXY`` (read when the client is created) when ``proxy`` is
            not given. Default ``True``, as in requests and httpx.
        cache: a :class:`RowCache`: each call's input rows are looked up
            first and only the missing rows are sent (``docs/cache.md``).
            Default ``None``: no cache.
        keepalive_expiry: seconds an idle pooled connection may wait before
            it is closed instead of reused (default 4, below common servers'
            idle timeouts; a server's ``Keep-Alive: timeout=`` lowers it);
            ``0`` opens a connection per call, ``None`` sets no limit. A peer
            seen closing connections right after their responses gets fresh
            ones (``docs/errors.md``, "Retries").
        coalesce: a :class:`Coalesce`: concurrent ``execute``,
            ``execute_named`` and ``execute_multi`` calls from threads sharing
            this client are merged into one request of up to ``max_rows``
            rows, sent when full or after ``max_wait`` (a call that finds the
            model idle goes at once: ``docs/coalescing.md``).
            Default ``None``: each call is its own request.
        eject_backoff: how long a replica stays out of rotation after it
            refused a connection or answered 503: ``(first, longest)`` seconds,
            doubled for each consecutive failure up to ``longest`` (with
            jitter), or one number for a back-off that does not grow. Default
            ``(0.5, 30.0)``.
        hedge: a :class:`Hedge`: a call still unanswered after its delay is
            sent to a second replica, the first answer wins (needs
            ``idempotent=True`` and at least 2 replicas; ``docs/replicas.md``).
            Default ``None``: no hedging.
        balance: how a call picks among replicas in rotation: ``"latency"``
            (default: fewest requests in flight weighted by each replica's
            recent latency, so a replica several times slower than the others
            gets calls only when they are busy or to see whether it recovered)
            or ``"in-flight"`` (fewest in flight alone; ``docs/replicas.md``).

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import Client
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x * 2) as server, Client(server.url) as client:
        ...     client.execute(np.arange(3, dtype=np.float32))
        array([0., 2., 4.], dtype=float32)
    """

    _coalescer: ThreadCoalescer | None

    def _create_transport(self) -> SyncTransport:
        # urllib3 (and http.client, email) load with the first Client, not with the package.
        from ._transports.sync import SyncTransport

        return SyncTransport(self._config)

    def _create_coalescer(self, options: Coalesce) -> ThreadCoalescer:
        from ._jobs.coalesce_threads import ThreadCoalescer  # loaded with the first Coalesce

        def send(batch: Batch) -> list[np.ndarray]:
            return self._infer(self._batch_call(batch))

        return ThreadCoalescer(options, send, self._config.idempotent)

    def execute(
        self,
        inp: Any,
        input_name: str | None = None,
        output_name: str | None = None,
        *,
        config: str | bytes | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> np.ndarray | list[np.ndarray]:
        """Run the model on one input.

        Returns the output array, or the list of arrays when the model returns
        several. Outputs are writable numpy arrays that are views into the
        response buffer (no copy).

        Raises:
            EncodeError: ``inp`` cannot be sent (e.g. a ``bool`` array).
            HTTPStatusError: the server answered non-200 (a model error is 400
                with the server's text).
            RemoteError: the server reported ``errors`` in its response.
            TransportError, ConnectError, TimeoutError: the exchange failed.
            DecodeError: the response is malformed.
        """
        call = self._small_execute(inp, input_name, output_name, config, url, timeout)
        if call is not None:
            outputs = self._send_small(call, inp)
            if outputs is not None:
                return outputs[0] if len(outputs) == 1 else outputs
        req = self._prepare_execute(inp, input_name, output_name, config, url, timeout)
        return shape_outputs(self._infer(req))

    def _send_small(self, call: SmallCall, *arrays: np.ndarray) -> list[np.ndarray] | None:
        """A repeated small call on the fast path; ``None``: nothing sent, take the general path."""
        views = self._small_views(arrays)
        if views is None:
            return None
        got = self._transport.send_small(call, views)
        if isinstance(got, tuple):
            return self._small_outputs(call, *got)
        if got is None:
            return None
        outputs = interpret_infer(got.req, self._attempts(got.req, got))
        count_rows(outputs)
        return outputs

    def execute_multi(
        self,
        inputs: Sequence[Any],
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        *,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> list[np.ndarray]:
        """Run the model on several inputs; return the list of outputs.

        ``input_names`` (one per input; ``None`` or ``""`` for the server's
        default) and ``output_names`` (which outputs, in which order; default:
        the model's default outputs) are optional. ``config`` is an opaque
        string handed to the model.
        """
        req = self._prepare_execute_multi(inputs, input_names, output_names, config, url, timeout)
        return self._infer(req)

    def execute_named(
        self,
        inputs: Any,
        output_names: Sequence[str] | None = None,
        *,
        config: str | bytes | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> dict[str, np.ndarray]:
        """Run the model; return every output under its name: ``{name: array}``.

        ``inputs`` is a mapping ``{input name: array}``, a list of arrays (in
        the model's input order) or one array. The result's keys are
        ``output_names`` when given (those outputs, in that order), else the
        model's output names from its metadata (cached per client: one
        metadata call for the first use). Unlike :meth:`execute`, the result
        has the same form whatever the number of outputs.

        Example:
            >>> import numpy as np
            >>> from graphpipe_client import Client
            >>> from graphpipe_client.testing import serve
            >>> with serve(lambda a, b: a + b) as server, Client(server.url) as client:
            ...     client.execute_named({"input0": np.ones(2), "input1": np.ones(2)})
            {'output0': array([2., 2.])}
        """
        small = self._small_named(inputs, output_names, config, url, timeout)
        if small is not None:
            outputs = self._send_small(small[0], *small[1])
            if outputs is not None:
                meta = None if output_names is not None else self.metadata()
                return outputs_by_name(output_names, meta, outputs)
        req = self._prepare_named(inputs, output_names, config, url, timeout)
        meta = None if output_names is not None else self.metadata(url=url, timeout=timeout)
        return outputs_by_name(output_names, meta, self._infer(req))

    def metadata(
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
        return self._store_metadata(key, interpret_metadata(req, self._send(req)))

    def execute_batched(
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
        """Run the model on a whole dataset, ``batch_size`` rows per request.

        Every input is split along its first axis; at most ``concurrency``
        requests are in flight at once, on threads sharing this client's
        connection pool (keep ``concurrency`` <= ``pool_size``). Each batch's
        outputs are copied into arrays allocated when the first batch comes
        back (that is when their dtypes and row shapes are known), so the
        extra memory is about ``concurrency`` batches plus the outputs. Rows
        of a read-only memory map (``np.load(path, mmap_mode="r")``) are read
        as they are sent and given back to the kernel afterwards: a file
        larger than memory can be scored.

        Args:
            inputs: one input (an array, or anything numpy accepts that is not
                a list, tuple or mapping), a list/tuple of inputs, or a mapping
                ``{name: array}`` (as :meth:`execute` takes it); every input
                with the same number of rows.
            batch_size: rows per request.
            concurrency: requests in flight at once.
            input_names: as for :meth:`execute_multi`.
            output_names: as for :meth:`execute_multi`.
            config: as for :meth:`execute_multi`.
            progress: ``True`` for a tqdm bar (``pip install
                'graphpipe-client[progress]'``), or a callable
                ``progress(rows_done, rows_total)`` called after each batch.
            on_error: by default the first failed batch stops the run and
                raises :class:`BatchError`. Given a callable, each
                :class:`BatchError` is passed to it instead and the run goes on
                (the failed rows stay zero, ``None`` for strings); raise from it
                to stop.

        Returns:
            Like :meth:`execute` for one input or a mapping (the array, or the
            list of arrays when the model has several outputs), like
            :meth:`execute_multi` for a list/tuple of inputs (a list). With 0
            rows, one request of 0 rows is sent and its outputs are returned.

        Raises:
            EncodeError: before anything is sent: the inputs disagree on their
                number of rows (the message names the input), or cannot be sent.
            BatchError: a batch failed; ``.start``/``.stop`` are its rows,
                ``.error`` (and ``__cause__``) the typed error. The batches in
                flight are waited for first; the client stays usable.
            KeyboardInterrupt: re-raised at once; requests already on the wire
                finish in the background.

        Example:
            >>> import numpy as np
            >>> from graphpipe_client import Client
            >>> from graphpipe_client.testing import serve
            >>> x = np.arange(10, dtype=np.float32).reshape(5, 2)
            >>> with serve(lambda x: x.sum(axis=1)) as server, Client(server.url) as client:
            ...     client.execute_batched(x, batch_size=2)
            array([ 1.,  5.,  9., 13., 17.], dtype=float32)
        """
        plan, prepare = self._plan_batched(
            inputs, batch_size, concurrency, input_names, output_names, config, url, timeout
        )

        def call(arrays: list[np.ndarray]) -> list[np.ndarray]:
            req = prepare(arrays)
            return self._infer(req)

        reporter = self._reporter(progress, plan.rows)
        from ._jobs.drivers import run_threads  # loaded with the first batched run

        outputs = run_threads(plan, call, concurrency, reporter, on_error)
        return shape_outputs(outputs) if plan.single else outputs

    def execute_stream(
        self,
        batches: Iterable[Any],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        progress: ProgressArg = None,
        on_error: OnError | None = None,
        url: URLArg | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> Iterator[np.ndarray | list[np.ndarray]]:
        """Run the model on each batch of an iterable (a generator); yield the results in order.

        Each item is one request: an array (its result is shaped as
        :meth:`execute`'s) or a list/tuple of arrays (a list, as
        :meth:`execute_multi`'s). At most ``concurrency`` batches are held at
        once, sent or waiting to be yielded: the iterable is read only as
        fast as results are consumed. ``progress`` counts rows (the total is
        unknown). A failed batch raises :class:`BatchError` (rows counted
        from the start of the stream, ``.index`` the item's position); with
        ``on_error`` it is reported and skipped, and nothing is yielded for
        it. Leaving the loop early stops the run: nothing more is sent (the
        batches already on the wire finish in the background).

        Example:
            >>> import numpy as np
            >>> from graphpipe_client import Client
            >>> from graphpipe_client.testing import serve
            >>> chunks = (np.full(2, i) for i in range(3))
            >>> with serve(lambda x: x * 10) as server, Client(server.url) as client:
            ...     list(client.execute_stream(chunks, concurrency=2))
            [array([0, 0]), array([10, 10]), array([20, 20])]
        """
        self._check_open()
        check_run_options(1, concurrency)
        prepare = self._batch_request(input_names, output_names, config, url, timeout)

        def call(arrays: list[np.ndarray]) -> list[np.ndarray]:
            req = prepare(arrays)
            return self._infer(req)

        reporter = self._stream_reporter(progress)
        from ._jobs.drivers import stream_threads

        return stream_threads(batches, call, concurrency, reporter, on_error, input_names)

    def is_ready(self, *, url: URLArg | None = None, timeout: TimeoutTypes | Unset = UNSET) -> bool:
        """Whether the server is ready to serve: ``GET /control/is_ready`` answers 200.

        Never raises for the server's sake: a refused connection, a timeout or
        a 503 are ``False``. A server without the route (404, 405) is asked
        for its metadata instead (ready if that works), and remembered as such.

        Example:
            >>> from graphpipe_client import Client
            >>> from graphpipe_client.testing import serve
            >>> with serve(lambda x: x) as server, Client(server.url) as client:
            ...     client.is_ready(), client.is_alive()
            (True, True)
        """
        return self._probe("ready", url, timeout)[0]

    def is_alive(self, *, url: URLArg | None = None, timeout: TimeoutTypes | Unset = UNSET) -> bool:
        """Whether the server process answers: ``GET /control/is_alive`` answers 200.

        Without the route, any HTTP answer to a metadata request means alive.
        Never raises for the server's sake (see :meth:`is_ready`).
        """
        return self._probe("alive", url, timeout)[0]

    def wait_until_ready(
        self, timeout: float = 30.0, *, url: URLArg | None = None, interval: float = 0.1
    ) -> None:
        """Wait until :meth:`is_ready` is true, probing every ``interval`` s or so (backing off to 1 s).

        Raises:
            TimeoutError: not ready within ``timeout`` seconds; the message
                says what the last probe got.
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
            ready, why = self._probe("ready", url, probe_timeout)
            if ready:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                where = self._where(self._resolve(url))
                raise GPTimeoutError(
                    f"{where} was not ready within {timeout:g} s; the last probe got: {why}",
                    url=where,
                )
            time.sleep(min(delay, left))
            delay = min(1.0, delay * 1.5)

    def _probe(
        self, which: str, url: URLArg | None, timeout: TimeoutTypes | Unset
    ) -> tuple[bool, str]:
        rs = self._replica_sets.get(self._resolve(url))
        if rs is not None:
            from ._replicas.attempts import probe_all_sync  # loaded with the first replicas

            return probe_all_sync(self, rs, which, timeout)
        key, control, metadata = self._probe_request(which, url, timeout)
        try:
            if control is not None:
                answer = self._control_answer(key, self._transport.send(control))
                if answer is not None:
                    return answer
            return self._metadata_answer(which, metadata, self._transport.send(metadata))
        except GraphPipeError as exc:
            return False, f"{type(exc).__name__}: {exc}"

    def _infer(self, call: InferCall | Member) -> list[np.ndarray]:
        """Send a request and interpret its answer; through the row cache, as it directs."""
        if isinstance(call, PreparedRequest):
            outputs = interpret_infer(call, self._send(call))
            count_rows(outputs)
            return outputs
        if isinstance(call, Member):
            assert self._coalescer is not None
            return self._coalescer.run(call)
        while call.req is not None:
            outputs = interpret_infer(call.req, self._send(call.req))
            count_rows(outputs)  # the rows the server scored: those not cached
            call.feed(outputs)
        return call.result

    def _send(self, req: PreparedRequest) -> RawResponse:
        span = start_span(req, req.tensor_count)
        if span is None:
            return self._attempts(req)
        try:
            raw = self._attempts(span.req)
        except BaseException as exc:
            span.failed(exc)
            raise
        span.succeeded(raw)
        return raw

    def _attempts(self, req: PreparedRequest, first: Attempt | None = None) -> RawResponse:
        """Send ``req`` until an answer or a final error, as its retry rules say; ``first``:
        its first attempt, made already (by the fast path)."""
        if req.replicas is not None:
            from ._replicas.attempts import replica_attempts

            return replica_attempts(self, req, req.replicas)
        state = RetryState(self._config, req)
        while True:
            try:
                if first is None:
                    raw = metered(self._transport.send, req, state.deadline)
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
            time.sleep(delay)

    def close(self) -> None:
        """Close every pooled connection. The client cannot be used afterwards."""
        self._closed = True
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
