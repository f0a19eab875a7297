"""Progress reporting: a tqdm bar, a caller's callable, or a plain status line.

``execute_batched`` and the command line report progress through one small
interface, :class:`Reporter` (``update(n)`` after each unit of work, then
``close()``). :func:`make_reporter` turns the ``progress=`` argument into one:

- ``None`` or ``False``: nothing is shown;
- ``True``: a ``tqdm.auto`` bar (the notebook widget in Jupyter, text
  elsewhere) with the count, the rate and the ETA; tqdm is the optional extra
  ``graphpipe-client[progress]``, and without it a :class:`StatusLine` on
  stderr, as the command line shows, after a one-time :class:`UserWarning`
  that says how to get the bar (:data:`NO_TQDM_NOTE`);
- a callable: called as ``progress(done, total)`` after each batch (``total``
  is ``None`` when unknown, as for a stream).

:class:`StatusLine` is the fallback when tqdm is not installed: on a
terminal, one line rewritten in place with ``\\r``; elsewhere (a pipe, a log
file), a plain line at most every :attr:`StatusLine.plain_interval` seconds
and the last one when done.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import IO, Any, Final, Protocol, TypeAlias

__all__ = [
    "EXTRA_HINT",
    "NO_TQDM_NOTE",
    "ProgressArg",
    "Reporter",
    "StatusLine",
    "as_callback",
    "check_progress",
    "make_reporter",
    "terminal_reporter",
    "tqdm_bar",
]

#: What to install for ``progress=True``.
EXTRA_HINT: Final = "pip install 'graphpipe-client[progress]' (or pip install tqdm)"

#: The one-time warning of ``progress=True`` without tqdm.
NO_TQDM_NOTE: Final = (
    "progress=True draws a tqdm bar, and tqdm is not installed: showing a plain status line "
    f"on stderr instead; for the bar, {EXTRA_HINT}"
)

_noted_no_tqdm = False

#: What ``progress=`` accepts.
ProgressArg: TypeAlias = "bool | Callable[[int, int | None], object] | None"


class Reporter(Protocol):
    """Receives the progress of a run: ``update(n)`` units done, then ``close()``."""

    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class _Silent:
    silent: Final = True  # nobody needs to hear of each unit of work

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Callback:
    """Calls ``fn(done, total)`` after each update."""

    def __init__(self, fn: Callable[[int, int | None], object], total: int | None) -> None:
        self._fn = fn
        self._total = total
        self._done = 0

    def update(self, n: int) -> None:
        self._done += n
        self._fn(self._done, self._total)

    def close(self) -> None:
        pass


def tqdm_bar(total: int | None, unit: str, desc: str | None = None, **kwargs: Any) -> Reporter:
    """A ``tqdm.auto`` bar counting ``unit`` (scaled: 12.3k rows/s).

    Raises:
        ImportError: tqdm is not installed; the message names the extra.
    """
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError as exc:
        raise ImportError(
            f"progress=True draws a tqdm bar, and tqdm is not installed: {EXTRA_HINT}; "
            "or pass progress=a_callable(done, total)"
        ) from exc
    # The leading space reads "12.3k rows/s" rather than "12.3krows/s"; counts
    # are scaled (1.23M) unless small, where 50 would show as "50.0".
    scale = total is None or total >= 1000
    bar: Reporter = tqdm(
        total=total, unit=f" {unit}", unit_scale=scale, desc=desc, dynamic_ncols=True, **kwargs
    )
    return bar


def terminal_reporter(
    stream: IO[str], total: int | None, unit: str, desc: str | None = None
) -> Reporter:
    """The command line's display on ``stream``: a tqdm bar, or a :class:`StatusLine` without tqdm."""
    try:
        return tqdm_bar(total, unit, desc, file=stream)
    except ImportError:
        return StatusLine(stream, total, unit, desc)


def as_callback(reporter: Reporter) -> Callable[[int, int | None], None]:
    """A ``progress=`` callable that feeds ``reporter`` (which the caller closes).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> line = StatusLine(out, total=4, unit="rows")
        >>> feed = as_callback(line)
        >>> feed(1, 4); feed(4, 4); line.close()
        >>> "4/4 rows" in out.getvalue()
        True
    """
    done = 0

    def callback(now: int, total: int | None) -> None:
        nonlocal done
        reporter.update(now - done)
        done = now

    return callback


