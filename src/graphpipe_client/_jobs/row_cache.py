"""``RowCache``: a client-side cache of a model's outputs, one entry per input row (sans-I/O).

The clients only call :meth:`RowCache._call`, which gives either a plain
:class:`PreparedRequest` (the call bypasses the cache) or a
:class:`CachedCall`: a small state machine that says which request to send
(``.req``, ``None`` when done), is fed each answer's outputs (``.feed``) and
ends with ``.result``. Keys, the LRU, the lookup, the split into the missing
rows and the reassembly live here; no sockets.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import chain, compress
from operator import attrgetter, itemgetter
from typing import Any, Final, cast

import numpy as np

from .._exceptions import InvalidOption
from .._http.config import ClientConfig, Timeout
from .._http.exchange import PreparedRequest, parse_endpoint, prepare_infer
from .._wire.encode import _as_array, _config, _names, _StringTensor, _wire_type, prepare_tensor

__all__ = ["CacheStats", "CachedCall", "InferCall", "RowCache"]

#: Bytes of a key: blake2b-256.
KEY_BYTES: Final = 32

#: The default bound: 256 MiB of keys and stored outputs.
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024


def _field(h: Any, data: bytes) -> None:
    """A length-prefixed field: no two sequences of fields hash the same bytes."""
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot of a :class:`RowCache`'s counters.

    ``hits`` and ``misses`` count rows; ``evictions`` entries dropped to stay
    within ``max_bytes``; ``bypassed`` calls the cache could not serve
    (inputs without a row axis, 0 rows, or outputs without one row per input
    row); ``entries`` and ``nbytes`` what the cache holds now.
    """

    hits: int
    misses: int
    evictions: int
    bypassed: int
    entries: int
    nbytes: int


#: Python's own bytes per entry besides the stored rows: the key's bytes object,
#: the entry and its tuple, and the entry's share of the LRU's ordered dict. Measured
#: with tracemalloc (CPython 3.11): 310 to 560 bytes, as the dict's table fills
#: between two doublings; the high end is counted, so ``max_bytes`` is a bound.
_ENTRY_OVERHEAD: Final = 560


class _Entry:
    """One cached row: per output its bytes (numeric) or its elements (strings); its size.

    ``sig`` names (per cache) the dtypes and row shapes of every output, so
    that rows can be stacked only with rows of the same kind.
    """

    __slots__ = ("nbytes", "rows", "sig")

    def __init__(self, rows: tuple[bytes | tuple[bytes, ...], ...], sig: int, nbytes: int) -> None:
        self.rows = rows
        self.sig = sig
        self.nbytes = nbytes


Signature = tuple[tuple[str, tuple[int, ...]], ...]


def _signature(outputs: Sequence[np.ndarray]) -> Signature:
    """What the rows of every output must share to be stacked: dtype and row shape."""
    return tuple((o.dtype.str, tuple(o.shape[1:])) for o in outputs)


