"""Which proxy a request goes through, sans I/O: the ``proxy=`` option and the environment.

Both clients choose with :class:`ProxyChooser`, so that they agree on every
URL:

- ``proxy="http://user:pass@proxy:3128"`` sends every request through that
  proxy (the environment is not read);
- otherwise, with ``trust_env=True`` (the default), the proxy variables are
  honoured as requests and httpx honour them: ``HTTP_PROXY`` for ``http://``
  URLs, ``HTTPS_PROXY`` for ``https://`` URLs, ``ALL_PROXY`` for both, in
  either case (lower case wins), and ``NO_PROXY`` (host names, domain
  suffixes such as ``.example.com``, ``host:port``, or ``*``) for the hosts to
  reach directly. The variables are read once, when the client is created.
  The parsing is the standard library's (``urllib.request.getproxies_environment``
  and ``proxy_bypass_environment``), not a copy of it.

An ``http://`` URL goes through an HTTP proxy as an absolute-form request; an
``https://`` URL through a ``CONNECT`` tunnel, with TLS to the model server
end to end.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from .._exceptions import InvalidOption

__all__ = ["Proxy", "ProxyChooser", "basic_authorization", "parse_proxy"]

_SCHEMES: Final = ("http", "https")


@dataclass(frozen=True, slots=True)
class Proxy:
    """A parsed proxy URL; credentials only in :attr:`authorization` (never in a repr)."""

    url: str  # scheme://host:port, without user-info
    redacted: str
    scheme: str
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)
    url_with_credentials: str = field(default="", repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Headers for the proxy: ``Proxy-Authorization`` when the URL had user-info."""
        return {"Proxy-Authorization": self.authorization} if self.authorization else {}


def parse_proxy(url: str, *, origin: str = "proxy") -> Proxy:
    """Parse a proxy URL such as ``http://user:pass@proxy:3128``.

    ``origin`` names where it came from in error messages (the option or a
    variable). A URL without a scheme is taken as ``http://``, as curl and
    requests do.

    Raises:
        InvalidOption: not an ``http://`` or ``https://`` proxy with a host.
    """
    if not isinstance(url, str):
        raise InvalidOption(f"{origin} must be a URL str, not {type(url).__name__}")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    shown = _redact(text)
    if scheme not in _SCHEMES:
        raise InvalidOption(
            f"{origin} {shown!r}: only http:// and https:// proxies are supported (not {scheme}://)"
        )
    try:
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise InvalidOption(f"{origin} {shown!r} is not a valid URL: {exc}") from None
    if not host:
        raise InvalidOption(f"{origin} {shown!r} names no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    netloc = f"[{host}]" if ":" in host else host
    clean = f"{scheme}://{netloc}:{port}"
    authorization = basic_authorization(parts.username, parts.password)
    redacted = f"{scheme}://{'***@' if authorization else ''}{netloc}:{port}"
    return Proxy(clean, redacted, scheme, host, port, authorization, text)


def basic_authorization(username: str | None, password: str | None) -> str | None:
    """The HTTP Basic credentials of a URL's user-info (percent-decoded), or ``None``.

    For the model URL's ``Authorization`` and the proxy URL's ``Proxy-Authorization``.
    """
    if username is None and password is None:
        return None
    user = unquote(username or "")
    token = base64.b64encode(f"{user}:{unquote(password or '')}".encode()).decode("ascii")
    return f"Basic {token}"


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc = rest.split("/", 1)[0]
    if sep and "@" in netloc:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class ProxyChooser:
    """Chooses the proxy of each request, from ``proxy=`` or from the environment.

    Example:
        >>> chooser = ProxyChooser(proxy="http://proxy:3128", trust_env=False)
        >>> chooser.choose("https", "models.internal", 443).redacted
        'http://proxy:3128'
        >>> ProxyChooser(proxy=None, trust_env=False).choose("http", "h", 80) is None
        True
    """

    __slots__ = ("_cache", "_env", "_fixed")

    def __init__(self, proxy: str | None, trust_env: bool) -> None:
        self._fixed = parse_proxy(proxy) if proxy is not None else None
        self._env: dict[str, str] = {}
        if self._fixed is None and trust_env:
            import urllib.request  # (with http.client and email: when a client is made)

            self._env = urllib.request.getproxies_environment()
            for key in ("http", "https", "all"):
                if self._env.get(key):  # check now: a bad variable fails at construction
                    parse_proxy(self._env[key], origin=f"the {key.upper()}_PROXY variable")
        self._cache: dict[tuple[str, str, int], Proxy | None] = {}

    @property
    def enabled(self) -> bool:
        """Whether any request may go through a proxy."""
        return self._fixed is not None or any(self._env.get(k) for k in ("http", "https", "all"))

    def choose(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy for a request to ``scheme://host:port``, or ``None`` to go direct."""
        if self._fixed is not None:
            return self._fixed
        if not self._env:
            return None
        key = (scheme, host, port)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = None
        url = self._env.get(scheme) or self._env.get("all")
        import urllib.request

        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if url and not bypass(f"{host}:{port}", self._env):
            found = parse_proxy(url, origin=f"the {scheme.upper()}_PROXY variable")
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = found
        return found
