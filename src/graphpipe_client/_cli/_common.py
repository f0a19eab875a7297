"""What every command of the command line shares: exit statuses, errors, client options.

The exit statuses (re-exported by the package), the two expected failures a
command raises (:class:`CommandError`: status 1, :class:`UsageError`: status
2), the client options from ``--timeout``, the progress display from
``--progress``, and the one-line description of an array.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

import numpy as np

from .._http.config import Timeout
from .._jobs.progress import Reporter, terminal_reporter

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "CommandError",
    "UsageError",
    "client_options",
    "describe",
    "progress_reporter",
]

EXIT_OK: Final = 0
"""The command succeeded."""
EXIT_ERROR: Final = 1
"""The command failed: an error from the server or the network, or a file that cannot be read or written."""
EXIT_USAGE: Final = 2
"""The command line is wrong: an unknown option, a bad value, a malformed URL (argparse's status)."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted by Ctrl-C (SIGINT), as shells report it (128 + 2)."""

PROG: Final = "graphpipe-client"
"""The name of the command, in its help and its version."""


class CommandError(Exception):
    """An expected failure of a command: printed as one ``error: ...`` line, exit status 1."""


class UsageError(Exception):
    """A usage error found after parsing (argparse cannot express it): exit status 2."""


def progress_reporter(
    args: argparse.Namespace, total: int | None, unit: str, desc: str | None = None
) -> Reporter | None:
    """A tqdm bar on stderr (a plain status line without tqdm), or ``None`` when not shown."""
    show: bool | None = args.progress
    if show is None:
        show = sys.stderr.isatty()
    return terminal_reporter(sys.stderr, total, unit, desc) if show else None


def client_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Client``/``AsyncClient`` keyword arguments of ``--timeout`` (the default timeouts without it)."""
    timeout: float | None = args.timeout
    return {"timeout": Timeout() if timeout is None else timeout}


def describe(name: str, arr: np.ndarray) -> str:
    """``name: dtype (shape)``, as ``execute`` and ``bench`` print an array ("string" for text)."""
    dtype = "string" if arr.dtype.kind in "OSU" else str(arr.dtype)
    return f"{name}: {dtype} {tuple(arr.shape)}"
