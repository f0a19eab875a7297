"""The ``graphpipe-client`` command line: ``info``, ``execute``, ``serve`` and ``bench``.

Run ``graphpipe-client --help`` (or ``python -m graphpipe_client --help``) for
the commands, and ``graphpipe-client COMMAND --help`` for each one's options
and examples. See ``docs/cli.md``.

Exit status: 0 on success; 1 when the command failed (the server could not be
reached, answered with an error, timed out; an input file could not be read;
an output file could not be written); 2 on a usage error (a bad option or
URL); 130 when interrupted with Ctrl-C. An expected failure prints one line,
``error: ...``, on standard error; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

import numpy as np

from .._async_client import AsyncClient
from .._batched import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
from .._client import Client
from .._config import Timeout
from .._core import parse_endpoint
from .._exceptions import GraphPipeError, TransportError
from .._messages import IOMetadata, ModelMetadata
from .._progress import Reporter, as_callback, terminal_reporter
from .._summary import one_line
from .._version import __version__

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK: Final = 0
"""The command succeeded."""
EXIT_ERROR: Final = 1
"""The command failed: an error from the server or the network, or a file that cannot be read or written."""
EXIT_USAGE: Final = 2
"""The command line is wrong: an unknown option, a bad value, a malformed URL (argparse's status)."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted by Ctrl-C (SIGINT), as shells report it (128 + 2)."""

PROG: Final = "graphpipe-client"

_NPY_MAGIC: Final = b"\x93NUMPY"
_ZIP_MAGIC: Final = b"PK\x03\x04"

#: How an output's values are abbreviated in ``execute``'s summary.
_SUMMARY_OPTIONS: Final[dict[str, Any]] = {
    "threshold": 20,
    "edgeitems": 3,
    "precision": 4,
    "max_line_width": 88,
}


class CommandError(Exception):
    """An expected failure of a command: printed as one ``error: ...`` line, exit status 1."""


class _UsageError(Exception):
    """A usage error found after parsing (argparse cannot express it): exit status 2."""


# --------------------------------------------------------------------------
# Argument types


def _url(text: str) -> str:
    try:
        parse_endpoint(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    text = text.strip().strip("()[]")
    if not text.strip():
        return ()  # a scalar
    try:
        dims = tuple(int(d) for d in text.split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a shape is comma-separated sizes such as 1,10, not {text!r}"
        ) from None
    if any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(f"sizes cannot be negative: {text!r}")
    return dims


def _numeric_dtype(text: str) -> np.dtype[Any]:
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"not a numpy dtype: {text!r}") from None
    if dtype.kind not in "iuf":
        raise argparse.ArgumentTypeError(
            f"{dtype} is not a GraphPipe number type: give an int, uint or float dtype "
            "such as float32, int64, uint8"
        )
    return dtype


def _out_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a .npy file (one output) or a .npz file (any number of outputs)"
        )
    return path


# --------------------------------------------------------------------------
# The parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples in descriptions and epilogs as written; shows defaults where useful."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


_MAIN_EPILOG = """\
examples:
  graphpipe-client serve                                   # a demo model on :9000
  graphpipe-client info http://127.0.0.1:9000              # what the model takes
  graphpipe-client execute http://127.0.0.1:9000 --input x.npy
  graphpipe-client bench http://127.0.0.1:9000 --concurrency 4

exit status:
  0    success
  1    the command failed (connection, timeout, server or model error, bad file)
  2    usage error (unknown option, bad value, malformed URL)
  130  interrupted (Ctrl-C)
"""

_INFO_EPILOG = """\
examples:
  graphpipe-client info http://127.0.0.1:9000
  graphpipe-client info http://127.0.0.1:9000 --json | jq '.inputs[].name'

The JSON holds name, version, server, description, and inputs and outputs as
lists of {name, description, shape, dtype}: shape is a list of sizes with null
for "any size" (or null when the server does not say), dtype a numpy dtype
name, "string" for strings, or null.
"""

