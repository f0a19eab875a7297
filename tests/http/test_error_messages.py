"""An error body becomes one bounded line of the exception's message; the body stays whole.

The reduction itself (``_http/error_bodies.py``) is pure: property tests for the bounds
and concrete pages as real servers send them. Then both clients against the
bundled server, answering with those pages over a real socket.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import graphpipe_client as gp
from error_pages import NGINX_502
from graphpipe_client._http.error_bodies import (
    HTML_MARK,
    HTML_SUMMARY_CHARS,
    REASON_CHARS,
    TEXT_SUMMARY_CHARS,
    looks_like_html,
    one_line,
    status_message,
    summarize_body,
)
from graphpipe_client.testing import Faults, serve

# nginx's own 502 page, as it sends it (with its padding for browsers' "friendly" pages).

APACHE_404 = """<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html><head>
<title>404 Not Found</title>
</head><body>
<h1>Not Found</h1>
<p>The requested URL was not found on this server.</p>
<hr>
<address>Apache/2.4.58 (Ubuntu) Server at models.example.com Port 80</address>
</body></html>
"""

# No <title>: the first line of text with a letter in it, not the style,
# the script, the comment or the empty block before it.
NO_TITLE = """<!doctype html>
<!-- generated -->
<html><head><style>h1 { color: red } /* <p>not text</p> */</style>
<script>if (a < b) { document.write("<p>not text either</p>") }</script></head>
<body><div>  &nbsp; </div><div>---</div>
<h1>Model &amp; server <b>unavailable</b></h1><p>Try again later.</p></body></html>"""

# What the GraphPipe reference server (Go) sends for a model error:
# http.Error's text/plain body, one line ending with a newline.
GO_MODEL_ERROR = (
    "Error running model: input 'features' has shape [1 3] but the model expects "
    "[-1 4]; check the shapes in the model's metadata (graphpipe-tf, model 'iris', "
    "version 1, signature 'serving_default'): tensorflow: Input to reshape is a "
    "tensor with 3 values, but the requested shape requires a multiple of 4\n"
)

LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def assert_one_printable_line(text: str) -> None:
    assert "\n" not in text and "\r" not in text
    assert len(text.splitlines()) <= 1
    assert text.isprintable()
    assert text == text.strip()


# --------------------------------------------------------------------------
# The pure functions: properties


@given(st.text(), st.integers(min_value=3, max_value=2000))
@example("a\nb", 3)
@example("\x1b[31mred\x1b[0m\r\n" * 100, 50)
def test_one_line_is_one_printable_line_within_the_limit(text: str, limit: int) -> None:
    line = one_line(text, limit)
    assert_one_printable_line(line)
    assert len(line) <= limit


PRINTABLE = st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"])


@given(st.text(alphabet=PRINTABLE, max_size=500))
def test_one_line_keeps_every_word_of_a_short_text(text: str) -> None:
    # Nothing is lost but the layout: the words, in order.
    assert one_line(text, 1000).split() == text.split()


@given(st.text())
@example(NGINX_502)
@example("<html><title>" + "x" * 10_000)
@example("<!doctype html><body>" + "\u2028".join(["word"] * 1000))
def test_summary_is_one_bounded_line_for_any_body(body: str) -> None:
    summary = summarize_body(body)
    assert_one_printable_line(summary)
    assert len(summary) <= TEXT_SUMMARY_CHARS


@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["<html>", "<head>", "<title>", "</title>", "<body>", "<p>", "<br/>", "<script>",
                 "</script>", "<style>", "<!--", "-->", "<", ">", "&amp;", "&#10;", "\n"]
            ),
            st.text(max_size=30),
        ),
        max_size=60,
    )
)  # fmt: skip
def test_summary_of_an_html_page_is_bounded_and_marked(pieces: list[str]) -> None:
    page = "<!DOCTYPE html>" + "".join(pieces)
    assert looks_like_html(page)
    summary = summarize_body(page)
    assert_one_printable_line(summary)
    assert summary.endswith(HTML_MARK) or summary == "an HTML page without text"
    assert len(summary) <= HTML_SUMMARY_CHARS + len(HTML_MARK)


@given(
    st.text(alphabet=st.characters(exclude_characters="<&"), max_size=150).filter(
        lambda t: any(c.isalnum() for c in t)
    )
)
def test_title_is_the_summary_of_a_page(title: str) -> None:
    summary = summarize_body(f"<html><head><title>{title}</title></head><body>x</body></html>")
    assert summary == one_line(title, HTML_SUMMARY_CHARS) + HTML_MARK


@given(
    st.text(alphabet=PRINTABLE, max_size=TEXT_SUMMARY_CHARS).filter(
        lambda t: t.strip() and not looks_like_html(t)
    )
)
def test_a_plain_text_line_stays_whole(line: str) -> None:
    # The GraphPipe server's model error: one line, then a newline.
    assert summarize_body(line + "\n") == " ".join(line.split())


@given(st.text(), st.text(), st.integers(100, 999))
def test_status_message_is_one_line(reason: str, body: str, status: int) -> None:
    message = status_message(status, reason, "http://127.0.0.1:9000/", body)
    assert_one_printable_line(message)
    assert message.startswith(f"HTTP {status}")
    bound = len(f"HTTP {status}  from http://127.0.0.1:9000/: ") + REASON_CHARS
    assert len(message) <= bound + TEXT_SUMMARY_CHARS


# --------------------------------------------------------------------------
# The pure functions: real pages


@pytest.mark.parametrize(
    ("body", "summary"),
    [
        (NGINX_502, "502 Bad Gateway (an HTML page)"),
        (APACHE_404, "404 Not Found (an HTML page)"),
        (NO_TITLE, "Model & server unavailable (an HTML page)"),
        ("<html><head><title> \n </title></head><body><p>Gone.</p></body></html>", "Gone. (an HTML page)"),
        ("<h1>Bad Request</h1>\n<p>The browser sent a request this server could not understand.</p>",
         "Bad Request (an HTML page)"),
        ("<html><body></body></html>", "an HTML page without text"),
        (GO_MODEL_ERROR, GO_MODEL_ERROR.strip()),
        ("Traceback (most recent call last):\n  File \"m.py\", line 1\nValueError: bad\n",
         'Traceback (most recent call last): File "m.py", line 1 ValueError: bad'),
        ('{"error": "model not loaded"}', '{"error": "model not loaded"}'),
        ('<?xml version="1.0"?>\n<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml">'
         "<head><title>503 Service Unavailable</title></head></html>",
         "503 Service Unavailable (an HTML page)"),
        ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>',
         '<?xml version="1.0" encoding="UTF-8"?> <Error><Code>NoSuchKey</Code></Error>'),
        ("a < b and c > d", "a < b and c > d"),
        ("", ""),
    ],
    ids=["nginx-502", "apache-404", "no-title", "blank-title", "bare-h1", "no-text", "go-400",
         "multi-line-text", "json", "xhtml", "xml-not-html", "angle-brackets-text", "empty"],
)  # fmt: skip
def test_summaries_of_real_bodies(body: str, summary: str) -> None:
    assert summarize_body(body) == summary


def test_long_title_and_long_text_are_cut_with_an_ellipsis() -> None:
    page = f"<html><title>{'Service unavailable ' * 30}</title></html>"
    summary = summarize_body(page)
    assert summary.endswith("..." + HTML_MARK)
    assert len(summary) == len(summary.removesuffix(HTML_MARK)) + len(HTML_MARK)
    assert len(summary.removesuffix(HTML_MARK)) <= HTML_SUMMARY_CHARS
    text = summarize_body("x" * 70_000)
    assert len(text) == TEXT_SUMMARY_CHARS and text.endswith("...")


def test_terminal_escapes_and_control_characters_are_neutralised() -> None:
    summary = summarize_body("model failed\x1b[2J\x1b]0;pwned\x07 \x00done\u202e")
    assert "\x1b" not in summary and "\x07" not in summary and "\x00" not in summary
    assert "\u202e" not in summary
    assert summary.startswith("model failed\ufffd[2J")


@pytest.mark.parametrize(
    "body",
    [
        "<!doctype html>" + "<" * 65_000,
        "<!doctype html>" + "<title" * 11_000,
        "<!doctype html>" + "<!--" * 16_000,
        "<!doctype html>" + "<!x" * 21_000,
        "<!doctype html><script>" + "<scrip" * 11_000,
        "<!doctype html>" + "<a " * 21_000,
        "<!doctype html>" + "&#" * 32_000,
        " \n" * 32_000 + "x",
    ],
    ids=["lt", "title", "comments", "declarations", "script", "open-tags", "refs", "blank"],
)
def test_hostile_64k_bodies_are_summarised_quickly(body: str) -> None:
    # Linear time: a quadratic scan of 64 KiB would take seconds.
    t0 = time.perf_counter()
    summary = summarize_body(body)
    assert time.perf_counter() - t0 < 0.5
    assert_one_printable_line(summary)


# --------------------------------------------------------------------------
# Both clients, a real socket, the bundled server


async def _async_execute(url: str) -> None:
    async with gp.AsyncClient(url, retries=0) as client:
        await client.execute(np.ones(2))


def _sync_execute(url: str) -> None:
    with gp.Client(url, retries=0) as client:
        client.execute(np.ones(2))


def _raise(kind: str, url: str) -> gp.HTTPStatusError:
    with pytest.raises(gp.HTTPStatusError) as info:
        _sync_execute(url) if kind == "sync" else asyncio.run(_async_execute(url))
    return info.value


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_nginx_502_page_is_one_line_and_the_body_is_kept(kind: str) -> None:
    with serve(lambda x: x, faults=Faults(status=502, body=NGINX_502)) as server:
        exc = _raise(kind, server.url)
    assert str(exc) == f"HTTP 502 Bad Gateway from {server.url}/: 502 Bad Gateway (an HTML page)"
    assert exc.status_code == 502
    assert exc.body == NGINX_502.strip()  # the whole page, for whoever needs it
    assert exc.url == f"{server.url}/"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_model_error_400_keeps_its_whole_text(kind: str) -> None:
    with serve(lambda x: x, faults=Faults(status=400, body=GO_MODEL_ERROR)) as server:
        exc = _raise(kind, server.url)
    assert len(GO_MODEL_ERROR) > HTML_SUMMARY_CHARS  # longer than an HTML summary may be
    assert str(exc) == f"HTTP 400 Bad Request from {server.url}/: {GO_MODEL_ERROR.strip()}"
    assert exc.body == GO_MODEL_ERROR.strip()


def test_the_bundled_servers_model_error_is_whole() -> None:
    def model(x: np.ndarray) -> np.ndarray:
        raise ValueError("input 'x' must be 2-d,\n  got shape (2,)")

    with (
        serve(model) as server,
        gp.Client(server.url) as client,
        pytest.raises(gp.HTTPStatusError) as info,
    ):
        client.execute(np.ones(2))
    assert str(info.value).endswith(": input 'x' must be 2-d, got shape (2,)")
    assert info.value.body == "input 'x' must be 2-d,\n  got shape (2,)"
