"""One pooled :class:`Client` per configuration and per process, for Dask workers.

A Dask task carries a :class:`ClientSpec` (the URLs and the constructor's
options, plain data that pickles), never a client: a client holds sockets
and locks, which must not travel between processes. On the worker,
:func:`client_for` turns the spec into the process's one client for that
configuration, made on first use and shared by every task (and thread) of
the process afterwards. Such a client lives as long as the process: it is
closed at exit, and dropped (unclosed, as the parent still owns its sockets)
in a child after ``fork``.

No Dask here: a process pool or any other scheduler can use it the same way.
"""

from __future__ import annotations

import atexit
import os
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._client import Client
from .._client_common import ClientBase
from .._exceptions import InvalidOption
from .._http.config import ClientConfig
from .._http.exchange import parse_endpoint
from .._jobs.row_cache import RowCache

__all__ = ["ClientSpec", "client_for", "clients_created", "close_all"]

#: The constructor options a spec carries (all of ``Client``'s but ``url``).
_OPTIONS = frozenset(
    {
        "timeout",
        "retries",
        "headers",
        "verify",
        "cert",
        "max_response_bytes",
        "pool_size",
        "idempotent",
        "proxy",
        "trust_env",
        "cache",
        "keepalive_expiry",
    }
)


@dataclass(frozen=True)
class ClientSpec:
    """What a process needs to build a client: the URLs and the checked options.

    Hashable (it keys the per-process clients) and picklable. Its repr names
    the URLs with credentials hidden and the options without their values:
    header values and proxy URLs are often credentials.
    """

    urls: tuple[str, ...]
    config: ClientConfig
    headers: tuple[tuple[str, str], ...]
    #: ``(max_bytes, model_key)`` of a :class:`RowCache` each process makes for itself.
    cache: tuple[int, str | None] | None = None

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientSpec) and self._key() == other._key()

    def _key(self) -> tuple[Any, ...]:
        c = self.config
        return (
            self.urls,
            self.headers,
            self.cache,
            c.timeout,
            c.retry,
            c.verify,
            c.cert,
            c.max_response_bytes,
            c.pool_size,
            c.idempotent,
            c.proxy,
            c.trust_env,
            c.keepalive_expiry,
        )

    def __repr__(self) -> str:
        urls = [parse_endpoint(u).redacted for u in self.urls]
        return f"ClientSpec(urls={urls!r}, pool_size={self.config.pool_size})"

    @classmethod
    def of(
        cls, target: str | Sequence[str] | ClientBase[Any], options: Mapping[str, Any] | None
    ) -> ClientSpec:
        """The spec of a URL, a list of replica URLs, or an existing client's URLs and settings.

        Everything is checked here, on the driver, as the client's constructor
        checks it (``InvalidOption`` and its subclasses), so that a bad option
        fails before any task is scheduled.

        Raises:
            InvalidOption: an unknown option, options given with a client, a
                setting that cannot travel to another process (an
                ``ssl.SSLContext``), or no URL.
        """
        if isinstance(target, ClientBase):
            if options:
                raise InvalidOption(
                    "give either a client or client_options, not both: the client's own "
                    "settings are used"
                )
            if not target.urls:
                raise InvalidOption("the client is not bound to a URL: give it one, or pass URLs")
            cache = target._row_cache
            return cls._checked(
                target.urls,
                target.config,
                None if cache is None else (cache.max_bytes, cache.model_key),
            )
        if isinstance(target, str):
            urls: tuple[str, ...] = (target,)
        elif isinstance(target, Sequence) and target and all(isinstance(u, str) for u in target):
            urls = tuple(target)
        else:
            raise InvalidOption(
                "give the model's URL, a list of its replicas' URLs, or a Client, "
                f"not {type(target).__name__}"
            )
        opts = dict(options or {})
        unknown = sorted(set(opts) - _OPTIONS)
        if unknown:
            raise InvalidOption(
                f"unknown client option(s) {unknown}; Client takes {sorted(_OPTIONS)}"
            )
        cache_opt = opts.pop("cache", None)
        if cache_opt is not None and not isinstance(cache_opt, RowCache):
            raise InvalidOption(f"cache must be a RowCache or None, not {type(cache_opt).__name__}")
        for url in urls:
            parse_endpoint(url)  # InvalidURL now, not on a worker
        config = ClientConfig.build(**opts)
        settings = None if cache_opt is None else (cache_opt.max_bytes, cache_opt.model_key)
        return cls._checked(urls, config, settings)

    @classmethod
    def _checked(
        cls, urls: tuple[str, ...], config: ClientConfig, cache: tuple[int, str | None] | None
    ) -> ClientSpec:
        if isinstance(config.verify, ssl.SSLContext):
            raise InvalidOption(
                "an ssl.SSLContext cannot be sent to other processes: give verify= the path "
                "of a CA bundle (and cert= a client certificate's path) that exist on every "
                "worker"
            )
        return cls(urls, config, tuple(sorted(config.headers.items())), cache)

    def build(self) -> Client:
        """A new client with these settings (the caller owns it)."""
        c = self.config
        cache = None if self.cache is None else RowCache(self.cache[0], model_key=self.cache[1])
        return Client(
            self.urls[0] if len(self.urls) == 1 else list(self.urls),
            timeout=c.timeout,
            retries=c.retry,
            headers=dict(self.headers),
            verify=c.verify,
            cert=c.cert,
            max_response_bytes=c.max_response_bytes,
            pool_size=c.pool_size,
            idempotent=c.idempotent,
            proxy=c.proxy,
            trust_env=c.trust_env,
            cache=cache,
            keepalive_expiry=c.keepalive_expiry,
        )


_lock = threading.Lock()
_clients: dict[ClientSpec, Client] = {}
_created = 0


def client_for(spec: ClientSpec) -> Client:
    """This process's client for ``spec``: made on the first call, the same one afterwards.

    Thread-safe. The client is shared: do not close it (it is closed when
    the process exits).
    """
    client = _clients.get(spec)
    if client is not None:
        return client
    global _created
    with _lock:
        client = _clients.get(spec)
        if client is None:
            client = spec.build()
            client._mark_shared()
            _clients[spec] = client
            _created += 1
    return client


def clients_created() -> int:
    """How many clients this process has made with :func:`client_for` (for tests and checks)."""
    return _created


def close_all() -> None:
    """Close this process's clients and forget them (the next :func:`client_for` makes new ones)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _forget_after_fork() -> None:
    # The parent owns those sockets: drop the clients without closing them.
    global _lock, _created
    _lock = threading.Lock()
    _clients.clear()
    _created = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(close_all)
