"""A lazily created, process-wide client that is forgotten in a child after ``fork``.

The module APIs (:mod:`~graphpipe_client.remote`, :mod:`~graphpipe_client.aio`)
share one client each; both hold it in a :class:`SharedClient`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from ._client_common import ClientBase
from ._wire.messages import IOMetadata

__all__ = ["SharedClient", "io_names", "io_shapes", "io_types"]

T = TypeVar("T", bound=ClientBase[Any])


class SharedClient(Generic[T]):
    """Creates the client on first use (thread-safely) and drops it in a forked child.

    After ``fork`` the child must not touch the parent's sockets: its copy is
    dropped unclosed (closing it would shut the parent's connections down too)
    and a new client is made on first use. The client lives as long as the
    process, so it gives no ``ResourceWarning`` when it is dropped unclosed.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._client: T | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def get(self) -> T:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    new = self._factory()
                    new._mark_shared()
                    self._client = new
                client = self._client
        return client

    def take(self) -> T | None:
        """Remove and return the client, if one was made."""
        with self._lock:
            client, self._client = self._client, None
        return client

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._client = None


def io_names(ios: Sequence[IOMetadata]) -> list[str]:
    """The names of inputs or outputs, as the 2018 ``get_*_names`` returned them."""
    return [io.name for io in ios]


def io_types(ios: Sequence[IOMetadata]) -> list[np.dtype[Any] | None]:
    """The dtypes of inputs or outputs (``None`` where the server does not say)."""
    return [io.dtype for io in ios]


def io_shapes(ios: Sequence[IOMetadata]) -> list[list[int | None]]:
    """The shapes of inputs or outputs as lists, ``None`` for any size."""
    return [list(io.shape or ()) for io in ios]
