"""Progress reporting: a tqdm bar, a caller's callable, or a plain status line.

``execute_batched`` and the command line report progress through one small
interface, :class:`Reporter` (``update(n)`` after each unit of work, then
``close()``). :func:`make_reporter` turns the ``progress=`` argument into one:

- ``None`` or ``False``: nothing is shown;
- ``True``: a ``tqdm.auto`` bar (the notebook widget in Jupyter, text
  elsewhere) with the count, the rate and the ETA; tqdm is the optional extra
  ``graphpipe-client[progress]``, and without it ``True`` raises
  :class:`ImportError` naming the extra;
- a callable: called as ``progress(done, total)`` after each batch (``total``
  is ``None`` when unknown, as for a stream).

:class:`StatusLine` is the command line's fallback when tqdm is not installed:
one line on a stream, rewritten in place with ``\\r``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import IO, Any, Final, Protocol, TypeAlias

__all__ = [
    "EXTRA_HINT",
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
    """A plain status line on ``stream``, rewritten in place (at most 10 times a second).

    ``done/total unit, elapsed s, rate unit/s`` (without ``total`` when it is
    unknown); :meth:`close` draws the last state and ends the line.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> line = StatusLine(out, total=10, unit="rows")
        >>> line.update(10)
        >>> line.close()
        >>> out.getvalue().startswith("\\r10/10 rows, ")
        True
    """

    interval: Final = 0.1

    def __init__(
        self, stream: IO[str], total: int | None, unit: str, desc: str | None = None
    ) -> None:
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
        if now - self._drawn >= self.interval or (
            self._total is not None and self._done >= self._total
        ):
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn = now
        self._drawn_done = self._done
        elapsed = now - self._start
        count = f"{self._done}" if self._total is None else f"{self._done}/{self._total}"
        rate = self._done / elapsed if elapsed > 0 else 0.0
        line = f"{self._desc}{count} {self._unit}, {elapsed:.1f} s, {rate:,.0f} {self._unit}/s"
        self._stream.write("\r" + line.ljust(self._length))
        self._stream.flush()
        self._length = len(line)

    def close(self) -> None:
        if self._drawn_done != self._done:
            self._draw(time.perf_counter())
        self._stream.write("\n")
        self._stream.flush()


def check_progress(progress: object) -> None:
    """Fail now, as :func:`make_reporter` would later, for a ``progress=`` it cannot honour.

    Raises:
        ImportError: ``progress=True`` without tqdm.
        TypeError: ``progress`` is neither a bool, ``None`` nor a callable.
    """
    if progress is True:
        try:
            importlib.import_module("tqdm.auto")
        except ImportError:
            tqdm_bar(None, "rows")  # raises the ImportError that names the extra
    elif progress is not None and progress is not False and not callable(progress):
        make_reporter(progress, None)  # type: ignore[arg-type]  # raises the TypeError


def make_reporter(
    progress: bool | Callable[[int, int | None], object] | None,
    total: int | None,
    unit: str = "rows",
    desc: str | None = None,
) -> Reporter:
    """The :class:`Reporter` for a ``progress=`` argument (see the module docstring).

    Raises:
        ImportError: ``progress=True`` without tqdm.
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
        return tqdm_bar(total, unit, desc)
    if callable(progress):
        return _Callback(progress, total)
    raise TypeError(
        "progress must be True (a tqdm bar), False/None, or a callable(done, total), "
        f"not {type(progress).__name__}"
    )
