"""tinyproxy, a real HTTP proxy, started on a free loopback port (Debian package ``tinyproxy``).

tinyproxy 1.11 closes each client connection right after one response and
does not say so (no ``Connection: close``): a client that pools the connection
finds it closed at the next call. The keep-alive tests run through it.

Tests that use :func:`tinyproxy` skip, with one line saying why, where the
binary is absent (``apt-get install -y tinyproxy``; ``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["tinyproxy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def tinyproxy() -> Iterator[str]:
    """Run tinyproxy on 127.0.0.1 (its own generated configuration); yield its URL."""
    binary = shutil.which("tinyproxy")
    if binary is None:
        pytest.skip("tinyproxy is not installed (apt-get install -y tinyproxy)")
    with tempfile.TemporaryDirectory(prefix="gp-tinyproxy-") as folder:
        port = _free_port()
        conf = Path(folder) / "tinyproxy.conf"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            "MaxClients 64",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
            "LogLevel Critical",
            f'LogFile "{folder}/tinyproxy.log"',
            f'PidFile "{folder}/tinyproxy.pid"',
        ]
        conf.write_text("\n".join(lines) + "\n")
        proc = subprocess.Popen(
            [binary, "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            until = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > until:
                        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                        pytest.fail(f"tinyproxy did not start: {err.strip()[:500]}")
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
