"""``graphpipe-client execute``: run a model on ``.npy`` files, summarise or save the outputs.

Inputs are read with :func:`load_npy` (never unpickling), whole or, when
batching (``--batch-size``/``--concurrency``), memory-mapped and sent with
``Client.execute_batched`` under the shared progress display; the outputs are
summarised on stdout or written with :func:`write_outputs` (``.npy`` or
``.npz``, atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from .._client import Client
from .._exceptions import GraphPipeError
from .._jobs.plan import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY
from .._jobs.progress import as_callback
from ._common import (
    EXIT_OK,
    CommandError,
    UsageError,
    client_options,
    describe,
    progress_reporter,
)

__all__ = ["cmd_execute", "load_npy", "write_outputs"]

_NPY_MAGIC: Final = b"\x93NUMPY"
_ZIP_MAGIC: Final = b"PK\x03\x04"

#: How an output's values are abbreviated in ``execute``'s summary.
_SUMMARY_OPTIONS: Final[dict[str, Any]] = {
    "threshold": 20,
    "edgeitems": 3,
    "precision": 4,
    "max_line_width": 88,
}


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


def _check_out_before_sending(client: Client, path: Path, requested: Sequence[str] | None) -> None:
    """Refuse a ``.npy`` ``--out`` now, before any work, when it cannot hold the outputs.

    With ``--output-name`` the count is known; without, the model's metadata
    says it (when the server gives usable metadata: otherwise the check after
    the run, in :func:`write_outputs`, still applies).
    """
    if path.suffix.lower() == ".npz":
        return
    if requested:
        if len(requested) != 1:
            raise CommandError(
                f"{len(requested)} outputs are asked for ({', '.join(requested)}) but {path} "
                f"holds one array: write an .npz file (--out {path.with_suffix('.npz')}), "
                "or ask for one output"
            )
        return
    try:
        names = client.metadata().output_names
    except GraphPipeError:
        return  # the run says what the server can do, and write_outputs checks
    if len(names) > 1:
        raise CommandError(
            f"the model has {len(names)} outputs ({', '.join(names)}) but {path} holds one "
            f"array: write an .npz file (--out {path.with_suffix('.npz')}), or choose one "
            "output with --output-name; nothing was sent"
        )


def cmd_execute(args: argparse.Namespace) -> int:
    """Run ``execute``: load the inputs, run the model, print or write the outputs; the exit status."""
    files: list[str] = args.input
    input_names: list[str] | None = args.input_name
    if input_names is not None and len(input_names) != len(files):
        raise UsageError(
            f"got {len(files)} --input but {len(input_names)} --input-name: "
            "give one name per input, in the same order (or none)"
        )
    batched = args.batch_size is not None or args.concurrency is not None
    inputs = [load_npy(path, mmap=batched) for path in files]
    output_names: list[str] | None = args.output_name
    # One kept-alive connection per request in flight.
    pool_size = max(10, args.concurrency or DEFAULT_CONCURRENCY)
    with Client(args.url, pool_size=pool_size, **client_options(args)) as client:
        if args.out is not None:
            _check_out_before_sending(client, args.out, output_names)
        if batched:
            outputs = _execute_batched(client, args, inputs, input_names, output_names)
        else:
            outputs = client.execute_multi(inputs, input_names, output_names, args.config)
        labels = _output_labels(client, output_names, outputs)
    if args.out is not None:
        write_outputs(args.out, labels, outputs)
        described = "; ".join(
            describe(label, arr) for label, arr in zip(labels, outputs, strict=True)
        )
        print(f"wrote {args.out}: {described}", file=sys.stderr)
        return EXIT_OK
    if not outputs:
        print("(the model returned no outputs)")
    for label, arr in zip(labels, outputs, strict=True):
        print(describe(label, arr))
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
    reporter = progress_reporter(args, rows, "rows")
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
