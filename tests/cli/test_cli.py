"""The ``graphpipe-client`` command line, end to end.

Every test runs the real command (``python -W error -m graphpipe_client ...``)
in a subprocess against the bundled server, started in this process, and
checks the exit status and what was printed.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from error_pages import NGINX_502
from graphpipe_client import Client
from graphpipe_client._cli import main
from graphpipe_client.testing import (
    Faults,
    GraphPipeServer,
    demo_metadata,
    demo_model,
    serve,
)

CLI = [sys.executable, "-W", "error", "-m", "graphpipe_client"]

FLOWERS = np.array([[5.1, 3.5, 1.4, 0.2], [6.5, 3.0, 5.8, 2.2]], np.float32)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*args: str | os.PathLike[str], timeout: float = 30) -> Run:
    """Run the command line; keep ``\\r`` (no newline translation)."""
    proc = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, timeout=timeout, check=False
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


#: The command line in an interpreter where ``import tqdm`` fails.
WITHOUT_TQDM = (
    "import sys; sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None; "
    "from graphpipe_client._cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_without_tqdm(*args: str | os.PathLike[str], timeout: float = 30) -> Run:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", WITHOUT_TQDM, *map(str, args)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def assert_one_error_line(r: Run, *fragments: str) -> None:
    """Exit status 1, stdout empty, one ``error:`` line on stderr, no traceback."""
    assert r.code == 1, r
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def demo() -> Iterator[GraphPipeServer]:
    with serve(demo_model, metadata=demo_metadata) as server:
        yield server


@pytest.fixture
def flowers(tmp_path: Path) -> Path:
    path = tmp_path / "flowers.npy"
    np.save(path, FLOWERS)
    return path


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------
# help, version, usage


@pytest.mark.parametrize("command", [[], ["info"], ["execute"], ["serve"], ["bench"]])
def test_help_of_every_command(command: list[str]) -> None:
    r = run(*command, "--help")
    assert r.code == 0, r
    assert r.out.startswith(f"usage: graphpipe-client {' '.join(command)}".rstrip())
    assert "examples:" in r.out
    assert r.err == ""


def test_version_and_missing_command() -> None:
    r = run("--version")
    assert r.code == 0
    assert r.out.startswith("graphpipe-client ")
    r = run()
    assert r.code == 2
    assert "usage: graphpipe-client" in r.err
    assert "required: COMMAND" in r.err


def test_main_returns_the_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "ftp://example.com"]) == 2
    assert "unsupported URL 'ftp://example.com'" in capsys.readouterr().err
    assert main(["bench", "http://127.0.0.1:9000", "--shape", "a,b"]) == 2
    assert main(["execute", "http://127.0.0.1:9000", "-i", "x.npy", "--out", "y.txt"]) == 2
    assert ".npy file (one output) or a .npz file" in capsys.readouterr().err


# --------------------------------------------------------------------------
# info


def test_info_prints_the_table(demo: GraphPipeServer) -> None:
    r = run("info", demo.url)
    assert r.code == 0, r
    assert r.out == str(demo_metadata) + "\n"
    assert "input   features       float32  (?, 4)" in r.out
    assert r.err == ""


def test_info_json(demo: GraphPipeServer) -> None:
    r = run("info", demo.url, "--json", "--timeout", "5")
    assert r.code == 0, r
    info = json.loads(r.out)
    assert info["name"] == "iris"
    assert info["version"] == "1"
    assert info["server"] == demo_metadata.server
    assert info["inputs"] == [
        {
            "name": "features",
            "description": demo_metadata.inputs[0].description,
            "shape": [None, 4],
            "dtype": "float32",
        }
    ]
    assert [(o["name"], o["shape"], o["dtype"]) for o in info["outputs"]] == [
        ("probabilities", [None, 3], "float32"),
        ("label", [None], "int64"),
    ]


def test_info_json_unknown_shapes_and_types() -> None:
    with serve(lambda x: x) as server:
        info = json.loads(run("info", server.url, "--json").out)
    assert info["inputs"][0] == {"name": "input0", "description": "", "shape": None, "dtype": None}


# --------------------------------------------------------------------------
# execute


def test_execute_prints_a_summary(demo: GraphPipeServer, flowers: Path) -> None:
    r = run("execute", demo.url, "--input", flowers)
    assert r.code == 0, r
    lines = r.out.splitlines()
    assert lines[0] == "probabilities: float32 (2, 3)"
    assert lines[1].startswith("  [[9.952")
    assert lines[3] == "label: int64 (2,)"
    assert lines[4] == "  [0 2]"
    assert r.err == ""


def test_execute_summary_abbreviates_big_outputs(tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.arange(1000, dtype=np.int32))
    with serve(lambda x: x) as server:
        r = run("execute", server.url, "-i", x)
    assert r.code == 0, r
    assert r.out.splitlines() == ["output0: int32 (1000,)", "  [  0   1   2 ... 997 998 999]"]


def test_execute_out_npy_with_output_name_and_config(
    demo: GraphPipeServer, flowers: Path, tmp_path: Path
) -> None:
    out = tmp_path / "probabilities.npy"
    r = run(
        "execute", demo.url, "-i", flowers, "--output-name", "probabilities",
        "--config", "temperature=2", "--out", out,
    )  # fmt: skip
    assert r.code == 0, r
    assert r.out == ""
    assert f"wrote {out}: probabilities: float32 (2, 3)" in r.err
    expected = demo_model(FLOWERS, config="temperature=2")["probabilities"]
    np.testing.assert_array_equal(np.load(out), expected)
    # The config changed the answer.
    assert not np.allclose(np.load(out), demo_model(FLOWERS)["probabilities"])


def test_execute_out_npz_round_trip(demo: GraphPipeServer, flowers: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.npz"
    r = run("execute", demo.url, "-i", flowers, "-o", out)
    assert r.code == 0, r
    expected = demo_model(FLOWERS)
    with np.load(out, allow_pickle=False) as npz:
        assert npz.files == ["probabilities", "label"]
        np.testing.assert_array_equal(npz["probabilities"], expected["probabilities"])
        np.testing.assert_array_equal(npz["label"], expected["label"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_execute_input_and_output_names(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.array([10, 20], np.int64))
    np.save(b, np.array([1, 2], np.int64))

    def sub(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        return {"diff": x - y, "sum": x + y}

    with serve(sub) as server:
        # Named inputs take their positions: input0 = b, input1 = a.
        out = tmp_path / "o.npz"
        r = run(
            "execute", server.url, "-i", a, "-i", b, "--input-name", "input1",
            "--input-name", "input0", "--output-name", "sum", "--output-name", "diff", "-o", out,
        )  # fmt: skip
        assert r.code == 0, r
        with np.load(out) as npz:
            assert npz.files == ["sum", "diff"]
            np.testing.assert_array_equal(npz["diff"], [-9, -18])
            np.testing.assert_array_equal(npz["sum"], [11, 22])
        # Outputs the metadata cannot name are output0, output1, ...
        r = run("execute", server.url, "-i", a, "-i", b)
        assert r.code == 0, r
        assert r.out.splitlines() == [
            "output0: int64 (2,)", "  [ 9 18]", "output1: int64 (2,)", "  [11 22]",
        ]  # fmt: skip


def test_execute_string_output_to_npy(tmp_path: Path) -> None:
    x = tmp_path / "x.npy"
    np.save(x, np.array(["ab", "c"]))
    out = tmp_path / "y.npy"
    with serve(lambda s: s) as server:
        r = run("execute", server.url, "-i", x, "-o", out)
    assert r.code == 0, r
    assert "output0: string (2,)" in r.err
    np.testing.assert_array_equal(np.load(out, allow_pickle=False), np.array([b"ab", b"c"]))


def test_execute_npy_with_several_outputs_is_an_error(
    demo: GraphPipeServer, flowers: Path, tmp_path: Path
) -> None:
    out = tmp_path / "y.npy"
    r = run("execute", demo.url, "-i", flowers, "-o", out)
    assert_one_error_line(r, "2 outputs (probabilities, label)", "write an .npz file")
    assert not out.exists()


def test_execute_npy_with_several_outputs_is_refused_before_sending(
    demo: GraphPipeServer, tmp_path: Path
) -> None:
    # The metadata says 2 outputs: no batch is sent (issue 25: the bar reached 100% first).
    path, _ = many_flowers(tmp_path)
    out = tmp_path / "y.npy"
    before = demo.requests_served
    r = run("execute", demo.url, "-i", path, "-b", "100", "-c", "2", "--progress", "--out", out)
    assert_one_error_line(
        r,
        f"the model has 2 outputs (probabilities, label) but {out} holds one array",
        f"write an .npz file (--out {tmp_path / 'y.npz'})",
        "--output-name",
        "nothing was sent",
    )
    assert demo.requests_served - before == 1  # the metadata, nothing else
    assert not out.exists()


def test_execute_npy_with_several_output_names_is_refused_at_once(
    flowers: Path, tmp_path: Path, closed_url: str
) -> None:
    # Known from the command line alone: not even the server is asked.
    out = tmp_path / "y.npy"
    r = run(
        "execute", closed_url, "-i", flowers, "--output-name", "a", "--output-name", "b", "-o", out
    )
    assert_one_error_line(r, "2 outputs are asked for (a, b) but", "write an .npz file")


def test_the_examples_of_execute_help_work(demo: GraphPipeServer, tmp_path: Path) -> None:
    """Every example line of ``execute --help``, run as printed (the demo's URL for :9000)."""
    examples = run("execute", "--help").out.split("examples:\n")[1].split("\n\n")[0]
    lines = [line.strip() for line in examples.splitlines()]
    assert len(lines) == 6, lines
    for line in lines:
        argv = shlex.split(line.replace("http://127.0.0.1:9000", demo.url))
        if argv[0] == "python":
            argv[0] = sys.executable
        else:
            assert argv[0] == "graphpipe-client"
            argv[:1] = CLI
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=60, check=False)
        assert proc.returncode == 0, (line, proc.stderr.decode())
    with np.load(tmp_path / "y.npz") as npz:
        assert npz["label"].shape == (100_000,)
    assert np.load(tmp_path / "label.npy").tolist() == [0]


