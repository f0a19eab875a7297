"""The argument parser of ``graphpipe-client``: the commands, their options and help texts.

Also the argument types (URL, positive numbers, shape, dtype, output path),
which turn a bad value into argparse's usage error (exit status 2), and the
help formatter that keeps the examples as written. Each command's options
lead to its module (``func``): :mod:`._info`, :mod:`._execute`,
:mod:`._serve`, :mod:`._bench`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._http.exchange import parse_endpoint
from .._version import __version__
from ._bench import cmd_bench
from ._common import PROG
from ._execute import cmd_execute
from ._info import cmd_info
from ._serve import cmd_serve

__all__ = ["build_parser"]


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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number of seconds, not {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free one) to 65535, not {text!r}")
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
  python -c "import numpy as np; np.save('big.npy', np.random.default_rng(0).uniform(0.1, 7, (100_000, 4)).astype(np.float32))"
  graphpipe-client execute http://127.0.0.1:9000 -i big.npy --batch-size 256 --concurrency 4 --out y.npz

Inputs are .npy files (numpy.save), read without ever unpickling: object
arrays are refused. Without --out, each output is summarised: its name (the
requested --output-name, else the model's metadata), dtype, shape and a few
values. --out FILE.npy writes the one output (refused before anything is sent
when --output-name or the model's metadata says there are several);
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
  graphpipe-client bench http://127.0.0.1:9000 --concurrency 64 --coalesce-rows 64 --coalesce-wait 0.002

Each request sends the same random input(s): one per input of the model's
metadata, or one per --input-name. Without --shape or --dtype, each input's
are taken from the metadata (an unknown size becomes 1), else 1,10 and
float32. One untimed warm-up request per worker runs first (it opens the
connections and checks that the model answers). Requests are not retried.
Latency is measured per request, around the whole call (encode, send,
receive, decode); rows are the size of the first dimension of the first
input. Failed requests are counted, and make the exit status 1. Ctrl-C
during the timed run prints the report so far, then exits with status 130.
With --coalesce-rows or --coalesce-wait, the workers' concurrent calls are
merged into shared requests (Coalesce, see docs/coalescing.md): the figures
are then per call, as a caller sees them.
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
    info.set_defaults(func=cmd_info)

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
    execute.set_defaults(func=cmd_execute)

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
        type=_port,
        default=9000,
        help="the TCP port; 0 picks a free one (default: %(default)s)",
    )
    serve.add_argument("--log", action="store_true", help="print one line per request to stderr")
    serve.set_defaults(func=cmd_serve)

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
    bench.add_argument(
        "--coalesce-rows",
        type=_positive_int,
        metavar="N",
        help="merge the concurrent calls into requests of up to N rows (Coalesce(max_rows=N); "
        "see docs/coalescing.md)",
    )
    bench.add_argument(
        "--coalesce-wait",
        type=_non_negative_float,
        metavar="S",
        help="with coalescing, the longest a call waits for others, in seconds (default 0.002; "
        "alone, it turns coalescing on with max_rows 64)",
    )
    _add_progress(bench)
    _add_timeout(bench)
    bench.set_defaults(func=cmd_bench)
    return parser
