"""Coalescing for ``Client``: threads wait for a batch, and one of them sends it.

No extra thread: the callers share the work. A call that finds its model
idle (``Traffic``, ``Coalesce(eager=True)``) closes a batch of its own at once
and sends it; the calls that come meanwhile wait behind it. Otherwise, the
first call of a batch times it; the batch closes when it is full or when its
oldest call has waited ``max_wait``, and the member with the latest deadline
(the one that closed it, on a tie) sends it in its own thread, so that nobody
waits for a sender with a shorter deadline than its own. The others sleep on
their own condition until their answer arrives or their own deadline passes.
A member that leaves early (its deadline, ``KeyboardInterrupt``) takes its
rows out of a batch that has not gone out; once the batch is out, its share
of the answer is dropped.

A failure of the whole batch reaches each of its members as the same typed
error. With ``idempotent=True``, a model error on a merged batch is bisected:
each half is sent again, until only the members whose rows fail get the error.
The plan (signatures, merging, splitting) is ``coalesce.py``'s.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np

from .._exceptions import GraphPipeError, TransportError
from .._observe.metrics import count_coalesced
from .coalesce import (
    ALONE,
    Batch,
    Coalesce,
    Member,
    NotRowwise,
    TimerSlack,
    Traffic,
    deadline_error,
    halves,
    is_model_error,
    log_batch,
    log_bisect,
    log_not_rowwise,
    own_copy,
)

__all__ = ["ThreadCoalescer"]

#: What sends a batch (or one member alone, as a batch of one): the client's request.
SendBatch = Callable[[Batch], list[np.ndarray]]


#: Every coalescer, for a forked child to start afresh (see :func:`_after_fork_in_child`).
_coalescers: weakref.WeakSet[ThreadCoalescer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The child has none of the parent's other threads: its open batches hold calls that
    # will never be answered there, and its lock may have been held at the fork.
    for coalescer in list(_coalescers):
        coalescer._lock = threading.Lock()
        coalescer._open = {}
        coalescer._traffic.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _latest(m: Member) -> float:
    return math.inf if m.deadline is None else m.deadline


class ThreadCoalescer:
    """Holds the open batches of one ``Client`` and runs its members' calls."""

    def __init__(self, options: Coalesce, send: SendBatch, idempotent: bool) -> None:
        self.options = options
        self._send = send
        self._idempotent = idempotent
        self._lock = threading.Lock()
        self._open: dict[tuple[object, ...], Batch] = {}
        self._not_rowwise = NotRowwise()
        self._slack = TimerSlack(options.max_wait)
        self._traffic = Traffic(options)
        _coalescers.add(self)

    def run(self, m: Member) -> list[np.ndarray]:
        """The member's own outputs, once its batch is answered (or its typed error)."""
        if m.sig in self._not_rowwise:
            return self._send(Batch(m.sig, [m]))
        m.waiter = threading.Condition(self._lock)
        batch: Batch | None = None
        live: list[Member] = []
        with self._lock:
            self._join(m)
            self._wait(m)
            sender = m.state == "sender"
            if sender and m.batch is not None:
                batch = m.batch
                live = [x for x in batch.members if x.state in ("sent", "sender")]
                m.state = "sent"
        if batch is not None:
            try:
                self._dispatch(Batch(batch.sig, live))
            finally:
                with self._lock:
                    self._traffic.back(batch.sig, len(live) > 1, time.monotonic())
        if m.error is not None:
            raise m.error if sender else own_copy(m.error)
        out = m.outputs
        if out is ALONE or out is None:
            return self._send(Batch(m.sig, [m]))
        assert not isinstance(out, str)
        return out

    # -- under the lock -----------------------------------------------------------

    def _join(self, m: Member) -> None:
        b = self._open.get(m.sig)
        max_rows = self.options.max_rows
        if b is not None and b.rows + m.rows > max_rows:
            self._close(b, None)
            b = None
        if b is None:
            if self._traffic.at_once(m.sig, m.arrived):
                b = Batch(m.sig)  # idle: out at once, the next calls queue behind it
                b.add(m)
                self._close(b, m)
                return
            b = self._open[m.sig] = Batch(m.sig)
        b.add(m)
        if b.rows >= max_rows:
            self._close(b, m)

    def _wait(self, m: Member) -> None:
        """Until the member is answered or must send its batch; raises when it must leave."""
        max_wait = self.options.max_wait
        slack = self._slack
        timer = math.inf  # when this member asked to wake to close its batch
        try:
            while True:
                state = m.state
                if state in ("done", "sender"):
                    return
                now = time.monotonic()
                if m.expired(now):
                    self._leave(m)
                    raise deadline_error(m)
                until = m.deadline
                b = m.batch
                if state == "waiting" and b is not None and b.members[0] is m:
                    due = slack.target(b.due(max_wait))
                    if now >= due:
                        if now >= timer:
                            slack.woke(timer, now)
                        self._close(b, m)
                        continue
                    timer = due
                    until = due if until is None else min(due, until)
                m.waiter.wait(None if until is None else until - now)
        except BaseException:
            if m.state not in ("done", "gone"):
                self._leave(m)
            raise

    def _close(self, b: Batch, closer: Member | None) -> None:
        """The batch goes out: it leaves the open ones, and its sender is chosen and woken."""
        if self._open.get(b.sig) is b:
            del self._open[b.sig]
        self._traffic.out(b.sig)
        sender = closer if closer is not None else b.members[0]
        for x in b.members:
            x.state = "sent"
            if _latest(x) > _latest(sender):
                sender = x
        sender.state = "sender"
        if sender is not closer:
            sender.waiter.notify()

    def _leave(self, m: Member) -> None:
        """The member stops waiting: out of its open batch, or its answer dropped."""
        state = m.state
        m.state = "gone"
        b = m.batch
        if b is None:
            return
        if state == "waiting":
            oldest = b.remove(m)
            if not b.members:
                if self._open.get(b.sig) is b:
                    del self._open[b.sig]
            elif oldest:
                b.members[0].waiter.notify()  # the new oldest times the batch
        elif state == "sender":  # the batch is closed: another member sends it
            live = [x for x in b.members if x.state == "sent"]
            if live:
                nxt = max(live, key=_latest)
                nxt.state = "sender"
                nxt.waiter.notify()
            else:  # nobody left to send it: it never goes out
                self._traffic.back(b.sig, False, time.monotonic())

    def _deliver(self, members: list[Member], outcomes: list[list[np.ndarray]] | str) -> None:
        with self._lock:
            for i, x in enumerate(members):
                if x.state == "sent":
                    x.outputs = outcomes if isinstance(outcomes, str) else outcomes[i]
                    x.state = "done"
                    x.waiter.notify()

    def _fail(self, members: list[Member], exc: BaseException) -> None:
        with self._lock:
            for x in members:
                if x.state == "sent":
                    x.error = exc
                    x.state = "done"
                    x.waiter.notify()

    # -- the sender, without the lock -------------------------------------------------

    def _dispatch(self, batch: Batch) -> None:
        """Send the batch and hand each member its outcome (bisecting a model error)."""
        log_batch(batch)
        count_coalesced(batch.rows)
        try:
            outputs = self._send(batch)
        except GraphPipeError as exc:
            if self._idempotent and len(batch.members) > 1 and is_model_error(exc):
                log_bisect(batch, exc)
                for half in halves(batch.members):
                    with self._lock:
                        live = [x for x in half if x.state == "sent"]
                    if live:
                        self._dispatch(Batch(batch.sig, live))
                return
            self._fail(batch.members, exc)
            return
        except Exception as exc:
            self._fail(batch.members, exc)
            return
        except BaseException as exc:  # KeyboardInterrupt in the sending thread
            self._fail(
                batch.members,
                TransportError(
                    f"the thread sending this coalesced request was interrupted "
                    f"({type(exc).__name__}); the request may have reached the server"
                ),
            )
            raise
        parts = batch.split(outputs)
        if parts is None:
            log_not_rowwise(batch)
            self._not_rowwise.add(batch.sig)
            self._deliver(batch.members, ALONE)
        else:
            self._deliver(batch.members, parts)
