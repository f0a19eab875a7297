"""Every code block of ``README.md`` and ``docs/*.md`` that is meant to run, run as printed.

So that a page cannot drift from the code again (issue 25). How:

- The blocks are found by their fences. ``python``, ``bash`` and ``console`` blocks run,
  unless :data:`NOT_RUN` lists them with the reason; ``text``, ``mermaid`` and bare blocks
  are not code (output samples, diagrams). A block that is in neither state fails
  :func:`test_every_block_is_run_or_listed_with_a_reason`: a new block must be run, or
  listed with its reason.
- Each block runs in a fresh interpreter (or bash), in a temporary directory, exactly as
  printed, with one substitution: the docs call the demo model at
  ``http://127.0.0.1:9000`` (``graphpipe-client serve``), which becomes the address of the
  demo server this module starts on a free port (a fixed port would collide with other
  runs on the machine).
- A fragment, a block that goes on from the page (``client``, ``x``, ``url`` are already
  there), runs after its :data:`SETUP`, Python written out below that gives it those
  names; the block's own text is unchanged. Top-level ``await`` runs as in
  ``python -m asyncio``. The blocks of ``docs/testing.md`` that are pytest tests run under
  pytest.
- In a ``console`` block, each ``$ command`` runs in bash, and what it prints (stdout and
  stderr) must be the lines printed under it, except in :data:`VARYING` blocks (timings,
  progress bars: only the exit status is checked).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphpipe_client.testing import GraphPipeServer, demo_metadata, demo_model, serve

#: Long, and about the docs and examples rather than the interpreter: run in `tests` and
#: `oldest`, not in `tests_newer`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEMO = "http://127.0.0.1:9000"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
NOT_CODE = {"", "text", "mermaid"}
RUN = {"python", "bash", "console"}


@dataclass(frozen=True)
class Block:
    page: str  # e.g. docs/async.md
    line: int  # of the opening fence
    lang: str
    text: str
    key: str  # page and first line (with " (2)", " (3)" for a repeated first line)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    out: list[Block] = []
    for path in PAGES:
        text = path.read_text()
        seen: dict[str, int] = {}
        for m in FENCE.finditer(text):
            info = m.group(1).strip()
            lang = info.split()[0] if info else ""
            body = m.group(2)
            first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
            page = path.relative_to(ROOT).as_posix()
            key = f"{page}: {first}"
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key += f" ({seen[key]})"
            out.append(Block(page, text.count("\n", 0, m.start()) + 1, lang, body, key))
    return out


BLOCKS = _blocks()

#: Blocks that are code but are not run, and why.
NOT_RUN: dict[str, str] = {
    "README.md: # the main job: start the bundled server with a demo model and call it for real": (
        "the set-up commands are CI's own (test_readme.py checks that .ci/run runs them); "
        "nox inside the test suite would run the suite inside itself"
    ),
    "docs/quickstart.md: python -m pip install .": (
        "installs the package: the test environment is that install (nox -s tests runs "
        "pip install -e .)"
    ),
    "docs/quickstart.md: python -m graphpipe_client.testing          # serves the demo model, prints its URL": (
        "serves until Ctrl-C: the demo server of this module stands in for it, and the next "
        "block runs against it; the command is run by tests/cli/test_cli.py"
    ),
    "docs/dask.md: pip install 'graphpipe-client[dask]'     # dask[array] and distributed": (
        "installs from PyPI: the test environment has the extra"
    ),
    "docs/observability.md: pip install 'graphpipe-client[otel]'     # opentelemetry-api; from a clone: pip install '.[otel]'": (
        "installs from PyPI: test_the_otel_install_line_is_what_the_example_needs checks "
        "that it names what the example imports"
    ),
    "docs/performance.md: python -m pip install nox": (
        "the benchmark session (about 4 minutes on 2 cores), run by nox -s bench"
    ),
    "docs/batched.md: client.execute_batched(": "a signature with its defaults, not a call",
    "docs/dask.md: predict(": "a signature with its defaults, not a call",
    'docs/testing.md: serve(model, *, metadata=None, host="127.0.0.1", port=0, errors_as_response=False,': (
        "a signature with its defaults, not a call"
    ),
    "docs/dask.md: import dask.array as da": (
        "needs a Dask scheduler and an S3 bucket: examples/dask_scoring.py is the runnable "
        "version (tests/test_examples.py)"
    ),
    "docs/dask.md: import dask.dataframe as dd": (
        "needs an S3 bucket of parquet files: tests/integrations/test_dask.py runs "
        "predict_frame on bundled servers"
    ),
    "docs/dask.md: from dask_jobqueue import SLURMCluster": "needs a SLURM cluster",
    "docs/dask.md: from dask_kubernetes.operator import KubeCluster": "needs a Kubernetes cluster",
    "docs/migrating.md: # before": (
        "the 'before' half imports the 2018 package (graphpipe), which is not installed; "
        "the benchmarks install it"
    ),
    "docs/replicas.md: import numpy as np": (
        "the addresses of a deployment (10.0.0.x): tests/replicas/test_replicas.py makes the "
        "same calls over bundled servers"
    ),
    "docs/sync-client.md: client = Client()": (
        "illustrative hosts (model-a, model-b): tests/clients run per-call url= against "
        "bundled servers"
    ),
    "docs/zero-copy.md: shift = codec.head_alignment_shift(first_chunk, content_length)": (
        "a sketch: '...' stands for reading the body into the buffer; the codec's doctests "
        "and tests/wire/test_decode_fast_path.py run it"
    ),
    "docs/cli.md: $ graphpipe-client serve": (
        "serves until Ctrl-C: the demo server of this module stands in for it "
        "(tests/cli/test_cli.py runs serve, and stops it with SIGINT)"
    ),
    "docs/cli.md: $ graphpipe-client serve --port 0": (
        "serves until Ctrl-C (tests/cli/test_cli.py: test_serve_answers_and_stops_on_sigint)"
    ),
    "docs/cli.md: $ graphpipe-client bench http://127.0.0.1:9000 --duration 60": (
        "a Ctrl-C in the middle of a run (tests/cli/test_cli.py: "
        "test_bench_ctrl_c_prints_the_partial_report_and_exits_130)"
    ),
    "docs/cli.md: $ graphpipe-client info http://127.0.0.1:9": (
        "failures that need a slow model and an nginx in front of a model that is down: "
        "each line is a test of tests/cli/test_cli.py (server down, model error, missing "
        "file, read timeout, HTML error page)"
    ),
    "docs/testing.md: $ python -m graphpipe_client.testing --port 9000": (
        "serves until Ctrl-C (tests/cli/test_cli.py runs it)"
    ),
    "docs/replicas.md: from graphpipe_client import Client, Hedge": (
        "the replicas of a deployment (urls): tests/replicas/test_hedging.py makes hedged "
        "calls over bundled servers"
    ),
    "docs/observability.md: from opentelemetry import metrics": (
        "needs opentelemetry-exporter-prometheus and prometheus_client, which are not test "
        "dependencies, and serves a port: tests/observe/test_metrics.py reads the same "
        "instruments with the SDK's in-memory reader"
    ),
    "docs/performance.md: nox -s bench -- --only percall          # or: python -m benchmarks --only percall": (
        "the benchmark section (5-10 minutes under callgrind), run by nox -s bench"
    ),
}

#: Console blocks whose output varies from run to run: only the exit status is checked.
VARYING = {
    "docs/cli.md: $ python -c \"import numpy as np; np.save('many.npy', np.random.default_rng(1).uniform(0.1, 7.0, (1_000_000, 4)).astype(np.float32))\"": (
        "the progress bar is drawn only on a terminal, with the rate"
    ),
    "docs/cli.md: $ graphpipe-client bench http://127.0.0.1:9000": "timings",
    "README.md: graphpipe-client serve &                                   # the demo model on :9000": (
        "timings (bench)"
    ),
}

#: Blocks of docs/testing.md that are pytest test functions: run under pytest.
PYTEST = {
    "docs/testing.md: import numpy as np (2)",
    "docs/testing.md: from graphpipe_client import Client, ReadTimeout, RetryPolicy, Timeout, TransportError",
}

_DEMO_CLIENT = "from graphpipe_client import Client\nurl = DEMO_URL\nclient = Client(url)\n"
_FLOWERS = "import numpy as np\nx = np.full((3, 4), 2.0, np.float32)\n"

#: What a fragment finds on its page before it: run before it, in the same interpreter.
#: ``DEMO_URL`` is the demo server's URL.
SETUP: dict[str, str] = {
    "docs/coalescing.md: from graphpipe_client import Client, Coalesce": (
        "import numpy as np\nfeatures_of_one_request = np.full((1, 4), 2.0, np.float32)\n"
    ),
    "docs/async.md: async with AsyncClient(url, pool_size=32) as client:": (
        "import asyncio\nimport numpy as np\nfrom graphpipe_client import AsyncClient\n"
        "url = DEMO_URL\nbatches = [np.ones((n, 4), np.float32) for n in (1, 2, 3)]\n"
    ),
    "docs/async.md: async with AsyncClient(url) as client:": (
        _FLOWERS + "from graphpipe_client import AsyncClient\nurl = DEMO_URL\n"
        "x = np.ones((5000, 4), np.float32)\n"
        "def read_chunks():\n    yield x[:3000]\n    yield x[3000:]\n"
    ),
    "docs/async.md: limit = asyncio.Semaphore(64)": (
        "import asyncio\nimport numpy as np\nfrom graphpipe_client import AsyncClient\n"
        "client = AsyncClient(DEMO_URL)\n"
        "batches = [np.ones((n, 4), np.float32) for n in range(1, 100)]\n"
    ),
    "docs/async.md: from graphpipe_client import aio": _FLOWERS + "url = DEMO_URL\n",
    "docs/async.md: from graphpipe_client import aio (2)": _FLOWERS + "url = DEMO_URL\n",
    "docs/async.md: import trio": (
        _FLOWERS + "url = DEMO_URL\ndef chunks():\n    yield x\n    yield x[:1]\n"
    ),
    "docs/batched.md: import numpy as np": (
        "import numpy as np\n"
        "rows = np.random.default_rng(0).uniform(0.1, 7.0, (20_000, 4)).astype(np.float32)\n"
        "np.save('features.npy', rows)\n"
    ),
    "docs/batched.md: def report(done, total):": _FLOWERS + _DEMO_CLIENT,
    "docs/batched.md: def chunks():": (
        _FLOWERS + _DEMO_CLIENT + "from pathlib import Path\n"
        "Path('parts').mkdir()\n"
        "for i in range(3):\n    np.save(f'parts/{i}.npy', np.full((i + 1, 4), i, np.float32))\n"
        "saved = []\nsave = saved.append\n"
    ),
    'docs/cache.md: cache = RowCache(max_bytes=1 << 30, model_key="fraud-scorer:2024-06-01")': (
        "from graphpipe_client import Client, RowCache\n"
    ),
    "docs/dask.md: predict(x, url, meta=np.empty((0, 10), np.float32))                  # one output, rows of 10": (
        "import dask.array as da\nimport numpy as np\nfrom graphpipe_client.dask import predict\n"
        "url = DEMO_URL\nx = da.ones((8, 4), chunks=4, dtype=np.float32)\n"
    ),
    "docs/dask.md: from graphpipe_client.dask import worker_client": (
        "import dask.array as da\nimport numpy as np\n"
        "features = da.ones((100, 4), chunks=(50, 4), dtype=np.float32)\n"
    ),
    "docs/dask.md: y = dask_client.compute(lazy, retries=2)            # each failed block runs up to twice more": (
        "import dask\nimport dask.array as da\nimport numpy as np\n"
        "from distributed import Client as DaskClient\n"
        "from graphpipe_client.dask import predict\n"
        "dask_client = DaskClient(processes=False, dashboard_address=':0')\n"
        "url = DEMO_URL\nx = da.ones((8, 4), chunks=4, dtype=np.float32)\n"
        "lazy = predict(x, url)[1]\n"
    ),
    "docs/errors.md: try:": (
        "import numpy as np\nimport graphpipe_client as gp\n"
        "from graphpipe_client.testing import Faults, GraphPipeServer\n"
        "page = '<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>'\n"
        "nginx = GraphPipeServer(lambda x: x, faults=Faults(status=502, body=page)).start()\n"
        "client = gp.Client(nginx.url)\nx = np.ones(2)\n"
    ),
    "docs/errors.md: import graphpipe_client as gp": _FLOWERS + "url = DEMO_URL\n",
    "docs/errors.md: from graphpipe_client import Client, Timeout": _FLOWERS + "url = DEMO_URL\n",
    "docs/errors.md: Client(url, idempotent=True)       # also AsyncClient(url, idempotent=True)": (
        "from graphpipe_client import Client\nurl = DEMO_URL\n"
    ),
    "docs/errors.md: from graphpipe_client import Client, RetryPolicy": "url = DEMO_URL\n",
    "docs/index.md: from graphpipe_client import remote": _FLOWERS,
    "docs/reliability.md: import ssl": (
        "import trustme\n"
        "ca = trustme.CA()\nca.cert_pem.write_to_path('ca.pem')\n"
        "cert = ca.issue_cert('client@example.com')\n"
        "cert.cert_chain_pems[0].write_to_path('client.crt')\n"
        "cert.private_key_pem.write_to_path('client.key')\n"
        "cert.private_key_and_cert_chain_pem.write_to_path('client.pem')\n"
    ),
    'docs/sync-client.md: out = client.execute_named({"image": batch, "scale": np.float32(0.5)})': (
        "import numpy as np\nfrom graphpipe_client import Client, IOMetadata, ModelMetadata\n"
        "from graphpipe_client.testing import GraphPipeServer\n"
        "def model(image, scale=np.float32(1)):\n"
        "    return {'logits': image.sum(axis=1) * scale, 'embedding': image[:, :2]}\n"
        "meta = ModelMetadata(name='m', inputs=(IOMetadata('image'), IOMetadata('scale')),\n"
        "                     outputs=(IOMetadata('logits'), IOMetadata('embedding')))\n"
        "server = GraphPipeServer(model, metadata=meta).start()\n"
        "client = Client(server.url)\nbatch = np.ones((2, 3), np.float32)\n"
    ),
    "docs/sync-client.md: # before: from graphpipe import remote": (
        _FLOWERS + "from graphpipe_client import IOMetadata, ModelMetadata\n"
        "from graphpipe_client.testing import GraphPipeServer\n"
        "meta = ModelMetadata(name='ab', inputs=(IOMetadata('a'), IOMetadata('b')),\n"
        "                     outputs=(IOMetadata('out'),))\n"
        "url = GraphPipeServer(lambda a, b: {'out': a + b}, metadata=meta).start().url\n"
        "a, b = np.ones(3), np.arange(3.0)\n"
    ),
    "docs/testing.md: with serve(double) as server, Client(server.url) as client:": (
        "import numpy as np\nfrom graphpipe_client import Client\n"
        "from graphpipe_client.testing import serve\n"
        "def double(x):\n    return x * 2\n"
    ),
    'docs/testing.md: def scale(x, *, config=""):': (
        "import numpy as np\nfrom graphpipe_client import Client, IOMetadata, ModelMetadata\n"
        "from graphpipe_client.testing import serve\n"
    ),
    'docs/testing.md: server.set_faults(status=503, body="busy", retry_after=1, times=2)   # replaces all knobs': (
        "from graphpipe_client.testing import GraphPipeServer\n"
        "server = GraphPipeServer(lambda x: x).start()\n"
    ),
    "docs/testing.md: from graphpipe_client import Client, ReadTimeout, RetryPolicy, Timeout, TransportError": (
        "import numpy as np\nimport pytest\nfrom graphpipe_client.testing import Faults\n"
    ),
    "docs/testing.md: from graphpipe_client.testing import demo_metadata, demo_model, serve": (
        "import numpy as np\nfrom graphpipe_client import Client\n"
    ),
    "docs/testing.md: import ssl, trustme": (
        "import numpy as np\nfrom graphpipe_client import Client\n"
        "from graphpipe_client.testing import serve\n"
        "def double(x):\n    return x * 2\n"
    ),
    "docs/zero-copy.md: y = client.execute(x)": (
        "import numpy as np\nfrom graphpipe_client import Client\n"
        "from graphpipe_client.testing import GraphPipeServer\n"
        "server = GraphPipeServer(lambda x: np.repeat(x, 3, axis=1)).start()\n"
        "client = Client(server.url)\nx = np.ones((4, 4), np.float32)\n"
    ),
}

#: Runs a setup and a block in one interpreter (as python -m asyncio does top-level await).
RUNNER = """
import ast, asyncio, json, sys

