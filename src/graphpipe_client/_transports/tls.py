"""TLS for the transports: the client's ``ssl.SSLContext``, and the warning for unverified HTTPS.

Shared by the three transports (sync, the asyncio fast path, httpx), so that
they load certificates alike and warn alike.
"""

from __future__ import annotations

import os
import ssl
import warnings

from urllib3.exceptions import InsecureRequestWarning

from .._exceptions import InvalidOption

__all__ = ["make_ssl_context", "warn_unverified"]


def make_ssl_context(
    verify: bool | str | ssl.SSLContext, cert: str | tuple[str, str] | None
) -> ssl.SSLContext:
    """The client-side TLS context for ``verify`` (True, a CA bundle path, or a context) and ``cert``.

    Raises:
        InvalidOption: ``verify`` or ``cert`` of the wrong type, or a file
            that cannot be read or is not a certificate (or key) in PEM.
    """
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif verify is True:
        ctx = ssl.create_default_context()
    elif isinstance(verify, (str, os.PathLike)):
        try:
            ctx = ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidOption(
                f"verify={str(verify)!r}: cannot load that CA bundle: {exc}"
            ) from exc
    else:
        raise InvalidOption(
            "verify must be True, False, a CA bundle path or an ssl.SSLContext, "
            f"not {type(verify).__name__}"
        )
    if cert is not None:
        if isinstance(cert, tuple) and len(cert) == 2:
            files: tuple[str, ...] = (cert[0], cert[1])
        elif isinstance(cert, (str, os.PathLike)):
            files = (cert,)
        else:
            raise InvalidOption(
                "cert must be a PEM path holding the certificate and its key, or a "
                f"(certificate, key) pair of paths, not {type(cert).__name__}"
            )
        try:
            ctx.load_cert_chain(*files)
        except (OSError, ssl.SSLError) as exc:
            shown = ", ".join(repr(str(f)) for f in files)
            raise InvalidOption(f"cert={shown}: cannot load the client certificate: {exc}") from exc
    return ctx


def warn_unverified(where: str) -> None:
    """Warn, as urllib3 does, that a new HTTPS connection to ``where`` was not verified.

    Every transport calls it once per new TLS connection whose certificate
    was not checked (``verify=False``, or a context with ``CERT_NONE``), so
    the sync client, the asyncio path and the httpx path warn alike.
    """
    warnings.warn(
        f"Unverified HTTPS request to {where}: certificate verification is off "
        "(verify=False). See https://urllib3.readthedocs.io/en/latest/advanced-usage.html#tls-warnings",
        InsecureRequestWarning,
        stacklevel=3,
    )