_EXECUTE_EPILOG = """\
examples:
  python -c "import numpy as np; np.save('x.npy', np.array([[5.1, 3.5, 1.4, 0.2]], np.float32))"
  graphpipe-client execute http://127.0.0.1:9000 --input x.npy
  graphpipe-client execute http://127.0.0.1:9000 -i x.npy --output-name label --out label.npy
  graphpipe-client execute http://127.0.0.1:9000 -i x.npy --config temperature=2 --out y.npz
  graphpipe-client execute http://127.0.0.1:9000 -i big.npy --batch-size 256 --concurrency 4 --out y.npy

Inputs are .npy files (numpy.save), read without ever unpickling: object
arrays are refused. Without --out, each output is summarised: its name (the
requested --output-name, else the model's metadata), dtype, shape and a few
values. --out FILE.npy writes the one output (an error if there are several);
--out FILE.npz writes every output under its name (output0, output1, ... when
unknown). String outputs are written as fixed-width bytes arrays.

With --batch-size or --concurrency, the inputs are memory-mapped and sent
--batch-size rows at a time (default 256), --concurrency requests at once
(default 4), and the outputs are written in row order: a file larger than
memory can be scored. A progress bar (tqdm, or a plain status line without
it) is drawn on stderr when it is a terminal, or with --progress. A failed
batch stops the run; the error names its rows.
"""

_SERVE_EPILOG = """\
examples:
  graphpipe-client serve                  # http://127.0.0.1:9000
  graphpipe-client serve --port 0         # any free port; the URL is printed

The demo model is an iris flower classifier: input 'features' float32 (N, 4)
(sepal length, sepal width, petal length, petal width in cm); outputs
'probabilities' float32 (N, 3) and 'label' int64 (N,); config
'temperature=<number>'. The URL is printed alone on the first line of
standard output; the server stops, with status 0, on Ctrl-C or SIGTERM.
"""

_BENCH_EPILOG = """\
examples:
  graphpipe-client bench http://127.0.0.1:9000
  graphpipe-client bench http://127.0.0.1:9000 --shape 32,4 --concurrency 8 --duration 10
  graphpipe-client bench http://127.0.0.1:9000 --async --concurrency 64 --requests 5000

Each request sends the same random input(s): one per input of the model's
metadata, or one per --input-name. Without --shape or --dtype, each input's
are taken from the metadata (an unknown size becomes 1), else 1,10 and
float32. One untimed warm-up request per worker runs first (it opens the
connections and checks that the model answers). Requests are not retried.
Latency is measured per request, around the whole call (encode, send,
receive, decode); rows are the size of the first dimension of the first
input. Failed requests are counted, and make the exit status 1. Ctrl-C
during the timed run prints the report so far, then exits with status 130.
"""


def _add_verbose(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="on an error, show the full traceback",
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="S",
        help="seconds to wait to connect and for each read (default: 5 to connect, 60 per read)",
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )


