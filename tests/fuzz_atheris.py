"""Coverage-guided fuzzing of every decoder with atheris (libFuzzer), run by ``nox -s fuzz``.

Usage: ``python tests/fuzz_atheris.py [RUNS] [SECONDS]`` (defaults: 200000 runs,
120 s, whichever ends first). The corpus starts from the same seeds as the
hypothesis fuzzers (``tests/fuzzing.py``, less the large hostile ones). Each input goes to every decoder
and must satisfy the same invariants (only DecodeError; linear time; the
tracemalloc peak checked on every 16th input, as it is slow). A crashing
input is written to ``fuzz-artifacts/`` and the run fails: make it a
regression test in ``tests/wire/test_fuzz.py``.

libFuzzer ends the process with ``exit()``, so the fuzzing runs in a child
process that writes its figures to a file; this parent prints the summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(stats_path: str, argv: list[str]) -> None:
    import atheris

    # The instrumentation slows the decoders several times: widen the time bound.
    os.environ.setdefault("GP_FUZZ_TIME_PER_KB", "0.02")
    os.environ.setdefault("GP_FUZZ_TIME_BASE", "0.1")
    with atheris.instrument_imports(include=["graphpipe_client"]):
        pass

    import fuzzing as fz

    stats = fz.Stats()

    def dump() -> None:
        Path(stats_path).write_text(json.dumps(stats.__dict__))

    def one(data: bytes) -> None:
        measure = stats.cases % (16 * len(fz.DECODERS)) == 0
        for name in fz.DECODERS:
            fz.check(name, data, measure_alloc=measure, stats=stats)
        fz.check_head_alignment(data)
        if stats.cases % (256 * len(fz.DECODERS)) == 0:
            dump()  # libFuzzer exit()s at the end: keep the file current

    atheris.Setup(argv, one)
    try:
        atheris.Fuzz()
    finally:
        dump()


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: skipping coverage-guided fuzzing (hypothesis still ran)")
        return 0
    import fuzzing as fz

    artifacts = Path("fuzz-artifacts")
    artifacts.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp, "corpus")
        corpus.mkdir()
        # The hostile seeds (thousands of shared tables) are left to the
        # hypothesis fuzzers: instrumented, they slow libFuzzer to a crawl.
        for name, data in fz.all_seeds().items():
            (corpus / name).write_bytes(data)
        stats_path = str(Path(tmp, "stats.json"))
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                stats_path,
                f"-runs={runs}",
                f"-max_total_time={seconds}",
                "-max_len=4096",  # larger inputs only slow the instrumented decoders down
                "-len_control=0",
                "-rss_limit_mb=4096",
                "-print_final_stats=1",
                f"-artifact_prefix={artifacts}/",
                str(corpus),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        log = proc.stderr
        stats = json.loads(Path(stats_path).read_text()) if Path(stats_path).exists() else {}
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    tail = "\n".join(log.splitlines()[-25:])
    if proc.returncode != 0:
        print(tail)
        print(f"atheris: FAILED (exit {proc.returncode}); the crashing input is in {artifacts}/")
        return 1
    s = fz.Stats(**stats) if stats else fz.Stats()
    inputs = int(done.group(1)) if done else s.cases // len(fz.DECODERS)
    secs = done.group(2) if done else "?"
    # The figures come from the child's last dump (every 256 inputs).
    print(
        f"atheris: {inputs} inputs x {len(fz.DECODERS)} decoders = {inputs * len(fz.DECODERS)} cases "
        f"in {secs} s, 0 crashes; max {s.max_ms:.2f} ms per case (instrumented), "
        f"max {s.max_ms_per_kb:.3f} ms/KiB, max allocation {s.max_alloc_ratio:.1f}x input "
        f"(inputs >= 1 KiB, every 16th input measured), max peak {s.max_alloc_bytes} bytes"
    )
    if not any(artifacts.iterdir()):
        artifacts.rmdir()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], [sys.argv[0], *sys.argv[3:]])
    else:
        sys.exit(main())
