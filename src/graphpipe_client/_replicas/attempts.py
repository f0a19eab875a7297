"""The I/O around a :class:`~.routing.ReplicaSet`: one call's attempts, and the probes.

The rules (see ``docs/replicas.md``):

- each attempt goes where :meth:`ReplicaSet.choose` says; the outcome is
  reported back (in flight, sent, failed, ejections, and how long it took:
  the replica's latency estimate);
- a request that never reached a replica (a :class:`ConnectError` other
  than TLS) or that a replica refused with 503 is retried at once on another
  replica in rotation (after the usual back-off when there is none), within
  the call's ``retries`` and deadline; what a replica may have run is sent
  again only with ``idempotent=True``, as for one URL;
- a replica out of rotation whose back-off is over is probed with
  ``is_ready`` in the background (a thread, or a task of the running loop)
  while the others serve; when every replica is out of rotation, the call
  itself waits for the earliest back-off to end and probes it: a call with a
  deadline as often as its deadline allows (no retry spent), one without
  spends one retry per wait of at most ``RetryPolicy.backoff_max``; otherwise
  it fails with :class:`ConnectError`;
- with a :class:`~.hedging.Hedge`, an attempt may be raced against a copy on
  another replica (:mod:`.hedged`), once per call.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from .._exceptions import ConnectError, GraphPipeError
from .._http.abandon import Abandon
from .._http.config import ClientConfig, Timeout
from .._http.exchange import PreparedRequest, RawResponse
from .._http.retries import RetryState
from .._observe.log import log_ejection, log_reinstated, log_retry
from .._observe.metrics import ametered, count_ejection, metered
from .hedged import send_hedged, send_hedged_async
from .routing import Choice, ReplicaSet, ejects, ejects_response, retarget

if TYPE_CHECKING:
    import asyncio  # imported where the async client's functions run: the sync one never loads it

__all__ = [
    "cancel_probes",
    "probe_all_async",
    "probe_all_sync",
    "replica_attempts",
    "replica_attempts_async",
]


# What this module uses of a client. ``Client`` and ``AsyncClient`` have these
# (private) members; the clients' layer sits above this one, so it is named by shape.
class _SyncSender(Protocol):
    def send(
        self, req: PreparedRequest, deadline: float | None = ..., abandon: Abandon | None = ...
    ) -> RawResponse: ...


class _AsyncSender(Protocol):
    def send(
        self, req: PreparedRequest, deadline: float | None = ...
    ) -> Awaitable[RawResponse]: ...
    def sleep(self, seconds: float) -> Awaitable[None]: ...


class Client(Protocol):
    """A sync client as the replica I/O drives it: its options, transport and probe."""

    @property
    def _config(self) -> ClientConfig: ...
    @property
    def _transport(self) -> _SyncSender: ...
    def _probe(self, which: str, url: str, timeout: Any) -> tuple[bool, str]: ...


class AsyncClient(Protocol):
    """An async client as the replica I/O drives it: its options, transport and probe."""

    @property
    def _config(self) -> ClientConfig: ...
    @property
    def _transport(self) -> _AsyncSender: ...
    def _probe(self, which: str, url: str, timeout: Any) -> Awaitable[tuple[bool, str]]: ...


#: A probe of a replica out of rotation waits at most this long to connect, and to read.
PROBE_TIMEOUT = (2.0, 5.0)


def _probe_timeout(config_timeout: Timeout, deadline: float | None) -> Timeout:
    connect = min(PROBE_TIMEOUT[0], config_timeout.connect or PROBE_TIMEOUT[0])
    read = min(PROBE_TIMEOUT[1], config_timeout.read or PROBE_TIMEOUT[1])
    if deadline is not None:
        left = max(0.01, deadline - time.monotonic())
        connect, read = min(connect, left), min(read, left)
    return Timeout(connect=connect, read=read)


def _why(exc: GraphPipeError) -> str:
    return f"{type(exc).__name__}: {exc}"


def _all_out(rs: ReplicaSet, state: RetryState, wait: float, last: BaseException | None) -> float:
    """The pause of a call that found every replica out of rotation; raises when it cannot wait.

    A call with a deadline waits as long as its deadline allows: the waits
    and the probes send it nowhere, so they spend none of its retries (the
    retry granted by the failure that ejected the last replica is the send
    after a successful probe). Without a deadline, each wait is one retry of
    the budget, at most ``backoff_max`` long: the only bound there is.
    """
    why = rs.last_error() or "no replica in rotation"
    if state.deadline is not None:
        if time.monotonic() + wait < state.deadline:
            log_retry(state.req, state.attempt, state.policy.retries, wait, "every replica ejected")
            return wait
        reason = f"the earliest is back in {wait:.2f} s, past the call's deadline"
    elif state.attempt >= state.policy.retries:
        reason = f"its {state.policy.retries} retries are spent"
    elif wait > state.policy.backoff_max:
        reason = f"the earliest is back in {wait:.2f} s, over backoff_max"
    else:
        state.attempt += 1
        log_retry(state.req, state.attempt, state.policy.retries, wait, "every replica ejected")
        return wait
    raise ConnectError(
        f"every replica is out of rotation ({rs.redacted()}) and the call cannot wait: "
        f"{reason}; the last failure: {why}",
        url=rs.redacted(),
    ) from last


def _after_error(
    rs: ReplicaSet, state: RetryState, req: PreparedRequest, index: int, exc: GraphPipeError
) -> float:
    """Report a failed attempt; the pause before the next one (or raise ``exc``)."""
    eject = ejects(exc)
    if rs.finished(index, ok=False, error=_why(exc) if eject else None):
        log_ejection(req, _why(exc))
        count_ejection(req)
    if not (state._retryable(exc) and state.attempt < state.policy.retries):
        raise exc
    elsewhere = _elsewhere(rs, index)
    delay = 0.0 if elsewhere else state.policy.backoff_delay(state.attempt)
    state.attempt += 1
    state._check_deadline(delay, exc)
    log_retry(
        req,
        state.attempt,
        state.policy.retries,
        delay,
        _why(exc) + (" (on another replica)" if elsewhere else ""),
    )
    return delay


def _after_response(
    rs: ReplicaSet, state: RetryState, req: PreparedRequest, index: int, raw: RawResponse
) -> float | None:
    """Report an answer; ``None`` when it is the call's answer, else the pause before a retry."""
    if not ejects_response(raw):
        rs.finished(index, ok=True)
        return None
    if rs.finished(index, ok=False, error=f"HTTP {raw.status} {raw.reason}".strip()):
        log_ejection(req, f"HTTP {raw.status}")
        count_ejection(req)
    if raw.status not in state.policy.statuses or state.attempt >= state.policy.retries:
        return None
    if _elsewhere(rs, index):
        delay = 0.0
    else:
        retry_after = state.policy.retry_after_delay(raw.retry_after)
        delay = state.policy.backoff_delay(state.attempt) if retry_after is None else retry_after
    if state.deadline is not None and time.monotonic() + delay >= state.deadline:
        return None
    state.attempt += 1
    log_retry(req, state.attempt, state.policy.retries, delay, f"HTTP {raw.status}")
    return delay


