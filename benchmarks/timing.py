"""Timing helpers: interleaved runs, medians, figures with their baselines, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CpuWatch",
    "Figure",
    "MachineUse",
    "busy_fraction",
    "interleaved",
    "machine_info",
]


def interleaved(
    cases: dict[str, tuple[Callable[[], object], int | None]],
    runs: int,
    warmup: int = 1,
    budget: float | None = None,
    run_seconds: float = 0.01,
) -> dict[str, list[float]]:
    """Time each case ``runs`` times, the cases taking turns within each run.

    ``cases`` maps a name to ``(function, calls)``: one run of a case times
    ``calls`` calls in a row and records the seconds per call (``calls=None``:
    as many as take about ``run_seconds``, from the warm-up). Every run goes
    through all the cases (in a rotating order), so that the figures set side
    by side saw the same state of the machine. ``warmup`` untimed calls of
    each case come first. With ``budget`` (seconds), runs stop early once it
    is spent (at least 3 timed runs are always made).
    """
    names = list(cases)
    counts: dict[str, int] = {}
    for name in names:
        fn, calls = cases[name]
        took = 0.0
        for _ in range(max(1, warmup)):
            t0 = time.perf_counter()
            fn()
            took = time.perf_counter() - t0
        counts[name] = (
            calls if calls is not None else max(1, min(2000, int(run_seconds / max(took, 1e-7))))
        )
    cases = {name: (cases[name][0], counts[name]) for name in names}
    out: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(runs):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn, calls = cases[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            out[name].append((time.perf_counter() - t0) / calls)
        if budget is not None and r >= 2 and time.perf_counter() - start > budget:
            break
    return out


@dataclass
class Figure:
    """One measured figure, set against its baseline from the same run.

    ``value`` and ``baseline`` are medians of ``samples``/``baseline_samples``.
    ``lower_is_better`` says which way the ratio must go to meet ``target``
    (a bound on ``value / baseline``), if there is one.
    """

    section: str
    name: str
    unit: str
    value: float
    baseline_name: str = ""
    baseline: float | None = None
    target: float | None = None
    target_text: str = ""
    lower_is_better: bool = True
    note: str = ""
    samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if self.target is None or ratio is None:
            return None
        return ratio <= self.target if self.lower_is_better else ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["met"] = self.met
        return d


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def _cpu_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]), idle


def _own_ticks() -> int:
    t = os.times()
    return int((t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK"))


class CpuWatch:
    """Share of the machine's CPU time that other processes used between start and :meth:`stop`.

    Our own time includes children once they have been waited for (the
    benchmark server, the memory probe), so stop it after they are gone.
    """

    def __init__(self) -> None:
        try:
            self._start: tuple[int, int, int] | None = (*_cpu_ticks(), _own_ticks())
        except (OSError, ValueError, IndexError):
            self._start = None

    def stop(self) -> float | None:
        if self._start is None:
            return None
        total0, idle0, own0 = self._start
        since = _ticks_since(total0, idle0)
        if since is None:
            return None
        total, idle = since
        return max(0.0, (total - idle - (_own_ticks() - own0)) / total)


class MachineUse:
    """Share of the machine's CPU time (all cores, all processes) not idle between start and :meth:`stop`.

    Time the hypervisor took from this virtual machine (steal) counts as used:
    it was not ours to have. ``None`` where ``/proc/stat`` is not readable.
    """

    def __init__(self) -> None:
        try:
            self._start: tuple[int, int] | None = _cpu_ticks()
        except (OSError, ValueError, IndexError):
            self._start = None

    def stop(self) -> float | None:
        if self._start is None:
            return None
        since = _ticks_since(*self._start)
        if since is None:
            return None
        total, idle = since
        return max(0.0, 1.0 - idle / total)


def _ticks_since(total0: int, idle0: int) -> tuple[int, int] | None:
    """All ticks and idle ticks since ``total0``/``idle0``; ``None`` if unreadable or none passed."""
    try:
        total1, idle1 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
        return None
    if total1 - total0 <= 0:
        return None
    return total1 - total0, idle1 - idle0


def busy_fraction(seconds: float = 1.0) -> float | None:
    """Share of the machine's CPU time used by other processes over ``seconds`` (Linux only)."""
    try:
        total0, idle0 = _cpu_ticks()
        own0 = _own_ticks()
        time.sleep(seconds)
        total1, idle1 = _cpu_ticks()
        own1 = _own_ticks()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    if total <= 0:
        return None
    busy = total - (idle1 - idle0) - (own1 - own0)
    return max(0.0, busy / total)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import numpy as np

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for name in (
        "graphpipe-client",
        "urllib3",
        "httpx",
        "httpcore",
        "h11",
        "graphpipe",
        "requests",
        "flatbuffers",
        "orjson",
    ):
        info[name] = _version(name)
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory_gib"] = round(kb / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info["openblas_env"] = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    return info
