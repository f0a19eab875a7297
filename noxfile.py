"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s demo``."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs", "examples"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _install_group(session: nox.Session, group: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session(python=["3.12", "3.13"])
def tests_newer(session: nox.Session) -> None:
    """The test suite on the newer Pythons the package declares (3.12, 3.13).

    With pyenv, make them visible first, e.g.
    ``PYENV_VERSION=3.11.7:3.12.1:3.13.0 nox -s tests_newer``.
    """
    tests(session)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real sockets on 127.0.0.1, hypothesis, flatc cross-checks)."""
    session.install("-e", ".")
    _install_group(session, "test")
    session.run("pytest", *session.posargs)


# The lower bounds declared in pyproject.toml, checked by a session of their own.
OLDEST = ["numpy==1.24.*", "httpx==0.25.*", "urllib3==2.0.*"]


@nox.session
def oldest(session: nox.Session) -> None:
    """The test suite against the oldest supported numpy, httpx and urllib3."""
    session.install("-e", ".", *OLDEST)
    _install_group(session, "test")
    session.install(*OLDEST)  # keep the pins if a test tool pulled newer ones
    session.run(
        "python",
        "-c",
        "import numpy, httpx, urllib3; print(numpy.__version__, httpx.__version__, urllib3.__version__)",
    )
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting check."""
    _install_group(session, "lint")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".")
    _install_group(session, "typecheck")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: start the bundled server with the demo model and do real round trips."""
    session.install("-e", ".")
    session.run("python", "examples/quickstart.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (API reference from the docstrings)."""
    session.install("-e", ".")
    _install_group(session, "docs")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def examples(session: nox.Session) -> None:
    """Run every script in examples/ against the bundled server."""
    session.install("-e", ".")
    session.install("pytest>=8")
    for script in sorted(Path("examples").glob("*.py")):
        if script.name.startswith("test_"):
            session.run("pytest", "-q", str(script))
        else:
            session.run("python", str(script))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against their baselines; ``nox -s bench -- --quick`` for a shorter run.

    Installs what they compare against: the 2018 client (``graphpipe==1.0.4``,
    without its 2018 pins, next to current flatbuffers, numpy and requests),
    orjson (JSON), flatbuffers (the Builder), matplotlib (the plot). Prints
    every figure next to its baseline; writes benchmarks/results/latest.json
    and docs/img/benchmarks.png. See docs/performance.md.
    """
    session.install("-e", ".")
    session.install("flatbuffers", "numpy", "requests", "orjson", "matplotlib")
    session.install("--no-deps", "graphpipe==1.0.4")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Fuzz every decoder: hypothesis at a large budget, then atheris (coverage-guided).

    Seeds: every wire sample in tests/data, messages of every dtype, hostile
    messages. Mutations: truncation, bit flips, splices, insertion/deletion,
    offset/length rewrites. Invariants: only DecodeError, linear time, small
    allocation (tests/fuzzing.py). Budgets, from the environment:
    GP_FUZZ_EXAMPLES (3000 hypothesis examples per property), GP_FUZZ_STRIDE
    (1: the systematic pass mutates every byte), GP_FUZZ_ATHERIS_RUNS (200000)
    and GP_FUZZ_ATHERIS_SECONDS (120). Prints a summary line per fuzzer.
    """
    import os

    session.install("-e", ".")
    session.install("pytest>=8", "hypothesis>=6.100", "flatbuffers>=23.5.26")
    # atheris ships manylinux wheels; where it cannot be installed, say so and
    # rely on hypothesis alone (fuzz_atheris.py reports the skip).
    session.run("python", "-m", "pip", "install", "-q", "atheris", success_codes=[0, 1])
    env = {
        "GP_FUZZ_EXAMPLES": os.environ.get("GP_FUZZ_EXAMPLES", "3000"),
        "GP_FUZZ_STRIDE": os.environ.get("GP_FUZZ_STRIDE", "1"),
    }
    session.run("pytest", "-q", "tests/test_fuzz.py", *session.posargs, env=env)
    session.run(
        "python",
        "tests/fuzz_atheris.py",
        os.environ.get("GP_FUZZ_ATHERIS_RUNS", "200000"),
        os.environ.get("GP_FUZZ_ATHERIS_SECONDS", "120"),
    )


@nox.session
def soak(session: nox.Session) -> None:
    """Load and leaks at full size against the bundled server on 127.0.0.1.

    16 threads x 2,000 calls on one Client; 200 concurrent tasks sharing
    10,000 calls on one AsyncClient. Zero errors, every result checked, open
    file descriptors back to their start value, RSS stable after warm-up.
    Override with GP_SOAK_THREADS, GP_SOAK_CALLS, GP_SOAK_TASKS,
    GP_SOAK_ASYNC_CALLS, GP_SOAK_MAX_SECONDS, GP_SOAK_RSS_GROWTH_MB.
    """
    import os

    session.install("-e", ".")
    session.install("pytest>=8", "hypothesis>=6.100")  # tests/conftest.py loads hypothesis
    defaults = {
        "GP_SOAK_THREADS": "16",
        "GP_SOAK_CALLS": "2000",
        "GP_SOAK_TASKS": "200",
        "GP_SOAK_ASYNC_CALLS": "10000",
        "GP_SOAK_MAX_SECONDS": "600",
    }
    env = {k: os.environ.get(k, v) for k, v in defaults.items()}
    session.run("pytest", "-q", "tests/test_soak.py", *session.posargs, env=env)
