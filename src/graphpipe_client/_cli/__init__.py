"""The ``graphpipe-client`` command line: ``info``, ``execute``, ``serve`` and ``bench``.

Run ``graphpipe-client --help`` (or ``python -m graphpipe_client --help``) for
the commands, and ``graphpipe-client COMMAND --help`` for each one's options
and examples. See ``docs/cli.md``.

Exit status: 0 on success; 1 when the command failed (the server could not be
reached, answered with an error, timed out; an input file could not be read;
an output file could not be written); 2 on a usage error (a bad option or
URL); 130 when interrupted with Ctrl-C. An expected failure prints one line,
``error: ...``, on standard error; ``--verbose`` adds the traceback.

This module holds :func:`main` (parse, run the command, turn its failure into
an exit status and one line); the parser is in :mod:`._parser`, each command
in its own module (:mod:`._info`, :mod:`._execute`, :mod:`._serve`,
:mod:`._bench`), what they share in :mod:`._common`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Final

from .._exceptions import GraphPipeError
from .._http.error_bodies import one_line
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandError, UsageError
from ._parser import build_parser

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]


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
    except UsageError as exc:
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
