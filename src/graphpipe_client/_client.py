"""``Client``: the sync GraphPipe client on urllib3."""

from __future__ import annotations

import time
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
from ._transport_sync import SyncTransport

__all__ = ["Client"]


class Client(ClientBase[SyncTransport]):
    """A thread-safe GraphPipe client with a keep-alive connection pool per host.

    Bind it to one model (``Client("http://host:9000")``) or pass ``url=`` to
    each call. Share one client between threads; close it (or use ``with``)
    when done: a client collected unclosed gives a ``ResourceWarning``, as an
    unclosed file does.

    Args:
        url: the model URL, e.g. ``http://127.0.0.1:9000``. User-info in the
            URL (``http://user:pass@host``) is sent as HTTP Basic auth and
            never shown in messages.
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

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import Client
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x * 2) as server, Client(server.url) as client:
        ...     client.execute(np.arange(3, dtype=np.float32))
        array([0., 2., 4.], dtype=float32)
    """

    def _create_transport(self) -> SyncTransport:
        return SyncTransport(self._config)

    def execute(
        self,
        inp: Any,
        input_name: str | None = None,
        output_name: str | None = None,
        *,
        config: str | bytes | None = None,
        url: str | None = None,
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
        req = self._prepare_execute(inp, input_name, output_name, config, url, timeout)
        return shape_outputs(interpret_infer(req, self._send(req)))

    def execute_multi(
        self,
        inputs: Sequence[Any],
        input_names: Sequence[str | None] | None = None,
        output_names: Sequence[str] | None = None,
        config: str | bytes | None = None,
        *,
        url: str | None = None,
        timeout: TimeoutTypes | Unset = UNSET,
    ) -> list[np.ndarray]:
        """Run the model on several inputs; return the list of outputs.

        ``input_names`` (one per input; ``None`` or ``""`` for the server's
        default) and ``output_names`` (which outputs, in which order; default:
        the model's default outputs) are optional. ``config`` is an opaque
        string handed to the model.
        """
        req = self._prepare_execute_multi(inputs, input_names, output_names, config, url, timeout)
        return interpret_infer(req, self._send(req))

    def execute_named(
        self,
        inputs: Any,
        output_names: Sequence[str] | None = None,
        *,
        config: str | bytes | None = None,
        url: str | None = None,
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
        req = self._prepare_named(inputs, output_names, config, url, timeout)
        meta = None if output_names is not None else self.metadata(url=url, timeout=timeout)
        return outputs_by_name(output_names, meta, interpret_infer(req, self._send(req)))

    def metadata(
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
        return self._store_metadata(key, interpret_metadata(req, self._send(req)))

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

    def _attempts(self, req: PreparedRequest) -> RawResponse:
        state = RetryState(self._config, req)
        while True:
            try:
                raw = self._transport.send(req, state.deadline)
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
