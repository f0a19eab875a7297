"""The floor: a raw-socket HTTP/1.1 client that only moves the bytes.

It sends a prepared request (headers and body, given as ready buffers) with
``sendall`` and reads the response into a preallocated buffer with
``recv_into``: no encoding, no decoding, no allocation per call. What a real
client adds on top of this is its overhead.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import numpy as np

__all__ = ["RawAsyncioClient", "RawClient", "request_head"]


def request_head(path: str, nbytes: int, port: int) -> bytes:
    """The HTTP/1.1 request line and headers of a POST of ``nbytes``."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {nbytes}\r\n\r\n"
    ).encode("ascii")


class RawClient:
    """One keep-alive connection; :meth:`post` returns a view of the response body.

    ``max_response`` sizes the receive buffer once. Give the request as the
    very buffers a client would send (e.g. the segments of an encoded message,
    which view the caller's numpy array).
    """

    def __init__(self, port: int, max_response: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = bytearray(64 * 1024)
        # numpy memory, as the clients under test get: numpy asks the kernel
        # for transparent huge pages for large buffers, which makes copies to
        # and from the socket markedly faster than into a plain bytearray.
        self.buf = np.empty(max_response, np.uint8)
        self.hv = memoryview(self.head)
        self.bv = memoryview(self.buf)  # type: ignore[arg-type]

    def post(self, parts: Sequence[bytes | memoryview]) -> memoryview:
        """Send ``parts`` (request head, then body) one ``sendall`` each; return the body."""
        sock = self.sock
        for part in parts:
            sock.sendall(part)
        head, hv = self.head, self.hv
        filled = 0
        end = -1
        while end < 0:
            n = sock.recv_into(hv[filled:])
            if not n:
                raise ConnectionError("the server closed the connection")
            filled += n
            end = head.find(b"\r\n\r\n", 0, filled)
        i = head.find(b"Content-Length:", 0, end)
        length = int(head[i + 15 : head.find(b"\r", i, end + 2)])
        start = end + 4
        have = filled - start
        bv = self.bv
        bv[:have] = hv[start:filled]
        while have < length:
            n = sock.recv_into(bv[have:length])
            if not n:
                raise ConnectionError("the server closed the connection")
            have += n
        return bv[:length]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Receiver(asyncio.BufferedProtocol):
    """Receives into one preallocated buffer; wakes the waiting call on each arrival."""

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.filled = 0
        self.waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self.filled += nbytes
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError("the server closed the connection"))


class RawAsyncioClient:
    """The floor of an asyncio client: one connection, a ``BufferedProtocol``, nothing else.

    :meth:`post` writes the prepared request with one ``transport.write`` and
    waits (a future per wait, no timeout) until the head and ``Content-Length``
    bytes of body are in the buffer: what the event loop itself costs per
    exchange, with no parsing, no decoding and no read timeout.
    """

    def __init__(self, max_response: int) -> None:
        self.protocol = _Receiver(max_response + 64 * 1024)

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self.protocol, "127.0.0.1", port)

    async def post(self, request: bytes) -> memoryview:
        """Send ``request`` (head and body); return a view of the response body."""
        p = self.protocol
        assert p.transport is not None
        p.filled = 0
        p.transport.write(request)
        loop = asyncio.get_running_loop()
        buf = p.buf
        while True:
            end = buf.find(b"\r\n\r\n", 0, p.filled)
            if end >= 0:
                i = buf.find(b"Content-Length:", 0, end)
                length = int(buf[i + 15 : buf.find(b"\r", i, end + 2)])
                if p.filled >= end + 4 + length:
                    return p.view[end + 4 : end + 4 + length]
            p.waiter = loop.create_future()
            await p.waiter

    def close(self) -> None:
        if self.protocol.transport is not None:
            self.protocol.transport.close()