def test_execute_input_name_count_is_a_usage_error(demo: GraphPipeServer, flowers: Path) -> None:
    r = run("execute", demo.url, "-i", flowers, "--input-name", "a", "--input-name", "b")
    assert r.code == 2
    assert "usage: graphpipe-client execute" in r.err
    assert "1 --input but 2 --input-name" in r.err


# --------------------------------------------------------------------------
# failures


def many_flowers(tmp_path: Path, rows: int = 1000) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(1).uniform(0.1, 7.0, (rows, 4)).astype(np.float32)
    path = tmp_path / "many.npy"
    np.save(path, x)
    return path, x


def test_execute_batched_writes_the_outputs_in_order(demo: GraphPipeServer, tmp_path: Path) -> None:
    path, x = many_flowers(tmp_path)
    out = tmp_path / "y.npz"
    before = demo.requests_served
    r = run(
        "execute", demo.url, "-i", path, "--batch-size", "64", "--concurrency", "3", "--out", out
    )
    assert r.code == 0, r
    assert r.err == f"wrote {out}: probabilities: float32 (1000, 3); label: int64 (1000,)\n"
    with Client(demo.url) as client, np.load(out, allow_pickle=False) as npz:
        expected = client.execute_multi([x])
        np.testing.assert_array_equal(npz["probabilities"], expected[0])
        np.testing.assert_array_equal(npz["label"], expected[1])
    assert demo.requests_served - before == 16 + 1 + 1  # 16 batches, the metadata, the check


