"""The transports: the I/O shells that send a prepared request and return the raw response.

Holds ``sync`` (``Client``'s: urllib3 opens and pools the connections, the
request and response go through :mod:`~graphpipe_client._http.http11`),
``asynchronous`` (``AsyncClient``'s: the asyncio fast path for direct requests,
httpx for proxies and other event loops), ``asyncio_direct`` (the fast path
itself: our HTTP/1.1 on asyncio connections) and ``send_thread`` (large request
bodies written off the event loop's thread).

A new transport goes here: it takes a ``PreparedRequest`` and a deadline and
returns a ``RawResponse`` or raises a :class:`~graphpipe_client.GraphPipeError`.

May import: ``_http``, ``_observe``, ``_wire``, ``_exceptions``, ``_version``,
urllib3, httpx, anyio, the standard library.
"""
