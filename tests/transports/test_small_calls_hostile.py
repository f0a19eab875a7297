"""The fast paths of repeated small calls against byte-level hostile peers (``tests/hostile.py``):
answers split at awkward places, heads shorter or longer than the learnt one, heads that
never end, answers larger than a connection's read buffer. Every call gets its own answer
or the general path's typed error, at once (no read timeout: a wait for bytes that never
come is a hang, which the watchdog reports)."""

from __future__ import annotations

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import codec
from hostile import (
    Call,
    Conn,
    Request,
    Server,
    body_of,
    check_own,
    response,
    run,
    sends,
    unique_x,
)

KINDS = ["sync", "async", "uvloop"]

#: No read timeout: a call that waits for bytes that never come hangs (the watchdog ends it).
NO_READ_TIMEOUT = gp.Timeout(connect=2, read=None)

#: Calls before the fault: the first three teach the fast path the call and its answer.
WARM = 4


def padded(conn: Conn, req: Request) -> bool:
    """The correct answer under a long head (the head the fast path learns)."""
    return conn.send(response(body_of(req), headers=[("X-Pad", "p" * 200)]))


def split_in_head(conn: Conn, req: Request) -> bool:
    """The correct answer under a head longer than the learnt one, sent in two parts
    0.3 s apart, cut inside the head after more bytes than the learnt answer has."""
    data = response(body_of(req), headers=[("X-Pad", "p" * 400)])
    cut = data.index(b"\r\n\r\n") - 10
    ok = conn.send(data[:cut]) and conn.sleep(0.3) and conn.send(data[cut:])
    if ok:
        conn.server.mark("split-head")
    return ok


@pytest.mark.parametrize("kind", KINDS)
def test_a_head_longer_than_the_learnt_answer_split_inside_is_read_whole(kind: str) -> None:
    with Server({WARM: split_in_head}) as server:
        results = run(kind, server.url, WARM + 2, timeout=NO_READ_TIMEOUT)
    for r in results:
        check_own(r.outcome, r.x)
    assert server.sent == ["split-head"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_shorter_than_the_learnt_head_is_read_at_once(kind: str) -> None:
    short = sends("short-400", lambda req: response(b"", 400))  # then serves on
    with Server({WARM: short}, default=padded) as server:
        results = run(kind, server.url, WARM + 2, timeout=NO_READ_TIMEOUT)
    assert server.sent == ["short-400"]
    assert isinstance(results[WARM].outcome, gp.HTTPStatusError)
    for r in results[:WARM] + results[WARM + 1 :]:
        check_own(r.outcome, r.x)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("new_kind", [False, True], ids=["learnt", "new-call"])
def test_a_head_that_never_ends_is_the_general_paths_error(kind: str, new_kind: bool) -> None:
    # (over 64 KiB, then silence: the general path refuses it at once, without waiting)
    endless = sends(
        "endless-head", lambda req: b"HTTP/1.1 200 OK\r\n" + b"X-A: a\r\n" * 9000, then="hold"
    )
    plan = [Call() for _ in range(WARM + 2)]
    if new_kind:  # a call of a new kind: the fast path has no answer head for it yet
        plan[WARM] = Call(x=np.concatenate([unique_x(), unique_x()]))
    with Server({WARM: endless}) as server:
        results = run(kind, server.url, plan, timeout=NO_READ_TIMEOUT)
    assert server.sent == ["endless-head"]
    outcome = results[WARM].outcome
    assert isinstance(outcome, gp.TransportError) and "64 KiB" in str(outcome), outcome
    for r in results[:WARM] + results[WARM + 1 :]:
        check_own(r.outcome, r.x)


def large(conn: Conn, req: Request) -> bool:
    """An answer of 160 KiB (``x * 2`` repeated 8192 times), its first 140 KiB sent 0.1 s
    before the rest: a connection that stops reading at READ_LIMIT has paused by then."""
    assert req.seen.x is not None
    body = codec.encode_infer_response([np.repeat(req.seen.x * 2, REPEATS)]).tobytes()
    data = response(body)
    return conn.send(data[: 140 << 10]) and conn.sleep(0.1) and conn.send(data[140 << 10 :])


REPEATS = 8192


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_larger_than_the_read_buffer_is_received(kind: str) -> None:
    # (learnt: under MAX_SMALL_ANSWER; but over the asyncio connection's READ_LIMIT, at
    # which it stops reading until its buffer is consumed)
    with Server(default=large) as server:
        results = run(kind, server.url, WARM + 2, timeout=NO_READ_TIMEOUT)
    for r in results:
        assert isinstance(r.outcome, np.ndarray), r.outcome
        np.testing.assert_array_equal(r.outcome, np.repeat(r.x * 2, REPEATS))
