"""Coalescing: concurrent calls merged into one request, as data (sans-I/O).

A client built with ``coalesce=Coalesce(...)`` turns each ``execute``,
``execute_named`` and ``execute_multi`` call that can be merged into a
:class:`Member`: its inputs as arrays, and a *signature* (the model URL, the
input and output names, the ``config``, the connect and read timeouts, each
input's dtype and row shape). Members with the same signature join one
:class:`Batch`, which becomes one request: each input is the members' rows
stacked along axis 0 (:meth:`Batch.arrays`), and each member gets back its
own rows of every output, as views (:meth:`Batch.split`). An output whose
first dimension is not the batch's row count is not row-wise: the members of
that batch are then sent alone, as the row cache does (``_jobs/row_cache.py``).

The drivers that hold members until a batch is full or old enough, send it
and hand the answers back are in ``coalesce_threads.py`` (``Client``) and
``coalesce_tasks.py`` (``AsyncClient``). No sockets, threads or event loops
here.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from .._exceptions import (
    DeadlineExceeded,
    GraphPipeError,
    HTTPStatusError,
    InvalidOption,
    RemoteError,
)
from .._http.config import Timeout
from .._observe.log import logger
from .._wire.dtypes import type_of_dtype
from .._wire.encode import _as_array

__all__ = [
    "ALONE",
    "MODEL_ERROR_STATUSES",
    "Batch",
    "Coalesce",
    "Member",
    "NotRowwise",
    "TimerSlack",
    "deadline_error",
    "halves",
    "is_model_error",
    "log_batch",
    "log_bisect",
    "log_not_rowwise",
    "member_of",
    "own_copy",
]

#: HTTP statuses by which servers report that the model failed on its input
#: (the Go reference server answers 400, others 500): a merged batch that gets
#: one is bisected when the client is ``idempotent``.
MODEL_ERROR_STATUSES: Final = frozenset({400, 500})

#: A member's outcome meaning "send your call alone" (the batch's outputs were not row-wise).
ALONE: Final = "alone"

#: How many signatures of models found not row-wise are remembered (then forgotten at once).
_NOT_ROWWISE_MEMORY: Final = 1024


@dataclass(frozen=True, slots=True)
class Coalesce:
    """Merge concurrent calls into one request: the options of ``Client(url, coalesce=...)``.

    Calls made at the same time from several threads sharing a
    :class:`~graphpipe_client.Client` (or several tasks sharing an
    :class:`~graphpipe_client.AsyncClient`) to the same model, with the same
    input names, dtypes, row shapes, output names, ``config`` and connect and
    read timeouts, are stacked along axis 0 into one request; each caller gets
    its own rows of every output (views of the response). A request goes out
    when it holds ``max_rows`` rows, or when its oldest call has waited
    ``max_wait`` seconds. Applies to ``execute``, ``execute_named`` and
    ``execute_multi``; see ``docs/coalescing.md`` for when it helps.

    Args:
        max_rows: the most rows in one merged request (an ``int`` >= 1). A call
            with more rows than this is sent alone.
        max_wait: the longest a call waits for others, in seconds (``>= 0``;
            ``0`` waits for no one: a call goes out at once, merged only with
            the calls already waiting). Default 2 ms.

    Raises:
        InvalidOption: a value out of range or of the wrong type.

    Example:
        >>> import numpy as np
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> from graphpipe_client import Client, Coalesce
        >>> from graphpipe_client.testing import serve
        >>> with serve(lambda x: x * 2) as server:
        ...     with Client(server.url, coalesce=Coalesce(max_rows=8, max_wait=0.05)) as client:
        ...         with ThreadPoolExecutor(8) as pool:
        ...             ys = list(pool.map(lambda i: client.execute(np.full((1, 2), i)), range(8)))
        ...     served = server.requests_served
        >>> all((y == 2 * i).all() for i, y in enumerate(ys))  # each caller its own rows
        True
        >>> served < 8  # fewer requests than calls
        True
    """

    max_rows: int = 64
    max_wait: float = 0.002

    def __post_init__(self) -> None:
        rows = self.max_rows
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise InvalidOption(
                f"Coalesce.max_rows must be an int >= 1 (rows per merged request), not {rows!r}"
            )
        wait = self.max_wait
        if (
            isinstance(wait, bool)
            or not isinstance(wait, (int, float))
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise InvalidOption(
                "Coalesce.max_wait must be a finite number of seconds >= 0 (how long a call "
                f"waits for others, e.g. 0.002), not {wait!r}"
            )
        object.__setattr__(self, "max_wait", float(wait))


class Member:
    """One call waiting to be merged: its inputs, its signature, its deadline, its outcome.

    The drivers set ``state``, ``outputs`` (its own outputs, :data:`ALONE`, or
    ``None``), ``error`` and ``waiter`` (what wakes it).
    """

    __slots__ = (
        "arrays",
        "arrived",
        "batch",
        "config",
        "deadline",
        "error",
        "input_names",
        "key",
        "output_names",
        "outputs",
        "rows",
        "sig",
        "state",
        "timeout",
        "waiter",
        "where",
    )

    def __init__(
        self,
        key: str,
        arrays: list[np.ndarray],
        rows: int,
        input_names: tuple[str | None, ...] | None,
        output_names: tuple[str, ...] | None,
        config: str | bytes | None,
        timeout: Timeout,
        sig: tuple[Any, ...],
        where: str,
    ) -> None:
        self.key = key
        self.where = where
        self.arrays = arrays
        self.rows = rows
        self.input_names = input_names
        self.output_names = output_names
        self.config = config
        self.timeout = timeout
        self.sig = sig
        self.arrived = time.monotonic()
        self.deadline = None if timeout.total is None else self.arrived + timeout.total
        self.state = "waiting"  # waiting | sender | sent | done | gone
        self.outputs: list[np.ndarray] | str | None = None
        self.error: BaseException | None = None
        self.batch: Batch | None = None
        self.waiter: Any = None

    def expired(self, now: float) -> bool:
        """Whether the call's deadline has passed."""
        return self.deadline is not None and now >= self.deadline


