"""``graphpipe-client serve``: serve the bundled demo model until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
from types import FrameType

from ._common import EXIT_OK, CommandError

__all__ = ["cmd_serve"]


def cmd_serve(args: argparse.Namespace) -> int:
    """Run ``serve``: print the URL, serve until Ctrl-C or SIGTERM; the exit status."""
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
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                reason = cause.strerror or str(cause)
                if exc.errno == errno.EADDRINUSE:
                    reason += (
                        " (another server holds that port): stop it, or pass --port 0 "
                        "for a free port (the URL is printed)"
                    )
                raise CommandError(f"cannot listen on {args.host}:{args.port}: {reason}") from exc
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
