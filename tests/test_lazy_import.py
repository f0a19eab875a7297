"""``import graphpipe_client`` loads what a plain sync call needs, and no more.

No asyncio, httpx or anyio: the async side loads on first use of
``AsyncClient`` or ``aio`` (a module ``__getattr__``, PEP 562). Nor the
features most calls never use (the row cache, coalescing's threads, hedging,
replicas, batched runs, progress, the module-level functions of ``remote``)
nor ``ssl``: each loads when it is used
(``docs/performance.md``, "Import"). Each check runs in a fresh interpreter;
the bundled servers run in this (the test) process, so only what the
client's path imports is seen.
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

#: Modules that neither ``import graphpipe_client`` nor a plain sync call loads,
#: by the use that loads them (checked in that order by USE_SCRIPT).
LAZY = {
    "Client(typo=...)": ["difflib"],
    "ModelMetadata()._repr_html_()": ["html"],
    "an HTTP error answer": ["graphpipe_client._http.error_bodies"],
    "graphpipe_client.execute(url, x)": [
        "graphpipe_client._process_client",
        "graphpipe_client.remote",
    ],
    "from graphpipe_client import Hedge": ["graphpipe_client._replicas.hedging"],
    "Client([a, b], hedge=Hedge(...)).execute": [
        "graphpipe_client._replicas.attempts",
        "graphpipe_client._replicas.hedged",
        "graphpipe_client._replicas.routing",
    ],
    "Client(coalesce=Coalesce(...)).execute": ["graphpipe_client._jobs.coalesce_threads"],
    "execute_batched(progress=callback)": [
        "graphpipe_client._jobs.drivers",
        "graphpipe_client._jobs.plan",
        "graphpipe_client._jobs.progress",
    ],
}

#: Modules that ``import graphpipe_client`` does not load, but the first
#: ``Client`` does (its transport needs ``ssl`` and the proxy rules; its
#: constructor checks ``cache=``).
AFTER_IMPORT = (
    "ssl",
    "socket",
    "hashlib",
    "graphpipe_client._http.proxy",
    "graphpipe_client._jobs.row_cache",
)

SYNC_SCRIPT = """
import json, sys
import numpy as np
numpy_loads = sorted(sys.modules)
import graphpipe_client
before = sorted(sys.modules)
with graphpipe_client.Client(sys.argv[1]) as client:
    out = client.execute(np.arange(3, dtype=np.float32))
after = sorted(sys.modules)
print(json.dumps({"numpy": numpy_loads, "before": before, "after": after, "out": out.tolist()}))
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


USE_SCRIPT = """
import json, sys
import numpy as np
import graphpipe_client as gp

watched = set(json.loads(sys.argv[4]))
seen = {m for m in watched if m in sys.modules}
loaded = {"import": sorted(seen)}

def step(name):
    global seen
    now = {m for m in watched if m in sys.modules}
    loaded[name] = sorted(now - seen)
    seen = now

a, b, failing = sys.argv[1:4]
x = np.arange(4, dtype=np.float32).reshape(2, 2)
with gp.Client(a) as client:
    client.execute(x)
step("a plain sync call")
try:
    gp.Client(a, timout=1)
except TypeError as exc:
    assert "did you mean timeout=" in str(exc), exc
step("Client(typo=...)")
assert "<table" in gp.ModelMetadata(name="m")._repr_html_()
step("ModelMetadata()._repr_html_()")
with gp.Client(failing, retries=0) as client:
    try:
        client.execute(x)
    except gp.HTTPStatusError as exc:
        assert "the model failed" in str(exc), exc
step("an HTTP error answer")
assert gp.execute(a, x).tolist() == (x * 2).tolist()
step("graphpipe_client.execute(url, x)")
from graphpipe_client import Hedge
step("from graphpipe_client import Hedge")
with gp.Client([a, b], idempotent=True, hedge=Hedge(delay=1.0)) as client:
    client.execute(x)
step("Client([a, b], hedge=Hedge(...)).execute")
with gp.Client(a, coalesce=gp.Coalesce(max_rows=8, max_wait=0.0)) as client:
    client.execute(x)
step("Client(coalesce=Coalesce(...)).execute")
with gp.Client(a) as client:
    client.execute_batched(x, batch_size=1, progress=lambda done, total: None)
step("execute_batched(progress=callback)")
print(json.dumps(loaded))
"""


def test_what_a_sync_call_does_not_use_is_not_loaded() -> None:
    lazy = [m for modules in LAZY.values() for m in modules]
    with serve(lambda x: x * 2) as server:
        got = _run(SYNC_SCRIPT, server.url)
    before, after = got["before"], got["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert [m for m in lazy if m in after] == []
    # (what numpy itself loads is not ours to defer: numpy 1.x imports hashlib)
    assert [m for m in AFTER_IMPORT if m in before and m not in got["numpy"]] == []
    # The first Client does load them: the list is of modules that exist.
    assert [m for m in AFTER_IMPORT if m not in after] == []


def test_each_feature_loads_its_modules_when_used() -> None:
    watched = [m for modules in LAZY.values() for m in modules]

    def failing(x: object) -> object:
        raise ValueError("the model failed")

    with serve(lambda x: x * 2) as a, serve(lambda x: x * 2) as b, serve(failing) as c:
        got = _run(USE_SCRIPT, a.url, b.url, c.url, json.dumps(watched))
    assert got == {"import": [], "a plain sync call": [], **LAZY}


def test_lazy_public_names_are_the_modules_own() -> None:
    import graphpipe_client
    from graphpipe_client import remote
    from graphpipe_client._jobs import row_cache
    from graphpipe_client._replicas import hedging, routing

    assert graphpipe_client.RowCache is row_cache.RowCache
    assert graphpipe_client.CacheStats is row_cache.CacheStats
    assert graphpipe_client.Hedge is hedging.Hedge
    assert graphpipe_client.HedgeStats is hedging.HedgeStats
    assert graphpipe_client.ReplicaStats is routing.ReplicaStats
    assert graphpipe_client.remote is remote
    for name in ("execute", "execute_multi", "execute_named", "metadata"):
        assert getattr(graphpipe_client, name) is getattr(remote, name)


def test_the_async_side_loads_on_first_use() -> None:
    got = _run(ASYNC_SCRIPT)
    assert got == {"first": False, "listed": True, "loaded": True, "same": True, "all": True}


def test_an_unknown_name_is_an_attribute_error() -> None:
    import graphpipe_client

    with pytest.raises(AttributeError, match="NoSuchThing"):
        graphpipe_client.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
