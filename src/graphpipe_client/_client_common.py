"""The constructor, argument handling and metadata cache shared by ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import abc
import functools
import inspect
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, Self, TypeAlias, TypeVar, cast

import numpy as np

from ._exceptions import DecodeError, GraphPipeError, HTTPStatusError, InvalidOption
from ._http.config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    UNSET,
    ClientConfig,
    RetryPolicy,
    Timeout,
    TimeoutTypes,
    Unset,
)
from ._http.exchange import (
    CONTROL_PATHS,
    PreparedRequest,
    RawResponse,
    interpret_infer,
    interpret_metadata,
    interpret_readiness,
    parse_endpoint,
    prepare_control,
    prepare_infer,
    prepare_metadata,
)
from ._http.keepalive import DEFAULT_KEEPALIVE_EXPIRY
from ._jobs.coalesce import Batch, Coalesce, Member, member_of
from ._jobs.options import check_run_options
from ._observe.active import observed
from ._replicas.options import (
    EJECT_BACKOFF,
    EJECT_BACKOFF_MAX,
    check_backoff,
    check_balance,
    check_hedge,
)
from ._wire.decode import plain_outputs
from ._wire.encode import infer_request_layout
from ._wire.messages import ModelMetadata

# What most clients never use loads on first use, not with the package (``import
# graphpipe_client`` stays light): ssl with the transport, the row cache and hedging
# with a client that has them, replicas, batched plans and progress with their calls.
if TYPE_CHECKING:
    import ssl

    from ._http.small_calls import SmallCall
    from ._jobs.plan import RowPlan
    from ._jobs.progress import ProgressArg, Reporter
    from ._jobs.row_cache import InferCall, RowCache
    from ._replicas.hedging import Hedge, HedgeStats
    from ._replicas.routing import ReplicaSet, ReplicaStats

__all__ = ["ClientBase", "URLArg", "named_inputs", "outputs_by_name"]

#: A model URL, or a list (tuple) of the URLs of its replicas.
URLArg: TypeAlias = str | list[str] | tuple[str, ...]

#: Kinds of small call a client remembers (then forgets them all at once).
MAX_SMALL_CALLS = 64


def named_inputs(inputs: Mapping[Any, Any]) -> tuple[list[str | None], list[Any]]:
    """The names and the arrays of a ``{name: array}`` mapping of inputs, in its order."""
    names: list[str | None] = []
    for name in inputs:
        if not isinstance(name, str) or not name:
            raise InvalidOption(
                f"the inputs mapping must have non-empty str keys (input names), found {name!r}"
            )
        names.append(name)
    return names, list(inputs.values())


def outputs_by_name(
    requested: Sequence[str] | None, meta: ModelMetadata | None, outputs: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """``execute_named``'s result: each output under its name.

    The names are the ``output_names`` asked for or, when none were, the
    model's output names from its metadata (the default outputs, in order).
    """
    if requested is not None:
        names = list(requested)
    else:
        names = list(meta.output_names) if meta is not None else []
        if len(names) != len(outputs) or len(set(names)) != len(names):
            raise DecodeError(
                f"the model returned {len(outputs)} output(s), and its metadata names "
                f"{len(names)} output(s) {names[:8]!r}: cannot tell which is which; pass "
                "output_names=[...] to choose the outputs and their order"
            )
    if len(names) != len(outputs):
        raise DecodeError(
            f"asked for {len(names)} output(s) by name but the server returned {len(outputs)}"
        )
    return dict(zip(names, outputs, strict=True))


TransportT = TypeVar("TransportT")


@functools.cache
def _constructor_parameters(cls: type) -> tuple[int, tuple[str, ...]]:
    """How many positional arguments a client's constructor takes, and its keyword names."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return positional, names