def _progress_reporter(
    args: argparse.Namespace, total: int | None, unit: str, desc: str | None = None
) -> Reporter | None:
    """A tqdm bar on stderr (a plain status line without tqdm), or ``None`` when not shown."""
    show: bool | None = args.progress
    if show is None:
        show = sys.stderr.isatty()
    return terminal_reporter(sys.stderr, total, unit, desc) if show else None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``graphpipe-client`` (commands in subparsers)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Call GraphPipe model servers from the command line: show a model's "
        "metadata, run it on .npy files, benchmark it, or serve a demo model.",
        epilog=_MAIN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    _add_verbose(parser, False)
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROG} {__version__} (Python {sys.version.split()[0]}, numpy {np.__version__})",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str, description: str, epilog: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_,
            description=description,
            epilog=epilog,
            formatter_class=_HelpFormatter,
        )
        # Also accepted after the command; SUPPRESS keeps the global value.
        _add_verbose(sub, argparse.SUPPRESS)
        sub.set_defaults(subparser=sub)
        return sub

    info = command(
        "info",
        "show a model's metadata (names, shapes, dtypes)",
        "Ask the model server at URL for its metadata and print it as a table (or as JSON).",
        _INFO_EPILOG,
    )
    info.add_argument("url", type=_url, metavar="URL", help="the model, e.g. http://127.0.0.1:9000")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    _add_timeout(info)
    info.set_defaults(func=_cmd_info)

    execute = command(
        "execute",
        "run the model on .npy inputs",
        "Run the model at URL on the arrays of one or more .npy files; summarise the "
        "outputs or write them to a .npy or .npz file.",
        _EXECUTE_EPILOG,
    )
    execute.add_argument(
        "url", type=_url, metavar="URL", help="the model, e.g. http://127.0.0.1:9000"
    )
    execute.add_argument(
        "-i",
        "--input",
        action="append",
        required=True,
        metavar="FILE.npy",
        help="an input array; repeat for several inputs, in order",
    )
    execute.add_argument(
        "--input-name",
        action="append",
        metavar="NAME",
        help="the name of each input, in the order of --input (default: the model's own order)",
    )
    execute.add_argument(
        "--output-name",
        action="append",
        metavar="NAME",
        help="an output to return; repeat for several, in the order wanted "
        "(default: the model's default outputs)",
    )
    execute.add_argument("--config", metavar="TEXT", help="a config string handed to the model")
    execute.add_argument(
        "-o",
        "--out",
        type=_out_path,
        metavar="FILE",
        help="write the outputs to FILE.npy (one output) or FILE.npz (any number)",
    )
    execute.add_argument(
        "-b",
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="send the inputs N rows at a time (memory-mapped; default when batching: 256)",
    )
    execute.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="batches in flight at once (implies batching; default when batching: 4)",
    )
    _add_progress(execute)
    _add_timeout(execute)
    execute.set_defaults(func=_cmd_execute)

    serve = command(
        "serve",
        "serve the bundled demo model until Ctrl-C",
        "Serve graphpipe-client's demo model (an iris classifier) over GraphPipe with the "
        "bundled test server, until Ctrl-C.",
        _SERVE_EPILOG,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=9000,
        help="the TCP port; 0 picks a free one (default: %(default)s)",
    )
    serve.add_argument("--log", action="store_true", help="print one line per request to stderr")
    serve.set_defaults(func=_cmd_serve)

    bench = command(
        "bench",
        "measure a model's latency and throughput",
        "Send random inputs to the model at URL and report latency percentiles "
        "(p50, p90, p99, max) and throughput (requests/s, rows/s).",
        _BENCH_EPILOG,
    )
    bench.add_argument(
        "url", type=_url, metavar="URL", help="the model, e.g. http://127.0.0.1:9000"
    )
    bench.add_argument(
        "--shape",
        type=_shape,
        metavar="N,M,...",
        help="the shape of each input (default: from the metadata, else 1,10)",
    )
    bench.add_argument(
        "--dtype",
        type=_numeric_dtype,
        metavar="DTYPE",
        help="the numpy dtype of each input (default: from the metadata, else float32)",
    )
    bench.add_argument(
        "--input-name",
        action="append",
        metavar="NAME",
        help="send an input under this name; repeat for several inputs "
        "(default: the model's inputs, in order)",
    )
    bench.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        default=1,
        metavar="N",
        help="requests in flight at once (default: %(default)s)",
    )
    amount = bench.add_mutually_exclusive_group()
    amount.add_argument(
        "-n",
        "--requests",
        type=_positive_int,
        metavar="N",
        help="how many timed requests to send (default: 200)",
    )
    amount.add_argument(
        "-d",
        "--duration",
        type=_positive_float,
        metavar="S",
        help="send requests for this many seconds instead",
    )
    bench.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="use asyncio tasks and one AsyncClient (default: threads and one Client)",
    )
    _add_progress(bench)
    _add_timeout(bench)
    bench.set_defaults(func=_cmd_bench)
    return parser


