"""``import graphpipe_client`` for the sync client loads no asyncio, httpx or anyio.

The async side loads on first use of ``AsyncClient`` or ``aio`` (a module
``__getattr__``, PEP 562). Each check runs in a fresh interpreter; the
bundled server runs in this (the test) process, so only what the client's
path imports is seen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from graphpipe_client.testing import serve

#: Top-level packages that only the async side may load.
ASYNC_ONLY = ("asyncio", "httpx", "httpcore", "anyio", "sniffio", "trio")

SYNC_SCRIPT = """
import json, sys
import numpy as np
import graphpipe_client
before = sorted(sys.modules)
with graphpipe_client.Client(sys.argv[1]) as client:
    out = client.execute(np.arange(3, dtype=np.float32))
after = sorted(sys.modules)
print(json.dumps({"before": before, "after": after, "out": out.tolist()}))
"""

ASYNC_SCRIPT = """
import json, sys
import graphpipe_client
first = "asyncio" in sys.modules
names = dir(graphpipe_client)
from graphpipe_client import AsyncClient
aio = graphpipe_client.aio
print(json.dumps({
    "first": first,
    "listed": "AsyncClient" in names and "aio" in names,
    "loaded": all(m in sys.modules for m in ("asyncio", "httpx")),
    "same": AsyncClient is graphpipe_client.AsyncClient and aio.__name__ == "graphpipe_client.aio",
    "all": all(hasattr(graphpipe_client, n) for n in graphpipe_client.__all__),
}))
"""


def _run(script: str, *args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def _async_modules(names: object) -> list[str]:
    assert isinstance(names, list)
    return [m for m in names if m.split(".")[0] in ASYNC_ONLY]


def test_a_sync_call_loads_no_async_machinery() -> None:
    with serve(lambda x: x * 2) as server:
        got = _run(SYNC_SCRIPT, server.url)
    assert got["out"] == [0.0, 2.0, 4.0]
    assert _async_modules(got["before"]) == []
    assert _async_modules(got["after"]) == []
    assert "graphpipe_client._async_client" not in got["after"]  # type: ignore[operator]


def test_the_async_side_loads_on_first_use() -> None:
    got = _run(ASYNC_SCRIPT)
    assert got == {"first": False, "listed": True, "loaded": True, "same": True, "all": True}


def test_an_unknown_name_is_an_attribute_error() -> None:
    import graphpipe_client

    with pytest.raises(AttributeError, match="NoSuchThing"):
        graphpipe_client.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
