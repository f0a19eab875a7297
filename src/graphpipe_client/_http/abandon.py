"""Abandoning a request in flight on another thread: the loser of a hedged call (no I/O here).

The hedged calls of the sync client race two attempts on two threads; the one
that answers second is abandoned. The transport registers the connection an
attempt uses with :meth:`Abandon.watch` (a function that shuts its socket
down) and unregisters it with :meth:`Abandon.release` before pooling it; the
winner calls :meth:`Abandon.abandon`. Under the token's lock, a connection is
either still watched (and shut down: the blocked read returns at once) or
already released (and then ``release`` said it was abandoned, so it is
closed, never pooled): a pooled connection is never shut down behind a
later request.

Example:
    >>> shut = []
    >>> token = Abandon()
    >>> token.watch(lambda: shut.append("shut down"))
    >>> token.abandon()
    >>> shut, token.release()
    (['shut down'], True)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from .._exceptions import TransportError

__all__ = ["Abandon"]


class Abandon:
    """The abandon switch of one attempt: the winner of a race flips it, the transport obeys."""

    __slots__ = ("_lock", "_shutdown", "abandoned")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shutdown: Callable[[], None] | None = None
        self.abandoned = False

    def watch(self, shutdown: Callable[[], None]) -> None:
        """The attempt's connection is in use; ``shutdown`` ends it from another thread.

        Raises :class:`TransportError` when the attempt was abandoned already
        (the transport closes the connection: nothing is sent).
        """
        with self._lock:
            if self.abandoned:
                raise TransportError("abandoned: another replica answered first")
            self._shutdown = shutdown

    def release(self) -> bool:
        """The connection is no longer in use; whether the attempt was abandoned (close it)."""
        with self._lock:
            self._shutdown = None
            return self.abandoned

    def abandon(self) -> None:
        """Abandon the attempt: shut its connection down now, or refuse it one later."""
        with self._lock:
            self.abandoned = True
            shutdown, self._shutdown = self._shutdown, None
            if shutdown is not None:
                with contextlib.suppress(OSError):  # already closed by its own side
                    shutdown()
