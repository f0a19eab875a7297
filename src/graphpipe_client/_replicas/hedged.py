"""The I/O of a hedged attempt: the same request on two replicas, the first answer wins.

:mod:`._replicas.hedging` decides (the delay, the budget); this module races.
One attempt of a call (:mod:`._replicas.attempts` runs the call) becomes:

- the primary is sent at once, on the calling thread (``Client``) or in a
  task (``AsyncClient``);
- if it has not answered after the delay, the budget allows, and another
  replica is in rotation, the same request goes there (on a thread of its
  own, or in a second task): the hedge, at most one per call;
- the first *answer* wins (any response but a 503, which ejects its replica);
  the other attempt is abandoned: the sync client shuts its socket down
  (:class:`~._http.abandon.Abandon`), the async client cancels its task; in
  both cases its connection is closed, never pooled;
- a failure while the other attempt runs is reported to the replica set
  (ejections as usual) and the call waits for the other; when both fail, the
  last failure is the attempt's, and the usual retry rules apply to it.

Neither attempt outlives the call's deadline: both are bounded by it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .._exceptions import GraphPipeError, TransportError
from .._http.abandon import Abandon
from .._http.exchange import PreparedRequest, RawResponse
from .._observe.log import log_ejection, logger
from .._observe.metrics import ametered, count_ejection, count_hedge, metered
from .hedging import Hedger
from .routing import ReplicaSet, ejects, ejects_response, retarget

if TYPE_CHECKING:
    from .._http.retries import RetryState
    from .attempts import AsyncClient, Client

__all__ = ["Outcome", "send_hedged", "send_hedged_async"]

#: One attempt's result: the replica, the request sent there, and its answer or error.
Outcome: TypeAlias = tuple[int, PreparedRequest, RawResponse | GraphPipeError]


def _answered(out: RawResponse | GraphPipeError) -> bool:
    """Whether ``out`` ends the race: a response, except a 503 (its replica refused the work)."""
    return isinstance(out, RawResponse) and not ejects_response(out)


def _report_failure(
    rs: ReplicaSet, req: PreparedRequest, index: int, out: RawResponse | GraphPipeError
) -> None:
    """Report the failure of an attempt whose call goes on with the other one."""
    if isinstance(out, GraphPipeError):
        why = f"{type(out).__name__}: {out}"
        error = why if ejects(out) else None
    else:
        why = error = f"HTTP {out.status} {out.reason}".strip()
    if rs.finished(index, ok=False, error=error):
        log_ejection(req, why)
        count_ejection(req)


def _start(rs: ReplicaSet, hedger: Hedger, index: int) -> int | None:
    """The replica a hedge of an attempt on ``index`` goes to, if another is in rotation and
    the budget allows; ``None`` otherwise."""
    if all(i == index or rs.is_ejected(i) for i in range(len(rs))):
        return None
    if not hedger.allow():
        return None
    j = rs.choose_other(index)
    if j is not None:
        count_hedge(won=False)
    return j


def _when(hedger: Hedger, deadline: float | None) -> float | None:
    """When (``time.monotonic()``) this attempt would be hedged, or ``None``: not at all."""
    delay = hedger.delay()
    if delay is None:
        return None
    when = time.monotonic() + delay
    return None if deadline is not None and when >= deadline else when


# -- the sync client ---------------------------------------------------------------


class _Timers:
    """One daemon thread that runs callbacks at their times: the hedges' delays.

    A callback must not block (it starts a thread); one that is no longer
    wanted returns at once (it checks its race).
    """

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def at(self, when: float, fn: Callable[[], None]) -> None:
        with self._cv:
            heapq.heappush(self._heap, (when, next(self._seq), fn))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="graphpipe-hedge-timer", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is fn:
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap:
                    self._cv.wait()
                when = self._heap[0][0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                fn = heapq.heappop(self._heap)[2]
            try:
                fn()
            except Exception:  # never lose the timer thread
                logger.exception("a hedge could not be started")


_timers = _Timers()


def _after_fork_in_child() -> None:
    global _timers
    _timers = _Timers()  # the parent's thread does not exist in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Race:
    """The two attempts of a hedged call of the sync client, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.primary = Abandon()
        self.hedge = Abandon()
        self.closed = False  # no hedge may start any more
        self.hedge_running = False
        self.hedged = False
        self.primary_over = False
        self.primary_won = False
        self.result: Outcome | None = None  # the hedge's outcome the primary waits for
        self.done = threading.Event()


