"""An unclosed client warns when it is collected (``ResourceWarning``), as files and sockets do.

The clients behind ``remote`` and ``aio`` live as long as the process: they
never warn, not even at interpreter exit.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import GraphPipeServer, serve


def _drop(holder: list[object]) -> None:
    """Drop the last reference to what ``holder`` holds, and collect."""
    holder.clear()
    gc.collect()


@pytest.fixture(scope="module")
def server() -> Iterator[GraphPipeServer]:
    with serve(lambda x: x * 2) as s:
        yield s


def test_an_unclosed_client_warns(server: GraphPipeServer) -> None:
    client = gp.Client(server.url)
    client.execute(np.ones(2))  # a pooled connection is now open
    holder: list[object] = [client]
    del client
    message = (
        rf"^unclosed <Client url='{server.url}/'>: call close\(\) or use 'with' "
        "to release its connections$"
    )
    with pytest.warns(ResourceWarning, match=message):
        _drop(holder)


def test_an_unclosed_async_client_warns(server: GraphPipeServer) -> None:
    client = gp.AsyncClient(server.url)
    asyncio.run(client.execute(np.ones(2)))
    holder: list[object] = [client]
    del client
    message = (
        rf"^unclosed <AsyncClient url='{server.url}/'>: await aclose\(\) or use 'async with' "
        "to release its connections$"
    )
    with pytest.warns(ResourceWarning, match=message):
        _drop(holder)


def test_an_unbound_client_warns_too() -> None:
    holder: list[object] = [gp.Client()]
    with pytest.warns(ResourceWarning, match=r"^unclosed <Client url=None>"):
        _drop(holder)


async def _use_async(url: str) -> None:
    async with gp.AsyncClient(url) as client:
        await client.execute(np.ones(2))
    closed = gp.AsyncClient(url)
    await closed.aclose()


def test_closed_clients_do_not_warn(server: GraphPipeServer) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gp.Client(server.url) as client:
            client.execute(np.ones(2))
        explicit = gp.Client(server.url)
        explicit.close()
        asyncio.run(_use_async(server.url))
        del client, explicit
        gc.collect()


def test_a_client_whose_constructor_failed_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="unsupported URL"):
            gp.Client("ftp://127.0.0.1:9000")
        with pytest.raises(ValueError, match="unsupported URL"):
            gp.AsyncClient("ftp://127.0.0.1:9000")
        gc.collect()


SCRIPT = """\
import asyncio, gc, sys
import numpy as np
from graphpipe_client import AsyncClient, Client, aio, remote
from graphpipe_client.testing import serve

with serve(lambda x: x) as server:
    remote.execute(server.url, np.ones(2))
    asyncio.run(aio.execute(server.url, np.ones(2)))
    if sys.argv[1:] == ["leak"]:
        leaked = Client(server.url)
        leaked.execute(np.ones(2))
        del leaked
    else:  # dropped unclosed, as a forked child does (and as exit may)
        aio._shared.take()
    gc.collect()
print("done")
"""


@pytest.mark.parametrize("leak", [False, True], ids=["shared-only", "with-a-leak"])
def test_shared_clients_do_not_warn_at_exit(leak: bool) -> None:
    # -W error turns every warning on, as an error: a ResourceWarning in
    # __del__ is printed as "Exception ignored in ... ClientBase.__del__".
    # The shared sync client is left to interpreter exit (remote closes it
    # at exit); the shared async one is dropped unclosed before.
    # (Not -X dev: its asyncio debug mode logs slow steps on a busy machine.)
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(SCRIPT)] + (["leak"] if leak else []),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"
    reported = [line for line in proc.stderr.splitlines() if "unclosed <" in line]
    if leak:  # the check can fail: a client of the user's own, left open, is reported
        assert len(reported) == 1, proc.stderr
        assert reported[0].startswith("ResourceWarning: unclosed <Client url="), proc.stderr
    else:
        assert reported == [], proc.stderr
        assert "ClientBase.__del__" not in proc.stderr, proc.stderr