def _check_constructor_call(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The ``TypeError`` of a call to ``cls(...)`` that its ``__init__`` cannot take, named by ``cls``.

    Raises:
        TypeError: an unknown keyword (with the closest known one, and the list), or
            too many positional arguments.
    """
    positional, names = _constructor_parameters(cls)
    call = f"{cls.__name__}()"
    for key in kwargs:
        if key not in names:
            import difflib

            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]}=?" if close else ""
            raise TypeError(
                f"{call} got an unexpected keyword argument {key!r}{hint} "
                f"(it takes: {', '.join(names)})"
            )
    if len(args) > positional:
        raise TypeError(
            f"{call} takes the model URL (or a list of replica URLs) as its only positional "
            f"argument, and got {len(args)}: give the options by name, e.g. "
            f"{cls.__name__}(url, timeout=10)"
        )


class ClientBase(abc.ABC, Generic[TransportT]):
    """State and argument handling common to the sync and async clients."""

    #: How to close this kind of client, for the ``ResourceWarning`` of an unclosed one.
    _close_hint = "call close() or use 'with'"

    #: False for the module-level clients of ``remote`` and ``aio``, which
    #: live as long as the process (see :meth:`_mark_shared`).
    _warn_unclosed = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Python's own TypeError for a wrong call would name ``ClientBase.__init__``, a
        # private class: name the client, and say what it takes.
        _check_constructor_call(cls, args, kwargs)
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # inspect.signature (help(), IDEs) would show __new__'s (*args, **kwargs): show
        # the constructor's parameters, as without __new__.
        init = inspect.signature(cls.__init__)
        cls.__signature__ = init.replace(parameters=list(init.parameters.values())[1:])  # type: ignore[attr-defined]

    def __init__(
        self,
        url: URLArg | None = None,
        *,
        timeout: TimeoutTypes = Timeout(),
        retries: int | RetryPolicy | None = RetryPolicy(),
        headers: Mapping[str, str] | None = None,
        verify: bool | str | ssl.SSLContext = True,
        cert: str | tuple[str, str] | None = None,
        max_response_bytes: int | None = DEFAULT_MAX_RESPONSE_BYTES,
        pool_size: int = 10,
        idempotent: bool = False,
        proxy: str | None = None,
        trust_env: bool = True,
        cache: RowCache | None = None,
        keepalive_expiry: float | None = DEFAULT_KEEPALIVE_EXPIRY,
        coalesce: Coalesce | None = None,
        eject_backoff: float | tuple[float, float] = (EJECT_BACKOFF, EJECT_BACKOFF_MAX),
        hedge: Hedge | None = None,
        balance: str = "latency",
    ) -> None:
        from ._jobs.row_cache import RowCache  # with the first client, not the package

        if cache is not None and not isinstance(cache, RowCache):
            raise InvalidOption(f"cache must be a RowCache or None, not {type(cache).__name__}")
        if coalesce is not None and not isinstance(coalesce, Coalesce):
            raise InvalidOption(
                f"coalesce must be a Coalesce(max_rows=..., max_wait=...) or None, "
                f"not {type(coalesce).__name__}"
            )
        self._row_cache = cache
        self._eject_backoff = check_backoff(eject_backoff)
        bound = None if url is None else len(url) if isinstance(url, (list, tuple)) else 1
        self._hedge = check_hedge(hedge, idempotent, bound)
        self._balance = check_balance(balance)
        # Replica sets by key: the client's own (a list given as url) and per-call lists.
        self._replica_sets: dict[str, ReplicaSet] = {}
        self._sets_lock = threading.Lock()
        self._url: str | None = None if url is None else self._key(url)  # fail early on a bad URL
        self._config = ClientConfig.build(
            timeout=timeout,
            retries=retries,
            headers=headers,
            verify=verify,
            cert=cert,
            max_response_bytes=max_response_bytes,
            pool_size=pool_size,
            idempotent=idempotent,
            proxy=proxy,
            trust_env=trust_env,
            keepalive_expiry=keepalive_expiry,
        )
        self._metadata_cache: dict[str, ModelMetadata] = {}
        # URLs whose server has no /control routes: probed with a metadata request.
        self._no_control: set[str] = set()
        self._cache_lock = threading.Lock()
        self._closed = False
        self._transport: TransportT = self._create_transport()
        self._coalescer: Any = None if coalesce is None else self._create_coalescer(coalesce)
        # Repeated small calls (``_http/small_calls.py``), by inputs, names and config: for a
        # client bound to one URL with nothing between a call and its one request (no
        # replicas, row cache, coalescer or hedge) and no deadline; None: every call is general.
        self._small: dict[tuple[Any, ...], SmallCall | None] | None = (
            {}
            if self._url is not None
            and self._url not in self._replica_sets
            and cache is None
            and coalesce is None
            and self._hedge is None
            and self._config.timeout.total is None
            else None
        )

    @abc.abstractmethod
    def _create_transport(self) -> TransportT:
        """Each client supplies its transport (urllib3 or httpx)."""

    @abc.abstractmethod
    def _create_coalescer(self, options: Coalesce) -> Any:
        """Each client supplies its coalescing driver (threads or tasks, ``_jobs/coalesce_*.py``)."""

    @property
    def coalesce(self) -> Coalesce | None:
        """The :class:`Coalesce` options of this client, or ``None`` (calls are not merged)."""
        return None if self._coalescer is None else self._coalescer.options

    def __del__(self) -> None:
        # As files and sockets do: an unclosed client is a leak of connections.
        # (A client whose constructor failed has no transport: nothing to say.)
        state = self.__dict__
        if self._warn_unclosed and "_transport" in state and not state.get("_closed", True):
            warnings.warn(
                f"unclosed {self!r}: {self._close_hint} to release its connections",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )

    def __reduce__(self) -> Any:
        # Sockets, locks and pools cannot travel to another process; say what to do instead
        # (pickle's own message would be about a lock).
        raise TypeError(
            f"a {type(self).__name__} holds open connections and cannot be pickled; in another "
            "process, make one there from its URL and options, or use "
            "graphpipe_client.dask.worker_client(url, ...) for one shared client per process"
        )

    def _mark_shared(self) -> None:
        """Exempt this client from the unclosed warning: a process-wide one (``remote``, ``aio``).

        Such a client lives as long as the process, and after ``fork`` the
        child drops its copy unclosed, on purpose.
        """
        self._warn_unclosed = False

    @property
    def url(self) -> str | None:
        """The model URL this client is bound to, or ``None`` (also when bound to replicas:
        see :attr:`urls`)."""
        return None if self._url in self._replica_sets else self._url

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs this client is bound to: its replicas, or its one URL; ``()`` for none."""
        rs = self._replica_sets.get(self._url or "")
        return rs.urls if rs is not None else (() if self._url is None else (self._url,))

    @property
    def replicas(self) -> list[ReplicaStats]:
        """Per-replica statistics of the replicas this client is bound to (``[]`` for one URL).

        Each :class:`ReplicaStats` is a snapshot: requests in flight, sent,
        failed, ejections, whether the replica is in rotation. Lists given as
        ``url=`` to calls (and to :mod:`~graphpipe_client.remote`) have theirs
        in :meth:`replica_stats`.

        Example:
            >>> import numpy as np
            >>> from graphpipe_client import Client
            >>> from graphpipe_client.testing import serve
            >>> with serve(lambda x: x + 1) as a, serve(lambda x: x + 1) as b:
            ...     with Client([a.url, b.url], balance="in-flight") as client:
            ...         for _ in range(4):  # one at a time: a tie each time, round-robin
            ...             y = client.execute(np.zeros(2))
            ...         [(s.sent, s.ready) for s in client.replicas]
            [(2, True), (2, True)]
        """
        rs = self._replica_sets.get(self._url or "")
        return [] if rs is None else rs.stats()

    def replica_stats(self, urls: list[str] | tuple[str, ...]) -> list[ReplicaStats]:
        """The statistics of the replica list ``urls`` as used in calls (``url=[...]``)."""
        return self._replica_set(urls).stats()

    def hedge_stats(self, urls: list[str] | tuple[str, ...] | None = None) -> HedgeStats | None:
        """The hedging counters of the replicas this client is bound to (or of the list
        ``urls`` as used in calls): calls, hedges sent, hedges that answered first.

        ``None`` when those calls are not hedged (no ``hedge=``, or one replica).
        """
        rs = self._replica_sets.get(self._url or "") if urls is None else self._replica_set(urls)
        return None if rs is None or rs.hedger is None else rs.hedger.stats()

    def _key(self, url: URLArg) -> str:
        """The key of a model URL (checked) or of a replica list (its set made on first use)."""
        if isinstance(url, (list, tuple)):
            return self._replica_set(url).key
        parse_endpoint(url)
        return url

    def _replica_set(self, urls: list[str] | tuple[str, ...]) -> ReplicaSet:
        from ._replicas.routing import ReplicaSet

        key = ReplicaSet.key_of(urls)
        with self._sets_lock:
            rs = self._replica_sets.get(key)
            if rs is None:
                first, longest = self._eject_backoff
                rs = self._replica_sets[key] = ReplicaSet(
                    urls,
                    backoff=first,
                    backoff_max=longest,
                    hedge=self._hedge,
                    balance=self._balance,
                )
            return rs

    def _routed(self, key: str) -> tuple[str, ReplicaSet | None]:
        """The URL to prepare a request for (a set's first replica) and the set, if any."""
        rs = self._replica_sets.get(key)
        return (key, None) if rs is None else (rs.urls[0], rs)

    def _where(self, key: str) -> str:
        """A key for a message: the URL or the replicas' URLs, credentials hidden."""
        rs = self._replica_sets.get(key)
        return parse_endpoint(key).redacted if rs is None else rs.redacted()

    @property
    def config(self) -> ClientConfig:
        """The client's settings (timeouts, retries, TLS, limits)."""
        return self._config

    def __repr__(self) -> str:
        where = self._where(self._url) if self._url else None
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} url={where!r}{state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new one")

    def _resolve(self, url: URLArg | None) -> str:
        resolved = self._key(url) if url is not None else self._url
        if resolved is None:
            raise ValueError(
                f"no model URL: bind one with {type(self).__name__}('http://host:9000') "
                "or pass url=... to the call"
            )
        return resolved

    def _small_execute(
        self,
        inp: Any,
        input_name: str | None,
        output_name: str | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> SmallCall | None:
        """The :class:`SmallCall` an ``execute`` of ``inp`` takes, made by the first of its
        kind; ``None``: the general path (not a plain array, a per-call URL or timeout, a
        client the fast path does not serve, or a kind it cannot carry)."""
        small = self._small
        if (
            small is None
            or type(inp) is not np.ndarray
            or url is not None
            or timeout is not UNSET
            or self._closed
        ):
            return None
        try:
            key = (inp.dtype, inp.shape, input_name, output_name, config)
            return small[key]
        except KeyError:
            return self._small_call(
                key,
                [inp],
                None if input_name is None else [input_name],
                None if output_name is None else [output_name],
                config,
            )
        except TypeError:  # (an unhashable config: not a repeated call)
            return None

    def _small_named(
        self,
        inputs: Any,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> tuple[SmallCall, list[np.ndarray]] | None:
        """As :meth:`_small_execute`, for ``execute_named`` of a ``{name: array}`` mapping:
        the call and its arrays."""
        if (
            self._small is None
            or type(inputs) is not dict
            or url is not None
            or timeout is not UNSET
            or self._closed
        ):
            return None
        arrays = list(inputs.values())
        if not all(type(a) is np.ndarray for a in arrays):
            return None
        outs = None if output_names is None else tuple(output_names)
        try:
            key = ("named", tuple(inputs), *[(a.dtype, a.shape) for a in arrays], outs, config)
            call = self._small[key]
        except KeyError:
            names, _ = named_inputs(inputs)
            call = self._small_call(
                key, arrays, names, None if outs is None else list(outs), config
            )
        except TypeError:  # (an unhashable config: not a repeated call)
            return None
        return None if call is None else (call, arrays)

    @staticmethod
    def _small_views(arrays: tuple[np.ndarray, ...]) -> list[memoryview] | None:
        """The data of a small call's arrays, as flat bytes; ``None`` (the general path)
        while anything records calls, or for an array that is not C-contiguous."""
        if observed():
            return None  # debug logging, tracing or metrics: the general path records them
        try:
            return [memoryview(a).cast("B") for a in arrays]  # type: ignore[arg-type]
        except TypeError:
            return None  # not C-contiguous: the general path copies it

    @staticmethod
    def _small_outputs(call: SmallCall, buf: bytearray, start: int, stop: int) -> list[np.ndarray]:
        """The outputs of a fast-path answer ``buf[start:stop]`` (a plain 200 by its head)."""
        outputs = plain_outputs(buf, start, stop)
        if outputs is not None:
            return outputs
        return interpret_infer(call.req, RawResponse(200, "OK", None, memoryview(buf)[start:stop]))

    def _small_call(
        self,
        key: tuple[Any, ...],
        arrays: list[Any],
        input_names: list[str | None] | None,
        output_names: list[str] | None,
        config: str | bytes | None,
    ) -> SmallCall | None:
        """The :class:`SmallCall` of calls with ``key`` (their dtypes, shapes, names and
        config), made by the first; ``None`` when they take the general path.

        Raises:
            EncodeError: as the general path would for these inputs.
        """
        from ._http.small_calls import MAX_SMALL_BODY, SmallCall  # (with the first such call)

        small = self._small
        url = self._url
        assert small is not None and url is not None
        if not all(a.flags.c_contiguous for a in arrays):
            return None  # (this call's layout, not the kind's: the next call may take the path)
        layout = infer_request_layout(arrays, input_names, output_names, config)
        call = None
        if layout is not None and layout[1] <= MAX_SMALL_BODY:
            req = prepare_infer(
                self._config, url, arrays, input_names, output_names, config, self._config.timeout
            )
            call = SmallCall(req, *layout)
            cast(Any, self._transport).small_prefix(call)
            if call.prefix is None:
                call = None
        if len(small) >= MAX_SMALL_CALLS:
            small.clear()
        small[key] = call
        return call

    def _prepare_execute(
        self,
        inp: Any,
        input_name: str | None,
        output_name: str | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> InferCall | Member:
        self._check_open()
        if isinstance(inp, Mapping):
            if input_name is not None:
                raise InvalidOption(
                    "give the inputs either as a mapping {name: array} or with input_name=, "
                    "not both"
                )
            names, arrays = named_inputs(inp)
            return self._prepare_infer(
                self._resolve(url),
                arrays,
                names,
                None if output_name is None else [output_name],
                config,
                self._config.with_timeout(timeout),
            )
        return self._prepare_infer(
            self._resolve(url),
            [inp],
            None if input_name is None else [input_name],
            None if output_name is None else [output_name],
            config,
            self._config.with_timeout(timeout),
        )

    def _prepare_execute_multi(
        self,
        inputs: Sequence[Any],
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> InferCall | Member:
        self._check_open()
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(
                "execute_multi takes a list or tuple of inputs; for a single array use execute()"
            )
        return self._prepare_infer(
            self._resolve(url),
            inputs,
            input_names,
            output_names,
            config,
            self._config.with_timeout(timeout),
        )

    def _prepare_named(
        self,
        inputs: Any,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> InferCall | Member:
        self._check_open()
        if isinstance(inputs, Mapping):
            names: list[str | None] | None
            names, arrays = named_inputs(inputs)
        elif isinstance(inputs, (list, tuple)):
            names, arrays = None, list(inputs)
        else:
            names, arrays = None, [inputs]
        return self._prepare_infer(
            self._resolve(url),
            arrays,
            names,
            None if output_names is None else list(output_names),
            config,
            self._config.with_timeout(timeout),
        )

    def _prepare_infer(
        self,
        key: str,
        arrays: Sequence[Any],
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        timeout: Timeout,
        alone: bool = False,
    ) -> InferCall | Member:
        """The request for a URL or, routed by its set, for replicas; with a
        :class:`RowCache`, the cached call that sends only the missing rows (``_jobs/row_cache.py``);
        with :class:`Coalesce` (and not ``alone``), the call to merge with others (``_jobs/coalesce.py``)."""
        if self._coalescer is not None and not alone:
            m = member_of(
                key,
                arrays,
                input_names,
                output_names,
                config,
                timeout,
                self._coalescer.options.max_rows,
                self._where(key),
            )
            if m is not None:
                return m
        url, rs = self._routed(key)
        if self._row_cache is None:
            req = prepare_infer(
                self._config, url, arrays, input_names, output_names, config, timeout
            )
            return req if rs is None else replace(req, replicas=rs)
        return self._row_cache._call(
            self._config, url, arrays, input_names, output_names, config, timeout, replicas=rs
        )

    def _cached_metadata(
        self, url: URLArg | None, refresh: bool
    ) -> tuple[str, ModelMetadata | None]:
        self._check_open()
        key = self._resolve(url)
        if refresh:
            return key, None
        with self._cache_lock:
            return key, self._metadata_cache.get(key)

    def _prepare_metadata(self, key: str, timeout: TimeoutTypes | Unset) -> PreparedRequest:
        url, rs = self._routed(key)
        req = prepare_metadata(self._config, url, self._config.with_timeout(timeout))
        return req if rs is None else replace(req, replicas=rs)

    def _store_metadata(self, key: str, meta: ModelMetadata) -> ModelMetadata:
        with self._cache_lock:
            self._metadata_cache[key] = meta
        return meta

    def clear_metadata_cache(self) -> None:
        """Forget every cached :class:`ModelMetadata` (the next ``metadata()`` asks the server)."""
        with self._cache_lock:
            self._metadata_cache.clear()

    # -- batched execution ----------------------------------------------------

    def _plan_batched(
        self,
        inputs: Any,
        batch_size: int,
        concurrency: int,
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> tuple[RowPlan, Callable[[list[np.ndarray]], InferCall]]:
        """Check everything that can be checked before the first request; the plan and
        the function that makes one batch's request."""
        from ._jobs.plan import RowPlan

        self._check_open()
        check_run_options(batch_size, concurrency)
        names = input_names
        if isinstance(inputs, Mapping):  # {name: array}, as execute() takes it
            if input_names is not None:
                raise InvalidOption(
                    "give the inputs either as a mapping {name: array} or with input_names=, "
                    "not both"
                )
            names, arrays = named_inputs(inputs)
            plan = RowPlan(arrays, batch_size, names)
            plan.single = True  # shaped as execute()'s result for the same mapping
        else:
            plan = RowPlan(inputs, batch_size, names)
        plan.check_encodable(names, output_names, config)
        return plan, self._batch_request(names, output_names, config, url, timeout)

    def _batch_request(
        self,
        input_names: Sequence[str | None] | None,
        output_names: Sequence[str] | None,
        config: str | bytes | None,
        url: URLArg | None,
        timeout: TimeoutTypes | Unset,
    ) -> Callable[[list[np.ndarray]], InferCall]:
        self._check_open()
        key = self._resolve(url)
        t = self._config.with_timeout(timeout)

        def prepare(arrays: list[np.ndarray]) -> InferCall:
            return self._prepare_infer(  # type: ignore[return-value]  # alone: never a Member
                key, arrays, input_names, output_names, config, t, alone=True
            )

        return prepare

    def _batch_call(self, batch: Batch) -> InferCall:
        """The request of a coalesced batch (or of one member sent alone)."""
        m = batch.members[0]
        return self._prepare_infer(  # type: ignore[return-value]  # alone: never a Member
            m.key,
            batch.arrays(),
            m.input_names,
            m.output_names,
            m.config,
            batch.timeout(),
            alone=True,
        )

    @staticmethod
    def _reporter(progress: ProgressArg, total: int | None) -> Reporter:
        from ._jobs.progress import make_reporter

        return make_reporter(progress, total, "rows")

    @staticmethod
    def _stream_reporter(progress: ProgressArg) -> Callable[[], Reporter]:
        """For a stream: check ``progress`` now, draw the bar once iteration starts."""
        from ._jobs.progress import check_progress, make_reporter

        check_progress(progress)
        return lambda: make_reporter(progress, None, "rows")

    # -- readiness --------------------------------------------------------------

    def _probe_request(
        self, which: str, url: URLArg | None, timeout: TimeoutTypes | Unset
    ) -> tuple[str, PreparedRequest | None, PreparedRequest]:
        """``(key, control, metadata)``: the ``/control`` GET (``None`` when this server has
        no such route) and the metadata POST to fall back on."""
        self._check_open()
        key = self._resolve(url)
        t = self._config.with_timeout(timeout)
        control = (
            None
            if key in self._no_control
            else prepare_control(self._config, key, CONTROL_PATHS[which], t)
        )
        return key, control, prepare_metadata(self._config, key, t)

    def _control_answer(self, key: str, raw: RawResponse) -> tuple[bool, str] | None:
        """The probe's verdict and why; ``None`` when the route does not exist (fall back)."""
        verdict = interpret_readiness(raw)
        if verdict is None:
            self._no_control.add(key)
            return None
        return verdict, f"HTTP {raw.status} {raw.reason}".strip()

    @staticmethod
    def _metadata_answer(which: str, req: PreparedRequest, raw: RawResponse) -> tuple[bool, str]:
        if which == "alive":
            return True, f"HTTP {raw.status} to a metadata request"  # it answered: it is alive
        try:
            interpret_metadata(req, raw)
        except HTTPStatusError as exc:
            return False, str(exc)
        except GraphPipeError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, "the metadata request worked"