def test_execute_batched_progress_bar(demo: GraphPipeServer, tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    path, _ = many_flowers(tmp_path)
    r = run("execute", demo.url, "-i", path, "-b", "100", "--output-name", "label", "--progress")
    assert r.code == 0, r
    assert "100%" in r.err and "1.00k/1.00k" in r.err and " rows/s]" in r.err
    assert r.out.startswith("label: int64 (1000,)\n")


def test_execute_batched_without_tqdm_prints_a_status_line(
    demo: GraphPipeServer, tmp_path: Path
) -> None:
    path, _ = many_flowers(tmp_path)
    out = tmp_path / "label.npy"
    r = run_without_tqdm(
        "execute",
        demo.url,
        "-i",
        path,
        "-c",
        "2",
        "--output-name",
        "label",
        "--out",
        out,
        "--progress",
    )
    assert r.code == 0, r
    # stderr is a pipe here, not a terminal: plain lines, no \r (only the last, for a short run)
    assert "\r" not in r.err
    status, wrote = r.err.split("\n")[:2]
    assert status.startswith("1000/1000 rows, ")
    assert wrote == f"wrote {out}: label: int64 (1000,)"
    assert np.load(out).shape == (1000,)


def test_execute_batched_failure_names_the_rows(tmp_path: Path) -> None:
    def no_nan(x: np.ndarray) -> np.ndarray:
        if np.isnan(x).any():
            raise ValueError("NaN features")
        return x

    path, x = many_flowers(tmp_path, 100)
    x[57] = np.nan
    np.save(path, x)
    with serve(no_nan) as server:
        r = run("execute", server.url, "-i", path, "-b", "10", "--out", tmp_path / "y.npy")
    assert_one_error_line(r, "rows 50:60 (batch 5) failed: HTTP 400", "NaN features")
    assert not (tmp_path / "y.npy").exists()


def test_execute_batched_mismatched_rows(demo: GraphPipeServer, tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.zeros((5, 4), np.float32))
    np.save(b, np.zeros((4, 4), np.float32))
    r = run("execute", demo.url, "-i", a, "-i", b, "-b", "2")
    assert_one_error_line(r, "input 1 has 4 rows but input 0 has 5")


def test_server_down(closed_url: str, flowers: Path) -> None:
    r = run("execute", closed_url, "-i", flowers)
    assert_one_error_line(r, f"cannot connect to {closed_url}/", "Connection refused")
    r = run("info", closed_url)
    assert_one_error_line(r, "cannot connect to")


def test_verbose_shows_the_traceback(closed_url: str) -> None:
    r = run("info", closed_url, "-v")
    assert r.code == 1
    assert "Traceback (most recent call last)" in r.err
    assert "ConnectError" in r.err
    assert r.err.splitlines()[-1].startswith("error: cannot connect to")
    # The option is accepted before the command too.
    assert "Traceback" in run("--verbose", "info", closed_url).err


def test_model_error_400_shows_the_servers_text(demo: GraphPipeServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((1, 3), np.float32))
    r = run("execute", demo.url, "-i", bad)
    assert_one_error_line(r, "HTTP 400", "features must have shape (N, 4), got (1, 3)")


def test_remote_error(tmp_path: Path) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("the model is broken")

    x = tmp_path / "x.npy"
    np.save(x, np.ones(2))
    with serve(broken, errors_as_response=True) as server:
        r = run("execute", server.url, "-i", x)
    assert_one_error_line(r, "the server reported 1 error", "the model is broken")


@pytest.mark.parametrize("command", ["info", "execute", "bench"])
def test_an_html_error_page_is_one_line(command: str, flowers: Path) -> None:
    # A proxy in front of the model answers with its own page: its title, on one line.
    with serve(demo_model, metadata=demo_metadata, faults=Faults(status=502, body=NGINX_502)) as s:
        extra = ["-i", flowers] if command == "execute" else ["--shape", "1,4", "-n", "3"]
        r = run(command, s.url, *(extra if command != "info" else []))
    assert_one_error_line(r)
    assert r.err == f"error: HTTP 502 Bad Gateway from {s.url}/: 502 Bad Gateway (an HTML page)\n"


def test_a_multi_line_model_error_is_one_line(tmp_path: Path) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise ValueError("the model is broken:\n  line 2\r\n\tline 3\x1b[2J")

    x = tmp_path / "x.npy"
    np.save(x, np.ones(2))
    with serve(broken, errors_as_response=True) as server:
        r = run("execute", server.url, "-i", x)
    assert_one_error_line(r, "the model is broken: line 2 line 3\ufffd[2J")
    with serve(broken) as server:  # the same text as an HTTP 400 body
        r = run("execute", server.url, "-i", x)
    assert_one_error_line(r, "HTTP 400", ": the model is broken: line 2 line 3\ufffd[2J")


def test_read_timeout(flowers: Path) -> None:
    with serve(demo_model, metadata=demo_metadata, faults=Faults(delay=10)) as slow:
        r = run("execute", slow.url, "-i", flowers, "--timeout", "0.3")
    assert_one_error_line(r, "within the read timeout of 0.3 s")


def test_encode_error(demo: GraphPipeServer, tmp_path: Path) -> None:
    x = tmp_path / "bools.npy"
    np.save(x, np.ones(3, bool))
    r = run("execute", demo.url, "-i", x)
    assert_one_error_line(r, "dtype bool is not supported")


def test_bad_input_files(demo: GraphPipeServer, tmp_path: Path) -> None:
    missing = tmp_path / "missing.npy"
    assert_one_error_line(run("execute", demo.url, "-i", missing), f"cannot read {missing}")
    text = tmp_path / "text.npy"
    text.write_text("1,2,3\n")
    assert_one_error_line(run("execute", demo.url, "-i", text), "is not a NumPy .npy file")
    archive = tmp_path / "a.npz"
    np.savez(archive, x=FLOWERS)
    assert_one_error_line(run("execute", demo.url, "-i", archive), "is an .npz archive")
    # An object array needs pickle to load: refused, never unpickled.
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([1, "a"], dtype=object), allow_pickle=True)
    assert_one_error_line(run("execute", demo.url, "-i", pickled), "allow_pickle=False")


