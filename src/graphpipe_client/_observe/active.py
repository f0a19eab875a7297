"""Whether anything would record a call: the one check of the clients' fast paths."""

from __future__ import annotations

from .log import debug_enabled
from .metrics import metrics_on
from .tracing import tracing_on

__all__ = ["observed"]


def observed() -> bool:
    """Whether a call would be logged at DEBUG, traced or measured.

    The fast path of repeated small calls records none of these: while any is
    on, calls take the general path, which records them all. Checked per call:
    a provider set, or a level changed, applies from the next call on.
    """
    return debug_enabled() or tracing_on() or metrics_on()
