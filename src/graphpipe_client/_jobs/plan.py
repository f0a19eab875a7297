"""Batched execution, the part without I/O: rows, batches, outputs, failures.

``execute_batched`` on both clients is a thin shell over this module and over
:mod:`._batched_run` (threads for ``Client``, tasks for ``AsyncClient``):

- :class:`RowPlan` checks the inputs (every input must have the same number
  of rows, along axis 0), cuts them into batches of ``batch_size`` rows
  (slices: views, nothing is copied; a memory-mapped ``.npy`` file is read
  only as each batch is sent) and, for read-only memory maps, hands the pages
  of a finished batch back to the kernel so that the resident set stays
  bounded however large the file is;
- :class:`OutputWriter` allocates each output once, when the first batch comes
  back (only then are its dtype and row shape known), and copies each batch's
  outputs into its rows, in any order of completion;
- :func:`batch_error` wraps a batch's typed error into a :class:`BatchError`
  that names its rows.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._exceptions import BatchError, DecodeError, EncodeError, GraphPipeError
from .._wire.encode import _as_array, encode_infer_request
from .options import DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY, check_run_options

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONCURRENCY",
    "AsyncBatches",
    "Batch",
    "OnError",
    "OutputWriter",
    "RowPlan",
    "batch_error",
    "check_run_options",
    "release_arrays",
    "stream_batch",
]

#: What ``on_error=`` takes: called with each :class:`BatchError`; returning
#: goes on with the other batches, raising stops the run.
OnError = Callable[[BatchError], object]


@dataclass(frozen=True, slots=True)
class Batch:
    """One request of a run: its position and its rows ``start:stop``."""

    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


def _refuse_stream(inputs: object) -> None:
    if isinstance(inputs, (Iterator, AsyncIterable)):
        raise TypeError(
            "execute_batched takes arrays (one input, or a list/tuple of inputs); "
            "for an iterator or generator of batches use execute_stream()"
        )


def _input_label(i: int, names: Sequence[str | None] | None) -> str:
    name = names[i] if names is not None and i < len(names) else None
    return f"input {i} ({name!r})" if name else f"input {i}"


def _rows_of(
    arrays: Sequence[np.ndarray],
    names: Sequence[str | None] | None,
    where: str = "",
    from_list: bool = False,
) -> int:
    """The common row count of ``arrays``; :class:`EncodeError` naming the input that disagrees."""
    rows: int | None = None
    for i, arr in enumerate(arrays):
        if arr.ndim == 0:
            hint = (
                " (a list or tuple is one item per model input: for one input, pass an "
                "array, e.g. np.asarray(values))"
                if from_list
                else ""
            )
            raise EncodeError(
                f"{where}{_input_label(i, names)} is a scalar: execute_batched splits inputs "
                f"along their first axis, so each needs at least one dimension{hint}"
            )
        n = int(arr.shape[0])
        if rows is None:
            rows = n
        elif n != rows:
            raise EncodeError(
                f"{where}{_input_label(i, names)} has {n} rows but {_input_label(0, names)} "
                f"has {rows}: every input must have the same number of rows (axis 0)"
            )
    if rows is None:
        raise EncodeError(f"{where}no inputs: give at least one array")
    return rows


def _normalise(
    inputs: Any, names: Sequence[str | None] | None, where: str = ""
) -> tuple[bool, list[np.ndarray], int]:
    """``(single, arrays, rows)``: one input (not a list/tuple) or several, as arrays."""
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    arrays = [_as_array(x, f"{where}inputs[{i}]") for i, x in enumerate(items)]
    return single, arrays, _rows_of(arrays, names, where, from_list=not single)


class _MappedRows:
    """The pages behind a read-only ``np.memmap`` input, to give back once sent."""

    __slots__ = ("map", "offset", "row_bytes")

    def __init__(self, mm: mmap.mmap, offset: int, row_bytes: int) -> None:
        self.map = mm
        self.offset = offset
        self.row_bytes = row_bytes

    @classmethod
    def of(cls, arr: np.ndarray) -> _MappedRows | None:
        # Only a read-only mapping (np.load(mmap_mode="r")): dropping pages of
        # a private copy-on-write mapping ("c") would lose the caller's writes.
        if not isinstance(arr, np.memmap) or getattr(arr, "mode", None) not in ("r", "readonly"):
            return None
        mm = getattr(arr, "_mmap", None)
        if not isinstance(mm, mmap.mmap) or not hasattr(mm, "madvise"):
            return None
        if not arr.flags.c_contiguous or arr.ndim == 0:
            return None
        try:
            base = np.frombuffer(mm, np.uint8).ctypes.data
        except (TypeError, ValueError, BufferError):  # pragma: no cover - a closed map
            return None
        offset = arr.ctypes.data - base
        if offset < 0 or offset + arr.nbytes > len(mm):  # pragma: no cover - not this map's
            return None
        row_bytes = arr.nbytes // arr.shape[0] if arr.shape[0] else 0
        return cls(mm, offset, row_bytes)

    def release(self, start: int, stop: int) -> None:
        """Drop the pages of rows ``start:stop`` from this process (the page cache keeps them)."""
        if not self.row_bytes or stop <= start:
            return
        page = mmap.PAGESIZE
        lo = (self.offset + start * self.row_bytes) // page * page
        hi = min(len(self.map), self.offset + stop * self.row_bytes)
        if hi <= lo:
            return
        # A kernel that refuses costs only memory, not correctness.
        with contextlib.suppress(OSError, ValueError):
            self.map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


class RowPlan:
    """The inputs of one ``execute_batched`` run, cut into batches of ``batch_size`` rows.

    ``single`` tells whether the caller gave one input (the result is then
    shaped as ``execute``'s) or a list/tuple (a list, as ``execute_multi``'s).

    Example:
        >>> import numpy as np
        >>> plan = RowPlan([np.zeros((5, 2)), np.ones(5)], batch_size=2)
        >>> [(b.start, b.stop) for b in plan.batches()]
        [(0, 2), (2, 4), (4, 5)]
        >>> [a.shape for a in plan.slices(plan.batches()[2])]
        [(1, 2), (1,)]
    """

    def __init__(
        self,
        inputs: Any,
        batch_size: int,
        input_names: Sequence[str | None] | None = None,
    ) -> None:
        _refuse_stream(inputs)
        self.single, self.arrays, self.rows = _normalise(inputs, input_names)
        self.batch_size = int(batch_size)
        self._mapped = [_MappedRows.of(a) for a in self.arrays]

    def check_encodable(
        self,
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
    ) -> None:
        """Encode an empty batch: a dtype or a name list that cannot be sent fails now, once,
        as :class:`EncodeError`, before any request."""
        encode_infer_request([a[:0] for a in self.arrays], input_names, output_names, config)

    def batches(self) -> list[Batch]:
        """Every batch, in row order; 0 rows make one empty batch (the model says what it gives)."""
        if self.rows == 0:
            return [Batch(0, 0, 0)]
        size = self.batch_size
        return [
            Batch(i, start, min(start + size, self.rows))
            for i, start in enumerate(range(0, self.rows, size))
        ]

    def slices(self, batch: Batch) -> list[np.ndarray]:
        """The rows of ``batch`` of every input: views (a memory map's rows are read when sent)."""
        return [a[batch.start : batch.stop] for a in self.arrays]

    def release(self, batch: Batch) -> None:
        """Give the pages of a sent batch of read-only memory-mapped inputs back to the kernel."""
        for mapped in self._mapped:
            if mapped is not None:
                mapped.release(batch.start, batch.stop)


def release_arrays(arrays: Sequence[np.ndarray]) -> None:
    """Give back the pages of the read-only memory-mapped arrays among ``arrays`` (once sent)."""
    for arr in arrays:
        mapped = _MappedRows.of(arr)
        if mapped is not None:
            mapped.release(0, int(arr.shape[0]))


def stream_batch(
    item: Any, index: int, start: int, input_names: Sequence[str | None] | None
) -> tuple[bool, list[np.ndarray], Batch]:
    """One item of a stream of batches: ``(single, arrays, batch)`` (rows counted from ``start``)."""
    where = f"batch {index}: "
    single, arrays, rows = _normalise(item, input_names, where)
    return single, arrays, Batch(index, start, start + rows)


def _describe(arr: np.ndarray) -> str:
    return f"{'string' if arr.dtype.kind == 'O' else arr.dtype} {tuple(arr.shape)}"


class OutputWriter:
    """The outputs of a run, allocated when the first batch returns, filled batch by batch.

    Only the first answer tells each output's dtype and row shape, so the
    arrays are allocated then: ``rows`` rows each, zeros (string outputs:
    object arrays of ``None``), and every batch's outputs are copied into
    their rows. Several threads may :meth:`write` at once (different rows).

    Example:
        >>> import numpy as np
        >>> from graphpipe_client._jobs.plan import Batch, OutputWriter
        >>> w = OutputWriter(rows=3)
        >>> w.write(Batch(1, 2, 3), [np.array([[9, 9]])])
        >>> w.write(Batch(0, 0, 2), [np.array([[1, 2], [3, 4]])])
        >>> w.arrays[0]
        array([[1, 2],
               [3, 4],
               [9, 9]])
    """

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.arrays: list[np.ndarray] | None = None
        self._lock = threading.Lock()

    def write(self, batch: Batch, outputs: Sequence[np.ndarray]) -> None:
        """Copy one batch's outputs into place.

        Raises:
            DecodeError: an output has not one row per input row, or its
                count, dtype or row shape differs from the first batch's.
        """
        for i, out in enumerate(outputs):
            if out.ndim == 0 or out.shape[0] != batch.rows:
                raise DecodeError(
                    f"output {i} of rows {batch.start}:{batch.stop} is {_describe(out)}: "
                    f"execute_batched needs outputs with one row per input row ({batch.rows} here)"
                )
        with self._lock:
            arrays = self.arrays
            if arrays is None:
                arrays = self.arrays = [self._allocate(out) for out in outputs]
        if len(outputs) != len(arrays):
            raise DecodeError(
                f"rows {batch.start}:{batch.stop} came back with {len(outputs)} outputs, "
                f"an earlier batch with {len(arrays)}"
            )
        for i, (dst, out) in enumerate(zip(arrays, outputs, strict=True)):
            if out.shape[1:] != dst.shape[1:] or (
                out.dtype != dst.dtype and not (dst.dtype.kind == "O" and out.dtype.kind == "O")
            ):
                raise DecodeError(
                    f"output {i} of rows {batch.start}:{batch.stop} is {_describe(out)}, but an "
                    f"earlier batch's was {dst.dtype} with rows of shape {dst.shape[1:]}"
                )
            dst[batch.start : batch.stop] = out

    def _allocate(self, first: np.ndarray) -> np.ndarray:
        shape = (self.rows, *first.shape[1:])
        if first.dtype.kind == "O":
            return np.empty(shape, dtype=object)
        return np.zeros(shape, dtype=first.dtype)  # calloc: pages cost nothing until written


def batch_error(batch: Batch, exc: GraphPipeError) -> BatchError:
    """The :class:`BatchError` for a failed batch (its rows, its index, the error as the cause)."""
    return BatchError(start=batch.start, stop=batch.stop, index=batch.index, error=exc)


class AsyncBatches:
    """The batches of an iterable or async iterable, for ``AsyncClient.execute_stream``'s drivers.

    ``await next()`` gives the next ``(batch, single, arrays)``, numbered and
    with its rows counted from the first, or ``None`` at the end. An item that
    is not a batch (its inputs disagree on their rows, a bool array, ...) is a
    :class:`BatchError` at its place: raised, or handed to ``on_error`` and
    skipped. ``aclose()`` when done.
    """

    def __init__(
        self,
        items: Iterable[Any] | AsyncIterable[Any],
        input_names: Sequence[str | None] | None,
        on_error: OnError | None,
    ) -> None:
        self._items = _each_item(items)
        self._input_names = input_names
        self._on_error = on_error
        self._index = 0
        self._row = 0

    async def next(self) -> tuple[Batch, bool, list[np.ndarray]] | None:
        """The next batch, ``(batch, single, arrays)``; ``None`` when the items are exhausted."""
        while True:
            try:
                item = await self._items.__anext__()
            except StopAsyncIteration:
                return None
            index, row = self._index, self._row
            self._index += 1
            try:
                single, arrays, batch = stream_batch(item, index, row, self._input_names)
            except GraphPipeError as exc:
                failure = batch_error(Batch(index, row, row), exc)
                if self._on_error is None:
                    raise failure from exc
                self._on_error(failure)
                continue
            self._row = batch.stop
            return batch, single, arrays

    async def aclose(self) -> None:
        """Close the iteration (not the caller's iterable: that stays theirs)."""
        await self._items.aclose()


async def _each_item(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncGenerator[Any, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