# --------------------------------------------------------------------------
# Shared helpers


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    timeout: float | None = args.timeout
    return {"timeout": Timeout() if timeout is None else timeout}


def _dtype_name(dtype: np.dtype[Any] | None) -> str | None:
    if dtype is None:
        return None
    return "string" if dtype.kind in "OSU" else dtype.name


def _io_json(io: IOMetadata) -> dict[str, Any]:
    return {
        "name": io.name,
        "description": io.description,
        "shape": None if io.shape is None else list(io.shape),
        "dtype": _dtype_name(io.dtype),
    }


def metadata_json(meta: ModelMetadata) -> dict[str, Any]:
    """The metadata as ``info --json`` prints it.

    Example:
        >>> from graphpipe_client import IOMetadata, ModelMetadata
        >>> metadata_json(ModelMetadata(name="m", inputs=(IOMetadata("x", shape=(None, 2)),)))["inputs"]
        [{'name': 'x', 'description': '', 'shape': [None, 2], 'dtype': None}]
    """
    return {
        "name": meta.name,
        "version": meta.version,
        "server": meta.server,
        "description": meta.description,
        "inputs": [_io_json(io) for io in meta.inputs],
        "outputs": [_io_json(io) for io in meta.outputs],
    }


def _describe(name: str, arr: np.ndarray) -> str:
    dtype = "string" if arr.dtype.kind in "OSU" else str(arr.dtype)
    return f"{name}: {dtype} {tuple(arr.shape)}"


# --------------------------------------------------------------------------
# info


def _cmd_info(args: argparse.Namespace) -> int:
    with Client(args.url, **_client_options(args)) as client:
        meta = client.metadata()
    if args.json:
        print(json.dumps(metadata_json(meta), indent=2))
    else:
        print(meta)
    return EXIT_OK


# --------------------------------------------------------------------------
# execute


def load_npy(path: str, mmap: bool = False) -> np.ndarray:
    """Read the array of a ``.npy`` file, never unpickling anything (``mmap``: memory-mapped, read-only).

    Raises:
        CommandError: the file cannot be read, or is not a ``.npy`` file of a
            plain (non-object) array.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            if magic != _NPY_MAGIC:
                if magic.startswith(_ZIP_MAGIC):
                    raise CommandError(
                        f"{path} is an .npz archive: give each input as its own .npy file "
                        "(numpy.save)"
                    )
                raise CommandError(f"{path} is not a NumPy .npy file (write one with numpy.save)")
            f.seek(0)
            arr = (
                np.load(path, mmap_mode="r", allow_pickle=False)
                if mmap
                else np.load(f, allow_pickle=False)
            )
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        # Object arrays (allow_pickle=False), corrupt headers, short data.
        raise CommandError(f"cannot load {path}: {exc}") from exc
    if not isinstance(arr, np.ndarray):  # pragma: no cover - np.load of a .npy is an array
        raise CommandError(f"{path} does not hold an array")
    return arr


def _output_labels(
    client: Client, requested: Sequence[str] | None, outputs: Sequence[np.ndarray]
) -> list[str]:
    """Names for the outputs: the requested ones, else the metadata's, else output0, output1, ..."""
    n = len(outputs)
    names: Sequence[str] | None = None
    if requested and len(requested) == n:
        names = requested
    elif not requested:
        # Only for display: a server without usable metadata still ran the model.
        with contextlib.suppress(GraphPipeError):
            meta_names = client.metadata().output_names
            if len(meta_names) == n:
                names = meta_names
    labels = [name or f"output{i}" for i, name in enumerate(names or [""] * n)]
    # An .npz needs distinct keys (an output may be requested twice).
    seen: set[str] = set()
    unique = []
    for i, label in enumerate(labels):
        key = label if label not in seen else f"{label}_{i}"
        seen.add(key)
        unique.append(key)
    return unique


def _savable(arr: np.ndarray) -> np.ndarray:
    # String tensors come back as object arrays of bytes: store them without pickle.
    return arr.astype(np.bytes_) if arr.dtype.kind == "O" else arr