def send_hedged(
    client: Client,
    rs: ReplicaSet,
    hedger: Hedger,
    state: RetryState,
    attempt: PreparedRequest,
    index: int,
) -> tuple[Outcome, bool]:
    """One attempt of a sync call on replica ``index``, hedged if slow; its outcome, and
    whether a hedge was sent."""
    hedger.call()
    started = time.monotonic()
    when = _when(hedger, state.deadline)
    if when is None:
        try:
            out: RawResponse | GraphPipeError = metered(
                client._transport.send, attempt, state.deadline
            )
        except GraphPipeError as exc:
            out = exc
        rs.observe_outcome(index, time.monotonic() - started, out)
        if _answered(out):
            hedger.record(time.monotonic() - started)
        return (index, attempt, out), False
    race = _Race()
    _timers.at(when, lambda: _fire(client, rs, hedger, state, attempt, index, race))
    try:
        out = metered(client._transport.send, attempt, state.deadline, abandon=race.primary)
    except GraphPipeError as exc:
        out = exc
    except BaseException:
        with race.lock:
            race.closed = race.primary_over = race.primary_won = True
            race.hedge.abandon()
        raise
    rs.observe_outcome(index, time.monotonic() - started, out)  # abandoned: a lower bound
    good = _answered(out)
    with race.lock:
        race.closed = race.primary_over = True
        if race.result is not None:  # the hedge answered first: this attempt was abandoned
            rs.finished(index, ok=True)
            return race.result, True
        if good:
            race.primary_won = True
            race.hedge.abandon()
            hedger.record(time.monotonic() - started)
            return (index, attempt, out), race.hedged
        if not race.hedge_running:
            return (index, attempt, out), race.hedged
        _report_failure(rs, attempt, index, out)
    race.done.wait()  # the hedge runs within the call's deadline
    return _hedge_outcome(race), True


def _hedge_outcome(race: _Race) -> Outcome:
    """The hedge's outcome, once :attr:`_Race.done` is set."""
    assert race.result is not None
    return race.result


def _fire(
    client: Client,
    rs: ReplicaSet,
    hedger: Hedger,
    state: RetryState,
    primary: PreparedRequest,
    index: int,
    race: _Race,
) -> None:
    """On the timer thread, at the delay: start the hedge unless the call is over."""
    with race.lock:
        if race.closed:
            return
        race.closed = True
        j = _start(rs, hedger, index)
        if j is None:
            return
        race.hedge_running = race.hedged = True
    req = retarget(client._config, primary, rs.endpoint(j))
    logger.debug("hedging the call to %s on %s", primary.endpoint.redacted, req.endpoint.redacted)
    threading.Thread(
        target=_run_hedge,
        args=(client, rs, hedger, state, req, j, race),
        name="graphpipe-hedge",
        daemon=True,
    ).start()


def _run_hedge(
    client: Client,
    rs: ReplicaSet,
    hedger: Hedger,
    state: RetryState,
    req: PreparedRequest,
    j: int,
    race: _Race,
) -> None:
    started = time.monotonic()
    out: RawResponse | GraphPipeError
    try:
        out = metered(client._transport.send, req, state.deadline, abandon=race.hedge)
    except GraphPipeError as exc:
        out = exc
    except BaseException as exc:
        out = TransportError(f"the hedge to {req.endpoint.redacted} failed: {exc!r}")
    rs.observe_outcome(j, time.monotonic() - started, out)  # abandoned: a lower bound
    good = _answered(out)
    with race.lock:
        race.hedge_running = False
        if race.primary_won:  # abandoned
            rs.finished(j, ok=True)
            return
        if good:
            hedger.hedge_won()
            count_hedge(won=True)
            hedger.record(time.monotonic() - started)
        elif not race.primary_over:
            _report_failure(rs, req, j, out)  # the primary may still answer
            return
        race.result = (j, req, out)
        if good and not race.primary_over:
            race.primary.abandon()  # the calling thread's read returns now
        race.done.set()


