"""Observability hooks: the ``graphpipe_client`` logger, OpenTelemetry spans and metrics.

Holds ``log`` (one DEBUG line per exchange, retries and replica changes),
``active`` (whether anything would record a call), ``tracing`` (a span per call, ``traceparent`` in the request, when the
``[otel]`` extra and a tracer provider are there) and ``metrics`` (the HTTP
client instruments and GraphPipe's own, when the extra and a meter provider
are there). Every layer above may call
them; they read a request or a response only through the small protocols they
declare, so that they depend on nothing above them.

May import: :mod:`graphpipe_client._exceptions`, :mod:`graphpipe_client._version`,
the standard library and (looked up at run time) ``opentelemetry``.
"""
