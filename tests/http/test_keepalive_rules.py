"""The keep-alive rules, sans I/O: ``Keep-Alive: timeout=``, idle limits, what a peer has shown."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphpipe_client as gp
from graphpipe_client._http import http11 as h11
from graphpipe_client._http import keepalive
from graphpipe_client._http.keepalive import GRACE, SETTLE, SOON, Peer, idle_limit


def head(value: str | None) -> h11.ResponseHead:
    return h11.ResponseHead(200, "OK", 11, {} if value is None else {"keep-alive": value})


@pytest.mark.parametrize(
    ("value", "timeout"),
    [
        (None, None),
        ("", None),
        ("timeout=5, max=100", 5.0),  # Apache
        ("timeout=5", 5.0),  # Node.js
        ("max=100, timeout=15", 15.0),
        ("Timeout = 7 ; max=3", 7.0),
        ('timeout="2"', 2.0),
        ("timeout=0", 0.0),
        ("timeout=5, timeout=3", 3.0),  # two headers joined: the smaller
        ("max=100", None),
        ("timeout=", None),
        ("timeout=-1", None),
        ("timeout=1.5", None),
        ("timeout=abc", None),
        ("timeout=\u0665", None),  # a digit, but not an ASCII one
        ("timeout=9999999999", None),
        ("timeout=5" + " " * 2000, None),  # over the length read
    ],
)
def test_keep_alive_timeout(value: str | None, timeout: float | None) -> None:
    assert h11.keep_alive_timeout(head(value)) == timeout


@given(st.text(max_size=200))
def test_keep_alive_timeout_never_fails_on_untrusted_text(value: str) -> None:
    found = h11.keep_alive_timeout(head(value))
    assert found is None or (found >= 0 and found == int(found))


@given(st.integers(0, 10**9 - 1), st.integers(0, 1000), st.sampled_from([", ", ",", "; "]))
def test_keep_alive_timeout_reads_what_servers_send(seconds: int, most: int, sep: str) -> None:
    assert h11.keep_alive_timeout(head(f"timeout={seconds}{sep}max={most}")) == seconds
    assert h11.keep_alive_timeout(head(f"max={most}{sep}timeout={seconds}")) == seconds


def test_the_response_tracker_notes_the_keep_alive_timeout() -> None:
    tracker = h11.ResponseTracker()
    tracker.request_sent()
    tracker.feed(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=3\r\nContent-Length: 2\r\n\r\nok")
    assert tracker.idle and tracker.keep_alive == 3.0


@pytest.mark.parametrize(
    ("configured", "promised", "limit"),
    [
        (4.0, None, 4.0),
        (None, None, None),
        (4.0, 5.0, 4.0),  # 5 s promised: 1 s of margin
        (4.0, 60.0, 4.0),  # the client's limit is lower
        (None, 60.0, 59.0),
        (4.0, 2.0, 1.0),
        (4.0, 1.0, 0.5),  # half, when a second is too much
        (4.0, 0.0, 0.0),  # no idle connection kept: never reused
        (0.0, 5.0, 0.0),
    ],
)
def test_idle_limit(configured: float | None, promised: float | None, limit: float | None) -> None:
    assert idle_limit(configured, promised) == limit


@given(st.floats(0, 1e6) | st.none(), st.integers(0, 10**9 - 1).map(float) | st.none())
def test_idle_limit_is_below_what_the_server_promised(
    configured: float | None, promised: float | None
) -> None:
    limit = idle_limit(configured, promised)
    if promised is not None:
        assert limit is not None and 0 <= limit <= promised
        assert limit < promised or promised == 0
    if configured is not None:
        assert limit is not None and limit <= configured


def test_a_peer_not_known_gets_a_moment_to_close_before_the_first_reuse() -> None:
    peer = Peer()
    assert peer.settle(0.0) == SETTLE
    assert peer.settle(SETTLE) == 0.0
    assert peer.reusable(0.001, closed=False)
    peer.answered()  # a response came on the reused connection: it keeps them
    assert peer.settle(0.0) == 0.0
    assert peer.reusable(0.0, closed=False)


def test_a_peer_seen_closing_right_after_a_response_gets_fresh_connections() -> None:
    peer = Peer()
    assert not peer.reusable(0.001, closed=True)
    assert peer.closes
    assert peer.settle(0.0) == 0.0  # nothing to wait for: young connections are not used
    assert not peer.reusable(0.001, closed=False)
    assert not peer.reusable(GRACE / 2, closed=False)
    peer.answered()  # (on a fresh connection: no lesson)
    assert peer.closes
    # A connection that stayed open through the grace period: the peer keeps them.
    assert peer.reusable(GRACE, closed=False)
    assert not peer.closes
    assert peer.reusable(0.0, closed=False)


def test_a_connection_closed_after_a_long_idle_says_nothing_of_the_peer() -> None:
    # A server's idle timeout, not a peer that closes after each response.
    peer = Peer()
    assert not peer.reusable(SOON + 1, closed=True)
    assert not peer.closes
    assert peer.reusable(0.0, closed=False)


def test_a_closing_peer_is_forgotten_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keepalive, "FORGET", 0.0)
    peer = Peer()
    assert not peer.reusable(0.0, closed=True)
    assert not peer.closes  # forgotten at once: not known again
    assert peer.settle(0.0) == SETTLE


@pytest.mark.parametrize("value", [0, 0.5, 4, 30.0, None])
def test_keepalive_expiry_accepts_seconds_or_none(value: float | None) -> None:
    assert keepalive.to_keepalive_expiry(value) == (None if value is None else float(value))


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "4", True, [4]])
def test_keepalive_expiry_refuses_anything_else(value: object) -> None:
    with pytest.raises(gp.InvalidOption, match="keepalive_expiry must be a number of seconds"):
        keepalive.to_keepalive_expiry(value)