def _names(names: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return None if names is None else tuple(names)


def member_of(
    key: str,
    inputs: Sequence[Any],
    input_names: Sequence[str | None] | None,
    output_names: Sequence[str] | None,
    config: str | bytes | None,
    timeout: Timeout,
    max_rows: int,
    where: str,
) -> Member | None:
    """The call as a :class:`Member`, or ``None`` when it cannot be merged (it goes alone).

    A call goes alone when an input has no rows (a scalar), the inputs
    disagree on their number of rows, it has 0 rows or more than
    ``max_rows``, or an input cannot be sent (the call alone raises the error).
    """
    if not isinstance(inputs, (list, tuple)) or not inputs:
        return None
    arrays: list[np.ndarray] = []
    shapes: list[tuple[Any, ...]] = []
    rows = -1
    try:
        for i, v in enumerate(inputs):
            a = v if type(v) is np.ndarray else _as_array(v, f"inputs[{i}]")
            if a.ndim == 0:
                return None
            if rows < 0:
                rows = a.shape[0]
            elif a.shape[0] != rows:
                return None
            dt = a.dtype
            kind = dt.kind
            if kind in "UOST":
                what: Any = kind  # strings of any width stack into one array
            elif type_of_dtype(dt) is None:
                return None  # not encodable: the call alone says why
            else:
                what = dt.str
            arrays.append(a)
            shapes.append((what, a.shape[1:]))
    except GraphPipeError:
        return None
    if rows < 1 or rows > max_rows:
        return None
    ins = _names(input_names)
    outs = _names(output_names)
    sig = (key, ins, outs, config, timeout.connect, timeout.read, tuple(shapes))
    return Member(key, arrays, rows, ins, outs, config, timeout, sig, where)


class Batch:
    """Members with one signature, merged into one request."""

    __slots__ = ("members", "opened", "rows", "sig")

    def __init__(self, sig: tuple[Any, ...], members: Sequence[Member] = ()) -> None:
        self.sig = sig
        self.members: list[Member] = list(members)
        self.rows = sum(m.rows for m in self.members)
        self.opened = self.members[0].arrived if self.members else time.monotonic()

    def add(self, m: Member) -> None:
        """Take one more member."""
        if not self.members:
            self.opened = m.arrived
        self.members.append(m)
        self.rows += m.rows
        m.batch = self

    def remove(self, m: Member) -> bool:
        """Drop a member that left before the batch went out; whether it was the oldest."""
        i = self.members.index(m)
        del self.members[i]
        self.rows -= m.rows
        if self.members and i == 0:
            self.opened = self.members[0].arrived
        return i == 0

    def due(self, max_wait: float) -> float:
        """When the batch must go out: its oldest call's arrival plus ``max_wait``."""
        return self.opened + max_wait

    def arrays(self) -> list[np.ndarray]:
        """Each input: the members' rows stacked along axis 0 (one member: its own arrays)."""
        ms = self.members
        if len(ms) == 1:
            return ms[0].arrays
        return [np.concatenate([m.arrays[i] for m in ms]) for i in range(len(ms[0].arrays))]

    def timeout(self) -> Timeout:
        """The request's timeout: the members' connect and read timeouts, and a total
        that lasts as long as the latest deadline among them (none if one has none)."""
        first = self.members[0].timeout
        deadlines = [m.deadline for m in self.members]
        if any(d is None for d in deadlines):
            return Timeout(first.connect, first.read, None)
        left = max(d for d in deadlines if d is not None) - time.monotonic()
        if left <= 0:
            raise deadline_error(self.members[0])
        return Timeout(first.connect, first.read, left)

    def split(self, outputs: list[np.ndarray]) -> list[list[np.ndarray]] | None:
        """Each member's rows of every output (views), or ``None`` when an output is not
        row-wise (its first dimension is not the batch's row count)."""
        ms = self.members
        if len(ms) == 1:
            return [outputs]  # the member's own request: its answer as the server gave it
        n = self.rows
        for o in outputs:
            if o.ndim == 0 or o.shape[0] != n:
                return None
        parts: list[list[np.ndarray]] = []
        start = 0
        for m in ms:
            stop = start + m.rows
            parts.append([o[start:stop] for o in outputs])
            start = stop
        return parts


class NotRowwise:
    """The signatures of calls whose model answered a merged batch with outputs that are
    not row-wise: such calls go alone from then on (a bounded memory)."""

    __slots__ = ("_sigs",)

    def __init__(self) -> None:
        self._sigs: set[tuple[Any, ...]] = set()

    def __contains__(self, sig: object) -> bool:
        return sig in self._sigs

    def add(self, sig: tuple[Any, ...]) -> None:
        """Remember one signature (forgetting them all once there are too many)."""
        if len(self._sigs) >= _NOT_ROWWISE_MEMORY:
            self._sigs.clear()
        self._sigs.add(sig)


class TimerSlack:
    """How late a driver's timer wakes (learned), so that a batch leaves on time.

    A thread's timed wait or an event loop's timer wakes after the time asked
    for: by tens of microseconds on an idle machine, by a millisecond or more
    on a loaded one (and epoll counts whole milliseconds). So the drivers ask
    to wake :attr:`late` seconds early: a running estimate of the median of
    how late they woke (each wake moves it a step of ``max_wait / 40`` towards
    the lateness seen, so that a rare long stall does not drag it), at most
    half of ``max_wait``. A batch thus leaves about ``max_wait`` after its
    oldest call, in the median, and never before half of it.
    """

    __slots__ = ("cap", "late", "step")

    def __init__(self, max_wait: float) -> None:
        self.cap = max_wait / 2
        self.step = max_wait / 40
        self.late = 0.0

    def target(self, due: float) -> float:
        """When to ask to wake, for a batch due at ``due``."""
        return due - self.late

    def woke(self, target: float, now: float) -> None:
        """A timer asked for ``target`` fired at ``now``."""
        over = now - target
        if over < 0:
            return  # woken before the time asked for: nothing learned
        if over > self.late:
            self.late = min(self.cap, self.late + self.step)
        else:
            self.late = max(0.0, self.late - self.step)


def log_batch(batch: Batch) -> None:
    """The DEBUG line of a merged request going out (the exchange's own line follows)."""
    if len(batch.members) > 1 and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "coalesced %d calls (%d rows) into one request to %s",
            len(batch.members),
            batch.rows,
            batch.members[0].where,
        )