spec = json.loads(sys.argv[1])
ns = {"__name__": "__main__", "DEMO_URL": spec["url"]}
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
for source, name in ((spec["setup"], "<setup>"), (spec["block"], spec["where"])):
    code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, ns)
    if asyncio.iscoroutine(result):
        loop.run_until_complete(result)
"""


def _env() -> dict[str, str]:
    """The environment of a block: this interpreter's ``python`` and ``graphpipe-client`` first."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("PYTEST_ADDOPTS", None)
    return env


@pytest.fixture(scope="module")
def demo() -> Iterator[GraphPipeServer]:
    with serve(demo_model, metadata=demo_metadata) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runs(block: Block) -> bool:
    return block.lang in RUN and block.key not in NOT_RUN


def test_every_block_is_run_or_listed_with_a_reason() -> None:
    keys = [b.key for b in BLOCKS]
    for block in BLOCKS:
        assert block.lang in RUN | NOT_CODE, f"{block.where}: unknown block language {block.lang!r}"
    # Every listed key names a block that is still there (a stale entry hides nothing).
    for table in (NOT_RUN, SETUP, VARYING, PYTEST):
        for key in table:
            assert key in keys, f"no block {key!r} any more: update the tables of this module"
    for key in SETUP:
        assert key not in NOT_RUN, key
    run = [b for b in BLOCKS if _runs(b)]
    listed = [b for b in BLOCKS if b.key in NOT_RUN]
    # The figures the note reports (update them with the docs).
    assert (len(BLOCKS), len(run), len(listed)) == (79, 51, 25), (
        len(BLOCKS),
        len(run),
        len(listed),
    )