@contextlib.contextmanager
def _atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """A file that replaces ``path`` only once it is completely written."""
    # Created next to the target with open() (not mkstemp) so that the
    # file gets the usual permissions (0666 minus the umask).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    f = open(tmp, "xb")  # noqa: SIM115 - closed below, before the rename
    try:
        with f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_outputs(path: Path, labels: Sequence[str], outputs: Sequence[np.ndarray]) -> None:
    """Write the outputs to ``path``: ``.npy`` for exactly one, ``.npz`` (keyed by label) for any."""
    npz = path.suffix.lower() == ".npz"
    if not npz and len(outputs) != 1:
        listing = ", ".join(labels) if labels else "none"
        raise CommandError(
            f"the model returned {len(outputs)} outputs ({listing}) but {path} holds one array: "
            "write an .npz file, or choose one output with --output-name"
        )
    try:
        with _atomic_write(path) as f:
            if npz:
                # As numpy.savez does, without its keyword clashes (an output named "file").
                with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                    for label, arr in zip(labels, outputs, strict=True):
                        with zf.open(f"{label}.npy", "w", force_zip64=True) as member:
                            np.lib.format.write_array(member, _savable(arr), allow_pickle=False)
            else:
                np.lib.format.write_array(f, _savable(outputs[0]), allow_pickle=False)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _cmd_execute(args: argparse.Namespace) -> int:
    files: list[str] = args.input
    input_names: list[str] | None = args.input_name
    if input_names is not None and len(input_names) != len(files):
        raise _UsageError(
            f"got {len(files)} --input but {len(input_names)} --input-name: "
            "give one name per input, in the same order (or none)"
        )
    batched = args.batch_size is not None or args.concurrency is not None
    inputs = [load_npy(path, mmap=batched) for path in files]
    output_names: list[str] | None = args.output_name
    # One kept-alive connection per request in flight.
    pool_size = max(10, args.concurrency or DEFAULT_CONCURRENCY)
    with Client(args.url, pool_size=pool_size, **_client_options(args)) as client:
        if batched:
            outputs = _execute_batched(client, args, inputs, input_names, output_names)
        else:
            outputs = client.execute_multi(inputs, input_names, output_names, args.config)
        labels = _output_labels(client, output_names, outputs)
    if args.out is not None:
        write_outputs(args.out, labels, outputs)
        described = "; ".join(
            _describe(label, arr) for label, arr in zip(labels, outputs, strict=True)
        )
        print(f"wrote {args.out}: {described}", file=sys.stderr)
        return EXIT_OK
    if not outputs:
        print("(the model returned no outputs)")
    for label, arr in zip(labels, outputs, strict=True):
        print(_describe(label, arr))
        values = np.array2string(arr, **_SUMMARY_OPTIONS)
        print("\n".join("  " + line for line in values.splitlines()))
    return EXIT_OK


def _execute_batched(
    client: Client,
    args: argparse.Namespace,
    inputs: list[np.ndarray],
    input_names: list[str] | None,
    output_names: list[str] | None,
) -> list[np.ndarray]:
    batch_size: int = args.batch_size or DEFAULT_BATCH_SIZE
    concurrency: int = args.concurrency or DEFAULT_CONCURRENCY
    rows = int(inputs[0].shape[0]) if inputs and inputs[0].ndim else None
    reporter = _progress_reporter(args, rows, "rows")
    try:
        outputs = client.execute_batched(
            inputs,
            batch_size,
            concurrency=concurrency,
            input_names=input_names,
            output_names=output_names,
            config=args.config,
            progress=None if reporter is None else as_callback(reporter),
        )
        return outputs if isinstance(outputs, list) else [outputs]  # a list of inputs: a list
    finally:
        if reporter is not None:
            reporter.close()