def test_unwritable_output(demo: GraphPipeServer, flowers: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "y.npz"
    assert_one_error_line(run("execute", demo.url, "-i", flowers, "-o", out), "cannot write")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1:9000", "unsupported URL"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://", "it names no host"),
    ],
)
def test_bad_url_is_a_usage_error(url: str, message: str) -> None:
    r = run("info", url)
    assert r.code == 2
    assert r.out == ""
    assert "usage: graphpipe-client info" in r.err
    assert message in r.err


# --------------------------------------------------------------------------
# serve


class LineReader:
    """Reads a subprocess's pipe with a deadline, without newline translation."""

    def __init__(self, pipe: object) -> None:
        self._fd = pipe.fileno()  # type: ignore[attr-defined]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._fd, selectors.EVENT_READ)
        self.data = b""

    def read_until(self, marker: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.data:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} in {self.data!r}"
            if self._sel.select(left):
                chunk = os.read(self._fd, 65536)
                assert chunk, f"EOF without {marker!r} in {self.data!r}"
                self.data += chunk
        return self.data

    def read_until_match(self, pattern: bytes, timeout: float = 15) -> bytes:
        """Read until ``pattern`` (a regular expression) matches what was read."""
        deadline = time.monotonic() + timeout
        while re.search(pattern, self.data) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.data!r}"
            if self._sel.select(left):
                chunk = os.read(self._fd, 65536)
                assert chunk, f"EOF without {pattern!r} in {self.data!r}"
                self.data += chunk
        return self.data

    def close(self) -> None:
        self._sel.close()


