"""What one small call costs the client process: instructions and system calls.

Each case makes a 1x10 float32 call to the benchmark server (a child process,
so that only the client process is counted) over a kept-alive connection:

- the raw-socket client (pre-encoded request, ``sendall``, read the head,
  ``recv_into``): the floor;
- a bare urllib3 POST of the same bytes;
- ``Client.execute``;
- ``AsyncClient.execute`` (asyncio fast path);
- ``Client.execute_named`` with 3 small inputs (and the output name given).

A probe process (``python -m benchmarks.percall_bench --probe CASE PORT N``)
sets its case up, makes 20 warm-up calls, then ``N`` calls, and exits. It runs
under valgrind's callgrind (instructions) and under ``strace -c -f`` (system
calls), once with N=30 and once with N=230: the difference divided by 200 is
the cost of one call, with the start-up, imports and set-up taken out.
``OPENBLAS_NUM_THREADS=1`` and a fixed ``PYTHONHASHSEED`` make the counts
repeatable (two runs agree within 1%, even on a busy machine).

Both tools are Debian packages (``apt-get install valgrind strace``); without
them the section skips with one line. Run it alone with
``nox -s bench -- --only percall`` or ``python -m benchmarks --only percall``.

The section also times the import (:func:`run_import`, no tools needed):
``python -X importtime -c "import graphpipe_client"`` against ``import numpy``,
fresh interpreters taking turns; the target is numpy's own cumulative import
+ 60 ms. Twice: with the bytecode of every module cached, as after ``pip
install``; and with the package compiled from its sources on every run (numpy
and the standard library still from bytecode), as an editable install under
``PYTHONDONTWRITEBYTECODE=1`` imports it. Both read bytecode from a temporary
``-X pycache_prefix``, so the figures do not depend on the ``__pycache__``
folders of the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .timing import Figure

__all__ = ["CASES", "IMPORT_TARGET_MS", "run_import", "run_percall"]

Log = Callable[[str], None]
ROOT = Path(__file__).resolve().parent.parent

RAW = "raw socket (floor)"
RAW_AIO = "raw asyncio protocol (floor of the loop)"
URLLIB3 = "bare urllib3 POST"
SYNC = "Client.execute"
ASYNC = "AsyncClient.execute"
NAMED = "Client.execute_named, 3 inputs"

#: case name -> (probe key, instruction target as a multiple of the floor, syscall target)
CASES: dict[str, tuple[str, float | None, float | None]] = {
    RAW: ("raw", None, None),
    RAW_AIO: ("aioraw", None, None),
    URLLIB3: ("urllib3", None, None),
    SYNC: ("sync", 5.0, 4.0),
    ASYNC: ("async", 5.0, 5.0),
    NAMED: ("named", 7.0, None),
}

WARMUP = 20
LOW, HIGH = 30, 230

#: ``import graphpipe_client`` may take this much longer than ``import numpy`` (issue 22).
IMPORT_TARGET_MS = 60.0


# --------------------------------------------------------------------------
# The probe (runs in its own process, under valgrind or strace)


def _probe_call(case: str, port: int) -> tuple[Callable[[], object], Callable[[], None]]:
    """Set ``case`` up; return (one call, close)."""
    if case == "raw":
        from .rawclient import RawClient

        # The request (head and body) as our client writes it, made by the
        # parent: the floor's process imports no graphpipe_client.
        parts = [Path(os.environ["PERCALL_RAW_REQUEST"]).read_bytes()]
        raw = RawClient(port, int(os.environ["PERCALL_RAW_RESPONSE"]))
        return (lambda: raw.post(parts)), raw.close
    import numpy as np

    from .workloads import WORKLOADS

    w = WORKLOADS["tiny"]
    x = w.request
    url = f"http://127.0.0.1:{port}{w.path}"
    if case == "urllib3":
        import urllib3

        body = w.request_bytes()
        headers = {"Content-Type": "application/octet-stream"}
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=1)
        return (lambda: pool.urlopen("POST", w.path, body=body, headers=headers).data), pool.close
    if case in ("sync", "named"):
        import graphpipe_client as gp

        client = gp.Client(url)
        if case == "sync":
            return (lambda: client.execute(x)), client.close
        inputs = {
            "a": np.ones((1, 4), np.float32),
            "b": np.arange(3, dtype=np.int64),
            "c": np.zeros((2, 2), np.float64),
        }
        names = ["output0"]
        return (lambda: client.execute_named(inputs, names)), client.close
    raise ValueError(f"unknown case {case!r}")


#: ``AsyncClient.execute`` against the asyncio floor (issue 22's 5x of the raw socket,
#: restated: see :func:`run_percall`).
ASYNC_VS_LOOP = 2.0


def _probe(case: str, port: int, calls: int) -> None:
    if case == "aioraw":
        import asyncio

        from .rawclient import RawAsyncioClient

        request = Path(os.environ["PERCALL_RAW_REQUEST"]).read_bytes()

        async def floor() -> None:
            raw = RawAsyncioClient(int(os.environ["PERCALL_RAW_RESPONSE"]))
            await raw.connect(port)
            for _ in range(WARMUP + calls):
                await raw.post(request)
            raw.close()

        asyncio.run(floor())
        return
    if case == "async":
        import asyncio

        import graphpipe_client as gp

        from .workloads import WORKLOADS

        w = WORKLOADS["tiny"]
        x = w.request

        async def main() -> None:
            async with gp.AsyncClient(f"http://127.0.0.1:{port}{w.path}") as client:
                for _ in range(WARMUP):
                    await client.execute(x)
                for _ in range(calls):
                    await client.execute(x)

        asyncio.run(main())
        return
    call, close = _probe_call(case, port)
    for _ in range(WARMUP):
        call()
    for _ in range(calls):
        call()
    close()


# --------------------------------------------------------------------------
# Running the probes


def missing_tools() -> list[str]:
    """The tools this section needs that are not on ``PATH``."""
    return [t for t in ("valgrind", "strace") if shutil.which(t) is None]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(_RAW_FILES)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONHASHSEED"] = "0"
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    env.pop("PYTHONMALLOC", None)
    return env


#: The raw probe's request and response size (set by :func:`run_percall`).
_RAW_FILES: dict[str, str] = {}


def _probe_cmd(case: str, port: int, calls: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.percall_bench",
        "--probe",
        case,
        str(port),
        str(calls),
    ]


def instructions(case: str, port: int, calls: int) -> int:
    """Instructions the probe process executes (all its threads), by callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--cache-sim=no",
                "--branch-sim=no",
                *_probe_cmd(case, port, calls),
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {case} probe failed under callgrind:\n{proc.stderr[-3000:]}")
        total = 0
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
        return total