class StatusLine:
    """A plain status line on ``stream``: rewritten in place on a terminal, plain lines elsewhere.

    ``done/total unit, elapsed s, rate unit/s`` (without ``total`` when it is
    unknown). On a terminal (``tty``, by default ``stream.isatty()``) the line
    is redrawn with ``\\r`` at most 10 times a second; elsewhere (a pipe, a
    log file, where ``\\r`` would pile every update onto one log line) each
    state is a line of its own, at most one every :attr:`plain_interval`
    seconds. :meth:`close` shows the last state and ends the line.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> line = StatusLine(out, total=10, unit="rows", tty=True)
        >>> line.update(10)
        >>> line.close()
        >>> out.getvalue().startswith("\\r10/10 rows, ")
        True
        >>> out = io.StringIO()  # not a terminal
        >>> line = StatusLine(out, total=10, unit="rows")
        >>> line.update(4); line.update(6); line.close()
        >>> out.getvalue().count("\\n"), out.getvalue().startswith("10/10 rows, ")
        (1, True)
    """

    #: Seconds between redraws on a terminal.
    interval: Final = 0.1
    #: Seconds between lines when not on a terminal.
    plain_interval: Final = 10.0

    def __init__(
        self,
        stream: IO[str],
        total: int | None,
        unit: str,
        desc: str | None = None,
        *,
        tty: bool | None = None,
    ) -> None:
        self._tty = _isatty(stream) if tty is None else tty
        self._every = self.interval if self._tty else self.plain_interval
        self._stream = stream
        self._total = total
        self._unit = unit
        self._desc = f"{desc}: " if desc else ""
        self._done = 0
        self._start = time.perf_counter()
        self._drawn = 0.0
        self._drawn_done = -1
        self._length = 0

    def update(self, n: int) -> None:
        self._done += n
        now = time.perf_counter()
        if self._tty and self._total is not None and self._done >= self._total:
            self._draw(now)  # the end, at once (close() would not redraw it)
        elif now - self._drawn >= self._every and (self._tty or now - self._start >= self._every):
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn = now
        self._drawn_done = self._done
        elapsed = now - self._start
        count = f"{self._done}" if self._total is None else f"{self._done}/{self._total}"
        rate = self._done / elapsed if elapsed > 0 else 0.0
        line = f"{self._desc}{count} {self._unit}, {elapsed:.1f} s, {rate:,.0f} {self._unit}/s"
        if self._tty:
            self._stream.write("\r" + line.ljust(self._length))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
        self._length = len(line)

    def close(self) -> None:
        if self._drawn_done != self._done:
            self._draw(time.perf_counter())
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # a closed or odd stream
        return False


_PACKAGE_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _callers_level() -> int:
    """The ``stacklevel`` of the first frame outside this package: the caller's own line."""
    level = 2  # the function that calls warnings.warn
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _status_line_without_tqdm(total: int | None, unit: str, desc: str | None) -> StatusLine:
    """``progress=True`` without tqdm: a :class:`StatusLine` on stderr, and a one-time warning."""
    global _noted_no_tqdm
    if not _noted_no_tqdm:
        _noted_no_tqdm = True
        warnings.warn(NO_TQDM_NOTE, UserWarning, stacklevel=_callers_level())
    return StatusLine(sys.stderr, total, unit, desc)


def check_progress(progress: object) -> None:
    """Fail now, as :func:`make_reporter` would later, for a ``progress=`` it cannot honour.

    Raises:
        TypeError: ``progress`` is neither a bool, ``None`` nor a callable.
    """
    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        make_reporter(progress, None)  # type: ignore[arg-type]  # raises the TypeError


def make_reporter(
    progress: bool | Callable[[int, int | None], object] | None,
    total: int | None,
    unit: str = "rows",
    desc: str | None = None,
) -> Reporter:
    """The :class:`Reporter` for a ``progress=`` argument (see the module docstring).

    Raises:
        TypeError: ``progress`` is neither a bool, ``None`` nor a callable.

    Example:
        >>> seen = []
        >>> r = make_reporter(lambda done, total: seen.append((done, total)), total=5)
        >>> r.update(2); r.update(3); r.close()
        >>> seen
        [(2, 5), (5, 5)]
    """
    if progress is None or progress is False:
        return _Silent()
    if progress is True:
        try:
            return tqdm_bar(total, unit, desc)
        except ImportError:
            return _status_line_without_tqdm(total, unit, desc)
    if callable(progress):
        return _Callback(progress, total)
    raise TypeError(
        "progress must be True (a tqdm bar), False/None, or a callable(done, total), "
        f"not {type(progress).__name__}"
    )