def _split_rows(o: np.ndarray, n: int) -> tuple[list[bytes] | list[tuple[bytes, ...]], list[int]]:
    """Each of ``n`` rows of one output, as its own copy; and what each costs in memory."""
    if o.dtype.kind == "O":
        elems = [tuple(r) for r in o.reshape(n, -1).tolist()]
        sizes = [sys.getsizeof(t) + sum(map(sys.getsizeof, t)) for t in elems]
        return elems, sizes
    rb = o.nbytes // n
    if rb == 0:
        return [b""] * n, [sys.getsizeof(b"")] * n
    flat = np.ascontiguousarray(o).reshape(n, rb // o.itemsize).view(np.uint8)
    rows = cast("list[bytes]", flat.view(np.dtype((np.void, rb))).ravel().tolist())
    return rows, [sys.getsizeof(rows[0])] * n


def _stack(entries: Sequence[_Entry], j: int, sig: Signature) -> np.ndarray:
    """Output ``j`` of the rows ``entries``, stacked in that order into a new array."""
    dtype, row_shape = np.dtype(sig[j][0]), sig[j][1]
    parts = list(map(itemgetter(j), map(attrgetter("rows"), entries)))
    shape = (len(entries), *row_shape)
    if dtype.kind == "O":
        count = int(np.prod(shape, dtype=np.int64))
        flat = np.fromiter(chain.from_iterable(parts), dtype=object, count=count)
        return flat.reshape(shape)
    out = np.empty(shape, dtype)
    if out.nbytes:
        out.reshape(-1).view(np.uint8)[:] = np.frombuffer(b"".join(parts), np.uint8)
    return out


class RowCache:
    """A cache of a model's outputs, one entry per input row, in memory, LRU, bounded in bytes.

    Give it to a client, ``Client(url, cache=RowCache(max_bytes=...))`` (or an
    :class:`AsyncClient`), and every ``execute``, ``execute_multi``,
    ``execute_named``, ``execute_batched`` and ``execute_stream`` call looks
    up each input row (index along axis 0) first: only the missing rows are
    sent, in one request (a copy of those rows); the outputs are reassembled
    in row order; when every row is cached, nothing is sent at all.

    The key is a blake2b-256 digest of the model (``model_key``, else the
    URL without credentials), the call's ``config``, the input and output
    names, and each input's dtype, row shape and row bytes (strings element
    by element, each with its length). It assumes a deterministic model
    whose outputs have one row per input row: a call whose outputs do not is
    sent again whole and not cached (see ``docs/cache.md``). Stored rows are
    copies; results are new arrays, so writing to them never changes the
    cache. One cache may be shared by several clients and threads (a lock
    guards it; nothing is awaited while it is held).

    Args:
        max_bytes: the bound on the keys and the stored outputs (numpy's and
            Python's object sizes included); the least recently used rows
            are evicted beyond it. Default 256 MiB.
        model_key: names the model all calls through this cache run, instead
            of their URL: give it when several URLs serve one model (replicas,
            a load balancer). Never share one ``model_key`` between models.

    Example:
        >>> import numpy as np
        >>> from graphpipe_client import Client, RowCache
        >>> from graphpipe_client.testing import serve
        >>> cache = RowCache(max_bytes=1 << 20)
        >>> with serve(lambda x: x * 2) as server, Client(server.url, cache=cache) as client:
        ...     first = client.execute(np.array([1, 2, 3]))
        ...     again = client.execute(np.array([3, 2, 1]))  # every row cached: no request
        >>> again
        array([6, 4, 2])
        >>> cache.stats.hits, cache.stats.misses
        (3, 3)
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, model_key: str | None = None) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise InvalidOption(f"max_bytes must be an int >= 0, not {max_bytes!r}")
        if model_key is not None and (not isinstance(model_key, str) or not model_key):
            raise InvalidOption(f"model_key must be a non-empty str, not {model_key!r}")
        self._max_bytes = max_bytes
        self._model_key = model_key
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._bypassed = 0
        self._sigs: dict[Signature, int] = {}
        self._sig_list: list[Signature] = []

    @property
    def max_bytes(self) -> int:
        """The bound on the bytes held."""
        return self._max_bytes

    @property
    def model_key(self) -> str | None:
        """The model identity used instead of the URL, or ``None``."""
        return self._model_key

    @property
    def stats(self) -> CacheStats:
        """The counters, read together."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._bypassed,
                len(self._entries),
                self._nbytes,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<RowCache {s.entries} rows, {s.nbytes}/{self._max_bytes} bytes, "
            f"{s.hits} hits, {s.misses} misses>"
        )

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0

    # -- what the clients call -------------------------------------------------

    def _call(
        self,
        cfg: ClientConfig,
        url: str,
        inputs: Sequence[Any],
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        timeout: Timeout,
        replicas: Any = None,
    ) -> PreparedRequest | CachedCall:
        """The request to send (bypassing the cache) or the cached call's state machine.

        ``replicas`` (a client's replica set, or ``None``) routes every request
        the call sends; the key is made from ``url`` (use ``model_key`` when
        replicas of one model have several URLs).
        """

        def routed(req: PreparedRequest) -> PreparedRequest:
            return req if replicas is None else replace(req, replicas=replicas)

        def full() -> PreparedRequest:
            return routed(
                prepare_infer(cfg, url, arrays, input_names, output_names, config, timeout)
            )

        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        arrays = [_as_array(v, f"inputs[{i}]") for i, v in enumerate(items)]
        rows = _common_rows(arrays)
        if rows is None:
            with self._lock:
                self._bypassed += 1
            return full()
        prepared = [prepare_tensor(a, f"inputs[{i}]") for i, a in enumerate(arrays)]
        keys = self._keys(url, prepared, rows, input_names, output_names, config)
        with self._lock:
            found: list[_Entry | None] = list(map(self._entries.get, keys))
            # Refresh every hit's place in the LRU (in C: no Python loop per row).
            deque(map(self._entries.move_to_end, compress(keys, found)), maxlen=0)
            n_missing = found.count(None)
            self._hits += rows - n_missing
            self._misses += n_missing
        missing = [i for i, e in enumerate(found) if e is None] if n_missing else []
        # A row repeated within the call is sent once.
        first: dict[bytes, int] = {}
        send_rows: list[int] = []
        slot: list[int] = []
        for i in missing:
            k = keys[i]
            j = first.get(k)
            if j is None:
                j = first[k] = len(send_rows)
                send_rows.append(i)
            slot.append(j)
        call = CachedCall(self, keys, found, missing, send_rows, slot, full)
        if not send_rows:
            call.finish_hits()
            return call
        if len(send_rows) == rows:
            call.req = full()
        else:
            idx = np.asarray(send_rows, dtype=np.intp)
            part = [
                a[idx] if isinstance(p, _StringTensor) else p[idx]
                for a, p in zip(arrays, prepared, strict=True)
            ]
            call.req = routed(
                prepare_infer(cfg, url, part, input_names, output_names, config, timeout)
            )
        return call

    def _keys(
        self,
        url: str,
        prepared: list[np.ndarray | _StringTensor],
        rows: int,
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
    ) -> list[bytes]:
        h = hashlib.blake2b(digest_size=KEY_BYTES, person=b"gp-rowcache-v1")
        # A model_key and a URL never spell the same field, even if the key is a URL.
        if self._model_key is not None:
            model = b"K" + self._model_key.encode("utf-8", "surrogateescape")
        else:
            model = b"U" + parse_endpoint(url).url.encode("utf-8", "surrogateescape")
        _field(h, model)
        _field(h, _config(config))
        in_names = _names(input_names, len(prepared), "input_names")
        out_names = _names(output_names, None, "output_names")
        h.update(len(in_names).to_bytes(8, "little"))
        for n in in_names:
            _field(h, n)
        h.update(len(out_names).to_bytes(8, "little"))
        for n in out_names:
            _field(h, n)
        h.update(len(prepared).to_bytes(8, "little"))
        # Each input's dtype and row shape: fixed for the call, so in the prefix.
        views: list[tuple[memoryview | None, int, _StringTensor | None]] = []
        for p in prepared:
            h.update(_wire_type(p).to_bytes(4, "little"))
            row_shape = p.shape[1:]
            h.update(len(row_shape).to_bytes(8, "little"))
            for d in row_shape:
                h.update(int(d).to_bytes(8, "little"))
            if isinstance(p, _StringTensor):
                per_row = int(np.prod(row_shape, dtype=np.int64))
                views.append((None, per_row, p))
            else:
                flat = memoryview(p.reshape(-1).view(np.uint8).data)
                views.append((flat, p.nbytes // rows, None))
        keys: list[bytes] = []
        copy = h.copy
        only = prepared[0] if len(prepared) == 1 else None
        if isinstance(only, np.ndarray) and views[0][1]:  # one numeric input: the common case
            rb = views[0][1]
            append = keys.append
            void = only.reshape(rows, -1).view(np.uint8).view(np.dtype((np.void, rb)))
            for row in cast("list[bytes]", void.ravel().tolist()):
                r = copy()
                r.update(row)
                append(r.digest())
            return keys
        for i in range(rows):
            r = copy()
            for flat_view, per, strings in views:
                if flat_view is not None:
                    r.update(flat_view[i * per : (i + 1) * per])
                elif strings is not None:
                    for v in strings.values[i * per : (i + 1) * per]:
                        r.update(len(v).to_bytes(8, "little"))
                        r.update(v)
            keys.append(r.digest())
        return keys

    def _sig_id(self, sig: Signature) -> int:
        """A small int naming ``sig`` in this cache (compared by the thousands per call)."""
        with self._lock:
            sid = self._sigs.get(sig)
            if sid is None:
                sid = self._sigs[sig] = len(self._sig_list)
                self._sig_list.append(sig)
            return sid

    def _store(self, keys: Sequence[bytes], entries: Sequence[_Entry]) -> None:
        with self._lock:
            table = self._entries
            for k, e in zip(keys, entries, strict=True):
                if e.nbytes > self._max_bytes:
                    continue  # larger than the whole cache: never held
                old = table.pop(k, None)
                if old is not None:
                    self._nbytes -= old.nbytes
                table[k] = e
                self._nbytes += e.nbytes
            while self._nbytes > self._max_bytes and table:
                _, old = table.popitem(last=False)
                self._nbytes -= old.nbytes
                self._evictions += 1

    def _signature_of(self, sid: int) -> Signature:
        with self._lock:
            return self._sig_list[sid]

    def _bypass(self) -> None:
        with self._lock:
            self._bypassed += 1


def _common_rows(arrays: Sequence[np.ndarray]) -> int | None:
    """The row count shared by every input, or ``None`` when the cache cannot apply."""
    if not arrays:
        return None
    rows = None
    for a in arrays:
        if a.ndim == 0:
            return None
        n = int(a.shape[0])
        if rows is None:
            rows = n
        elif n != rows:
            return None  # the server will say what is wrong
    return rows or None  # 0 rows: nothing to look up


class CachedCall:
    """One call through a :class:`RowCache`: send ``req`` while it is not ``None``, ``feed``
    each answer's outputs; then ``result`` holds the outputs of every row, in order."""

    __slots__ = (
        "_cache",
        "_found",
        "_full",
        "_keys",
        "_missing",
        "_send",
        "_slot",
        "req",
        "result",
    )

    def __init__(
        self,
        cache: RowCache,
        keys: list[bytes],
        found: list[_Entry | None],
        missing: list[int],
        send_rows: list[int],
        slot: list[int],
        full: Any,
    ) -> None:
        self._cache = cache
        self._keys = keys
        self._found = found
        self._missing = missing
        self._send = send_rows
        self._slot = slot
        self._full = full
        self.req: PreparedRequest | None = None
        self.result: list[np.ndarray] = []

    def finish_hits(self) -> None:
        """Every row was cached: stack the stored rows."""
        entries: list[_Entry] = self._found  # type: ignore[assignment]  # no None left
        sigs = set(map(attrgetter("sig"), entries))
        if len(sigs) != 1:
            self._fallback()
            return
        sig = self._cache._signature_of(sigs.pop())
        self.result = [_stack(entries, j, sig) for j in range(len(sig))]

    def _fallback(self) -> None:
        """The rows cannot be put together: send the whole call, keep nothing."""
        self._cache._bypass()
        self._found = []
        self._missing = []
        self._send = []
        self.req = self._full()

    def feed(self, outputs: list[np.ndarray]) -> None:
        """Take the answer to ``req``."""
        self.req = None
        n = len(self._send)
        if not self._send:  # the answer to the fallback: as the server gave it
            self.result = outputs
            return
        if any(o.ndim == 0 or o.shape[0] != n for o in outputs):
            # Outputs without one row per input row: not a row-wise model.
            if n == len(self._keys):  # every row was sent, once: the answer stands
                self._cache._bypass()
                self.result = outputs
                return
            self._fallback()
            return
        sig = _signature(outputs)
        sid = self._cache._sig_id(sig)
        hits = [(i, e) for i, e in enumerate(self._found) if e is not None]
        if any(e.sig != sid for _, e in hits):
            self._fallback()
            return
        per_output = [_split_rows(o, n) for o in outputs]
        sizes = [_ENTRY_OVERHEAD + sum(t) for t in zip(*(sz for _, sz in per_output), strict=True)]
        rows = list(zip(*(r for r, _ in per_output), strict=True)) if outputs else [()] * n
        new = [_Entry(r, sid, size) for r, size in zip(rows, sizes, strict=True)]
        self._cache._store([self._keys[i] for i in self._send], new)
        total = len(self._keys)
        if not hits and n == total:
            self.result = outputs  # all rows sent, none repeated: the answer is the result
            return
        miss_idx = np.asarray(self._missing, dtype=np.intp)
        slot_idx = np.asarray(self._slot, dtype=np.intp)
        hit_idx = np.asarray([i for i, _ in hits], dtype=np.intp)
        hit_entries = [e for _, e in hits]
        result = []
        for j, o in enumerate(outputs):
            shape = (total, *o.shape[1:])
            out = np.empty(shape, dtype=object) if o.dtype.kind == "O" else np.empty(shape, o.dtype)
            out[miss_idx] = o[slot_idx]
            if hits:
                out[hit_idx] = _stack(hit_entries, j, sig)
            result.append(out)
        self.result = result


#: What a client's prepare step gives: a plain request, or a call through the cache.
InferCall = PreparedRequest | CachedCall
