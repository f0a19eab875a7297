"""Hedged requests: the p99 of one call after another over 2 replicas, one of which stalls.

Two bundled servers in child processes, each a simulated model of ``MODEL_MS``
(a sleep; requests run concurrently). Replica A also stalls ``STALL_MS`` more
on one request in ten (every tenth it receives, whichever client sent it);
replica B never stalls. Each case is one ``Client([a, b], idempotent=True)``
calling ``execute`` one call after another; the cases take turns in blocks.

- ``balance="in-flight"`` (fewest in flight: every call is a tie, so half
  the calls go to A and 5% of the calls meet a stall), without hedging and
  with ``Hedge()``: the routing of the previous releases;
- the default ``balance="latency"`` (A, slower on average, gets calls when
  its latency estimate has decayed), without hedging, with a fixed delay of
  twice the model's time and with ``Hedge()`` (the p95 of the answers seen),
  each in the default 5% budget.

Figures: p99 against p50 with hedging (the issue's target: 1.5x), the p99
without hedging beside it (same routing, same run), and the extra requests
per call (target: 5% at most).

A stalled call is answered, at the soonest, one hedge delay plus one normal
call after it started; see ``docs/performance.md`` for what that means for
the 1.5x target under fewest-in-flight routing.

``python -m benchmarks.hedge_bench --serve MS STALL_MS EVERY`` runs one replica;
``python -m benchmarks.hedge_bench [--quick]`` prints the figures;
``python -m benchmarks.hedge_bench --balance`` compares the two ``balance=`` rules
without hedging at several concurrencies, over the stalling pair and over a pair of
replicas of 20 ms and 10 ms (informational: no target, not in ``nox -s bench``).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import graphpipe_client as gp

from .child_server import ChildServer
from .timing import Figure

__all__ = ["run_balance", "run_hedge"]

Log = Callable[[str], None]

MODEL_MS = 10
STALL_MS = 200
STALL_EVERY = 10

#: The hedging under test: ``FIXED``, a delay of twice the model's time (what an operator
#: who knows the model would set), and the default ``Hedge()``: after the p95 of the
#: answers seen, both within the default budget (5% of the calls).
FIXED = 2 * MODEL_MS / 1000

#: Each case: its hedging (``None``: none) and its ``balance=``; the cases without
#: hedging are the baselines of those with it (same routing).
CASES: dict[str, tuple[gp.Hedge | None, str]] = {
    "in-flight, plain": (None, "in-flight"),
    "in-flight, p95": (gp.Hedge(), "in-flight"),
    "plain": (None, "latency"),
    "fixed": (gp.Hedge(delay=FIXED), "latency"),
    "p95": (gp.Hedge(), "latency"),
}
TITLES = {
    "in-flight, plain": 'no hedging, balance="in-flight"',
    "in-flight, p95": 'Hedge(), balance="in-flight"',
    "plain": "no hedging (default balance)",
    "fixed": f"Hedge(delay={FIXED:g}) (default balance)",
    "p95": 'Hedge() (delay "p95", default balance)',
}


def _serve(ms: int, stall_ms: int, every: int) -> None:
    from graphpipe_client.testing import serve

    count = itertools.count(1)

    def model(x: np.ndarray) -> np.ndarray:
        n = next(count)
        time.sleep((ms + (stall_ms if every and n % every == 0 else 0)) / 1000)
        return x

    with serve(model) as server:
        sys.stdout.write(f"PORT {server.port}\n")
        sys.stdout.flush()
        sys.stdin.buffer.read()  # until the parent closes it


def _pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(np.ceil(p / 100 * len(ordered))) - 1))]


def run_hedge(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """The figures: p99/p50 with hedging, p99 without, extra requests per call."""
    blocks = 4 if quick else 8
    per_block = 250 if quick else 500
    x = np.ones((1, 16), np.float32)
    urls: list[str] = []
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(
            ChildServer("benchmarks.hedge_bench", "--serve", str(MODEL_MS), str(STALL_MS), "10")
        )
        b = stack.enter_context(
            ChildServer("benchmarks.hedge_bench", "--serve", str(MODEL_MS), "0", "0")
        )
        urls = [a.url, b.url]
        clients = {
            name: stack.enter_context(
                gp.Client(urls, idempotent=True, hedge=hedge, balance=balance)
            )
            for name, (hedge, balance) in CASES.items()
        }
        hedgers = {n: c._replica_sets[c._url or ""].hedger for n, c in clients.items()}
        for _ in range(150):  # the p95's warm-up, and the connections
            for client in clients.values():
                client.execute(x)
        before = {n: h.stats() for n, h in hedgers.items() if h is not None}
        lat: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(blocks):
            for name, client in clients.items():
                for _ in range(per_block):
                    t = time.perf_counter()
                    client.execute(x)
                    lat[name].append(time.perf_counter() - t)
        table: dict[str, Any] = {}
        for name, client in clients.items():
            h = hedgers[name]
            row: dict[str, Any] = {
                "calls": len(lat[name]),
                "p50_s": _pct(lat[name], 50),
                "p99_s": _pct(lat[name], 99),
                "sent": [s.sent for s in client.replicas],
            }
            if h is not None:
                after = h.stats()
                row["hedges"] = after.hedges - before[name].hedges
                row["hedges_won"] = after.won - before[name].won
                row["delay_s"] = h.delay()
            table[name] = row
    for name in CASES:
        r = table[name]
        line = (
            f"  {TITLES[name]}: p50 {r['p50_s'] * 1e3:.1f} ms, p99 {r['p99_s'] * 1e3:.1f} ms "
            f"({r['p99_s'] / r['p50_s']:.2f}x p50); requests to A/B {r['sent'][0]}/{r['sent'][1]}"
        )
        if "hedges" in r:
            line += (
                f"; {r['hedges']} hedges ({r['hedges'] / r['calls']:.1%} extra requests), "
                f"{r['hedges_won']} won; delay {(r['delay_s'] or 0) * 1e3:.1f} ms"
            )
        log(line)
    figures = []
    for name, (hedge, balance) in CASES.items():
        r = table[name]
        what = TITLES[name]
        base = "in-flight, plain" if balance == "in-flight" else "plain"
        figures.append(
            Figure(
                "hedge",
                f"p99 of execute, 2 replicas, one stalls 200 ms on 10%, {what}",
                "s",
                r["p99_s"],
                "its p50",
                r["p50_s"],
                # The target is the default balance's: the old rule's figure is for comparison.
                1.5 if hedge is not None and balance != "in-flight" else None,
                "p99 <= 1.5x p50"
                if hedge is not None and balance != "in-flight"
                else "(the previous routing, for comparison)"
                if hedge is not None
                else "",
                samples=lat[name],
            )
        )
        if hedge is None:
            continue
        figures += [
            Figure(
                "hedge",
                f"p99 of execute, same replicas, {what}",
                "s",
                r["p99_s"],
                "p99 without hedging, same balance",
                table[base]["p99_s"],
                note=f"p50 without hedging {table[base]['p50_s'] * 1e3:.1f} ms",
                samples=lat[name],
                baseline_samples=lat[base],
            ),
            Figure(
                "hedge",
                f"hedges sent per call, {what}",
                "calls",
                float(r["hedges"]),
                "calls",
                float(r["calls"]),
                0.05,
                "<= 5% extra requests",
            ),
        ]
    return figures, table


def _threads(urls: list[str], balance: str, concurrency: int, calls: int) -> str:
    """``calls`` calls on each of ``concurrency`` threads sharing one client; a summary."""
    x = np.ones((1, 16), np.float32)
    lat: list[float] = []
    lock = threading.Lock()
    with gp.Client(urls, balance=balance, pool_size=concurrency + 2) as client:
        for _ in range(50):  # the connections, and the first estimates
            client.execute(x)
        before = [s.sent for s in client.replicas]

        def work() -> None:
            mine = []
            for _ in range(calls):
                t = time.perf_counter()
                client.execute(x)
                mine.append(time.perf_counter() - t)
            with lock:
                lat.extend(mine)

        threads = [threading.Thread(target=work) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = [s.sent - b for s, b in zip(client.replicas, before, strict=True)]
    return (
        f"p50 {_pct(lat, 50) * 1e3:.1f} ms, p99 {_pct(lat, 99) * 1e3:.1f} ms, "
        f"mean {float(np.mean(lat)) * 1e3:.1f} ms; requests {sent[0]}/{sent[1]}"
    )


def run_balance(log: Log = print) -> None:
    """The two ``balance=`` rules side by side, without hedging (printed, no figures)."""
    with contextlib.ExitStack() as stack:
        stalls = stack.enter_context(
            ChildServer("benchmarks.hedge_bench", "--serve", str(MODEL_MS), str(STALL_MS), "10")
        )
        fast = stack.enter_context(
            ChildServer("benchmarks.hedge_bench", "--serve", str(MODEL_MS), "0", "0")
        )
        slow = stack.enter_context(
            ChildServer("benchmarks.hedge_bench", "--serve", str(2 * MODEL_MS), "0", "0")
        )
        pairs = {
            "stalling A / B": [stalls.url, fast.url],
            f"{2 * MODEL_MS} ms / {MODEL_MS} ms": [slow.url, fast.url],
        }
        for what, urls in pairs.items():
            for concurrency, calls in ((1, 1000), (4, 400), (8, 250)):
                for balance in ("in-flight", "latency"):
                    summary = _threads(urls, balance, concurrency, calls)
                    log(f"  {what}, {concurrency} threads, balance={balance!r}: {summary}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif "--balance" in sys.argv:
        run_balance()
    else:
        run_hedge("--quick" in sys.argv)
