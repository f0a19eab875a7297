"""Shared test configuration: hypothesis profiles and the wire-sample folder."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

DATA = Path(__file__).parent / "data"

# A shell starts a background job with SIGINT ignored, and Python then never raises
# KeyboardInterrupt (nor does _thread.interrupt_main, nor a child process, which inherits
# the ignored disposition). The Ctrl-C tests need it: restore Python's own handler, which
# also gives the commands they start the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "fuzz", deadline=None, max_examples=20_000, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real wire samples (copied from the protocol notes)."""
    return DATA


_PROXY_VARIABLES = [
    f"{name}{suffix}" for name in ("http", "https", "all", "no") for suffix in ("_proxy", "_PROXY")
]


@pytest.fixture(autouse=True)
def _no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients honour HTTP_PROXY and friends: keep the runner's out of loopback tests.

    Tests of proxies set the variables they need themselves.
    """
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
