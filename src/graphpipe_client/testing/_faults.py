"""Fault injection for the bundled server: :class:`Faults`."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Faults"]


@dataclass
class Faults:
    """Misbehaviours the bundled server applies to GraphPipe (POST) requests.

    Every knob is off by default. Set knobs when constructing the server
    (``serve(model, faults=Faults(delay=0.5))``), or while it runs with
    :meth:`GraphPipeServer.set_faults` / :meth:`GraphPipeServer.clear_faults`,
    or by assigning attributes of ``server.faults``. The server reads the
    knobs once per request, under a lock, so a change applies from the next
    request on.

    Faults apply to POST requests only (inference and metadata calls); the
    ``GET`` endpoints (JSON metadata, ``/control/...`` probes) always answer
    normally. The request body is always read in full first.

    What happens, in order:

    1. ``delay`` seconds of sleep before answering (the model is not called yet).
    2. ``drop``: the connection is closed without any response.
    3. The answer is chosen: ``status`` (with ``body``) if set, else
       ``garbage`` (a 200 with those bytes as the body) if set, else the real
       answer (the model is called).
    4. The answer is sent, bent by ``retry_after`` (a ``Retry-After`` header),
       ``chunked`` (``Transfer-Encoding: chunked`` instead of
       ``Content-Length``), ``content_length_delta`` (announce ``len + delta``
       bytes), ``stall_after_headers`` (seconds of silence between the headers
       and the body) and ``truncate_body`` (send only that many body bytes,
       then close).

    Attributes:
        delay: seconds to sleep before answering.
        drop: close the connection without sending any response.
        truncate_body: send the true ``Content-Length`` but only this many
            body bytes, then close the connection.
        content_length_delta: announce ``Content-Length: len + delta``. A
            positive delta sends the real bytes and then closes the connection
            (the client waits for bytes that never come); a negative one sends
            all the real bytes anyway and keeps the connection open, so the
            surplus poisons the next response read from that connection.
        stall_after_headers: seconds to wait after the headers, before the body.
        status: answer with this HTTP status and ``body`` instead of calling
            the model.
        body: the body sent with ``status``: ``str`` is sent as UTF-8
            ``text/plain``, ``bytes`` as ``application/octet-stream``.
        garbage: answer 200 with these bytes as the body.
        chunked: send the answer with ``Transfer-Encoding: chunked``.
        retry_after: the value of a ``Retry-After`` header to add.
        times: how many requests the faults apply to; after that many, every
            knob clears itself. ``None`` means until changed.

    Example:
        >>> from graphpipe_client.testing import Faults
        >>> f = Faults(status=503, body="busy", retry_after=1, times=2)
        >>> f.active
        True
        >>> f.clear()
        >>> f.active
        False
    """

    delay: float = 0.0
    drop: bool = False
    truncate_body: int | None = None
    content_length_delta: int = 0
    stall_after_headers: float = 0.0
    status: int | None = None
    body: str | bytes = b""
    garbage: bytes | None = None
    chunked: bool = False
    retry_after: str | int | None = None
    times: int | None = None
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        if self.delay < 0 or self.stall_after_headers < 0:
            raise ValueError("delay and stall_after_headers must be >= 0 seconds")
        if self.truncate_body is not None and self.truncate_body < 0:
            raise ValueError("truncate_body must be None or a byte count >= 0")
        if self.status is not None and not 100 <= self.status <= 999:
            raise ValueError(f"status must be an HTTP status code (100-999), not {self.status}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be None (forever) or a count >= 0")
        if not isinstance(self.body, (str, bytes)):
            raise TypeError(f"body must be str or bytes, not {type(self.body).__name__}")
        if self.garbage is not None and not isinstance(self.garbage, (bytes, bytearray)):
            raise TypeError(f"garbage must be bytes, not {type(self.garbage).__name__}")

    @property
    def active(self) -> bool:
        """Whether any knob is set (``times`` alone, or ``body`` without ``status``, do not count).

        Example:
            >>> Faults(times=3).active, Faults(delay=0.1).active
            (False, True)
        """
        return any(
            getattr(self, name) != default
            for name, default in _DEFAULTS.items()
            if name not in ("times", "body")
        )

    def set(self, **knobs: Any) -> None:
        """Replace every knob: the ones given take their value, the others their default.

        Raises:
            TypeError: an unknown knob name.
            ValueError: an invalid value (the faults are then left unchanged).

        Example:
            >>> f = Faults(delay=1.0)
            >>> f.set(drop=True, times=1)
            >>> (f.delay, f.drop, f.times)
            (0.0, True, 1)
        """
        unknown = sorted(set(knobs) - set(_DEFAULTS))
        if unknown:
            raise TypeError(f"unknown fault knob(s) {unknown}; the knobs are {sorted(_DEFAULTS)}")
        Faults(**knobs)  # validate before changing anything
        with self._lock:
            for name, default in _DEFAULTS.items():
                setattr(self, name, knobs.get(name, default))

    def clear(self) -> None:
        """Turn every knob off.

        Example:
            >>> f = Faults(drop=True)
            >>> f.clear()
            >>> f == Faults()
            True
        """
        self.set()

    def _take(self) -> Faults | None:
        """The knobs for one request (a copy), counting down ``times``; ``None`` if inactive."""
        with self._lock:
            if not self.active:
                return None
            if self.times is not None and self.times <= 0:
                self._reset()
                return None
            snapshot = dataclasses.replace(self, times=None)
            if self.times is not None:
                self.times -= 1
                if self.times == 0:
                    self._reset()
            return snapshot

    def _reset(self) -> None:
        for name, default in _DEFAULTS.items():
            setattr(self, name, default)


_DEFAULTS: Final[dict[str, Any]] = {f.name: f.default for f in dataclasses.fields(Faults) if f.init}
