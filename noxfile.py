"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s demo``."""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
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
    ``PYENV_VERSION=3.11.7:3.12.1:3.13.0 nox -s tests_newer``. The tests marked
    ``slow`` (the hostile-server campaign, the fuzzers, the soak, the docs' code
    blocks and the examples run as printed: long and
    independent of the interpreter) run in ``tests`` and ``oldest`` only.
    """
    session.install("-e", ".")
    _install_group(session, "test")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real sockets on 127.0.0.1, hypothesis, flatc cross-checks)."""
    session.install("-e", ".")
    _install_group(session, "test")
    # The 10,000-call keep-alive soak through tinyproxy runs whole in ``oldest`` (CI runs
    # both, one in each lane); here 1,000 calls a case check the same in a tenth of the time.
    calls = os.environ.get("GP_KEEPALIVE_CALLS", "1000")
    session.run("pytest", *session.posargs, env={"GP_KEEPALIVE_CALLS": calls})


# The lower bounds declared in pyproject.toml, checked by a session of their own.
OLDEST = ["numpy==1.24.*", "httpx==0.25.*", "urllib3==2.0.*"]
#: Test tools that must be older beside numpy 1.24: pyarrow (under dask[dataframe]) needs
#: numpy 2 at run time from 26.0 on, which its metadata does not say.
OLDEST_TOOLS = ["pyarrow<26"]


@nox.session
def oldest(session: nox.Session) -> None:
    """The test suite against the oldest supported numpy, httpx and urllib3."""
    # The test tools resolved together with the pins, so that each (pandas, under
    # dask[dataframe]) comes in a release built for the old numpy, not one that needs 2.x.
    session.install(
        "-e", ".", *OLDEST, *OLDEST_TOOLS, *nox.project.dependency_groups(PYPROJECT, "test")
    )
    session.install(*OLDEST)  # keep the pins if a test tool pulled newer ones
    session.run(
        "python",
        "-c",
        "import numpy, httpx, urllib3; print(numpy.__version__, httpx.__version__, urllib3.__version__)",
    )
    # The 10,000-call keep-alive soak through tinyproxy runs whole here, on the old pins
    # (``tests`` runs it at 1,000 calls a case).
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and formatting), and the layers (import-linter; see docs/architecture.md)."""
    _install_group(session, "lint")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "examples", "noxfile.py")
    # The contracts are in pyproject.toml ([tool.importlinter]); grimp reads the source
    # tree, so the package need not be installed.
    session.run("lint-imports", "--no-cache", env={"PYTHONPATH": "src"})


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/ (with the [dask] extra: graphpipe_client.dask is checked too)."""
    session.install("-e", ".[dask]")
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
    """Run every script in examples/ against the bundled server (with the extras they use)."""
    session.install("-e", ".[dask]")
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
    orjson (JSON), flatbuffers (the Builder), matplotlib (the plot), uvloop (the
    async client's figures on uvloop, where it installs), the [dask] extra (the
    Dask section). Prints
    every figure next to its baseline; writes benchmarks/results/latest.json
    and docs/img/benchmarks.png. See docs/performance.md.
    """
    session.install("-e", ".[dask]")
    session.install("flatbuffers", "numpy", "requests", "orjson", "matplotlib", "opentelemetry-api")
    if sys.platform != "win32":
        session.install("uvloop")
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
    session.run("pytest", "-q", "tests/wire/test_fuzz.py", *session.posargs, env=env)
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


# --------------------------------------------------------------------------
# The release artefacts: nox -s build


def _git_files(session: nox.Session, *paths: str) -> set[str]:
    """The files git tracks under ``paths`` (what a clean clone holds)."""
    out = session.run("git", "ls-files", "-z", "--", *paths, external=True, silent=True)
    return {name for name in str(out).split("\0") if name}


def _check_wheel(session: nox.Session, wheel: Path, version: str) -> None:
    """The wheel holds the package, py.typed, the testing package and the entry points."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"graphpipe_client-{version}.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = email.parser.Parser().parsestr(zf.read(f"{info}/METADATA").decode())
    sources = {
        name.removeprefix("src/")
        for name in _git_files(session, "src/graphpipe_client")
        if not name.endswith((".pyc", ".pyo"))
    }
    missing = sorted(sources - names)
    if missing:
        session.error(f"{wheel.name} lacks {missing}")
    for required in (
        "graphpipe_client/py.typed",
        "graphpipe_client/testing/__init__.py",
        "graphpipe_client/testing/pytest_plugin.py",
        f"{info}/licenses/LICENSE",
    ):
        if required not in names:
            session.error(f"{wheel.name} lacks {required}")
    stray = sorted(n for n in names if not n.startswith(("graphpipe_client/", f"{info}/")))
    if stray:
        session.error(f"{wheel.name} holds files outside the package: {stray}")
    for line in (
        "graphpipe-client = graphpipe_client._cli:main",
        "graphpipe_client = graphpipe_client.testing.pytest_plugin",
    ):
        if line not in entry_points:
            session.error(f"{wheel.name}'s entry points lack {line!r}:\n{entry_points}")
    if "[pytest11]" not in entry_points or "[console_scripts]" not in entry_points:
        session.error(f"{wheel.name}'s entry points lack a group:\n{entry_points}")
    if metadata["Version"] != version or metadata["Name"] != "graphpipe-client":
        session.error(f"{wheel.name} says {metadata['Name']} {metadata['Version']}")
    if metadata.get("Description-Content-Type") != "text/markdown":
        session.error("the long description (README.md) is not declared as Markdown")
    session.log(f"{wheel.name}: {len(names)} files, py.typed, testing, entry points: ok")


