"""The floor: a raw-socket HTTP/1.1 client that only moves the bytes.

It sends a prepared request (headers and body, given as ready buffers) with
``sendall`` and reads the response into a preallocated buffer with
``recv_into``: no encoding, no decoding, no allocation per call. What a real
client adds on top of this is its overhead.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

import numpy as np

__all__ = ["RawClient", "request_head"]


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