def syscalls(case: str, port: int, calls: int) -> tuple[int, dict[str, int]]:
    """System calls the probe process makes (all its threads), by ``strace -c -f``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.out"
        proc = subprocess.run(
            ["strace", "-c", "-f", "-o", str(out), *_probe_cmd(case, port, calls)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the {case} probe failed under strace:\n{proc.stderr[-3000:]}")
        return _parse_strace(out.read_text())


def _parse_strace(text: str) -> tuple[int, dict[str, int]]:
    by_name: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0].replace(".", "").isdigit():
            continue
        name = parts[-1]
        # "% time seconds usecs/call calls [errors] syscall"
        calls = int(parts[3])
        if name == "total":
            total = calls
        else:
            by_name[name] = calls
    return total, by_name


# --------------------------------------------------------------------------
# Import time


def import_ms(module: str, env: dict[str, str], prefix: str) -> float:
    """The cumulative import time of ``module`` in a fresh interpreter (``-X importtime``), in ms."""
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-X",
            f"pycache_prefix={prefix}",
            "-c",
            f"import {module}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{proc.stderr[-3000:]}")
    for line in proc.stderr.splitlines():
        fields = line.split(
            "|"
        )  # "import time: self [us] | cumulative | name" (indented if nested)
        if len(fields) == 3 and fields[2].rstrip() == f" {module}":
            return int(fields[1]) / 1e3
    raise RuntimeError(f"python -X importtime printed no line for {module}")


def _import_rounds(runs: int, env: dict[str, str], prefix: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"numpy": [], "graphpipe_client": []}
    for r in range(runs):
        for module in list(out)[:: 1 if r % 2 else -1]:  # taking turns, each first half the time
            out[module].append(import_ms(module, env, prefix))
    return out


def run_import(runs: int, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """``import graphpipe_client`` against ``import numpy``: medians of ``runs`` interleaved runs."""
    import importlib.util
    import statistics

    spec = importlib.util.find_spec("graphpipe_client")
    assert spec is not None and spec.submodule_search_locations is not None
    package = Path(spec.submodule_search_locations[0]).resolve()
    table: dict[str, Any] = {}
    figures = []
    with tempfile.TemporaryDirectory() as prefix:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import_ms("graphpipe_client", env, prefix)  # writes every module's bytecode
        cached = _import_rounds(runs, env, prefix)
        # The package's bytecode gone (and none written): it is compiled on every run.
        shutil.rmtree(Path(prefix, *package.parts[1:]), ignore_errors=True)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        source = _import_rounds(runs, env, prefix)
    for key, how, rounds in (
        ("bytecode", "bytecode cached, as installed", cached),
        ("source", "the package compiled from source", source),
    ):
        np_ms = statistics.median(rounds["numpy"])
        gp_ms = statistics.median(rounds["graphpipe_client"])
        # Each run's difference is taken against the numpy run next to it (same state
        # of the machine); the figure is the median of those differences.
        diffs = [g - n for g, n in zip(rounds["graphpipe_client"], rounds["numpy"], strict=True)]
        added = statistics.median(diffs)
        table[key] = {
            **rounds,
            "numpy_median": np_ms,
            "graphpipe_client_median": gp_ms,
            "added_median": added,
        }
        log(
            f"  import graphpipe_client ({how}): +{added:.0f} ms beyond import numpy "
            f"(target +{IMPORT_TARGET_MS:g} ms; medians: graphpipe_client {gp_ms:.0f} ms, "
            f"numpy {np_ms:.0f} ms cumulative)"
        )
        figures.append(
            Figure(
                "percall",
                f"import graphpipe_client beyond import numpy ({how})",
                "ms",
                added,
                "import numpy",
                np_ms,
                IMPORT_TARGET_MS / np_ms,  # the ratio to numpy's import: added / numpy
                f"<= numpy + {IMPORT_TARGET_MS:g} ms",
                note=f"{gp_ms:.0f} ms cumulative; medians of {runs} interleaved runs",
                samples=diffs,
                baseline_samples=rounds["numpy"],
            )
        )
    return figures, table


def _per_call(low: float, high: float) -> float:
    return (high - low) / (HIGH - LOW)


def run_percall(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """Instructions and system calls per small call, each case against the raw-socket floor;
    and the import time (:func:`run_import`)."""
    import_figures, import_table = run_import(7 if quick else 11, log)
    missing = missing_tools()
    if missing:
        log(
            f"  skipped: {' and '.join(missing)} not found "
            f"(install with: apt-get install {' '.join(missing)})"
        )
        return import_figures, {"skipped": f"missing {', '.join(missing)}", "import": import_table}
    from .rawclient import request_head
    from .server import BenchServer
    from .workloads import WORKLOADS

    w = WORKLOADS["tiny"]
    body = w.request_bytes()
    table: dict[str, Any] = {"import": import_table}
    with BenchServer() as server, tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request"
        request.write_bytes(request_head(w.path, len(body), server.port) + body)
        _RAW_FILES.update(
            PERCALL_RAW_REQUEST=str(request), PERCALL_RAW_RESPONSE=str(len(w.response_bytes()))
        )
        # Two probes at a time (each is one process; the counts do not depend on the load).
        with ThreadPoolExecutor(2) as pool:
            jobs = {
                (key, tool, n): pool.submit(tool, key, server.port, n)
                for key, _, _ in CASES.values()
                for tool in (instructions, syscalls)
                for n in (LOW, HIGH)
            }
            done = {k: f.result() for k, f in jobs.items()}
        for name, (key, _, _) in CASES.items():
            ins = _per_call(done[key, instructions, LOW], done[key, instructions, HIGH])  # type: ignore[arg-type]
            (s_low, by_low), (s_high, by_high) = (
                done[key, syscalls, LOW],
                done[key, syscalls, HIGH],
            )
            which = {
                n: round(_per_call(by_low.get(n, 0), c), 2)
                for n, c in by_high.items()
                if _per_call(by_low.get(n, 0), c) >= 0.05
            }
            table[name] = {
                "instructions": ins,
                "syscalls": _per_call(s_low, s_high),
                "syscalls_by_name": which,
            }
            log(
                f"  {name}: {ins / 1e3:,.1f}k instructions, "
                f"{table[name]['syscalls']:.2f} system calls per call "
                f"({', '.join(f'{n} {v:g}' for n, v in sorted(which.items()))})"
            )
    floor = table[RAW]["instructions"]
    figures = list(import_figures)
    # On the standard loop the asyncio floor alone (a BufferedProtocol that only moves the
    # bytes, no timeout) costs about 4x the raw socket: 5x the socket leaves an async
    # client about 1x for everything else. Restated against the floor measured in the
    # same run: the client at most doubles what the loop costs (the sync target's 4x of
    # the socket above the floor, 61k, is about the asyncio floor's size).
    loop_floor = table[RAW_AIO]["instructions"]
    figures.append(
        Figure(
            "percall",
            f"{ASYNC}: instructions per small call, against the asyncio floor",
            "instr",
            table[ASYNC]["instructions"],
            RAW_AIO,
            loop_floor,
            ASYNC_VS_LOOP,
            f"<= {ASYNC_VS_LOOP:g}x the raw asyncio protocol (issue 22, restated)",
        )
    )
    for name, (_, ins_target, sys_target) in CASES.items():
        row = table[name]
        figures.append(
            Figure(
                "percall",
                f"{name}: instructions per small call",
                "instr",
                row["instructions"],
                RAW if name != RAW else "",
                floor if name != RAW else None,
                ins_target,
                f"<= {ins_target:g}x the raw socket" if ins_target else "",
            )
        )
        figures.append(
            Figure(
                "percall",
                f"{name}: system calls per small call",
                "calls",
                row["syscalls"],
                "",
                1.0 if sys_target else None,
                sys_target,
                f"<= {sys_target:g}" if sys_target else "",
                note=", ".join(f"{n} {v:g}" for n, v in sorted(row["syscalls_by_name"].items())),
            )
        )
    return figures, table


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--probe":
        _probe(args[1], int(args[2]), int(args[3]))
        return
    figures, _ = run_percall("--quick" in args)
    from .__main__ import print_table

    print_table(figures)


if __name__ == "__main__":
    main()