PYTHON = [b for b in BLOCKS if b.lang == "python" and _runs(b)]
SHELL = [b for b in BLOCKS if b.lang in ("bash", "console") and _runs(b)]


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_runs_as_printed(block: Block, demo: GraphPipeServer, tmp_path: Path) -> None:
    text = block.text.replace(DEMO, demo.url)
    setup = SETUP.get(block.key, "")
    if block.key in PYTEST:
        path = tmp_path / "test_doc_block.py"
        path.write_text(setup + "\n" + text)
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            path.name,
        ]
    else:
        spec = {"url": demo.url, "setup": setup, "block": text, "where": block.where}
        argv = [sys.executable, "-c", RUNNER, json.dumps(spec)]
    proc = subprocess.run(
        argv, cwd=tmp_path, env=_env(), capture_output=True, timeout=120, check=False
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, f"{block.where}:\n{out}\n{err}"
    if block.key in PYTEST:
        assert re.search(r"\b[1-9]\d* passed\b", out), out


def _commands(text: str) -> list[tuple[str, list[str]]]:
    """A console block's ``$ command`` lines, each with the lines printed under it."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        else:
            assert out, f"output before any command: {line!r}"
            out[-1][1].append(line)
    return out


@pytest.fixture(scope="module")
def page_dirs() -> dict[str, Path]:
    """One working directory per page: a page's console blocks go on from each other."""
    return {}


@pytest.mark.parametrize("block", SHELL, ids=[b.where for b in SHELL])
def test_shell_block_runs_as_printed(
    block: Block,
    demo: GraphPipeServer,
    tmp_path: Path,
    page_dirs: dict[str, Path],
) -> None:
    if block.page not in page_dirs:
        page_dirs[block.page] = tmp_path
    tmp_path = page_dirs[block.page]
    if block.lang == "bash":
        # A script that starts its own demo server (README): on a free port, not :9000.
        port = _free_port()
        text = block.text.replace("graphpipe-client serve", f"graphpipe-client serve --port {port}")
        text = text.replace(DEMO, f"http://127.0.0.1:{port}")
        script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + text
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, (
            f"{block.where}:\n{proc.stdout.decode()}\n{proc.stderr.decode()}"
        )
        return
    for command, printed in _commands(block.text):
        proc = subprocess.run(
            ["bash", "-c", command.replace(DEMO, demo.url) + " 2>&1"],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        out = proc.stdout.decode()
        first = printed[0] if printed else ""
        status = 1 if first.startswith("error:") else 2 if first.startswith("usage:") else 0
        assert proc.returncode == status, f"{block.where}: $ {command}\n{out}"
        if block.key not in VARYING:
            assert out.splitlines() == printed, f"{block.where}: $ {command}"


def test_the_otel_install_line_is_what_the_example_needs() -> None:
    """observability.md: the packages its install lines name are the ones its example imports."""
    page = ROOT / "docs" / "observability.md"
    (install,) = [b for b in BLOCKS if b.page == "docs/observability.md" and b.lang == "bash"]
    # The example right after the install line (the metrics' Prometheus export further down
    # names its own packages in its heading, and is listed in NOT_RUN).
    example = next(
        b
        for b in BLOCKS
        if b.page == "docs/observability.md" and "opentelemetry" in b.text and b.lang == "python"
    )
    named: set[str] = set()
    for line in install.text.splitlines():
        words = shlex.split(line, comments=True)
        assert words[:2] == ["pip", "install"], line
        named.update(words[2:])
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["otel"]
    installed = {re.split(r"[<>=\[ ]", req)[0] for req in extra}
    if "graphpipe-client[otel]" in named:
        named |= installed
    needed = set()
    for module in re.findall(r"^\s*(?:from|import) (opentelemetry(?:\.\w+)?)", example.text, re.M):
        needed.add(
            "opentelemetry-sdk" if module.startswith("opentelemetry.sdk") else "opentelemetry-api"
        )
    assert needed == {"opentelemetry-api", "opentelemetry-sdk"}
    assert needed <= named, (page, named)


def test_the_performance_targets_are_listed_once() -> None:
    """docs/performance.md's targets table: each target once (it listed three twice, reworded)."""
    text = (ROOT / "docs" / "performance.md").read_text()
    table = text.split("## The targets\n", 1)[1].split("\n## ", 1)[0]
    targets = [
        row.split(" | ")[0].lstrip("| ") for row in table.splitlines() if row.startswith("| ")
    ]
    targets = [t for t in targets if t not in ("target", "---")]
    assert len(targets) >= 10
    # The subject of a target: its first four words ("one small call <=", "peak extra memory of").
    subjects = [" ".join(t.split()[:4]) for t in targets]
    assert len(set(subjects)) == len(subjects), sorted(s for s in subjects if subjects.count(s) > 1)