def _check_sdist(session: nox.Session, sdist: Path, version: str) -> None:
    """The sdist holds every tracked file that pyproject.toml's sdist ``include`` names."""
    include = PYPROJECT["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    prefix = f"graphpipe_client-{version}/"
    with tarfile.open(sdist) as tf:
        names = {m.name.removeprefix(prefix) for m in tf.getmembers() if m.isfile()}
    wanted = _git_files(session, *include)
    missing = sorted(wanted - names)
    if missing:
        session.error(f"{sdist.name} lacks {missing}")
    extra = sorted(
        n
        for n in names - {"PKG-INFO", "pyproject.toml", ".gitignore"}
        if not any(n == p or n.startswith(p.rstrip("/") + "/") for p in include)
    )
    if extra:
        session.error(f"{sdist.name} holds files that pyproject.toml does not include: {extra}")
    session.log(f"{sdist.name}: {len(names)} files, every included file: ok")


#: The README's example, run in the clean venv, must print this first (tests/test_readme.py too).
README_FIRST_LINE = "('input0',) [0. 2. 4. 6.]"

# Run in the clean venv: the package imported is the installed wheel (not
# this source tree, not an editable install), with its typing marker and
# pytest plugin registered.
_INSTALLED_CHECK = """\
import importlib.metadata as md, pathlib, sys
import graphpipe_client
where = pathlib.Path(graphpipe_client.__file__).resolve()
assert pathlib.Path(sys.prefix).resolve() in where.parents, where
assert (where.parent / "py.typed").is_file()
dist = md.distribution("graphpipe-client")
assert dist.version == graphpipe_client.__version__, dist.version
assert "editable" not in (dist.read_text("direct_url.json") or ""), "an editable install"
plugins = {ep.name: ep.value for ep in md.entry_points(group="pytest11")}
assert plugins.get("graphpipe_client") == "graphpipe_client.testing.pytest_plugin", plugins
print("installed", dist.version, "at", where.parent)
"""


@nox.session
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel, check them, and run the README example from the wheel.

    Builds into ``dist/`` with ``python -m build``; ``twine check --strict``
    (the README must render as the long description); checks the wheel's
    contents (every module, ``py.typed``, the ``testing`` package, the
    console script and pytest plugin entry points) and the sdist's (every
    tracked file that pyproject.toml includes, nothing else); then creates a
    clean virtualenv outside the tree, installs the wheel there (not
    editable), runs the README's Example block against the bundled server,
    the console script, and, with pytest added, ``examples/test_with_fixture.py``
    on the pytest plugin the wheel registers. Run it from a git clone: the
    contents are checked against the files git tracks.
    """
    session.install("build>=1.2", "twine>=5")
    version = re.search(
        r'__version__ = "([^"]+)"', Path("src/graphpipe_client/_version.py").read_text()
    )
    if version is None:
        session.error("no __version__ in src/graphpipe_client/_version.py")
    dist = Path("dist")
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        session.error(f"expected one wheel and one sdist in dist/, found {sorted(dist.iterdir())}")
    session.run("twine", "check", "--strict", str(wheels[0]), str(sdists[0]))
    _check_wheel(session, wheels[0], version.group(1))
    _check_sdist(session, sdists[0], version.group(1))

    blocks = re.findall(r"```python\n(.*?)```", Path("README.md").read_text(), flags=re.S)
    if not blocks:
        session.error("README.md has no python example")
    with tempfile.TemporaryDirectory(prefix="graphpipe-client-wheel-") as tmp:
        work = Path(tmp)
        venv = work / "venv"
        session.run("python", "-m", "venv", str(venv))
        bindir = venv / ("Scripts" if os.name == "nt" else "bin")
        python = str(bindir / "python")
        session.run(python, "-m", "pip", "install", "-q", str(wheels[0].resolve()), external=True)
        (work / "check_installed.py").write_text(_INSTALLED_CHECK)
        (work / "readme_example.py").write_text(blocks[0])
        # Outside the source tree; -I: no current directory, user site or
        # PYTHON* variables on the path either.
        with session.chdir(tmp):
            session.run(python, "-I", "check_installed.py", external=True)
            out = session.run(python, "-I", "readme_example.py", external=True, silent=True)
            first = str(out).splitlines()[0] if out else ""
            if first != README_FIRST_LINE:
                session.error(f"the README example printed {out!r}, not {README_FIRST_LINE!r}")
            session.log(f"the README example, run from the installed wheel: {first}")
            session.run(str(bindir / "graphpipe-client"), "--version", external=True)
            # The pytest plugin, found through the wheel's entry point.
            session.run(python, "-m", "pip", "install", "-q", "pytest>=8", external=True)
            shutil.copy(Path(session.invoked_from) / "examples" / "test_with_fixture.py", tmp)
            session.run(
                python, "-I", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "-W", "error", "test_with_fixture.py", external=True,
            )  # fmt: skip