def _probed(rs: ReplicaSet, index: int, ready: bool, why: str) -> None:
    rs.probed(index, ready, why)
    if ready:
        log_reinstated(rs.endpoint(index).redacted, why)


def _elsewhere(rs: ReplicaSet, index: int) -> bool:
    """Whether another replica than ``index`` is in rotation."""
    return any(i != index and not rs.is_ejected(i) for i in range(len(rs)))


# -- the sync client ---------------------------------------------------------------


def replica_attempts(client: Client, req: PreparedRequest, rs: ReplicaSet) -> RawResponse:
    """Every attempt of one call of a sync client over the replicas of ``rs``."""
    config = client._config
    state = RetryState(config, req)
    tried: set[int] = set()
    last: BaseException | None = None
    hedger = rs.hedger  # None once the call has sent its one hedge
    while True:
        choice = rs.choose(tried)
        for i in choice.probes:
            _probe_in_thread(client, rs, i)
        if choice.action == "probe":
            ready, why = _probe_one(client, rs, choice.index, state.deadline)
            _probed(rs, choice.index, ready, why)
            continue
        if choice.action == "wait":
            time.sleep(_wait(rs, state, choice, last))
            continue
        i = choice.index
        attempt = retarget(config, req, rs.endpoint(i))
        tried.add(i)
        try:
            if hedger is None:
                started = time.monotonic()
                try:
                    raw = metered(client._transport.send, attempt, state.deadline)
                except GraphPipeError as exc:
                    rs.observe_outcome(i, time.monotonic() - started, exc)
                    raise
                rs.observe_outcome(i, time.monotonic() - started, raw)
            else:
                (i, attempt, out), hedged = send_hedged(client, rs, hedger, state, attempt, i)
                hedger = None if hedged else hedger
                tried.add(i)
                if isinstance(out, GraphPipeError):
                    raise out
                raw = out
        except GraphPipeError as exc:
            last = exc
            delay = _after_error(rs, state, attempt, i, exc)
        except BaseException:  # KeyboardInterrupt: no longer in flight
            rs.finished(i, ok=True)
            raise
        else:
            retry_delay = _after_response(rs, state, attempt, i, raw)
            if retry_delay is None:
                return raw
            delay = retry_delay
        if delay:
            time.sleep(delay)


