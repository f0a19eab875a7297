"""Run every benchmark, print each figure next to its baseline, check the targets.

Usage (from the repository root; ``nox -s bench`` installs what it needs)::

    python -m benchmarks [--quick]
                         [--only codec,server,large,small,throughput,memory,batched,cache,replicas,hedge,tracing,dask,coalesce,percall]
                         [--json PATH] [--plot PATH | --no-plot] [--strict]

``--quick`` (or ``GRAPHPIPE_BENCH_QUICK=1``) makes a shorter run with fewer
repetitions. ``--strict`` exits with status 1 when a target is missed.
Results go to ``benchmarks/results/latest.json`` (not committed) and the plot to
``docs/img/benchmarks.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import (
    batched_bench,
    cache_bench,
    coalesce_bench,
    codec_bench,
    dask_bench,
    e2e_bench,
    hedge_bench,
    percall_bench,
    replicas_bench,
    tracing_bench,
)
from .server import BenchServer
from .timing import CpuWatch, Figure, busy_fraction, machine_info

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "codec",
    "server",
    "large",
    "small",
    "throughput",
    "memory",
    "batched",
    "cache",
    "replicas",
    "hedge",
    "tracing",
    "dask",
    "coalesce",
    "percall",
)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "us")):
            if value >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value * 1e9:.3g} ns"
    if unit == "B":
        return f"{value / 1e6:.2f} MB"
    if unit == "calls":
        return f"{value:.2f}"
    if unit.startswith("x "):  # a ratio already (e.g. "x floor": the median of paired rounds)
        return f"{value:.3f}{unit}"
    return f"{value:,.0f} {unit}"


def _ratio(f: Figure) -> str:
    r = f.ratio
    if r is None:
        return "-"
    return f"{r * 100:.3f}%" if r < 0.1 else f"{r:.3f}x"


def print_table(figures: list[Figure], out: Any = sys.stdout) -> None:
    width = max([len(f.name) for f in figures] + [20])
    bwidth = max([len(f.baseline_name) for f in figures] + [8])
    print(
        f"{'figure':<{width}}  {'value':>10}  {'baseline':<{bwidth}}  {'value':>10}  {'ratio':>9}  target",
        file=out,
    )
    for f in figures:
        met = {True: "MET", False: "MISSED", None: ""}[f.met]
        target = f"{f.target_text} {met}".strip()
        note = f"  [{f.note}]" if f.note else ""
        print(
            f"{f.name:<{width}}  {_fmt(f.value, f.unit):>10}  {f.baseline_name:<{bwidth}}  "
            f"{_fmt(f.baseline, f.unit):>10}  {_ratio(f):>9}  {target}{note}",
            file=out,
        )


def _memory_figures(
    server: BenchServer, repeats: int, log: Any
) -> tuple[list[Figure], dict[str, Any]]:
    from .memory import CLIENTS

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # see benchmarks/memory.py
    data: dict[str, Any] = {"clients": {}}
    for client in CLIENTS:  # one fresh process each
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", str(server.port), str(repeats), client],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the memory probe failed:\n{proc.stderr}")
        one = json.loads(proc.stdout)
        data["response_bytes"] = one["response_bytes"]
        data["clients"].update(one["clients"])
    size = data["response_bytes"]
    figures = []
    for name, m in data["clients"].items():
        target = 1.1 if name.startswith("graphpipe-client") else None
        for key, how in (
            ("rss_extra", f"RSS ({m['rss_method']})"),
            ("traced_extra", "tracemalloc"),
        ):
            figures.append(
                Figure(
                    "memory",
                    f"{name}: peak extra memory of the large execute, {how}",
                    "B",
                    m[key],
                    "response size",
                    size,
                    target,
                    "<= 1.1x the response size" if target else "",
                    samples=[float(v) for v in m[key.replace("extra", "samples")]],
                )
            )
        log(
            f"  {name}: RSS +{m['rss_extra'] / 1e6:.1f} MB, tracemalloc +{m['traced_extra'] / 1e6:.1f} MB "
            f"(response {size / 1e6:.1f} MB)"
        )
    return figures, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("GRAPHPIPE_BENCH_QUICK") == "1",
        help="a shorter run (also GRAPHPIPE_BENCH_QUICK=1)",
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help="comma-separated sections to run"
    )
    parser.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "latest.json"
    )
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "benchmarks.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=float(os.environ.get("GRAPHPIPE_BENCH_WAIT_QUIET", "60")),
        metavar="SECONDS",
        help="first wait up to this long for other processes to leave the CPU idle (default 60)",
    )
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    quick = args.quick
    runs = 3 if quick else 7

    def log(text: str) -> None:
        print(text, flush=True)

    info = machine_info()
    started = time.perf_counter()
    log("graphpipe-client benchmarks" + (" (quick)" if quick else ""))
    log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if v not in ({}, "")))
    idle = busy_fraction(1.0)
    deadline = time.monotonic() + args.wait_quiet
    if idle is not None and idle > 0.10 and args.wait_quiet > 0:
        log(
            f"other processes use {idle:.0%} of the CPU: waiting up to {args.wait_quiet:g} s for quiet"
        )
        quiet = 0
        while time.monotonic() < deadline and quiet < 3:
            idle = busy_fraction(1.0)
            quiet = quiet + 1 if idle is not None and idle <= 0.10 else 0
    if idle is not None:
        log(f"other processes used {idle:.0%} of the CPU in the second before the run")
        info["busy_before"] = idle
        if idle > 0.10:
            log("  WARNING: the machine is busy; the figures will be noisy")
    watch = CpuWatch()

    figures: list[Figure] = []
    results: dict[str, Any] = {"machine": info, "quick": quick}
    if "codec" in only:
        log("\n[codec] seed request 128x224x224x3 f32 and response 128x7x7x512 f32")
        figs, table = codec_bench.run(runs, log)
        figures += figs
        results["codec"] = table
    if only & {"server", "large", "small", "throughput", "memory"}:
        with BenchServer() as server:
            if "server" in only:
                log("\n[server] the benchmark server alone, against the raw-socket client")
                figs, table = e2e_bench.run_server_floor(server, runs, log)
                figures += figs
                results["server"] = table
            if "large" in only:
                log("\n[large] one execute of the seed request")
                figs, table = e2e_bench.run_large(server, 5 if quick else 15, log)
                figures += figs
                results["large"] = table
            if "small" in only:
                log("\n[small] one execute of a 1x10 f32 request")
                figs, table = e2e_bench.run_small(
                    server, 5 if quick else 9, 100 if quick else 300, log
                )
                figures += figs
                results["small"] = table
            if "throughput" in only:
                log("\n[throughput] rows/s at 1 and 5 concurrent callers")
                figs, table = e2e_bench.run_throughput(server, 3 if quick else 5, quick, log)
                figures += figs
                results["throughput"] = table
            if "memory" in only:
                log("\n[memory] peak extra memory of one large execute (fresh process)")
                figs, data = _memory_figures(server, 1 if quick else 3, log)
                figures += figs
                results["memory"] = data
    if "batched" in only:
        log(
            "\n[batched] scoring a dataset: execute_batched vs a hand-written loop, "
            "the bundled server in a child process"
        )
        figs, table = batched_bench.run_batched(quick, log)
        figures += figs
        results["batched"] = table
    if "cache" in only:
        log(
            "\n[cache] a fully cached 10,000-row batch vs its round trip, "
            "the bundled server in a child process"
        )
        figs, table = cache_bench.run_cache(quick, log)
        figures += figs
        results["cache"] = table
    if "tracing" in only:
        log(
            "\n[tracing] what OpenTelemetry costs when nothing records, the server in a child process"
        )
        figs, table = tracing_bench.run_tracing(quick, log)
        figures += figs
        results["tracing"] = table
    if "replicas" in only:
        log(
            "\n[replicas] execute_batched over 1, 2 and 4 replicas (child processes), "
            "a 5 ms model one batch at a time per replica"
        )
        figs, table = replicas_bench.run_replicas(quick, log)
        figures += figs
        results["replicas"] = table
    if "hedge" in only:
        log(
            "\n[hedge] one execute after another over 2 replicas (child processes), one stalling "
            "200 ms on 10% of its requests, with and without Hedge()"
        )
        figs, table = hedge_bench.run_hedge(quick, log)
        figures += figs
        results["hedge"] = table
    if "dask" in only:
        log(
            "\n[dask] predict on a LocalCluster of 2 worker processes vs 1, two replicas "
            "(child processes) of a 5 ms model"
        )
        figs, table = dask_bench.run_dask(quick, log)
        figures += figs
        results["dask"] = table
    if "coalesce" in only:
        log(
            "\n[coalesce] 64 callers x 1 row with and without Coalesce(64, 2 ms), threads and "
            "tasks, a 5 ms and an instant server (child processes); one caller alone"
        )
        figs, table = coalesce_bench.run_coalesce(quick, log)
        figures += figs
        results["coalesce"] = table
    if "percall" in only:
        log(
            "\n[percall] import graphpipe_client against import numpy (-X importtime); "
            "instructions (callgrind) and system calls (strace) per small call, the client "
            "process only"
        )
        figs, table = percall_bench.run_percall(quick, log)
        figures += figs
        results["percall"] = table
    busy = watch.stop()
    info["busy_during"] = busy
    results["seconds"] = time.perf_counter() - started
    results["figures"] = [f.as_dict() for f in figures]

    log(
        f"\n== every figure (median of runs) next to its baseline from the same run "
        f"({results['seconds']:.0f} s{'' if busy is None else f', other processes used {busy:.0%} of the CPU'}) =="
    )
    for section in dict.fromkeys(f.section for f in figures):
        log(f"\n[{section}]")
        print_table([f for f in figures if f.section == section])
    targets = [f for f in figures if f.met is not None]
    missed = [f for f in targets if not f.met]
    log(f"\n== targets: {len(targets) - len(missed)} of {len(targets)} met ==")
    for f in targets:
        log(
            f"  {'MET   ' if f.met else 'MISSED'} {f.name}: {_ratio(f)} of {f.baseline_name} (target {f.target_text})"
        )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    log(f"\nresults: {args.json}")
    if not args.no_plot and "codec" in results and "throughput" in results:
        from .plot import plot

        plot(results, args.plot)
        log(f"plot: {args.plot}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