# --------------------------------------------------------------------------
# serve


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..testing import demo_metadata, demo_model, serve

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with contextlib.ExitStack() as stack:
            try:
                server = stack.enter_context(
                    serve(
                        demo_model,
                        metadata=demo_metadata,
                        host=args.host,
                        port=args.port,
                        log=args.log,
                    )
                )
            except OSError as exc:
                raise CommandError(
                    f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                ) from exc
            print(server.url, flush=True)
            if args.host not in ("127.0.0.1", "::1", "localhost"):
                print(
                    f"warning: listening on {args.host}: the demo server is meant for tests "
                    "and demos on this machine, not for a network",
                    file=sys.stderr,
                )
            print(
                f"serving the demo model {demo_metadata.name!r} (inputs "
                f"{', '.join(demo_metadata.input_names)}; outputs "
                f"{', '.join(demo_metadata.output_names)}); Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(3600):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


# --------------------------------------------------------------------------
# bench


@dataclass
class _BenchPlan:
    """What ``bench`` sends, and how much."""

    inputs: list[np.ndarray]
    labels: list[str]
    input_names: list[str] | None
    concurrency: int
    requests: int | None
    duration: float | None

    @property
    def rows(self) -> int:
        first = self.inputs[0] if self.inputs else None
        return int(first.shape[0]) if first is not None and first.ndim else 1


@dataclass
class _BenchResult:
    """Latencies (seconds) of the successful requests, the failures, the wall time.

    Filled in as the run goes, so that an interrupted run still has its
    partial figures: ``started`` once the timed run began, ``interrupted``
    if Ctrl-C stopped it.
    """

    latencies: list[float] = field(default_factory=list)
    errors: list[GraphPipeError] = field(default_factory=list)
    elapsed: float = 0.0
    started: bool = False
    interrupted: bool = False

    @property
    def done(self) -> int:
        return len(self.latencies) + len(self.errors)


class _BenchProgress:
    """The bench's display: the shared progress reporter, created at the first update
    (after the warm-up), fed with absolute counts."""

    def __init__(self, args: argparse.Namespace | None, plan: _BenchPlan) -> None:
        self._args = args
        self._plan = plan
        self._reporter: Reporter | None = None
        self._done = 0

    def update(self, done: int, elapsed: float) -> None:
        if self._args is None:
            return
        if self._reporter is None:
            plan = self._plan
            desc = None if plan.duration is None else f"{plan.duration:g} s run"
            self._reporter = _progress_reporter(self._args, plan.requests, "requests", desc)
            if self._reporter is None:
                self._args = None
                return
        if done > self._done:
            self._reporter.update(done - self._done)
            self._done = done

    def finish(self) -> None:
        if self._reporter is not None:
            self._reporter.close()
            self._reporter = None


def _bench_plan(args: argparse.Namespace) -> _BenchPlan:
    shape: tuple[int, ...] | None = args.shape
    dtype: np.dtype[Any] | None = args.dtype
    names: list[str] | None = args.input_name
    meta: ModelMetadata | None = None
    if shape is None or dtype is None or not names:
        with Client(args.url, **_client_options(args)) as client:
            try:
                meta = client.metadata()
            except TransportError:
                raise  # the server is not there: the benchmark cannot run either
            except GraphPipeError:
                meta = None  # no usable metadata: use the defaults
    if names:
        by_name = {io.name: io for io in meta.inputs} if meta else {}
        described: list[IOMetadata | None] = [by_name.get(name) for name in names]
        labels = list(names)
    elif meta is not None and meta.inputs:
        described = list(meta.inputs)
        labels = [io.name for io in meta.inputs]
    else:
        described = [None]
        labels = ["input0"]
    rng = np.random.default_rng(0)
    inputs = []
    for io in described:
        s = shape
        if s is None:
            s = (
                (1, 10)
                if io is None or io.shape is None
                else tuple(1 if d is None else d for d in io.shape)
            )
        dt = dtype
        if dt is None:
            known = io.dtype if io is not None else None
            dt = known if known is not None and known.kind in "iuf" else np.dtype(np.float32)
        if dt.kind == "f":
            arr = rng.standard_normal(s).astype(dt)
        else:
            arr = rng.integers(0, 10, size=s, dtype=dt)
        inputs.append(np.ascontiguousarray(arr))
    requests: int | None = args.requests
    duration: float | None = args.duration
    if requests is None and duration is None:
        requests = 200
    return _BenchPlan(inputs, labels, names, args.concurrency, requests, duration)


def _bench_sync(
    url: str,
    plan: _BenchPlan,
    options: dict[str, Any],
    progress: _BenchProgress,
    result: _BenchResult,
) -> None:
    lock = threading.Lock()
    stop = threading.Event()
    issued = 0
    fatal: list[BaseException] = []

    with Client(url, pool_size=plan.concurrency, retries=0, **options) as client:

        def call() -> None:
            client.execute_multi(plan.inputs, plan.input_names)

        # Untimed warm-up, one request per worker: opens the connections, and
        # a model that fails fails here, with its own error.
        with ThreadPoolExecutor(
            plan.concurrency, thread_name_prefix="graphpipe-bench-warmup"
        ) as pool:
            for future in [pool.submit(call) for _ in range(plan.concurrency)]:
                future.result()

        start = time.perf_counter()
        result.started = True
        deadline = start + plan.duration if plan.duration is not None else None
        progress.update(0, 0.0)  # the display starts with the timed requests

        def worker() -> None:
            nonlocal issued
            try:
                while not stop.is_set():
                    if plan.requests is not None:
                        with lock:
                            if issued >= plan.requests:
                                return
                            issued += 1
                    elif deadline is not None and time.perf_counter() >= deadline:
                        return
                    t0 = time.perf_counter()
                    try:
                        call()
                    except GraphPipeError as exc:
                        with lock:
                            if not stop.is_set():  # else: after the end of the run
                                result.errors.append(exc)
                    else:
                        t1 = time.perf_counter()
                        with lock:
                            if not stop.is_set():
                                result.latencies.append(t1 - t0)
            except BaseException as exc:  # a bug: stop everything and report it
                fatal.append(exc)
                stop.set()

        threads = [
            threading.Thread(target=worker, name=f"graphpipe-bench-{i}", daemon=True)
            for i in range(plan.concurrency)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.1)
                    progress.update(result.done, time.perf_counter() - start)
        except BaseException:  # Ctrl-C: the figures so far, then wait for the calls in flight
            with lock:
                stop.set()
                result.elapsed = time.perf_counter() - start
            for t in threads:
                t.join()
            raise
        result.elapsed = time.perf_counter() - start
    if fatal:
        raise fatal[0]


async def _bench_async_main(
    url: str,
    plan: _BenchPlan,
    options: dict[str, Any],
    progress: _BenchProgress,
    result: _BenchResult,
) -> None:
    issued = 0
    async with AsyncClient(url, pool_size=plan.concurrency, retries=0, **options) as client:

        async def call() -> None:
            await client.execute_multi(plan.inputs, plan.input_names)

        # Untimed warm-up, one request per worker (see _bench_sync).
        warmup = await asyncio.gather(
            *(call() for _ in range(plan.concurrency)), return_exceptions=True
        )
        for outcome in warmup:
            if isinstance(outcome, BaseException):
                raise outcome

        start = time.perf_counter()
        result.started = True
        deadline = start + plan.duration if plan.duration is not None else None
        progress.update(0, 0.0)  # the display starts with the timed requests

        async def worker() -> None:
            nonlocal issued
            while True:
                if plan.requests is not None:
                    if issued >= plan.requests:
                        return
                    issued += 1
                elif deadline is not None and time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    await call()
                except GraphPipeError as exc:
                    result.errors.append(exc)
                else:
                    result.latencies.append(time.perf_counter() - t0)

        tasks = [asyncio.create_task(worker()) for _ in range(plan.concurrency)]
        try:
            while True:
                _, pending = await asyncio.wait(tasks, timeout=0.1)
                progress.update(result.done, time.perf_counter() - start)
                if not pending:
                    break
            for task in tasks:
                task.result()  # a bug in a worker surfaces here
        except BaseException:  # Ctrl-C cancels this task (asyncio.run): keep the figures so far
            result.elapsed = time.perf_counter() - start
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        result.elapsed = time.perf_counter() - start


def _bench_report(url: str, plan: _BenchPlan, result: _BenchResult, mode: str) -> str:
    lines = [f"bench {parse_endpoint(url).redacted} ({mode}, concurrency {plan.concurrency})"]
    for label, arr in zip(plan.labels, plan.inputs, strict=True):
        lines.append(f"input {_describe(label, arr)}")
    ok = len(result.latencies)
    stopped = " (interrupted: a partial report)" if result.interrupted else ""
    lines.append(
        f"requests: {result.done} in {result.elapsed:.2f} s, {ok} ok, {len(result.errors)} failed"
        + stopped
    )
    if ok:
        ms = np.asarray(result.latencies) * 1000.0
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        lines.append(
            f"latency (ms): p50 {p50:.3f}  p90 {p90:.3f}  p99 {p99:.3f}  max {ms.max():.3f}"
            f"  mean {ms.mean():.3f}"
        )
    else:
        lines.append("latency (ms): no successful request")
    rate = ok / result.elapsed if result.elapsed > 0 else 0.0
    lines.append(f"throughput: {rate:.1f} requests/s, {rate * plan.rows:.1f} rows/s")
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    plan = _bench_plan(args)
    progress = _BenchProgress(args, plan)
    options = _client_options(args)
    mode = "async" if args.use_async else "sync"
    result = _BenchResult()
    try:
        try:
            if args.use_async:
                asyncio.run(_bench_async_main(args.url, plan, options, progress, result))
            else:
                _bench_sync(args.url, plan, options, progress, result)
        finally:
            progress.finish()
    except KeyboardInterrupt:
        if not result.started:
            raise  # still warming up: nothing measured, nothing to report
        # Ctrl-C during the timed run: what was measured until then.
        result.interrupted = True
        print(_bench_report(args.url, plan, result, mode), flush=True)
        return EXIT_INTERRUPTED
    print(_bench_report(args.url, plan, result, mode))
    if result.errors:
        first = result.errors[0]
        raise CommandError(
            f"{len(result.errors)} of {result.done} requests failed; the first: {first}"
        )
    return EXIT_OK


# --------------------------------------------------------------------------
# main


#: The longest ``error: ...`` line (a server may send thousands of error entries).
ERROR_LINE_CHARS: Final = 2000


def _report(exc: BaseException, verbose: bool) -> None:
    """Print the one ``error: ...`` line of a failure (after its traceback, with ``-v``).

    One line whatever the message holds: a model's multi-line error text, a
    server's HTML page, control characters, all collapse to one bounded line.
    """
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    text = one_line(str(exc), ERROR_LINE_CHARS) or type(exc).__name__
    print(f"error: {text}", file=sys.stderr)


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``graphpipe-client`` command line; return the exit status.

    ``argv`` defaults to ``sys.argv[1:]``. Nothing is raised for an expected
    failure: it is printed as one line on stderr, and the status says what
    happened (see :data:`EXIT_OK`, :data:`EXIT_ERROR`, :data:`EXIT_USAGE`,
    :data:`EXIT_INTERRUPTED`).

    Example:
        >>> from graphpipe_client._cli import main
        >>> main(["info", "ftp://example.com"])  # doctest: +SKIP
        2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_status(exc)
    verbose: bool = args.verbose
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _UsageError as exc:
        subparser: argparse.ArgumentParser = args.subparser
        subparser.print_usage(sys.stderr)
        print(f"{subparser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (GraphPipeError, CommandError) as exc:
        _report(exc, verbose)
        return EXIT_ERROR
    except BrokenPipeError:
        # stdout was closed early (``graphpipe-client info URL | head -1``):
        # silence the interpreter's final flush.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
