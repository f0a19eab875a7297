"""Every script in ``examples/`` runs, as ``nox -s examples`` runs it, and says nothing alarming.

Each runs in a fresh interpreter with stdout and stderr piped (as in CI or a log
file, not a terminal): it must exit 0, write no ``\\r`` progress updates (which a
log would show as one long line), no traceback, and no ERROR or WARNING log
line (the Dask example fails a block on purpose: its workers must not log it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Long, and about the docs and examples rather than the interpreter: run in `tests` and
#: `oldest`, not in `tests_newer`.
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parent.parent / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("test_"))


def test_every_example_is_here() -> None:
    assert SCRIPTS == [
        "async_fanout.py",
        "batched_scoring.py",
        "coalescing.py",
        "dask_scoring.py",
        "quickstart.py",
        "thread_pool.py",
    ]


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_example_runs_quietly_in_a_pipe(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        timeout=180,
        check=False,
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert out.strip(), "an example shows what it did"
    for text in (out, err):
        assert "\r" not in text, text
        for alarm in ("Traceback", " - ERROR - ", " - WARNING - ", "CancelledError", "Warning:"):
            assert alarm not in text, text
