"""The ``graphpipe_client`` logger: one DEBUG line per exchange, retries at INFO, silence by default."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import serve

KINDS = ["sync", "async"]
X = np.arange(256, dtype=np.float32)
LINE = re.compile(
    r"^POST http://(\*\*\*@)?127\.0\.0\.1:\d+/ -> 200 OK: [\d,]+ B sent, [\d,]+ B received "
    r"in \d+\.\d\d ms \((new|reused) connection\)$"
)


def calls(kind: str, url: str, n: int, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("timeout", 5)
    if kind == "sync":
        out: list[Any] = []
        with gp.Client(url, **kwargs) as client:
            for _ in range(n):
                try:
                    out.append(client.execute(X))
                except gp.GraphPipeError as exc:
                    out.append(exc)
        return out

    async def main() -> list[Any]:
        res: list[Any] = []
        async with gp.AsyncClient(url, **kwargs) as client:
            for _ in range(n):
                try:
                    res.append(await client.execute(X))
                except gp.GraphPipeError as exc:
                    res.append(exc)
        return res

    return asyncio.run(main())


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "graphpipe_client"]


@pytest.mark.parametrize("kind", KINDS)
def test_one_debug_line_per_call_with_what_happened(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="graphpipe_client")
    with serve(lambda x: x) as server:
        outs = calls(kind, server.url, 3)
    assert all(isinstance(o, np.ndarray) for o in outs)
    records = ours(caplog)
    assert len(records) == 3, [r.getMessage() for r in records]
    messages = [r.getMessage() for r in records]
    for message in messages:
        assert LINE.match(message), message
    sent = int(re.search(r"([\d,]+) B sent", messages[0]).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert X.nbytes < sent < X.nbytes + 512  # the request message: the tensor and its table
    assert messages[0].endswith("(new connection)")
    assert all(m.endswith("(reused connection)") for m in messages[1:])
    assert all(r.levelno == logging.DEBUG for r in records)


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_exchange_is_one_debug_line_naming_the_error(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="graphpipe_client")
    (out,) = calls(kind, "http://127.0.0.1:9", 1, retries=0)
    assert isinstance(out, gp.ConnectError)
    (record,) = ours(caplog)
    assert re.match(
        r"^POST http://127\.0\.0\.1:9/ -> ConnectError after \d+\.\d\d ms: ", record.getMessage()
    )


@pytest.mark.parametrize("kind", KINDS)
def test_retries_are_logged_at_info(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="graphpipe_client")
    with serve(lambda x: x) as server:
        server.set_faults(status=503, body="busy", times=2)
        (out,) = calls(kind, server.url, 1, retries=gp.RetryPolicy(retries=3, backoff=0.01))
    assert isinstance(out, np.ndarray)
    records = ours(caplog)
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO]
    assert re.match(
        r"^retrying POST http://127\.0\.0\.1:\d+/ in \d\.\d{3} s \(retry 1 of 3\) after HTTP 503$",
        records[0].getMessage(),
    )
    assert "(retry 2 of 3)" in records[1].getMessage()


@pytest.mark.parametrize("kind", KINDS)
def test_nothing_is_logged_at_the_default_level(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with serve(lambda x: x) as server:
        server.set_faults(status=503, body="busy", times=1)
        calls(kind, server.url, 2, retries=gp.RetryPolicy(retries=2, backoff=0.01))
    calls(kind, "http://127.0.0.1:9", 1, retries=gp.RetryPolicy(retries=1, backoff=0.01))
    assert ours(caplog) == []


@pytest.mark.parametrize("kind", KINDS)
def test_credentials_never_reach_the_log(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with serve(lambda x: x) as server:
        url = server.url.replace("://", "://alice-user:s3cr3t-pass@", 1)
        server.set_faults(status=503, body="busy", times=1)
        calls(
            kind,
            url,
            2,
            headers={"Authorization": "Bearer tok3n-bearer"},
            retries=gp.RetryPolicy(retries=2, backoff=0.01),
        )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "http://***@127.0.0.1:" in text
    for secret in ("s3cr3t-pass", "alice-user", "tok3n-bearer"):
        assert secret not in text


def test_no_misleading_resetting_dropped_connection_from_urllib3(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # urllib3's _get_conn logged "Resetting dropped connection" for every connection that
    # had never been open; the transport checks connections out without it.
    caplog.set_level(logging.DEBUG)
    with serve(lambda x: x) as server:
        server.close_connections()
        outs = calls("sync", server.url, 3)
    assert all(isinstance(o, np.ndarray) for o in outs)
    texts = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert texts, "urllib3 logs its new connections at DEBUG"
    assert not [t for t in texts if "Resetting dropped connection" in t]
