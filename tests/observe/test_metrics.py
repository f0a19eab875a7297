"""OpenTelemetry metrics: the HTTP client instruments and GraphPipe's own, read with the SDK's
in-memory reader, against the bundled server; nothing at all without a meter provider."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("opentelemetry.sdk.metrics")

from opentelemetry import metrics
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import graphpipe_client as gp
from graphpipe_client._observe import metrics as _metrics
from graphpipe_client.testing import Faults, serve


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    # The global provider can be set once per process (set_meter_provider): swap the
    # global it sets for this test only.
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", provider)
    yield reader
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point recorded so far, by instrument name."""
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "graphpipe_client"
            for m in sm.metrics:
                out.setdefault(m.name, []).extend(m.data.data_points)
    return out


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_http_client_instruments_of_calls(kind: str, reader: InMemoryMetricReader) -> None:
    x = np.ones((3, 4), np.float32)
    with serve(lambda x: x * 2) as server:

        def calls(client: Any) -> Any:
            return [client.execute(x), client.execute(x)]

        if kind == "sync":
            with gp.Client(server.url) as client:
                calls(client)
                server.faults = Faults(status=500, body=b"boom")
                with pytest.raises(gp.HTTPStatusError):
                    client.execute(x)
        else:

            async def main() -> None:
                async with gp.AsyncClient(server.url) as client:
                    await client.execute(x)
                    await client.execute(x)
                    server.faults = Faults(status=500, body=b"boom")
                    with pytest.raises(gp.HTTPStatusError):
                        await client.execute(x)

            asyncio.run(main())
        port = server.port
    p = points(reader)
    (ok, failed) = sorted(p["http.client.request.duration"], key=lambda d: d.count, reverse=True)
    assert ok.count == 2 and failed.count == 1
    assert dict(ok.attributes) == {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert failed.attributes["error.type"] == "500"
    assert failed.attributes["http.response.status_code"] == 500
    assert 0 < ok.sum < 60
    sizes = {tuple(sorted(d.attributes.items())): d for d in p["http.client.request.body.size"]}
    (req_size,) = sizes.values()
    assert req_size.count == 3 and req_size.min > x.nbytes
    assert sum(d.count for d in p["http.client.response.body.size"]) == 3
    (active,) = p["http.client.active_requests"]
    assert active.value == 0  # each call +1 then -1
    (rows,) = p["graphpipe.client.rows"]
    assert rows.value == 6  # two answered calls of 3 rows


def test_a_failed_call_has_its_error_type(reader: InMemoryMetricReader) -> None:
    with serve(lambda x: x) as server:
        url = server.url
    with gp.Client(url, retries=0) as client, pytest.raises(gp.ConnectError):
        client.execute(np.ones(1))
    (d,) = points(reader)["http.client.request.duration"]
    assert d.attributes["error.type"] == "ConnectError"
    assert "http.response.status_code" not in d.attributes


def test_ejections_and_hedges_are_counted(reader: InMemoryMetricReader) -> None:
    release = threading.Event()
    first = [True]

    def stall_once(x: np.ndarray) -> np.ndarray:
        if first[0]:
            first[0] = False
            release.wait(20)
        return x

    with serve(stall_once) as a, serve(lambda x: x) as b, serve(lambda x: x) as dead:
        dead.stop()
        hedge = gp.Hedge(delay=0.05, budget=1.0)
        with gp.Client([a.url, b.url], idempotent=True, hedge=hedge) as client:
            client.execute(np.ones(1))  # a stalls: b's hedge wins
        release.set()
        with gp.Client([b.url, dead.url]) as client:
            for _ in range(2):
                client.execute(np.ones(1))  # the dead one refuses: ejected
    p = points(reader)
    hedges = {d.attributes["graphpipe.hedge.won"]: d.value for d in p["graphpipe.client.hedges"]}
    assert hedges == {False: 1, True: 1}
    # One measurement per HTTP request, under the replica that got it: the stalled first
    # copy was given up on (cancelled), the hedge answered.
    by_port = {
        (d.attributes["server.port"], d.attributes.get("error.type")): d.count
        for d in p["http.client.request.duration"]
    }
    assert by_port[(a.port, "cancelled")] == 1
    assert by_port[(b.port, None)] == 3  # the hedge, and the two calls of the second client
    (ej,) = p["graphpipe.client.replica.ejections"]
    assert ej.value == 1 and ej.attributes["server.port"] == dead.port


def test_nothing_is_recorded_without_a_meter_provider() -> None:
    # The API installed, no provider set: the proxy provider; no instrument is made.
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    with serve(lambda x: x) as server, gp.Client(server.url) as client:
        req = client._prepare_execute(np.ones(1), None, None, None, None, gp.UNSET)
        assert _metrics.start_metrics(req) is None  # type: ignore[arg-type]
        client.execute(np.ones(1))
    assert _metrics._cache is None or _metrics._cache[0] is not metrics.get_meter_provider()


def connections(reader: InMemoryMetricReader, port: int) -> dict[str, int]:
    return {
        d.attributes["http.connection.state"]: d.value
        for d in points(reader).get("http.client.open_connections", [])
        if d.attributes["server.port"] == port
    }


def test_open_connections_by_state_sync(reader: InMemoryMetricReader) -> None:
    release = threading.Event()
    entered = threading.Event()

    def model(x: np.ndarray) -> np.ndarray:
        if x[0] < 0:
            entered.set()
            release.wait(20)
        return x

    with serve(model) as server, gp.Client(server.url) as client:
        client.execute(np.ones(1))
        client.execute(np.ones(1))
        assert connections(reader, server.port) == {"idle": 1, "active": 0}
        slow = threading.Thread(target=client.execute, args=(-np.ones(1),))
        slow.start()
        entered.wait(10)
        assert connections(reader, server.port) == {"idle": 0, "active": 1}
        release.set()
        slow.join()
        assert connections(reader, server.port) == {"idle": 1, "active": 0}


def test_open_connections_by_state_async(reader: InMemoryMetricReader) -> None:
    with serve(lambda x: x) as server:

        async def main() -> dict[str, int]:
            async with gp.AsyncClient(server.url) as client:
                await asyncio.gather(*(client.execute(np.ones(1)) for _ in range(3)))
                return connections(reader, server.port)

        seen = asyncio.run(main())
    assert seen["active"] == 0 and 1 <= seen["idle"] <= 3


def test_the_rows_of_each_coalesced_request_are_recorded(reader: InMemoryMetricReader) -> None:
    """Four threads, a batch of at most 4 rows that waits up to 5 s: one request of 4 rows."""
    start = threading.Barrier(4)
    results: list[np.ndarray] = []

    def call(client: gp.Client, i: int) -> None:
        start.wait(5)
        results.append(client.execute(np.full((1, 2), float(i))))

    with (
        serve(lambda x: x * 2) as server,
        gp.Client(
            server.url, coalesce=gp.Coalesce(max_rows=4, max_wait=5.0, eager=False)
        ) as client,
    ):
        threads = [threading.Thread(target=call, args=(client, i)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(results) == 4
    (d,) = points(reader)["graphpipe.client.coalesced.rows"]
    assert d.count == 1 and d.sum == 4
    (rows,) = points(reader)["graphpipe.client.rows"]
    assert rows.value == 4