def test_serve_answers_and_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        reader = LineReader(proc.stdout)
        url = reader.read_until(b"\n").decode().strip()
        reader.close()
        assert url.startswith("http://127.0.0.1:")
        with Client(url, timeout=5) as client:
            assert client.metadata().name == "iris"
            label = client.execute(FLOWERS, output_name="label")
        np.testing.assert_array_equal(label, [0, 2])
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.decode() == ""
    assert b"Ctrl-C to stop" in err
    assert b"Traceback" not in err


def test_serve_port_in_use_is_an_error() -> None:
    with serve(lambda x: x) as busy:
        r = run("serve", "--port", str(busy.port))
    assert_one_error_line(
        r,
        f"cannot listen on 127.0.0.1:{busy.port}: Address already in use",
        "pass --port 0 for a free port",
    )
    assert "port=0" not in r.err  # the command line's option, not the function's argument
    with serve(lambda x: x) as busy:
        proc = subprocess.run(
            [*CLI[:3], "-m", "graphpipe_client.testing", "--port", str(busy.port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert proc.stderr.decode() == (
        f"cannot listen on 127.0.0.1:{busy.port}: Address already in use (another server "
        "holds that port): stop it, or pass --port 0 for a free port (the URL is printed)\n"
    )


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_serve_with_a_bad_port_is_a_usage_error(port: str) -> None:
    r = run("serve", "--port", port)
    assert r.code == 2, r
    assert "Traceback" not in r.err
    assert "port" in r.err.strip().splitlines()[-1]


# --------------------------------------------------------------------------
# bench


def check_report(out: str, rows_per_request: int) -> None:
    lines = out.splitlines()
    assert lines[-2].startswith("latency (ms): p50 ")
    for key in ("p90", "p99", "max"):
        assert f" {key} " in lines[-2]
    throughput = lines[-1].split()
    assert throughput[0] == "throughput:"
    requests_per_s = float(throughput[1])
    rows_per_s = float(throughput[3])
    assert requests_per_s > 0
    assert rows_per_s == pytest.approx(requests_per_s * rows_per_request, rel=1e-3, abs=0.1)


def test_bench_sync(demo: GraphPipeServer) -> None:
    before = demo.requests_served
    r = run("bench", demo.url, "--requests", "30", "--concurrency", "3")
    assert r.code == 0, r
    assert f"bench {demo.url}/ (sync, concurrency 3)" in r.out
    assert "input features: float32 (1, 4)" in r.out  # from the metadata
    assert "requests: 30 in " in r.out
    assert "30 ok, 0 failed" in r.out
    check_report(r.out, 1)
    assert r.err == ""  # no progress bar when stderr is not a terminal
    assert demo.requests_served - before >= 30 + 3  # and the warm-up


def test_bench_async_with_shape(demo: GraphPipeServer) -> None:
    r = run(
        "bench", demo.url, "--async", "-n", "40", "-c", "4", "--shape", "8,4",
        "--dtype", "float64", "--input-name", "features",
    )  # fmt: skip
    assert r.code == 0, r
    assert "(async, concurrency 4)" in r.out
    assert "input features: float64 (8, 4)" in r.out
    assert "40 ok, 0 failed" in r.out
    check_report(r.out, 8)


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_bench_with_coalescing_merges_the_workers_calls(
    demo: GraphPipeServer, mode: list[str]
) -> None:
    before = demo.requests_served
    r = run(
        "bench", demo.url, *mode, "-n", "120", "-c", "8", "--coalesce-rows", "8",
        "--coalesce-wait", "0.05",
    )  # fmt: skip
    assert r.code == 0, r
    assert "concurrency 8)" in r.out and "coalescing up to 8 rows, 50 ms" in r.out
    assert "120 ok, 0 failed" in r.out
    check_report(r.out, 1)
    assert demo.requests_served - before < 120  # fewer requests than calls (metadata included)


def test_bench_coalesce_options_are_checked() -> None:
    r = run("bench", "http://127.0.0.1:9", "--coalesce-rows", "0")
    assert r.code == 2 and "must be at least 1" in r.err
    r = run("bench", "http://127.0.0.1:9", "--coalesce-wait", "-1")
    assert r.code == 2 and "must be 0 or a positive number" in r.err


def test_bench_duration_with_progress(demo: GraphPipeServer) -> None:
    pytest.importorskip("tqdm")
    r = run("bench", demo.url, "--duration", "0.5", "--progress")
    assert r.code == 0, r
    assert "\r0.5 s run: " in r.err  # the tqdm bar, redrawn in place
    assert " requests/s]" in r.err
    assert r.err.endswith("\n")
    check_report(r.out, 1)


def test_bench_progress_without_tqdm_is_a_status_line(demo: GraphPipeServer) -> None:
    r = run_without_tqdm("bench", demo.url, "--requests", "40", "--progress")
    assert r.code == 0, r
    last = r.err.rstrip("\n").split("\r")[-1]
    assert last.startswith("40/40 requests, ") and last.rstrip().endswith(" requests/s"), r.err
    assert r.err.endswith("\n")
    check_report(r.out, 1)


def test_bench_model_error_fails_at_warm_up(demo: GraphPipeServer) -> None:
    r = run("bench", demo.url, "--shape", "1,3", "-n", "5")
    assert_one_error_line(r, "HTTP 400", "features must have shape (N, 4)")


def test_bench_counts_failed_requests() -> None:
    calls = 0

    def flaky(x: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            raise ValueError("every other call fails")
        return x

    with serve(flaky) as server:
        r = run("bench", server.url, "-n", "10")
    assert r.code == 1
    assert "5 ok, 5 failed" in r.out
    check_report(r.out, 1)
    assert r.err.splitlines() == [
        f"error: 5 of 10 requests failed; the first: HTTP 400 Bad Request from {server.url}/: "
        "every other call fails"
    ]


def test_bench_server_down(closed_url: str) -> None:
    assert_one_error_line(run("bench", closed_url, "--async"), "cannot connect to")


def _interrupt_bench(url: str, *args: str) -> tuple[int | None, str, str]:
    """Start ``bench``, wait for its timed run (the progress bar), press Ctrl-C (SIGINT)."""
    proc = subprocess.Popen(
        [*CLI, "bench", url, "-c", "2", "--progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        reader = LineReader(proc.stderr)
        # The progress bar counts timed requests done (it is drawn from the start, at 0).
        reader.read_until_match(rb"(^|[\r\s|])[1-9][0-9.]*k? requests")
        reader.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out.decode(), reader.data.decode() + err.decode()


@pytest.mark.parametrize("mode", [[], ["--async"]])
def test_bench_ctrl_c_prints_the_partial_report_and_exits_130(
    demo: GraphPipeServer, mode: list[str]
) -> None:
    before = demo.requests_served
    code, out, err = _interrupt_bench(demo.url, "-d", "60", *mode)
    assert code == 130, err
    assert "Traceback" not in err
    assert "error" not in err
    lines = out.splitlines()
    assert lines[0] == f"bench {demo.url}/ ({'async' if mode else 'sync'}, concurrency 2)"
    requests = next(line for line in lines if line.startswith("requests: "))
    assert requests.endswith(" failed (interrupted: a partial report)")
    words = requests.split()
    done, seconds, ok = int(words[1]), float(words[3]), int(words[5])
    assert 0 < ok == done <= demo.requests_served - before - 2  # the 2 warm-up calls
    assert 0 < seconds < 30  # the time until Ctrl-C, not the 60 s asked for
    check_report(out, 1)


def test_bench_ctrl_c_during_warm_up_is_quiet() -> None:
    # The model does not answer the warm-up calls: nothing is measured yet.
    with serve(lambda x: x, faults=Faults(delay=3)) as slow:
        # With --shape, --dtype and --input-name, no metadata call: straight to the warm-up.
        args = ["--shape", "1,4", "--dtype", "float32", "--input-name", "input0", "-c", "2"]
        proc = subprocess.Popen(
            [*CLI, "bench", slow.url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 15
            while slow.connections_accepted < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert slow.connections_accepted >= 2  # the warm-up calls are waiting
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130
    assert out == b""
    assert b"Traceback" not in err


def test_execute_batched_ctrl_c_exits_130_promptly(tmp_path: Path) -> None:
    path, _ = many_flowers(tmp_path, 20)
    with serve(demo_model, metadata=demo_metadata, faults=Faults(delay=3.0)) as server:
        proc = subprocess.Popen(
            [*CLI, "execute", server.url, "-i", path, "-b", "1", "-c", "2", "--progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            reader = LineReader(proc.stderr)
            reader.read_until(b" rows/s]")  # the bar is drawn: the batches are on the wire
            reader.close()
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130
    assert took < 2.0, took  # not the 3 s of the requests in flight
    assert out == b""
    assert b"Traceback" not in err
