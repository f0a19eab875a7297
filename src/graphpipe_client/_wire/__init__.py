"""The wire layer: GraphPipe's FlatBuffers messages, from numpy arrays and back to them.

Holds ``dtypes`` (the ``Type`` enum and numpy dtypes), ``messages`` (the plain
data types and how they print), ``encode`` (messages written straight from
numpy buffers) and ``decode`` (bounds-checked, zero-copy reading of untrusted
bytes). No I/O, no HTTP.

May import: :mod:`graphpipe_client._exceptions`, numpy and the standard library.
The public face of this layer is :mod:`graphpipe_client.codec`.
"""
