"""Coalescing for ``AsyncClient``: tasks wait on futures, a task of the loop sends each batch.

Each member awaits a future of the running loop. A call that finds its model
idle (``Traffic``, ``Coalesce(eager=True)``) opens a batch that closes at the
end of the loop's current turn: the calls made in the same turn (tasks started
together) join it, the later ones wait behind it. Otherwise a timer of the
loop closes a batch when its oldest call has waited ``max_wait`` (a full batch
closes at once). A task of the loop sends each batch, so a caller's
cancellation or deadline never cancels a request that other callers wait
for. A cancelled or expired member takes its rows out of a batch that has not
gone out; once the batch is out, its share of the answer is dropped (and when
every member has gone, the request is cancelled). The state belongs to one
event loop: used from another loop, the client starts afresh. Under trio,
calls are sent alone.

Failures and bisection are as in ``coalesce_threads.py``; the plan is
``coalesce.py``'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from .._exceptions import GraphPipeError
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

__all__ = ["TaskCoalescer"]

#: What sends a batch (or one member alone, as a batch of one): the client's request.
SendBatch = Callable[[Batch], Awaitable[list[np.ndarray]]]


class _OpenBatch(Batch):
    """A batch of the loop: its timer while open (or, ``eager``, its close at the end of
    the loop's turn), its task once out."""

    __slots__ = ("back", "eager", "task", "timer")

    def __init__(self, sig: tuple[Any, ...]) -> None:
        super().__init__(sig)
        self.timer: asyncio.Handle | None = None
        self.task: asyncio.Task[None] | None = None
        self.eager = False
        self.back = False  # over, for Traffic


class TaskCoalescer:
    """Holds the open batches of one ``AsyncClient`` (in its current loop) and runs its calls."""

    def __init__(self, options: Coalesce, send: SendBatch, idempotent: bool) -> None:
        self.options = options
        self._send = send
        self._idempotent = idempotent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: dict[tuple[Any, ...], _OpenBatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._not_rowwise = NotRowwise()
        self._slack = TimerSlack(options.max_wait)
        self._traffic = Traffic(options)

    async def run(self, m: Member) -> list[np.ndarray]:
        """The member's own outputs, once its batch is answered (or its typed error)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: alone
            return await self._send(Batch(m.sig, [m]))
        if m.sig in self._not_rowwise:
            return await self._send(Batch(m.sig, [m]))
        if loop is not self._loop:  # another loop: the old one's batches are not ours to run
            self._loop = loop
            self._open = {}
            self._tasks = set()
            self._traffic = Traffic(self.options)
        fut: asyncio.Future[Any] = loop.create_future()
        m.waiter = fut
        self._join(m, loop)
        expiry = None if m.deadline is None else loop.call_at(m.deadline, self._expire, m)
        try:
            out = await fut
        except asyncio.CancelledError:
            if m.state not in ("done", "gone"):
                self._leave(m)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        if out is ALONE:
            return await self._send(Batch(m.sig, [m]))
        return out  # type: ignore[no-any-return]

    def _join(self, m: Member, loop: asyncio.AbstractEventLoop) -> None:
        b = self._open.get(m.sig)
        max_rows = self.options.max_rows
        if b is not None and b.rows + m.rows > max_rows:
            self._close(b)
            b = None
        if b is None:
            b = self._open[m.sig] = _OpenBatch(m.sig)
            b.add(m)
            if self._traffic.at_once(m.sig, m.arrived):
                b.eager = True  # idle: out at the end of this turn of the loop
                b.timer = loop.call_soon(self._close_eager, b)
            else:
                self._start_timer(b, loop)
        else:
            b.add(m)
        if b.rows >= max_rows:
            self._close(b)

    def _start_timer(self, b: _OpenBatch, loop: asyncio.AbstractEventLoop) -> None:
        at = self._slack.target(b.due(self.options.max_wait))
        b.timer = loop.call_at(at, self._on_timer, b, at)

    def _on_timer(self, b: _OpenBatch, at: float) -> None:
        self._slack.woke(at, time.monotonic())  # the clock of the members' arrivals
        b.timer = None
        self._close(b)

    def _close_eager(self, b: _OpenBatch) -> None:
        b.timer = None
        if self._open.get(b.sig) is b:
            self._close(b)

    def _close(self, b: _OpenBatch) -> None:
        """The batch goes out, as a task of the loop."""
        if b.timer is not None:
            b.timer.cancel()
            b.timer = None
        if self._open.get(b.sig) is b:
            del self._open[b.sig]
        for x in b.members:
            x.state = "sent"
        assert self._loop is not None
        traffic = self._traffic
        traffic.out(b.sig)
        task = self._loop.create_task(self._send_out(b, traffic))
        b.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._back(b, traffic))  # cancelled before it ran

    def _back(self, b: _OpenBatch, traffic: Traffic) -> None:
        if not b.back:
            b.back = True
            traffic.back(b.sig, len(b.members) > 1, time.monotonic())

    async def _send_out(self, b: _OpenBatch, traffic: Traffic) -> None:
        """Send a closed batch; it is over (for :class:`Traffic`) before its callers wake."""
        try:
            await self._dispatch(Batch(b.sig, b.members))
        finally:
            self._back(b, traffic)

    def _expire(self, m: Member) -> None:
        fut: asyncio.Future[Any] = m.waiter
        if not fut.done():
            self._leave(m)
            fut.set_exception(deadline_error(m))

    def _leave(self, m: Member) -> None:
        """The member stops waiting: out of its open batch, or its answer dropped."""
        state = m.state
        m.state = "gone"
        b = m.batch
        if not isinstance(b, _OpenBatch):
            return
        if state == "waiting":
            oldest = b.remove(m)
            if not b.members:
                if b.timer is not None:
                    b.timer.cancel()
                    b.timer = None
                if self._open.get(b.sig) is b:
                    del self._open[b.sig]
            elif oldest and not b.eager and b.timer is not None and self._loop is not None:
                b.timer.cancel()
                self._start_timer(b, self._loop)
        elif (
            state == "sent" and b.task is not None and not any(x.state == "sent" for x in b.members)
        ):
            b.task.cancel()  # nobody waits for this request any more

    def _deliver(self, members: list[Member], outcomes: list[list[np.ndarray]] | str) -> None:
        for i, x in enumerate(members):
            if x.state == "sent" and not x.waiter.done():
                x.state = "done"
                x.waiter.set_result(outcomes if isinstance(outcomes, str) else outcomes[i])

    def _fail(self, members: list[Member], exc: BaseException) -> None:
        first = True
        for x in members:
            if x.state == "sent" and not x.waiter.done():
                x.state = "done"
                x.waiter.set_exception(exc if first else own_copy(exc))
                first = False

    async def _dispatch(self, batch: Batch) -> None:
        """Send the batch and hand each member its outcome (bisecting a model error)."""
        log_batch(batch)
        count_coalesced(batch.rows)
        try:
            outputs = await self._send(batch)
        except GraphPipeError as exc:
            if self._idempotent and len(batch.members) > 1 and is_model_error(exc):
                log_bisect(batch, exc)
                subs = [
                    Batch(batch.sig, live)
                    for half in halves(batch.members)
                    if (live := [x for x in half if x.state == "sent"])
                ]
                await asyncio.gather(*(self._dispatch(s) for s in subs))
                return
            self._fail(batch.members, exc)
            return
        except asyncio.CancelledError:
            for x in batch.members:  # the loop is shutting down, or nobody is left
                if x.state == "sent" and not x.waiter.done():
                    x.state = "done"
                    x.waiter.cancel()
            raise
        except Exception as exc:
            self._fail(batch.members, exc)
            return
        parts = batch.split(outputs)
        if parts is None:
            log_not_rowwise(batch)
            self._not_rowwise.add(batch.sig)
            self._deliver(batch.members, ALONE)
        else:
            self._deliver(batch.members, parts)
