"""The coalescing plan without I/O: the options, which calls merge, stacking and splitting rows."""

from __future__ import annotations

import time

import numpy as np
import pytest

from graphpipe_client import Coalesce, InvalidOption, RemoteError, Timeout
from graphpipe_client._exceptions import DeadlineExceeded, ErrorEntry, HTTPStatusError
from graphpipe_client._jobs.coalesce import (
    Batch,
    Member,
    NotRowwise,
    TimerSlack,
    Traffic,
    halves,
    is_model_error,
    member_of,
    own_copy,
)

URL = "http://127.0.0.1:9000"


def member(*arrays: object, **kw: object) -> Member:
    args: dict[str, object] = {
        "input_names": None,
        "output_names": None,
        "config": None,
        "timeout": Timeout(),
    }
    args.update(kw)
    m = member_of(URL, list(arrays), max_rows=64, where=URL, **args)  # type: ignore[arg-type]
    assert m is not None
    return m


def test_options_defaults_and_validation() -> None:
    c = Coalesce()
    assert (c.max_rows, c.max_wait, c.eager) == (64, 0.002, True)
    assert Coalesce(eager=False).eager is False
    for bad_eager in (1, 0, "no", None, np.bool_(True)):
        with pytest.raises(InvalidOption, match="eager must be True"):
            Coalesce(eager=bad_eager)  # type: ignore[arg-type]
    assert Coalesce(max_rows=1, max_wait=0).max_wait == 0.0
    for bad in (0, -1, 1.5, True, "8", None):
        with pytest.raises(InvalidOption, match="max_rows"):
            Coalesce(max_rows=bad)  # type: ignore[arg-type]
    for bad_wait in (-0.001, float("nan"), float("inf"), True, "0.002", None):
        with pytest.raises(InvalidOption, match="max_wait"):
            Coalesce(max_wait=bad_wait)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        c.max_rows = 3  # type: ignore[misc]  # frozen


def test_same_signature_only_for_the_same_call_shape() -> None:
    a = member(np.zeros((1, 3), np.float32))
    assert a.sig == member(np.ones((2, 3), np.float32)).sig  # rows may differ
    others = [
        member(np.zeros((1, 4), np.float32)),  # row shape
        member(np.zeros((1, 3), np.float64)),  # dtype
        member(np.zeros((1, 3), ">f4")),  # byte order
        member(np.zeros((1, 3), np.float32), input_names=["x"]),
        member(np.zeros((1, 3), np.float32), output_names=["y"]),
        member(np.zeros((1, 3), np.float32), config="c"),
        member(np.zeros((1, 3), np.float32), timeout=Timeout(read=1)),
        member(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.float32)),
    ]
    assert len({a.sig, *(m.sig for m in others)}) == len(others) + 1
    # Only the total timeout may differ: each member keeps its own deadline.
    t = member(np.zeros((1, 3), np.float32), timeout=Timeout(total=5))
    assert t.sig == a.sig
    assert t.deadline is not None and a.deadline is None
    # Strings of any width stack together.
    assert member(np.array(["a"])).sig == member(np.array(["abcdef"])).sig


@pytest.mark.parametrize(
    "inputs",
    [
        [np.float32(1.0)],  # a scalar: no rows
        [np.zeros((0, 2))],  # no rows
        [np.zeros((65, 2))],  # more than max_rows
        [np.zeros((2, 2)), np.zeros((3, 2))],  # inputs disagree on their rows
        [np.zeros((2, 2), dtype=bool)],  # not encodable: the call alone says why
        [np.zeros((2, 2), dtype=complex)],
        [],
    ],
)
def test_calls_that_go_alone(inputs: list[object]) -> None:
    assert member_of(URL, inputs, None, None, None, Timeout(), 64, URL) is None


def test_merge_and_split_give_each_member_its_rows_as_views() -> None:
    ms = [member(np.full((n, 2), i, np.int32)) for i, n in enumerate((1, 3, 2))]
    b = Batch(ms[0].sig)
    for m in ms:
        b.add(m)
    assert b.rows == 6
    (x,) = b.arrays()
    assert x[:, 0].tolist() == [0, 1, 1, 1, 2, 2]
    out = x * 10
    parts = b.split([out, out[:, :1]])
    assert parts is not None
    for i, (m, (y, z)) in enumerate(zip(ms, parts, strict=True)):
        assert y.shape == (m.rows, 2) and (y == 10 * i).all()
        assert z.shape == (m.rows, 1)
        assert np.shares_memory(y, out)  # a view of the response, not a copy


def test_one_member_is_its_own_request_and_its_own_answer() -> None:
    m = member(np.zeros((2, 2)))
    b = Batch(m.sig, [m])
    assert b.arrays()[0] is m.arrays[0]
    scalar = np.float64(3.0).reshape(())
    assert b.split([scalar])[0][0] is scalar  # type: ignore[index]  # not row-wise: as given


def test_outputs_that_are_not_row_wise_are_detected() -> None:
    ms = [member(np.zeros((1, 2))), member(np.zeros((2, 2)))]
    b = Batch(ms[0].sig, ms)
    assert b.split([np.zeros((1, 2))]) is None  # a reduction over the rows
    assert b.split([np.zeros(())]) is None  # a scalar
    assert b.split([np.zeros((3, 2)), np.zeros((2,))]) is None  # one of two outputs
    assert b.split([np.zeros((3,))]) is not None
    seen = NotRowwise()
    seen.add(b.sig)
    assert b.sig in seen and ms[0].sig in seen