def _wait(rs: ReplicaSet, state: RetryState, choice: Choice, last: BaseException | None) -> float:
    if choice.wait <= 0.02:  # probes under way: look again shortly, within the deadline
        if state.deadline is not None and time.monotonic() + choice.wait >= state.deadline:
            return _all_out(rs, state, choice.wait, last)
        return choice.wait
    return _all_out(rs, state, choice.wait, last)


def _probe_one(
    client: Client, rs: ReplicaSet, index: int, deadline: float | None
) -> tuple[bool, str]:
    try:
        timeout = _probe_timeout(client._config.timeout, deadline)
        return client._probe("ready", rs.urls[index], timeout)
    except Exception as exc:  # a client closed meanwhile: not ready
        return False, f"{type(exc).__name__}: {exc}"


def _probe_in_thread(client: Client, rs: ReplicaSet, index: int) -> None:
    def run() -> None:
        ready, why = False, "the probe did not finish"
        try:
            ready, why = _probe_one(client, rs, index, None)
        finally:
            _probed(rs, index, ready, why)

    threading.Thread(target=run, name="graphpipe-replica-probe", daemon=True).start()


def probe_all_sync(client: Client, rs: ReplicaSet, which: str, timeout: Any) -> tuple[bool, str]:
    """``is_ready``/``is_alive`` of a replica set: true when one replica is; a ready
    replica out of rotation is put back."""
    answers = []
    for i, url in enumerate(rs.urls):
        ok, why = client._probe(which, url, timeout)
        if ok and which == "ready":
            rs.reinstate(i)
        answers.append((ok, f"{rs.endpoint(i).redacted}: {why}"))
    return _verdict(answers)


def _verdict(answers: list[tuple[bool, str]]) -> tuple[bool, str]:
    ok = [why for good, why in answers if good]
    return (True, ok[0]) if ok else (False, "; ".join(why for _, why in answers))


# -- the async client --------------------------------------------------------------


async def replica_attempts_async(
    client: AsyncClient, req: PreparedRequest, rs: ReplicaSet
) -> RawResponse:
    """Every attempt of one call of an async client over the replicas of ``rs``."""
    config = client._config
    state = RetryState(config, req)
    tried: set[int] = set()
    last: BaseException | None = None
    hedger = rs.hedger  # None once the call has sent its one hedge
    while True:
        choice = rs.choose(tried)
        for i in choice.probes:
            _probe_in_task(client, rs, i)
        if choice.action == "probe":
            try:
                ready, why = await _aprobe_one(client, rs, choice.index, state.deadline)
            except BaseException:
                rs.probed(choice.index, False, "the probe was cancelled")
                raise
            _probed(rs, choice.index, ready, why)
            continue
        if choice.action == "wait":
            await client._transport.sleep(_wait(rs, state, choice, last))
            continue
        i = choice.index
        attempt = retarget(config, req, rs.endpoint(i))
        tried.add(i)
        try:
            if hedger is None:
                started = time.monotonic()
                try:
                    raw = await ametered(client._transport.send, attempt, state.deadline)
                except GraphPipeError as exc:
                    rs.observe_outcome(i, time.monotonic() - started, exc)
                    raise
                rs.observe_outcome(i, time.monotonic() - started, raw)
            else:
                (i, attempt, out), hedged = await send_hedged_async(
                    client, rs, hedger, state, attempt, i
                )
                hedger = None if hedged else hedger
                tried.add(i)
                if isinstance(out, GraphPipeError):
                    raise out
                raw = out
        except GraphPipeError as exc:
            last = exc
            delay = _after_error(rs, state, attempt, i, exc)
        except BaseException:  # cancelled: no longer in flight
            rs.finished(i, ok=True)
            raise
        else:
            retry_delay = _after_response(rs, state, attempt, i, raw)
            if retry_delay is None:
                return raw
            delay = retry_delay
        if delay:
            await client._transport.sleep(delay)


