"""A fast GraphPipe server for benchmarks, so that the server is never what limits a figure.

It runs in its own process (no shared GIL with the client under test), on
127.0.0.1 only. Each connection gets a thread that reads the request headers
into a small buffer, reads the body with ``recv_into`` into a numpy buffer it
keeps for the connection (no allocation per request), does not decode it, and
answers the precomputed response of the request's path with one ``sendmsg``
(headers and message body, no join), keeping the connection alive.

The routes are the workloads of :mod:`benchmarks.workloads`: ``POST /seed``
answers 128x7x7x512 float32, ``/row`` 1x7x7x512, ``/tiny`` 1x10. A query
``?ms=N`` (e.g. ``/seed?ms=5``) answers after N milliseconds, as a model that
computes for that long would.

Run it alone with ``python -m benchmarks.server`` (prints its URL, stops on
Ctrl-C or after ``--seconds``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .workloads import WORKLOADS

__all__ = ["BenchServer"]

#: The benchmark server stops by itself after this many seconds.
MAX_SECONDS = 1800.0

_HEAD_BUFFER = 64 * 1024
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
)


def _routes() -> dict[bytes, tuple[bytes, memoryview]]:
    routes = {}
    for w in WORKLOADS.values():
        body = w.response_bytes()
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode("ascii")
        )
        if len(body) <= 64 * 1024:
            # a small answer goes out in one buffer
            routes[w.path.encode()] = (head + body, memoryview(b""))
        else:
            # in numpy memory: huge pages make the copies to the socket faster
            routes[w.path.encode()] = (head, memoryview(np.frombuffer(body, np.uint8).copy()))  # type: ignore[arg-type]
    return routes


def _send(conn: socket.socket, head: bytes, body: memoryview) -> None:
    if not body:
        conn.sendall(head)
        return
    views = [memoryview(head), body]
    while views:
        sent = conn.sendmsg(views)
        while sent and views:
            n = views[0].nbytes
            if sent >= n:
                sent -= n
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def _serve_connection(conn: socket.socket, routes: dict[bytes, tuple[bytes, memoryview]]) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = bytearray(_HEAD_BUFFER)
    hv = memoryview(head)
    bv = memoryview(b"")
    filled = 0
    with conn:
        while True:
            end = head.find(b"\r\n\r\n", 0, filled)
            while end < 0:
                if filled == len(head):
                    return  # headers too long: drop the connection
                n = conn.recv_into(hv[filled:])
                if not n:
                    return
                filled += n
                end = head.find(b"\r\n\r\n", max(0, filled - n - 3), filled)
            lines = bytes(hv[:end]).split(b"\r\n")
            target = lines[0].split(b" ")[1]
            length = 0
            close = False
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"connection":
                    close = value.strip().lower() == b"close"
            start = end + 4
            have = filled - start
            if have >= length:
                # the whole body came with the headers (small requests)
                rest = have - length
                hv[:rest] = hv[start + length : filled]
                filled = rest
            else:
                if length > len(bv):
                    bv = memoryview(np.empty(length, np.uint8))  # type: ignore[arg-type]
                bv[:have] = hv[start:filled]
                got = have
                while got < length:
                    n = conn.recv_into(bv[got:length])
                    if not n:
                        return
                    got += n
                filled = 0
            reply = routes.get(target)
            if reply is None and b"?" in target:
                # /path?ms=N: answer after N ms, as a model that computes for
                # that long would (the thread sleeps: other connections go on)
                path, _, query = target.partition(b"?")
                reply = routes.get(path)
                for item in query.split(b"&"):
                    key, _, value = item.partition(b"=")
                    if key == b"ms":
                        time.sleep(float(value) / 1000)
            if reply is None:
                conn.sendall(_NOT_FOUND)
            else:
                _send(conn, *reply)
            if close:
                return


def _accept_loop(listener: socket.socket, routes: dict[bytes, tuple[bytes, memoryview]]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_serve_connection, args=(conn, routes), daemon=True).start()


def _serve_forever(
    max_seconds: float, announce: Callable[[int], None], wait: Callable[[], object]
) -> None:
    routes = _routes()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    threading.Thread(target=_accept_loop, args=(listener, routes), daemon=True).start()
    # The process ends when wait() returns or after max_seconds, whichever is first.
    threading.Timer(max_seconds, os._exit, args=(0,)).start()
    announce(listener.getsockname()[1])
    with contextlib.suppress(KeyboardInterrupt):
        wait()
    listener.close()
    os._exit(0)


class BenchServer:
    """The benchmark server in a child process (``python -m benchmarks.server``); a context manager.

    Example:
        >>> with BenchServer() as server:  # doctest: +SKIP
        ...     server.url("/seed")
        'http://127.0.0.1:PORT/seed'
    """

    def __init__(self, max_seconds: float = MAX_SECONDS) -> None:
        self.max_seconds = max_seconds
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> BenchServer:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.server",
                "--child",
                "--seconds",
                str(self.max_seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith(b"PORT "):
            self.stop()
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process has used so far; None where unknown."""
        if self._process is None:
            return None
        try:
            with open(f"/proc/{self._process.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the child's wait() returns on EOF
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # Started by BenchServer: announce the port, stop when stdin closes.
        def announce(port: int) -> None:
            sys.stdout.write(f"PORT {port}\n")
            sys.stdout.flush()

        _serve_forever(args.seconds, announce, sys.stdin.buffer.read)
        return

    def show(port: int) -> None:
        for w in WORKLOADS.values():
            print(f"POST http://127.0.0.1:{port}{w.path}  {w.request_shape} -> {w.response_shape}")
        print(f"(stops after {args.seconds:g} s or on Ctrl-C)", flush=True)

    _serve_forever(args.seconds, show, lambda: time.sleep(args.seconds))


if __name__ == "__main__":
    main()