# -- the async client --------------------------------------------------------------


def _under_asyncio() -> bool:
    """Whether an asyncio loop runs this call (under trio, calls are not hedged)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def send_hedged_async(
    client: AsyncClient,
    rs: ReplicaSet,
    hedger: Hedger,
    state: RetryState,
    attempt: PreparedRequest,
    index: int,
) -> tuple[Outcome, bool]:
    """The async :func:`send_hedged`: each attempt is a task; the loser's is cancelled (the
    transports close a connection whose exchange was cancelled, never pool it)."""
    hedger.call()
    started = time.monotonic()
    when = _when(hedger, state.deadline) if _under_asyncio() else None
    if when is None:
        try:
            out: RawResponse | GraphPipeError = await ametered(
                client._transport.send, attempt, state.deadline
            )
        except GraphPipeError as exc:
            out = exc
        rs.observe_outcome(index, time.monotonic() - started, out)
        if _answered(out):
            hedger.record(time.monotonic() - started)
        return (index, attempt, out), False
    tasks: dict[asyncio.Future[Any], tuple[int, PreparedRequest, float]] = {
        asyncio.ensure_future(ametered(client._transport.send, attempt, state.deadline)): (
            index,
            attempt,
            started,
        )
    }
    hedged = False
    try:
        done, _ = await asyncio.wait(set(tasks), timeout=max(0.0, when - time.monotonic()))
        if not done:
            j = _start(rs, hedger, index)
            if j is not None:
                hedged = True
                req = retarget(client._config, attempt, rs.endpoint(j))
                logger.debug(
                    "hedging the call to %s on %s", attempt.endpoint.redacted, req.endpoint.redacted
                )
                task = asyncio.ensure_future(ametered(client._transport.send, req, state.deadline))
                tasks[task] = (j, req, time.monotonic())
        pending = set(tasks)
        last: Outcome | None = None
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            outcomes = []
            for t in done:
                i, req, t0 = tasks.pop(t)
                error = t.exception()
                if error is not None and not isinstance(error, GraphPipeError):
                    raise error
                out = error if error is not None else t.result()
                rs.observe_outcome(i, time.monotonic() - t0, out)
                outcomes.append((i, req, t0, out))
            outcomes.sort(key=lambda o: not _answered(o[3]))  # an answer first
            for n, (i, req, t0, out) in enumerate(outcomes):
                if _answered(out):
                    hedger.record(time.monotonic() - t0)
                    if i != index:
                        hedger.hedge_won()
                        count_hedge(won=True)
                    for other, other_req, _, other_out in outcomes[n + 1 :]:  # done too
                        if _answered(other_out):
                            rs.finished(other, ok=True)
                        else:
                            _report_failure(rs, other_req, other, other_out)
                    await _abandon(rs, tasks)
                    return (i, req, out), hedged
                if pending:
                    _report_failure(rs, req, i, out)
                else:
                    if last is not None:
                        _report_failure(rs, last[1], last[0], last[2])
                    last = (i, req, out)
        assert last is not None
        return last, hedged
    except BaseException:
        # Cancelled (or the deadline): the primary is the caller's to report, the hedge ours.
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for i, _, _ in tasks.values():
            if i != index:
                rs.finished(i, ok=True)
        raise


async def _abandon(
    rs: ReplicaSet, tasks: dict[asyncio.Future[Any], tuple[int, PreparedRequest, float]]
) -> None:
    """Cancel the attempts still running, and wait until they have closed their connections."""
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    for i, _, t0 in tasks.values():
        rs.observe(i, time.monotonic() - t0, at_least=True)
        rs.finished(i, ok=True)
