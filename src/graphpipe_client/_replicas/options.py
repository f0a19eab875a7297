"""The replica options a client checks when it is made: ``eject_backoff=`` and ``hedge=``.

Apart from :mod:`.routing` and :mod:`.hedging`, so that a client bound to one
URL and without ``hedge=`` does not load them (``import graphpipe_client``
stays light; ``docs/performance.md``). No I/O here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from .._exceptions import InvalidOption

if TYPE_CHECKING:
    from .hedging import Hedge

__all__ = [
    "BALANCES",
    "EJECT_BACKOFF",
    "EJECT_BACKOFF_MAX",
    "check_backoff",
    "check_balance",
    "check_hedge",
]

#: Seconds a replica stays out of rotation after its first failure; doubled
#: for each consecutive failure (a failed probe counts), up to
#: :data:`EJECT_BACKOFF_MAX`, with jitter (between half and all of it).
EJECT_BACKOFF: Final = 0.5
EJECT_BACKOFF_MAX: Final = 30.0


def check_backoff(value: object) -> tuple[float, float]:
    """The ``eject_backoff=`` option checked: ``(first, longest)`` seconds, or one number
    for a back-off that does not grow."""
    pair = value if isinstance(value, tuple) else (value, value)
    if len(pair) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
        for v in pair
    ):
        raise InvalidOption(
            "eject_backoff is (first, longest) seconds a replica stays out of rotation, two "
            f"positive numbers such as (0.5, 30.0), or one number; got {value!r}"
        )
    first, longest = float(pair[0]), float(pair[1])
    if first > longest:
        raise InvalidOption(
            f"eject_backoff is (first, longest): the first back-off {first:g} s is longer "
            f"than the longest {longest:g} s"
        )
    return first, longest


def check_hedge(hedge: object, idempotent: bool, replicas: int | None) -> Hedge | None:
    """``hedge`` checked against the client's options; ``replicas`` is how many URLs the
    client is bound to (``None`` when it is bound to none: lists given per call)."""
    if hedge is None:
        return None
    from .hedging import Hedge  # loaded only for a client given hedge=

    if not isinstance(hedge, Hedge):
        raise InvalidOption(f"hedge must be a Hedge(...) or None, not {type(hedge).__name__}")
    if not idempotent:
        raise InvalidOption(
            "hedging sends some requests twice: pass idempotent=True to declare that the model "
            "may run twice on the same input"
        )
    if replicas is not None and replicas < 2:
        raise InvalidOption(
            "hedging sends the second copy of a call to another replica: bind the client to a "
            "list of at least 2 replica URLs"
        )
    return hedge


#: The ``balance=`` choices (see :mod:`.balance`).
BALANCES: Final = ("latency", "in-flight")


def check_balance(value: object) -> str:
    """The ``balance=`` option checked."""
    if value not in BALANCES:
        raise InvalidOption(
            'balance is how a call picks its replica: "latency" (the default: fewest in '
            'flight weighted by each replica\'s recent latency) or "in-flight" (fewest in '
            f"flight alone); got {value!r}"
        )
    return str(value)
