"""The async transport finds the running loop without a system call, and never a wrong one.

``_asyncio_loop`` reads the loop from the async-generator hooks that a running
asyncio loop (or uvloop) installs in its thread; after a fork it asks asyncio.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from graphpipe_client._transports import asynchronous


def test_outside_any_loop_there_is_none() -> None:
    assert asynchronous._asyncio_loop() is None


@pytest.mark.parametrize("uv", [False, True])
def test_inside_a_loop_it_is_that_loop_and_in_another_thread_none(uv: bool) -> None:
    if uv:
        uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[bool, object]:
        seen: list[object] = []
        t = threading.Thread(target=lambda: seen.append(asynchronous._asyncio_loop()))
        t.start()
        t.join()
        return asynchronous._asyncio_loop() is asyncio.get_running_loop(), seen[0]

    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop if uv else None)
    with runner:
        same, other = runner.run(main())
    assert same
    assert other is None
    assert asynchronous._asyncio_loop() is None  # stopped: the hooks are given back


def test_custom_hooks_fall_back_to_asyncio() -> None:
    async def main() -> bool:
        old = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(firstiter=lambda agen: None, finalizer=old.finalizer)
        try:
            return asynchronous._asyncio_loop() is asyncio.get_running_loop()
        finally:
            sys.set_asyncgen_hooks(*old)

    assert asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_after_fork_the_child_asks_asyncio() -> None:
    # In a fresh interpreter (fork with threads is unsafe in the test process):
    # a child forked from a running loop has no running loop, though the
    # inherited hooks still name the parent's loop.
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from graphpipe_client._transports import asynchronous

        async def main():
            pid = os.fork()
            if pid == 0:
                ok = asynchronous._FORKED and asynchronous._asyncio_loop() is None
                os._exit(0 if ok else 1)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)

        sys.exit(asyncio.run(main()))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
