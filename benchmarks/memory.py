"""Peak extra memory of one large call, measured in a fresh process.

``python -m benchmarks.memory PORT`` prints one JSON object. For each client
(our sync and async clients, and the 2018 client when it is installed) it
makes one untimed warm-up call (connection, imports), then measures a call
twice:

- RSS: the peak resident set during the call minus the resident set before
  it. The peak is the kernel's ``VmHWM``, reset just before the call by
  writing ``5`` to ``/proc/self/clear_refs``; where that is not allowed, a
  thread samples ``VmRSS`` every 0.2 ms instead (and may miss a short peak).
- tracemalloc: the peak of traced allocations during the call (numpy reports
  its data buffers to tracemalloc) minus those traced before it.

The request array itself (77 MB) exists before the call and is not counted:
what is counted is what the call adds, against the 12.8 MB response that it
must return.

Run it with ``MALLOC_MMAP_THRESHOLD_=65536`` in the environment (the bench
does, one process per client): otherwise glibc raises its mmap threshold once
a large buffer is freed, keeps the next freed buffers in its heap, and the
RSS of a later call reuses them and shows almost nothing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

from .workloads import WORKLOADS

__all__ = ["main", "measure"]


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status("VmHWM") <= _status("VmRSS") + (1 << 20)


def _rss_peak(call: Callable[[], object]) -> tuple[int, str]:
    gc.collect()
    before = _status("VmRSS")
    if _reset_hwm():
        out = call()
        peak = _status("VmHWM")
        del out
        return peak - before, "VmHWM"
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _status("VmRSS"))
            done.wait(0.0002)

    th = threading.Thread(target=sample)
    th.start()
    try:
        out = call()
        peak = max(peak, _status("VmRSS"))
    finally:
        done.set()
        th.join()
    del out
    return peak - before, "VmRSS sampling"


def _traced_peak(call: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = call()
        peak = tracemalloc.get_traced_memory()[1]
        del out
    finally:
        tracemalloc.stop()
    return peak - before


def measure(port: int, repeats: int = 3, only: str | None = None) -> dict[str, Any]:
    import graphpipe_client as gp

    from . import legacy

    w = WORKLOADS["seed"]
    x = w.request
    url = f"http://127.0.0.1:{port}{w.path}"
    result: dict[str, Any] = {
        "response_bytes": w.response.nbytes,
        "request_bytes": x.nbytes,
        "clients": {},
    }
    loop = asyncio.new_event_loop()
    loops = [loop]
    client = gp.Client(url)
    aclient = gp.AsyncClient(url)
    calls: dict[str, Callable[[], object]] = {
        "graphpipe-client Client": lambda: client.execute(x),
        "graphpipe-client AsyncClient": lambda: loop.run_until_complete(aclient.execute(x)),
    }
    try:
        import uvloop
    except ImportError:
        pass
    else:
        uv = uvloop.new_event_loop()
        loops.append(uv)
        calls[UVLOOP] = lambda: uv.run_until_complete(aclient.execute(x))
    old = legacy.load()
    if not isinstance(old, str):
        remote = old[0]
        calls["graphpipe 2018 (requests)"] = lambda: remote.execute(url, x)
    for name, call in calls.items():
        if only is not None and name != only:
            continue
        call()  # warm-up
        rss, how = [], ""
        traced = []
        for _ in range(repeats):
            extra, how = _rss_peak(call)
            rss.append(extra)
            traced.append(_traced_peak(call))
        result["clients"][name] = {
            "rss_extra": sorted(rss)[len(rss) // 2],
            "rss_method": how,
            "traced_extra": sorted(traced)[len(traced) // 2],
            "rss_samples": rss,
            "traced_samples": traced,
        }
    client.close()
    for lp in loops:
        lp.run_until_complete(aclient.aclose())
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()
    return result


#: The clients :func:`measure` knows, by name.
UVLOOP = "graphpipe-client AsyncClient on uvloop"
CLIENTS = (
    "graphpipe-client Client",
    "graphpipe-client AsyncClient",
    UVLOOP,
    "graphpipe 2018 (requests)",
)


def main() -> None:
    """``python -m benchmarks.memory PORT [REPEATS [CLIENT]]``: print the measures as JSON."""
    port = int(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    only = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps(measure(port, repeats, only)))


if __name__ == "__main__":
    main()
