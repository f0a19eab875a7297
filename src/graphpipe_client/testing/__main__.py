"""Serve the demo model until Ctrl-C: ``python -m graphpipe_client.testing``.

The URL is printed alone on the first line of standard output (so scripts
can read it); a short help goes to standard error.

Example::

    $ python -m graphpipe_client.testing --port 9000
    http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ._demo import demo_metadata, demo_model
from ._server import serve


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo server until SIGINT (Ctrl-C) or SIGTERM; return the exit status.

    Example:
        >>> from graphpipe_client.testing.__main__ import main
        >>> main(["--help"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(
        prog="python -m graphpipe_client.testing",
        description=(
            "Serve graphpipe-client's demo model (an iris classifier: float32 (N, 4) "
            "'features' -> 'probabilities' (N, 3), 'label' (N,)) over GraphPipe until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=9000, help="TCP port, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument("--log", action="store_true", help="print one line per request to stderr")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        sig: signal.signal(sig, on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if threading.current_thread() is threading.main_thread()
    }
    try:
        try:
            ctx = serve(
                demo_model, metadata=demo_metadata, host=args.host, port=args.port, log=args.log
            )
            server = ctx.__enter__()
        except OSError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            reason = cause.strerror or str(cause)
            if exc.errno == errno.EADDRINUSE:
                reason += (
                    " (another server holds that port): stop it, or pass --port 0 "
                    "for a free port (the URL is printed)"
                )
            print(f"cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
            return 1
        try:
            print(server.url, flush=True)
            print(
                f"serving the demo model {demo_metadata.name!r} "
                f"(inputs {list(demo_metadata.input_names)}, outputs "
                f"{list(demo_metadata.output_names)}); Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            # Until Ctrl-C, or until the server stops by itself (/control/shutdown).
            while server.running and not stop.wait(0.5):
                pass
        finally:
            ctx.__exit__(None, None, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
