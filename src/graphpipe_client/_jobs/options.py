"""The options of a batched run that a client checks, and their defaults.

Apart from :mod:`.plan`, so that the clients' signatures (the defaults) do not
load the plan before the first batched run (``import graphpipe_client`` stays
light; ``docs/performance.md``). No I/O here.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .._exceptions import InvalidOption

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_CONCURRENCY", "check_run_options"]

#: ``execute_batched``'s default rows per request.
DEFAULT_BATCH_SIZE: Final = 256
#: ``execute_batched``'s default number of requests in flight.
DEFAULT_CONCURRENCY: Final = 4


def check_run_options(batch_size: object, concurrency: object) -> None:
    """Refuse a ``batch_size`` or ``concurrency`` that is not an int >= 1 (:class:`InvalidOption`)."""
    for name, value in (("batch_size", batch_size), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidOption(f"{name} must be an int >= 1, not {value!r}")
