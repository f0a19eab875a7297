"""The 2018 client (PyPI ``graphpipe==1.0.4``), the seed's own Python implementation.

It pins ``requests==2.18.4`` and ``flatbuffers==1.9.0``; that ``requests`` no
longer imports on Python 3.10+ (it uses ``collections.Mapping``). The bench
session installs it with ``--no-deps`` next to current ``requests``,
``flatbuffers`` and ``numpy``, with which its code imports and runs unchanged
on Python 3.11: no shim is needed. Should a future version of one of those
break it, :func:`load` reports why and the benchmarks leave its figures out.
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["load"]


def load() -> tuple[ModuleType, ModuleType] | str:
    """``(graphpipe.remote, graphpipe.convert)``, or the reason they cannot be used."""
    try:
        from graphpipe import convert, remote
    except Exception as exc:  # any import-time failure of 2018 code
        return f"graphpipe 1.0.4 is not importable here ({type(exc).__name__}: {exc}); run `nox -s bench`"
    return remote, convert
