"""OpenTelemetry spans for execute and metadata calls, when the optional extra is installed.

``pip install graphpipe-client[otel]`` installs ``opentelemetry-api``. With it,
and a tracer provider set by the application (the SDK, an exporter), every
``execute``/``execute_multi``/``metadata`` call of both clients is one span of
kind CLIENT, named ``graphpipe infer`` or ``graphpipe metadata``, covering the
whole call (retries included), with these attributes:

- ``http.request.method``, ``url.full`` (credentials redacted),
  ``server.address``, ``server.port``;
- ``graphpipe.call`` (``infer`` or ``metadata``) and ``graphpipe.tensor_count``
  (the request's input tensors);
- ``http.request.body.size``, ``http.response.body.size``,
  ``http.response.status_code``;
- on failure, the status ERROR and the exception as an event, with
  ``error.type``.

The W3C ``traceparent`` (and ``tracestate``) header is injected into the
request with the globally configured propagator, so a traced model server
continues the trace.

Without the extra, or with it but no tracer provider set (the API's default
proxy provider), nothing is done: one check per call, no span object.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sized
from dataclasses import replace
from types import ModuleType
from typing import Any, Generic, Protocol, TypeVar

from .log import Request

__all__ = ["CallSpan", "start_span"]


class _Endpoint(Protocol):
    @property
    def redacted(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class TracedRequest(Request, Protocol):
    """What a span reads of a request (the HTTP layer's ``PreparedRequest``, a dataclass)."""

    @property
    def endpoint(self) -> _Endpoint: ...
    @property
    def kind(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class TracedResponse(Protocol):
    """What a span reads of a response."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> Sized: ...


RequestT = TypeVar("RequestT", bound=TracedRequest)

_otel: tuple[ModuleType, ModuleType] | bool | None = False  # False: not looked for yet


def _modules() -> tuple[ModuleType, ModuleType] | None:
    global _otel
    if _otel is False:
        try:  # the optional extra; looked up by name so that type checks need not have it
            trace = importlib.import_module("opentelemetry.trace")
            propagate = importlib.import_module("opentelemetry.propagate")
        except ImportError:
            _otel = None
        else:
            _otel = (trace, propagate)
    return _otel  # type: ignore[return-value]


class CallSpan(Generic[RequestT]):
    """The span of one call: :attr:`req` carries the trace headers; end it once."""

    __slots__ = ("_span", "_trace", "req")

    def __init__(self, trace: ModuleType, span: Any, req: RequestT) -> None:
        self._trace = trace
        self._span = span
        self.req = req

    def succeeded(self, raw: TracedResponse) -> None:
        """End the span with the response's status and size."""
        span = self._span
        span.set_attribute("http.response.status_code", raw.status)
        span.set_attribute("http.response.body.size", len(raw.body))
        if raw.status >= 400:
            span.set_attribute("error.type", str(raw.status))
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        self._end()

    def failed(self, exc: BaseException) -> None:
        """End the span as failed by ``exc``."""
        span = self._span
        span.set_attribute("error.type", type(exc).__name__)
        span.record_exception(exc)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)[:200]))
        self._end()

    def _end(self) -> None:
        self._span.end()


def start_span(req: RequestT, tensor_count: int) -> CallSpan[RequestT] | None:
    """Start the span of a call, or ``None`` when tracing is off (the common case)."""
    modules = _modules()
    if modules is None:
        return None
    trace, propagate = modules
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None  # nothing would record: no span, no header
    from .._version import __version__

    ep = req.endpoint
    tracer = provider.get_tracer("graphpipe_client", __version__)
    span = tracer.start_span(
        f"graphpipe {req.kind}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": req.method,
            "url.full": ep.redacted,
            "server.address": ep.host,
            "server.port": ep.port,
            "graphpipe.call": req.kind,
            "graphpipe.tensor_count": tensor_count,
            "http.request.body.size": req.body.nbytes,
        },
    )
    headers = dict(req.headers)
    length = headers.pop("Content-Length")
    propagate.inject(headers, context=trace.set_span_in_context(span))  # traceparent
    headers["Content-Length"] = length  # stays last
    return CallSpan(trace, span, replace(req, headers=headers))  # type: ignore[type-var]