def test_removing_the_oldest_moves_the_batch_timer() -> None:
    first = member(np.zeros((1, 2)))
    time.sleep(0.001)
    second = member(np.zeros((1, 2)))
    b = Batch(first.sig)
    b.add(first)
    b.add(second)
    assert b.due(1.0) == first.arrived + 1.0
    assert b.remove(first) is True
    assert b.due(1.0) == second.arrived + 1.0 and b.rows == 1
    assert b.remove(second) is True and b.rows == 0


def test_the_batch_timeout_lasts_until_the_latest_deadline() -> None:
    short = member(np.zeros((1, 2)), timeout=Timeout(total=1))
    long = member(np.zeros((1, 2)), timeout=Timeout(total=100))
    t = Batch(short.sig, [short, long]).timeout()
    assert t.total is not None and 99 < t.total <= 100
    forever = member(np.zeros((1, 2)))
    assert Batch(short.sig, [short, forever]).timeout().total is None
    gone = member(np.zeros((1, 2)), timeout=Timeout(total=1))
    gone.deadline = time.monotonic() - 1
    with pytest.raises(DeadlineExceeded, match=r"total timeout of 1\.0 s"):
        Batch(gone.sig, [gone]).timeout()


def test_model_errors_and_halves() -> None:
    assert is_model_error(RemoteError(errors=[ErrorEntry(1, "bad row")]))
    assert is_model_error(HTTPStatusError("x", status_code=400))
    assert is_model_error(HTTPStatusError("x", status_code=500))
    assert not is_model_error(HTTPStatusError("x", status_code=503))
    assert not is_model_error(DeadlineExceeded("x"))
    ms = [member(np.zeros((1, 1))) for _ in range(5)]
    a, b = halves(ms)
    assert a + b == ms and len(a) == 2


def test_each_caller_raises_its_own_copy_of_the_same_error() -> None:
    cause = OSError("reset")
    err = HTTPStatusError("boom", status_code=400, body="bad", url=URL)
    err.__cause__ = cause
    dup = own_copy(err)
    assert dup is not err and type(dup) is HTTPStatusError
    assert (str(dup), dup.status_code, dup.body, dup.__cause__) == ("boom", 400, "bad", cause)


def test_the_timer_slack_learns_how_late_timers_wake_within_half_max_wait() -> None:
    slack = TimerSlack(0.002)
    assert slack.target(10.0) == 10.0
    for i in range(200):
        at = slack.target(10.0)
        slack.woke(at, at + (0.0004 if i % 10 else 0.5))  # 0.4 ms late, now and then 500 ms
    assert abs(slack.late - 0.0004) <= 2 * slack.step  # the median, not dragged by the stalls
    before = slack.late
    slack.woke(9.0, 8.0)  # woken before the time asked (notified): nothing learned
    assert slack.late == before
    for _ in range(200):
        slack.woke(slack.target(10.0), 20.0)  # always very late: at most half of max_wait early
    assert slack.late == 0.001


def test_a_call_goes_at_once_only_when_its_signature_is_idle() -> None:
    t = Traffic(Coalesce(max_wait=0.5))
    a, b = ("a",), ("b",)
    assert t.at_once(a, 100.0)  # nothing out: at once
    t.out(a)  # its request is in flight
    assert not t.at_once(a, 100.0)  # the next call of its kind waits behind it
    assert t.at_once(b, 100.0)  # other kinds are not held
    t.out(a)
    t.back(a, merged=False, now=100.1)
    assert t.in_flight(a) == 1 and not t.at_once(a, 100.1)  # one is still out
    t.back(a, merged=False, now=100.2)
    assert t.in_flight(a) == 0 and t.at_once(a, 100.2)  # a lone caller's answer: idle again
    t.back(a, merged=False, now=100.3)  # one back too many (never sent): no harm
    assert t.in_flight(a) == 0


def test_after_a_merged_answer_calls_wait_for_max_wait() -> None:
    """The callers of a merged request call again at once: the first must not go alone."""
    t = Traffic(Coalesce(max_wait=0.5))
    a = ("a",)
    t.out(a)
    t.back(a, merged=True, now=100.0)
    assert not t.at_once(a, 100.0) and not t.at_once(a, 100.49)
    assert t.at_once(a, 100.5)  # quiet for max_wait: idle
    assert t.at_once(a, 100.6)


def test_not_eager_never_goes_at_once() -> None:
    t = Traffic(Coalesce(eager=False))
    assert not t.at_once(("a",), 0.0)


def test_the_memory_of_signatures_is_bounded() -> None:
    t = Traffic(Coalesce(max_wait=10.0))
    t.out(("busy",))
    for i in range(5000):
        s = ("warm", i)
        t.out(s)
        t.back(s, merged=True, now=0.0)  # warm: remembered for a while
    assert len(t._keys) <= 1025
    assert t.in_flight(("busy",)) == 1  # the requests in flight are never forgotten
    t.clear()
    assert t.at_once(("busy",), 0.0)
