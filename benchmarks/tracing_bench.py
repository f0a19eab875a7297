"""What OpenTelemetry costs when it records nothing (issues 15 and 24: within 2%).

A small ``Client.execute`` (1x10 f32) against the bundled server in a child
process, in three cases that take turns within each run: the ``[otel]`` extra
installed with no tracer provider (the API's default proxy provider), and
twice the same client behaving as if the extra were absent. The two "absent"
cases differ by several percent from block to block (an A/A control): the
end-to-end ratio cannot resolve 2%. So the figure with the target is the
time the tracing check adds to a call (``start_span`` with no provider, timed
on its own, the only code that differs), against the small call's median
from the same run. What the metrics add (a request through ``metered`` and
``count_rows``, with the metrics API and no meter provider) is timed the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import graphpipe_client as gp
from graphpipe_client._observe import metrics as _metrics
from graphpipe_client._observe import tracing as _tracing

from .child_server import ChildServer
from .timing import Figure, interleaved, median

Log = Callable[[str], None]


def run_tracing(quick: bool, log: Log = print) -> tuple[list[Figure], dict[str, Any]]:
    """The figure, or none (and a note) where ``opentelemetry-api`` is not installed."""
    _tracing._otel = False  # look the extra up again
    if _tracing._modules() is None:
        log("  (skipped: opentelemetry-api is not installed; nox -s bench installs it)")
        return [], {"skipped": "opentelemetry-api not installed"}
    modules = _tracing._modules()
    _metrics._otel = False
    metrics_module = _metrics._module()
    x = np.ones((1, 10), np.float32)
    with (
        ChildServer("benchmarks.cache_bench", "--serve", "instant") as server,
        gp.Client(server.url) as client,
    ):

        def absent() -> object:
            _tracing._otel = _metrics._otel = None
            return client.execute(x)

        def no_provider() -> object:
            _tracing._otel = modules
            _metrics._otel = metrics_module
            return client.execute(x)

        runs = 31 if quick else 81
        cases = {
            "absent": (absent, None),
            "api": (no_provider, None),
            "absent again": (absent, None),
        }
        samples = interleaved(cases, runs, warmup=50, run_seconds=0.05)
        req = client._prepare_execute(x, None, None, None, None, gp.UNSET)
        outs = [x]
        _tracing._otel = modules
        _metrics._otel = metrics_module

        def send(req: object, deadline: object) -> object:
            return req

        def metrics_checks() -> None:
            # What a call adds for metrics: its request through the metered wrapper (an
            # empty send here: the wrapper and its check), and the count of its rows.
            _metrics.metered(send, req, None)  # type: ignore[type-var]
            _metrics.count_rows(outs)

        check = interleaved(
            {
                "start_span": (lambda: _tracing.start_span(req, 1), 20000),
                "metrics": (metrics_checks, 20000),
            },
            runs,
        )
    _tracing._otel = _metrics._otel = False
    off, api, again = (median(samples[k]) for k in ("absent", "api", "absent again"))
    added = median(check["start_span"])
    metered = median(check["metrics"])
    log(
        f"  extra absent {off * 1e6:.1f} us, API without a provider {api * 1e6:.1f} us "
        f"({api / off:.3f}x), absent again {again * 1e6:.1f} us ({again / off:.3f}x: the noise); "
        f"the check itself {added * 1e9:.0f} ns per call; the metrics' checks "
        f"{metered * 1e9:.0f} ns per call"
    )
    figures = [
        Figure(
            "tracing",
            "time the tracing check adds to Client.execute 1x10 f32 (API installed, no provider)",
            "s",
            added,
            "the call, extra absent",
            off,
            0.02,
            "<= 2% of the call",
            samples=check["start_span"],
            baseline_samples=samples["absent"],
        ),
        Figure(
            "tracing",
            "time the metrics checks add to Client.execute 1x10 f32 (API installed, no provider)",
            "s",
            metered,
            "the call, extra absent",
            off,
            0.02,
            "<= 2% of the call",
            samples=check["metrics"],
            baseline_samples=samples["absent"],
        ),
        Figure(
            "tracing",
            "Client.execute 1x10 f32 end to end, API installed, no provider (noise: see A/A)",
            "s",
            api,
            "the extra absent",
            off,
            note=f"A/A control: {again / off:.3f}x",
            samples=samples["api"],
            baseline_samples=samples["absent"],
        ),
    ]
    return figures, {
        "absent_s": off,
        "api_no_provider_s": api,
        "absent_again_s": again,
        "check_s": added,
        "metrics_check_s": metered,
    }
