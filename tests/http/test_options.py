"""Client options are validated once, when a client is configured, with one typed error.

Every bad option raises :class:`graphpipe_client.InvalidOption` (a ``ValueError`` too)
whose message names the option; nothing of urllib3's or httpx's leaks, and a call with a
bad per-call timeout fails before anything is sent.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import graphpipe_client as gp
from graphpipe_client.testing import Faults, serve

KINDS = ["sync", "async"]

BAD_SECONDS = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, "5", True, [1], 1j]


def _client(kind: str, url: str = "http://127.0.0.1:9", **kwargs: Any) -> Any:
    return gp.Client(url, **kwargs) if kind == "sync" else gp.AsyncClient(url, **kwargs)


@pytest.mark.parametrize("field", ["connect", "read", "total"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_a_bad_timeout_field_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(gp.InvalidOption, match=rf"^Timeout\.{field} must be a positive number"):
        gp.Timeout(**{field: value})


@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_a_bad_number_timeout_is_refused(value: Any) -> None:
    with pytest.raises(gp.InvalidOption, match=r"timeout"):
        gp.Client("http://127.0.0.1:9", timeout=value)


@pytest.mark.parametrize(
    "value",
    [(0, 5), (5, 0), (-1, 5), (math.nan, 5), (5, math.inf), ("1", 5), (1, 2, 3), ()],
    ids=repr,
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_timeout_tuple_is_refused_by_both_clients(kind: str, value: Any) -> None:
    with pytest.raises(gp.InvalidOption) as info:
        _client(kind, timeout=value)
    assert isinstance(info.value, ValueError)
    assert "Timeout." in str(info.value) or "tuple" in str(info.value)


def _timeout_of(value: Any) -> gp.Timeout:
    with gp.Client("http://h", timeout=value) as client:
        return client.config.timeout


def test_good_timeouts_are_normalised() -> None:
    assert gp.Timeout(1, 2, 3) == gp.Timeout(connect=1.0, read=2.0, total=3.0)
    assert _timeout_of(7) == gp.Timeout(7.0, 7.0, None)
    assert _timeout_of((1, None)) == gp.Timeout(1.0, None)
    assert _timeout_of(None) == gp.Timeout(None, None, None)


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_per_call_timeout_fails_before_sending(kind: str) -> None:
    # remote.execute(timeout=(0, 5)) used to succeed on a pooled connection.
    with serve(lambda x: x) as server:
        if kind == "sync":
            with gp.Client(server.url) as client:
                client.execute(np.ones(2))
                with pytest.raises(gp.InvalidOption, match=r"Timeout\.connect"):
                    client.execute(np.ones(2), timeout=(0, 5))
        else:
            import asyncio

            async def main() -> None:
                async with gp.AsyncClient(server.url) as client:
                    await client.execute(np.ones(2))
                    with pytest.raises(gp.InvalidOption, match=r"Timeout\.connect"):
                        await client.execute(np.ones(2), timeout=(0, 5))

            asyncio.run(main())
        with pytest.raises(gp.InvalidOption, match=r"Timeout\.connect"):
            gp.remote.execute(server.url, np.ones(2), timeout=(0, 5))
        assert server.requests_served == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h",
        "h:9000",
        "http://",
        "http://h:99999",
        "http://h:port",
        "http://h /x",
        "http://h\x00",
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_urls_are_invalid_url(kind: str, url: str) -> None:
    with pytest.raises(gp.InvalidURL) as info:
        _client(kind, url)
    assert isinstance(info.value, ValueError) and isinstance(info.value, gp.GraphPipeError)


def test_a_bad_url_never_shows_its_credentials() -> None:
    with pytest.raises(gp.InvalidURL) as info:
        gp.Client("http://alice:s3cr3t@h:notaport/")
    assert "s3cr3t" not in str(info.value) and "alice" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": "4"}, "pool_size"),
        ({"pool_size": True}, "pool_size"),
        ({"max_response_bytes": -1}, "max_response_bytes"),
        ({"max_response_bytes": 1.5}, "max_response_bytes"),
        ({"idempotent": "yes"}, "idempotent"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_other_bad_options_name_the_option(kind: str, kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(gp.InvalidOption, match=name):
        _client(kind, **kwargs)


SECRET = "Zq9-s3cr3t"


@pytest.mark.parametrize(
    ("headers", "what"),
    [
        ({f"Authorization: Bearer {SECRET}": "x"}, "HTTP token"),
        ({f" {SECRET}": "x"}, "HTTP token"),
        ({"": SECRET}, "empty"),
        ({"Authorization": f"Bearer {SECRET}\r\nX: y"}, "line break"),
        ({"Authorization": f"Bearer {SECRET}\x00"}, "NUL"),
        ({"Authorization": f"Bearer {SECRET}\x1b"}, "control character"),
        ({"Authorization": f"Bearer {SECRET}é"}, "outside ASCII"),
        ({"Authorization": f"Bearer {SECRET}\u20ac"}, "outside ASCII"),
        ({"Authorization": SECRET.encode()}, "must be a str"),
        ({b"Authorization": SECRET}, "must be str"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_headers_are_one_typed_error_without_the_value(
    kind: str, headers: dict[Any, Any], what: str
) -> None:
    with pytest.raises(gp.InvalidHeader, match=what) as info:
        _client(kind, headers=headers)
    assert isinstance(info.value, ValueError)
    text = str(info.value) + repr(info.value)
    assert "s3cr3t" not in text


def test_good_headers_pass_as_they_are() -> None:
    headers = {"Authorization": "Bearer abc.def", "X-Trace": "a\tb", "x-lower": ""}
    with gp.Client("http://h", headers=headers) as client:
        assert dict(client.config.headers) == headers


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"verify": "/nonexistent/ca.pem"}, "cannot load that CA bundle"),
        ({"verify": 1}, "verify must be"),
        ({"cert": "/nonexistent/client.pem"}, "cannot load the client certificate"),
        ({"cert": ("/nonexistent/c.pem", "/nonexistent/k.pem")}, "cannot load the client"),
        ({"cert": ("a", "b", "c")}, "cert must be"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_bad_tls_files_are_invalid_options(kind: str, kwargs: dict[str, Any], what: str) -> None:
    with pytest.raises(gp.InvalidOption, match=what):
        _client(kind, "https://127.0.0.1:9", **kwargs)


def test_a_file_that_is_not_a_certificate_is_an_invalid_option(tmp_path: Any) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("hello")
    with pytest.raises(gp.InvalidOption, match="cannot load"):
        gp.Client("https://127.0.0.1:9", verify=str(bad))
    with pytest.raises(gp.InvalidOption, match="cannot load"):
        gp.Client("https://127.0.0.1:9", cert=str(bad))


# --------------------------------------------------------------------------
# retries: every bad value is an InvalidOption at construction, never a bare
# ValueError/TypeError (nor a ValueError from time.sleep at the first retry)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, r"^retries must be >= 0 \(0 never retries\), got -1$"),
        (1.5, r"^retries must be a whole number of retries .* not float 1\.5$"),
        ("3", r"^retries must be a whole number of retries .* not str '3'$"),
        (True, r"^retries must be a whole number of retries .* not bool True$"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_retries_is_an_invalid_option(kind: str, value: Any, message: str) -> None:
    with pytest.raises(gp.InvalidOption, match=message):
        _client(kind, retries=value)


BAD_PAUSES = [-1, -0.001, math.nan, math.inf, "1", True, None]


@pytest.mark.parametrize("field", ["backoff", "backoff_max", "retry_after_max"])
@pytest.mark.parametrize("value", BAD_PAUSES, ids=repr)
def test_a_bad_retry_pause_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(
        gp.InvalidOption, match=rf"^RetryPolicy\.{field} must be a .*number of seconds >= 0"
    ):
        gp.RetryPolicy(**{field: value})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, r"^RetryPolicy\.retries must be >= 0"),
        ({"retries": 2.0}, r"^RetryPolicy\.retries must be a whole number"),
        ({"jitter": "no"}, r"^RetryPolicy\.jitter must be True or False, not str"),
        ({"statuses": 503}, r"^RetryPolicy\.statuses must be a set of HTTP statuses"),
        ({"statuses": "503"}, r"^RetryPolicy\.statuses must be a set of HTTP statuses"),
        ({"statuses": {200}}, r"^RetryPolicy\.statuses holds 200: .* from 400 to 599"),
        ({"statuses": {"503"}}, r"^RetryPolicy\.statuses holds '503'"),
    ],
    ids=repr,
)
def test_other_bad_retry_policy_fields(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(gp.InvalidOption, match=message):
        gp.RetryPolicy(**kwargs)


def test_good_retry_policies_are_normalised() -> None:
    policy = gp.RetryPolicy(
        retries=0, backoff=0, backoff_max=1, retry_after_max=0, statuses=[502, 503]
    )
    assert policy == gp.RetryPolicy(
        retries=0, backoff=0.0, backoff_max=1.0, retry_after_max=0.0, statuses=frozenset({502, 503})
    )
    assert isinstance(policy.backoff, float) and isinstance(policy.statuses, frozenset)


def test_a_zero_backoff_retries_at_once() -> None:
    # backoff=0 is a valid policy: the retries happen, without a pause.
    with serve(lambda x: x, faults=Faults(status=503, times=1)) as server:
        with gp.Client(server.url, retries=gp.RetryPolicy(retries=1, backoff=0)) as client:
            np.testing.assert_array_equal(client.execute(np.ones(2, np.float32)), np.ones(2))
        assert server.requests_served == 2


# --------------------------------------------------------------------------
# a wrong call names the client (not the private ClientBase) and what it takes


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_keyword_names_the_client_and_its_options(kind: str) -> None:
    name = "Client" if kind == "sync" else "AsyncClient"
    with pytest.raises(TypeError) as info:
        _client(kind, foo=1)
    message = str(info.value)
    assert message.startswith(f"{name}() got an unexpected keyword argument 'foo' (it takes: url, ")
    assert "ClientBase" not in message and "retries" in message
    with pytest.raises(TypeError, match=rf"^{name}\(\) got .* 'timout'; did you mean timeout=\?"):
        _client(kind, timout=3)


@pytest.mark.parametrize("kind", KINDS)
def test_options_given_by_position_are_refused_with_what_to_do(kind: str) -> None:
    cls = gp.Client if kind == "sync" else gp.AsyncClient
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\) takes the model URL .* got 2: give"):
        cls("http://127.0.0.1:9", 5)  # type: ignore[misc]
