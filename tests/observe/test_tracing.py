"""OpenTelemetry: a span per execute and metadata call, and ``traceparent`` in the request.

With the SDK's in-memory exporter; skipped where ``opentelemetry-sdk`` is not
installed (it is in the test dependency group).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import codec
from graphpipe_client._observe import tracing as _tracing
from graphpipe_client.testing import serve

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

KINDS = ["sync", "async"]
X = np.arange(8, dtype=np.float32)


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The global provider can be set once per process (set_tracer_provider): swap the
    # global it sets for this test only.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield exporter
    provider.shutdown()


def run(kind: str, url: str, work: Any, **kwargs: Any) -> Any:
    if kind == "sync":
        with gp.Client(url, timeout=5, **kwargs) as client:
            return work(client)

    async def main() -> Any:
        async with gp.AsyncClient(url, timeout=5, **kwargs) as client:
            return await work(client)

    return asyncio.run(main())


class RecordingServer:
    """A GraphPipe server on a raw socket that records each request's ``traceparent``.

    Answers an ``InferRequest`` with ``x * 2`` (or 400 when ``fail``) and a
    ``MetadataRequest`` with empty metadata; keeps connections alive.
    """

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.traceparents: list[str | None] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RecordingServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        with conn, conn.makefile("rb") as f:
            while not self._stop.is_set():
                try:
                    line = f.readline()
                except TimeoutError:
                    continue
                if not line:
                    return
                headers = {}
                while (h := f.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = f.read(int(headers.get("content-length", "0")))
                self.traceparents.append(headers.get("traceparent"))
                req = codec.decode_request(body)
                if self.fail:
                    out = b"no such thing\n"
                    status = b"400 Bad Request"
                elif isinstance(req, codec.InferRequest):
                    out = codec.encode_infer_response([req.inputs[0] * 2]).tobytes()
                    status = b"200 OK"
                else:
                    meta = codec.ModelMetadata(name="m")
                    out = codec.encode_metadata_response(meta).tobytes()
                    status = b"200 OK"
                conn.sendall(
                    b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(out) + out
                )


@pytest.mark.parametrize("kind", KINDS)
def test_a_span_per_call_with_its_attributes(kind: str, exporter: InMemorySpanExporter) -> None:
    with RecordingServer() as server:
        if kind == "sync":

            def work(c: Any) -> Any:
                return c.execute(X), c.execute_multi([X]), c.metadata()

        else:

            async def work(c: Any) -> Any:
                return await c.execute(X), await c.execute_multi([X]), await c.metadata()

        y, _, _ = run(kind, server.url.replace("://", "://u:s3cr3t@", 1), work)
    headers = server.traceparents
    np.testing.assert_array_equal(y, X * 2)
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["graphpipe infer", "graphpipe infer", "graphpipe metadata"]
    infer = spans[0]
    assert infer.kind == trace.SpanKind.CLIENT
    attrs = dict(infer.attributes or {})
    assert attrs["http.request.method"] == "POST"
    assert attrs["url.full"] == f"http://***@127.0.0.1:{server.port}/"
    assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == server.port
    assert attrs["graphpipe.call"] == "infer" and attrs["graphpipe.tensor_count"] == 1
    assert attrs["http.response.status_code"] == 200
    assert attrs["http.request.body.size"] > X.nbytes
    assert attrs["http.response.body.size"] > X.nbytes
    assert dict(spans[2].attributes or {})["graphpipe.tensor_count"] == 0
    assert "s3cr3t" not in repr([dict(s.attributes or {}) for s in spans])
    # Each request carried its own span's W3C traceparent.
    assert len(headers) == 3
    for span, header in zip(spans, headers, strict=True):
        ctx = span.get_span_context()
        assert header == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        assert ctx.trace_flags.sampled


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_call_is_an_error_span(kind: str, exporter: InMemorySpanExporter) -> None:
    def work(c: Any) -> Any:
        return c.execute(X)

    async def awork(c: Any) -> Any:
        return await c.execute(X)

    with pytest.raises(gp.ConnectError):
        run(kind, "http://127.0.0.1:9", work if kind == "sync" else awork, retries=0)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == trace.StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "ConnectError"
    assert [e.name for e in span.events] == ["exception"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_http_error_status_is_an_error_span(kind: str, exporter: InMemorySpanExporter) -> None:
    def work(c: Any) -> Any:
        return c.execute(X)

    async def awork(c: Any) -> Any:
        return await c.execute(X)

    with RecordingServer(fail=True) as server, pytest.raises(gp.HTTPStatusError):
        run(kind, server.url, work if kind == "sync" else awork)
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {})["http.response.status_code"] == 400
    assert span.status.status_code == trace.StatusCode.ERROR


def test_no_span_and_no_header_without_a_tracer_provider() -> None:
    # The API's default (proxy) provider records nothing: no span object is made.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    with RecordingServer() as server, gp.Client(server.url) as client:
        req = client._prepare_execute(X, None, None, None, None, gp.UNSET)
        assert _tracing.start_span(req, 1) is None
        client.execute(X)
    assert server.traceparents == [None]


def test_no_span_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tracing, "_otel", None)  # as when opentelemetry is not installed
    with serve(lambda x: x) as server, gp.Client(server.url) as client:
        req = client._prepare_execute(X, None, None, None, None, gp.UNSET)
        assert _tracing.start_span(req, 1) is None
        client.execute(X)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", gp.__version__)


@pytest.mark.parametrize("kind", KINDS)
def test_coalesced_calls_make_one_span_per_merged_request(
    kind: str, exporter: InMemorySpanExporter
) -> None:
    """Coalescing: one span per request that went out, with the callers' caller as its parent."""
    tracer = sdk_trace.TracerProvider().get_tracer("test")
    opts = gp.Coalesce(max_rows=6, max_wait=30, eager=False)  # full at 6 calls: one request
    with serve(lambda x: x * 2) as server:
        if kind == "sync":
            with gp.Client(server.url, coalesce=opts) as client:
                barrier = threading.Barrier(6)

                def call(i: int) -> None:
                    barrier.wait()
                    with tracer.start_as_current_span(f"caller {i}"):
                        assert (client.execute(np.full((1, 2), float(i))) == 2 * i).all()

                threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        else:

            async def main() -> None:
                async with gp.AsyncClient(server.url, coalesce=opts) as client:

                    async def call(i: int) -> None:
                        with tracer.start_as_current_span(f"caller {i}"):
                            y = await client.execute(np.full((1, 2), float(i)))
                            assert (y == 2 * i).all()

                    await asyncio.gather(*(call(i) for i in range(6)))

            asyncio.run(main())
    (span,) = exporter.get_finished_spans()
    assert span.name == "graphpipe infer"
    assert span.parent is not None  # the span of the caller that sent (or filled) the batch
