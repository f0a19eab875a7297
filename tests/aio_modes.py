"""The ways an ``AsyncClient`` call can travel, for tests that run a scenario through each.

- ``asyncio``: the fast path (``_transports/asyncio_direct.py``) on the standard event loop;
- ``uvloop``: the fast path on uvloop's loop;
- ``httpx``: the httpx fallback under asyncio (what a proxied request takes);
- ``trio``: the httpx fallback under trio (through anyio).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from graphpipe_client._transports import asynchronous as _transport_async

T = TypeVar("T")

MODES = ["asyncio", "uvloop", "httpx", "trio"]


@contextlib.contextmanager
def fast_path(enabled: bool) -> Iterator[None]:
    """Direct asyncio requests take the fast path (``True``) or httpx (``False``)."""
    before = _transport_async.FAST_PATH
    _transport_async.FAST_PATH = enabled
    try:
        yield
    finally:
        _transport_async.FAST_PATH = before


def run_in(mode: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to its end the way ``mode`` says (see the module docstring)."""
    if mode == "trio":
        trio = pytest.importorskip("trio")
        return trio.run(main)  # type: ignore[no-any-return]
    if mode == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    with fast_path(mode != "httpx"):
        return asyncio.run(main())
