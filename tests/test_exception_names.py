"""Every public exception is shown, and pickled, under its public name: ``graphpipe_client.X``."""

from __future__ import annotations

import pickle
import socket
import traceback

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client import _exceptions

EXCEPTIONS = sorted(
    (obj for obj in vars(gp).values() if isinstance(obj, type) and issubclass(obj, BaseException)),
    key=lambda cls: cls.__name__,
)

SAMPLES: dict[type[gp.GraphPipeError], gp.GraphPipeError] = {
    gp.GraphPipeError: gp.GraphPipeError("boom"),
    gp.EncodeError: gp.EncodeError("dtype bool is not supported"),
    gp.DecodeError: gp.DecodeError("truncated"),
    gp.TransportError: gp.TransportError("reset", url="http://h/"),
    gp.ConnectError: gp.ConnectError("refused", url="http://h/"),
    gp.TLSError: gp.TLSError("unknown CA", url="http://h/"),
    gp.TimeoutError: gp.TimeoutError("slow", url="http://h/"),
    gp.ConnectTimeout: gp.ConnectTimeout("slow to connect", url="http://h/"),
    gp.ReadTimeout: gp.ReadTimeout("slow to answer", url="http://h/"),
    gp.DeadlineExceeded: gp.DeadlineExceeded("too long", url="http://h/"),
    gp.InvalidOption: gp.InvalidOption("pool_size must be at least 1"),
    gp.InvalidURL: gp.InvalidURL("unsupported URL 'ftp://h'"),
    gp.InvalidHeader: gp.InvalidHeader("header 'X-Key' holds a line break"),
    gp.ResponseTooLargeError: gp.ResponseTooLargeError("big", size=10, limit=5),
    gp.HTTPStatusError: gp.HTTPStatusError(
        "HTTP 502 Bad Gateway", status_code=502, body="<html>...</html>", url="http://h/"
    ),
    gp.RemoteError: gp.RemoteError(errors=[gp.ErrorEntry(3, "bad input")]),
    gp.BatchError: gp.BatchError(
        start=256, stop=512, index=1, error=gp.HTTPStatusError("HTTP 400", status_code=400)
    ),
}


def _comparable(attrs: dict[str, object]) -> dict[str, object]:
    """Attributes, a nested exception (BatchError.error) by its type and text: exceptions
    compare by identity, and a pickle round trip makes new ones."""
    return {k: (type(v), str(v)) if isinstance(v, BaseException) else v for k, v in attrs.items()}


def test_the_samples_cover_every_public_exception() -> None:
    assert sorted(SAMPLES, key=lambda cls: cls.__name__) == EXCEPTIONS
    assert len(EXCEPTIONS) >= 12


def test_every_class_of_the_private_module_is_exported_under_its_name() -> None:
    # Their __module__ says graphpipe_client: pickles look them up there.
    for name in _exceptions.__all__:
        assert getattr(gp, name) is getattr(_exceptions, name)
        assert getattr(_exceptions, name).__module__ == "graphpipe_client"


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_the_class_names_the_public_module(cls: type[gp.GraphPipeError]) -> None:
    assert cls.__module__ == "graphpipe_client"
    assert getattr(gp, cls.__qualname__) is cls
    assert repr(cls) == f"<class 'graphpipe_client.{cls.__name__}'>"


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_a_traceback_names_the_public_module(cls: type[gp.GraphPipeError]) -> None:
    exc = SAMPLES[cls]
    try:
        raise exc
    except gp.GraphPipeError as caught:
        lines = traceback.format_exception(caught)
    assert lines[-1] == f"graphpipe_client.{cls.__name__}: {exc}\n"
    assert "_exceptions" not in "".join(lines[-1:])
    assert repr(exc).startswith(f"{cls.__name__}(")


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_pickles_refer_to_the_public_name_and_round_trip(cls: type[gp.GraphPipeError]) -> None:
    exc = SAMPLES[cls]
    data = pickle.dumps(exc, protocol=0)
    assert f"graphpipe_client\n{cls.__name__}\n".encode() in data
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(exc, protocol=protocol))
        assert type(back) is cls
        assert str(back) == str(exc)
        assert _comparable(vars(back)) == _comparable(vars(exc))


def test_error_entry_names_the_public_module_and_pickles() -> None:
    entry = gp.ErrorEntry(3, "bad input")
    assert gp.ErrorEntry.__module__ == "graphpipe_client"
    assert repr(gp.ErrorEntry) == "<class 'graphpipe_client.ErrorEntry'>"
    assert pickle.loads(pickle.dumps(entry)) == entry


def test_a_real_failure_shows_the_public_name() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with gp.Client(url, retries=0) as client, pytest.raises(gp.ConnectError) as info:
        client.execute(np.ones(2))
    assert traceback.format_exception_only(info.value)[-1].startswith(
        "graphpipe_client.ConnectError: cannot connect to"
    )


class MyError(gp.HTTPStatusError):
    """A user's own subclass."""


def test_a_users_subclass_keeps_its_own_module() -> None:
    assert MyError.__module__ == __name__
    back = pickle.loads(pickle.dumps(MyError("x", status_code=500)))
    assert type(back) is MyError and back.status_code == 500
