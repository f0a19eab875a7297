"""OpenTelemetry metrics of both clients, when the optional extra is installed and a
MeterProvider is set.

``pip install graphpipe-client[otel]`` installs ``opentelemetry-api``. With it,
and a meter provider set by the application (the SDK and a reader or
exporter), both clients record, on a meter named ``graphpipe_client``:

The stable HTTP client instruments of the OpenTelemetry semantic conventions,
one measurement per HTTP request of an ``execute``/``execute_multi``/``metadata``
call (each attempt: a retry and a hedge are requests of their own; the
readiness probes are not counted), with the attributes ``http.request.method``,
``server.address``, ``server.port`` (of the replica the request went to),
``http.response.status_code`` (when there was a response) and ``error.type``
(the status of a 4xx/5xx answer, the exception's class name, or
``cancelled`` for a request the client gave up on: the loser of a hedge, a
cancelled task):

- ``http.client.request.duration`` (histogram, ``s``);
- ``http.client.request.body.size`` and ``http.client.response.body.size``
  (histograms, ``By``);
- ``http.client.active_requests`` (up-down counter, ``{request}``: calls in flight,
  without the status and error attributes).

GraphPipe's own:

- ``graphpipe.client.rows`` (counter, ``{row}``): rows scored, the first
  dimension of the first output of each answered inference call;
- ``graphpipe.client.replica.ejections`` (counter, ``{ejection}``): replicas
  taken out of rotation, with ``server.address`` and ``server.port``;
- ``graphpipe.client.hedges`` (counter, ``{request}``): hedges sent, with
  ``graphpipe.hedge.won`` (``False`` when sent; one more with ``True`` when it
  answered first);
- ``graphpipe.client.coalesced.rows`` (histogram, ``{row}``): the rows of each
  request a coalescer (``Coalesce``) sends.

And ``http.client.open_connections`` (observable up-down counter,
``{connection}``), by ``server.address``, ``server.port`` and
``http.connection.state`` (``idle``, ``active``), read from the pools when the
reader collects: ``Client``'s (urllib3's, up to ``pool_size`` per host) and
``AsyncClient``'s fast path; not httpx's (a proxied request, or trio).

Without the extra, or with it but no meter provider set (the API's default
proxy provider), nothing is done: one check per call, no instrument.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence, Sized
from types import ModuleType
from typing import Any, Protocol, TypeVar

__all__ = [
    "CallMetrics",
    "ametered",
    "count_coalesced",
    "count_ejection",
    "count_hedge",
    "count_rows",
    "metered",
    "metrics_on",
    "start_metrics",
    "watch_pools",
]


class _Endpoint(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class _Body(Protocol):
    @property
    def nbytes(self) -> int: ...


class MeteredRequest(Protocol):
    """What the metrics read of a request (the HTTP layer's ``PreparedRequest``)."""

    @property
    def endpoint(self) -> _Endpoint: ...
    @property
    def method(self) -> str: ...
    @property
    def body(self) -> _Body: ...


class Pools(Protocol):
    """A transport's connection pools, as ``http.client.open_connections`` reads them."""

    def connection_counts(self) -> Iterable[tuple[str, int, str, int]]:
        """``(host, port, state, count)``: state ``idle`` or ``active``."""
        ...


_pools: weakref.WeakSet[Pools] = weakref.WeakSet()


def watch_pools(pools: Pools) -> None:
    """Count ``pools``' connections in ``http.client.open_connections`` (for its life)."""
    _pools.add(pools)


def _observe_connections(options: Any) -> Iterable[Any]:
    """The callback of ``http.client.open_connections``: every watched pool, by host and state."""
    metrics = _module()
    if metrics is None:
        return []
    totals: dict[tuple[str, int, str], int] = {}
    for pools in list(_pools):
        try:
            counts = list(pools.connection_counts())
        except Exception:  # a pool changing under the reader: skip it this time
            continue
        for host, port, state, n in counts:
            key = (host, port, state)
            totals[key] = totals.get(key, 0) + n
    return [
        metrics.Observation(
            n, {"server.address": h, "server.port": p, "http.connection.state": state}
        )
        for (h, p, state), n in totals.items()
    ]


class MeteredResponse(Protocol):
    """What the metrics read of a response."""

    @property
    def status(self) -> int: ...
    @property
    def body(self) -> Sized: ...


#: The buckets of ``http.client.request.duration`` the semantic conventions advise, seconds.
DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

_otel: ModuleType | bool | None = False  # False: not looked for yet


def _module() -> ModuleType | None:
    global _otel
    if _otel is False:
        try:  # the optional extra; looked up by name so that type checks need not have it
            _otel = importlib.import_module("opentelemetry.metrics")
        except ImportError:
            _otel = None
    return _otel  # type: ignore[return-value]


class _Instruments:
    def __init__(self, meter: Any) -> None:
        duration = {
            "name": "http.client.request.duration",
            "unit": "s",
            "description": "Duration of HTTP client requests.",
        }
        try:  # the semantic conventions' buckets (an advice of opentelemetry-api 1.23+)
            self.duration = meter.create_histogram(
                **duration, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
            )
        except TypeError:
            self.duration = meter.create_histogram(**duration)
        self.request_size = meter.create_histogram(
            "http.client.request.body.size", unit="By", description="Size of HTTP request bodies."
        )
        self.response_size = meter.create_histogram(
            "http.client.response.body.size",
            unit="By",
            description="Size of HTTP response bodies.",
        )
        self.active = meter.create_up_down_counter(
            "http.client.active_requests",
            unit="{request}",
            description="Number of active HTTP requests.",
        )
        self.connections = meter.create_observable_up_down_counter(
            "http.client.open_connections",
            callbacks=[_observe_connections],
            unit="{connection}",
            description="Number of outbound HTTP connections that are active or idle.",
        )
        self.rows = meter.create_counter(
            "graphpipe.client.rows", unit="{row}", description="Rows scored by inference calls."
        )
        self.ejections = meter.create_counter(
            "graphpipe.client.replica.ejections",
            unit="{ejection}",
            description="Replicas taken out of rotation.",
        )
        self.coalesced = meter.create_histogram(
            "graphpipe.client.coalesced.rows",
            unit="{row}",
            description="Rows of each request sent by a coalescer (Coalesce).",
        )
        self.hedges = meter.create_counter(
            "graphpipe.client.hedges",
            unit="{request}",
            description="Hedged requests sent (graphpipe.hedge.won=false) and won (true).",
        )


_cache: tuple[Any, _Instruments] | None = None
_cache_lock = threading.Lock()
_off: object = None  # the last provider seen that records nothing (the API's proxy)


def _instruments() -> _Instruments | None:
    """The instruments of the current meter provider, or ``None`` when metrics are off."""
    metrics = _module() if _otel is False or _otel is True else _otel
    if metrics is None:
        return None
    provider = metrics.get_meter_provider()
    if provider is _off:
        return None  # the common case: one identity check
    cache = _cache
    if cache is not None and cache[0] is provider:
        return cache[1]
    return _instruments_of(metrics, provider)


def _instruments_of(metrics: ModuleType, provider: Any) -> _Instruments | None:
    global _cache, _off
    if isinstance(provider, metrics.NoOpMeterProvider) or type(provider).__name__ == (
        "_ProxyMeterProvider"
    ):
        _off = provider
        return None  # nothing would record
    from .._version import __version__

    with _cache_lock:
        inst = _Instruments(provider.get_meter("graphpipe_client", __version__))
        _cache = (provider, inst)
    return inst


#: ``error.type`` of exceptions that are not errors of the request.
_ERRORS = {"CancelledError": "cancelled", "KeyboardInterrupt": "cancelled"}


class CallMetrics:
    """The measurements of one HTTP request: started by :func:`start_metrics`, ended once."""

    __slots__ = ("_attrs", "_inst", "_started")

    def __init__(self, inst: _Instruments, req: MeteredRequest) -> None:
        self._inst = inst
        ep = req.endpoint
        self._attrs: dict[str, Any] = {
            "http.request.method": req.method,
            "server.address": ep.host,
            "server.port": ep.port,
        }
        inst.active.add(1, self._attrs)
        inst.request_size.record(req.body.nbytes, self._attrs)
        self._started = time.perf_counter()

    def succeeded(self, raw: MeteredResponse) -> None:
        """End the call with its response."""
        attrs = {**self._attrs, "http.response.status_code": raw.status}
        if raw.status >= 400:
            attrs["error.type"] = str(raw.status)
        self._end(attrs)
        self._inst.response_size.record(len(raw.body), attrs)

    def failed(self, exc: BaseException, cancelled: bool = False) -> None:
        """End the request as failed by ``exc``; ``cancelled``: the client gave up on it
        (the loser of a hedged call), as for a cancelled task."""
        kind = type(exc).__name__
        self._end(
            {**self._attrs, "error.type": "cancelled" if cancelled else _ERRORS.get(kind, kind)}
        )

    def _end(self, attrs: dict[str, Any]) -> None:
        self._inst.duration.record(time.perf_counter() - self._started, attrs)
        self._inst.active.add(-1, self._attrs)


def metrics_on() -> bool:
    """Whether a request would be measured (the ``[otel]`` extra and a recording meter provider).

    As :func:`.tracing.tracing_on`: OpenTelemetry's global is tested first, and
    the environment variable naming a provider read once per process, instead
    of ``get_meter_provider()``'s look-up of the environment on every call.
    """
    metrics = _module() if _otel is False or _otel is True else _otel
    if metrics is None:
        return False
    if getattr(_internal(), "_METER_PROVIDER", False) is None and not _provider_named():
        return False
    return _instruments() is not None


@functools.cache
def _internal() -> ModuleType | None:
    """The module holding OpenTelemetry's global meter provider (``None``: moved)."""
    try:
        return importlib.import_module("opentelemetry.metrics._internal")
    except ImportError:
        return None


@functools.cache
def _provider_named() -> bool:
    """Whether the environment names a meter provider (read once per process)."""
    return "OTEL_PYTHON_METER_PROVIDER" in os.environ


def start_metrics(req: MeteredRequest) -> CallMetrics | None:
    """Start measuring a request, or ``None`` when metrics are off (the common case)."""
    inst = _instruments()
    return None if inst is None else CallMetrics(inst, req)


RawT = TypeVar("RawT", bound=MeteredResponse)
ReqT = TypeVar("ReqT", bound=MeteredRequest)


class _Switch(Protocol):
    @property
    def abandoned(self) -> bool: ...


def metered(
    send: Callable[..., RawT], req: ReqT, *args: Any, abandon: _Switch | None = None
) -> RawT:
    """``send(req, *args)`` (a transport's, one HTTP request), measured when metrics are on.

    ``abandon``: the attempt's abandon switch (a hedged call's): a failure after
    it was flipped is recorded as ``cancelled``.
    """
    m = start_metrics(req)
    if m is None:
        return send(req, *args) if abandon is None else send(req, *args, abandon)
    try:
        raw = send(req, *args) if abandon is None else send(req, *args, abandon)
    except BaseException as exc:
        m.failed(exc, cancelled=abandon is not None and abandon.abandoned)
        raise
    m.succeeded(raw)
    return raw


async def ametered(send: Callable[..., Awaitable[RawT]], req: ReqT, *args: Any) -> RawT:
    """The async :func:`metered` (a cancelled request is recorded as ``cancelled``)."""
    m = start_metrics(req)
    if m is None:
        return await send(req, *args)
    try:
        raw = await send(req, *args)
    except BaseException as exc:
        m.failed(exc)
        raise
    m.succeeded(raw)
    return raw


def count_rows(outputs: Sequence[Any]) -> None:
    """Count the rows of an answered inference call (the first output's first dimension)."""
    if _cache is None:
        return  # no provider ever recorded: the call's own check said so already
    inst = _instruments()
    if inst is None or not outputs:
        return
    shape = getattr(outputs[0], "shape", ())
    if shape:
        inst.rows.add(int(shape[0]))


def count_ejection(req: MeteredRequest) -> None:
    """Count a replica taken out of rotation."""
    inst = _instruments()
    if inst is not None:
        ep = req.endpoint
        inst.ejections.add(1, {"server.address": ep.host, "server.port": ep.port})


def count_coalesced(rows: int) -> None:
    """Record the rows of one request a coalescer sends (before it goes: one provider check)."""
    inst = _instruments()
    if inst is not None:
        inst.coalesced.record(rows)


def count_hedge(won: bool) -> None:
    """Count a hedge sent (``won=False``) or one that answered first (``won=True``)."""
    inst = _instruments()
    if inst is not None:
        inst.hedges.add(1, {"graphpipe.hedge.won": won})