async def _aprobe_one(
    client: AsyncClient, rs: ReplicaSet, index: int, deadline: float | None
) -> tuple[bool, str]:
    try:
        timeout = _probe_timeout(client._config.timeout, deadline)
        return await client._probe("ready", rs.urls[index], timeout)
    except Exception as exc:  # a client closed meanwhile: not ready
        return False, f"{type(exc).__name__}: {exc}"


#: The background probes' tasks and their clients, kept referenced until they finish.
_TASKS: dict[asyncio.Task[None], AsyncClient] = {}


#: The background probes under trio (system tasks), by cancel scope, and their clients.
_TRIO_SCOPES: dict[Any, AsyncClient] = {}


def _asyncio_running() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _probe_in_trio(client: AsyncClient, rs: ReplicaSet, index: int) -> None:
    """A background probe under trio: a system task (trio has no detached tasks), in a
    cancel scope that ``aclose`` cancels; trio cancels it too when its run ends."""
    trio = sys.modules["trio"]
    scope = trio.CancelScope()

    async def run() -> None:
        ready, why = False, "the probe was cancelled"
        try:
            with scope:
                ready, why = await _aprobe_one(client, rs, index, None)
        finally:
            _TRIO_SCOPES.pop(scope, None)
            _probed(rs, index, ready, why)

    _TRIO_SCOPES[scope] = client
    trio.lowlevel.spawn_system_task(run, name="graphpipe-replica-probe")


def _probe_in_task(client: AsyncClient, rs: ReplicaSet, index: int) -> None:
    import asyncio

    if not _asyncio_running():
        _probe_in_trio(client, rs, index)
        return

    async def run() -> None:
        ready, why = False, "the probe was cancelled"
        try:
            ready, why = await _aprobe_one(client, rs, index, None)
        finally:
            _probed(rs, index, ready, why)

    task = asyncio.get_running_loop().create_task(run(), name="graphpipe-replica-probe")
    _TASKS[task] = client
    task.add_done_callback(lambda t: _TASKS.pop(t, None))


async def cancel_probes(client: AsyncClient) -> None:
    """Cancel, and wait for, ``client``'s background probes on the running loop (``aclose``).

    A probe left running when its loop shuts down would be cut off half-way
    through connecting; cancelled here, it unwinds while the loop still runs.
    """
    import asyncio

    if not _asyncio_running():  # trio: cancel its probes' scopes (they end at once)
        for scope, c in list(_TRIO_SCOPES.items()):
            if c is client:
                scope.cancel()
        return
    loop = asyncio.get_running_loop()
    tasks = [t for t, c in list(_TASKS.items()) if c is client and t.get_loop() is loop]
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def probe_all_async(
    client: AsyncClient, rs: ReplicaSet, which: str, timeout: Any
) -> tuple[bool, str]:
    """The async :func:`probe_all_sync`: the replicas are probed concurrently."""
    if _asyncio_running():
        import asyncio

        results = await asyncio.gather(*(client._probe(which, url, timeout) for url in rs.urls))
    else:  # trio: one after the other (each bounded by the probe's timeout)
        results = [await client._probe(which, url, timeout) for url in rs.urls]
    answers = []
    for i, (ok, why) in enumerate(results):
        if ok and which == "ready":
            rs.reinstate(i)
        answers.append((ok, f"{rs.endpoint(i).redacted}: {why}"))
    return _verdict(answers)
