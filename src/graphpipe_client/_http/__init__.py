"""The HTTP layer without I/O: what a GraphPipe call over HTTP/1.1 is, as data and rules.

Holds ``config`` (the client's options: timeouts, retries, TLS, limits, headers),
``proxy`` (which proxy a request goes through), ``exchange`` (model URLs, the
prepared request, the raw response, and how a response becomes arrays or an
exception), ``retries`` (whether and when a failed attempt is tried again),
``http11`` (response heads, body framing, content decoding, connection reuse),
``error_bodies`` (one-line summaries of servers' and proxies' error pages),
``keepalive`` (when an idle connection may be reused), ``small_calls`` (a
repeated small request's bytes and the answer head already checked, for the
transports' fast paths), ``receive_buffers`` (large response buffers, used
again once nothing views them) and ``abandon`` (the switch by which a hedged
call ends its losing attempt).

Nothing here opens a socket: the transports (:mod:`graphpipe_client._transports`)
do, and follow these rules, so that the sync and async clients agree byte for byte.

May import: ``_wire``, ``_observe``, ``_exceptions``, ``_version``, numpy, the
standard library.
"""
