"""The ``graphpipe_client`` logger: one DEBUG line per exchange, retries at INFO, silence by default."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path
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


_NO_LOGGING_CONFIGURED = """
import socket, sys
import numpy as np
import graphpipe_client as gp
from graphpipe_client.testing import serve

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{s.getsockname()[1]}"
with serve(lambda x: x) as server:
    server.set_faults(status=503, body="busy", times=1)
    with gp.Client(server.url, retries=gp.RetryPolicy(retries=2, backoff=0.01)) as client:
        client.execute(np.ones(2))                       # a retry: INFO, not shown
    print("one url done", file=sys.stderr)
    with gp.Client([server.url, closed], retries=3) as client:
        for _ in range(4):
            client.execute(np.ones(2))                   # the closed replica: ejected
"""


def test_what_reaches_stderr_with_no_logging_configured() -> None:
    # docs/observability.md: at the default level, only a replica out of rotation is shown.
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", _NO_LOGGING_CONFIGURED],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert lines[0] == "one url done"  # working calls, and a retry: nothing
    assert len(lines) == 2, lines
    assert re.fullmatch(
        r"replica http://127\.0\.0\.1:\d+/ out of rotation after ConnectError: .*; "
        r"it gets traffic again once is_ready succeeds",
        lines[1],
    ), lines[1]


def test_the_documented_levels_are_the_levels_used() -> None:
    # The table of docs/observability.md lists every level the package logs at.
    doc = (Path(__file__).parents[2] / "docs" / "observability.md").read_text()
    table = dict(re.findall(r"^\| (DEBUG|INFO|WARNING|ERROR|CRITICAL) \| (.*) \|$", doc, re.M))
    source = (Path(gp.__file__).parent / "_observe" / "log.py").read_text()
    used = {
        m.upper() for m in re.findall(r"\blogger\.(debug|info|warning|error|critical)\(", source)
    }
    assert set(table) == used == {"DEBUG", "INFO", "WARNING"}
    assert "out of rotation" in table["WARNING"]