def log_bisect(batch: Batch, exc: BaseException) -> None:
    """The INFO line of a merged request's model error, bisected (``idempotent=True``)."""
    logger.info(
        "a model error on %d coalesced calls to %s (%s: %s); sending each half again to find "
        "the failing calls (idempotent=True)",
        len(batch.members),
        batch.members[0].where,
        type(exc).__name__,
        str(exc)[:200],
    )


def log_not_rowwise(batch: Batch) -> None:
    """The INFO line of a merged request whose outputs are not row-wise."""
    logger.info(
        "the outputs of %s do not have one row per input row (%d merged rows): its %d "
        "coalesced calls are sent again alone, and calls like them go alone from now on",
        batch.members[0].where,
        batch.rows,
        len(batch.members),
    )


def halves(members: list[Member]) -> tuple[list[Member], list[Member]]:
    """The two halves of a failed batch's members, for bisection."""
    mid = len(members) // 2
    return members[:mid], members[mid:]


def is_model_error(exc: BaseException) -> bool:
    """Whether ``exc`` says that the model failed on the batch's input (so that another
    subset of the rows may succeed): a :class:`RemoteError`, or a 400 or 500 status."""

    if isinstance(exc, RemoteError):
        return True
    return isinstance(exc, HTTPStatusError) and exc.status_code in MODEL_ERROR_STATUSES


def own_copy(exc: BaseException) -> BaseException:
    """A copy of a batch's error for one of its callers (one exception object raised in
    several threads would share and grow one traceback); the cause is kept."""
    try:
        dup = copy.copy(exc)
    except Exception:
        return exc
    if type(dup) is not type(exc):
        return exc
    dup.__cause__ = exc.__cause__
    dup.__traceback__ = None
    return dup


def deadline_error(m: Member) -> DeadlineExceeded:
    """The error of a member whose own total timeout passed while its batch was pending or out."""
    return DeadlineExceeded(
        f"the call to {m.where} did not finish within its total timeout of "
        f"{m.timeout.total} s (it was waiting for a coalesced request; see docs/coalescing.md)",
        url=m.where,
    )
