"""One-line summaries of the error bodies that servers and proxies send (no I/O here).

A GraphPipe server answers a model error with a short ``text/plain`` body,
the useful part of the message. Anything else in front of the model (nginx,
Apache, a cloud load balancer, a notebook proxy) answers with an HTML page of
hundreds of characters. :func:`summarize_body` reduces either to one bounded,
printable line for :class:`~graphpipe_client.HTTPStatusError`'s message; the
exception keeps the body itself in ``.body``.

Every function here runs in time linear in its input, whatever the input:
the bodies come from the network.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "HTML_SUMMARY_CHARS",
    "TEXT_SUMMARY_CHARS",
    "looks_like_html",
    "one_line",
    "status_message",
    "summarize_body",
]

#: The longest summary of an HTML page (its title, or its first line of text).
HTML_SUMMARY_CHARS: Final = 200

#: The longest summary of a plain-text body. Generous: a model's own error
#: text (an exception message, a shape mismatch) is the useful part.
TEXT_SUMMARY_CHARS: Final = 1000

#: The longest reason phrase (``Bad Gateway``) shown in a message.
REASON_CHARS: Final = 100

ELLIPSIS: Final = "..."

#: Marks a summary taken from an HTML page: the answer did not come from a
#: GraphPipe server (a proxy or a web server in between, or a wrong URL).
HTML_MARK: Final = " (an HTML page)"

_WHITESPACE: Final = re.compile(r"\s+")

# How an HTML document starts, after optional whitespace, comments and an XML
# declaration: a doctype, one of the tags every page has, or one of the
# headings and blocks that bare-bones error pages start with.
_HTML_START: Final = re.compile(
    r"<(?:!doctype\s+html|html|head|body|title|h[1-6]|p|div|center|pre|table)\b", re.I
)
_HTML_SNIFF_CHARS: Final = 1024

_TAG_NAME: Final = re.compile(r"/?([A-Za-z][A-Za-z0-9]*)")
_RAW_TEXT: Final = {
    "script": re.compile(r"</script", re.I),
    "style": re.compile(r"</style", re.I),
}
# Elements that start a new line of text when a browser renders the page.
_BLOCKS: Final = frozenset(
    (
        "address", "article", "aside", "blockquote", "body", "br", "center", "dd", "details",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2",
        "h3", "h4", "h5", "h6", "head", "header", "hr", "html", "li", "main", "nav", "ol", "p",
        "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "title",
        "tr", "ul",
    )
)  # fmt: skip


def one_line(text: str, limit: int) -> str:
    """``text`` on one printable line of at most ``limit`` characters.

    Every run of whitespace (line breaks included) becomes one space; any
    other character that is not printable (control characters, such as a
    terminal's escape sequences) becomes U+FFFD; a longer text is cut and
    ends with ``...``.

    Example:
        >>> one_line("model failed:\\n  input 'x'\\tmust be 2-d\\n", 100)
        "model failed: input 'x' must be 2-d"
        >>> one_line("a" * 50, 10)
        'aaaaaaa...'
    """
    if limit < len(ELLIPSIS):
        raise ValueError(f"limit must be at least {len(ELLIPSIS)}, not {limit}")
    text = _WHITESPACE.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text


def looks_like_html(text: str) -> bool:
    """Whether a body is an HTML page: it starts (after whitespace and comments) like one.

    Example:
        >>> looks_like_html("<!DOCTYPE html><html><head><title>Oops</title>")
        True
        >>> looks_like_html("input 'x' must be 2-d")
        False
    """
    head = text[:_HTML_SNIFF_CHARS].lstrip("\ufeff \t\r\n\f")
    while head.startswith(("<!--", "<?xml")):  # XHTML may start with a declaration
        comment = head.startswith("<!--")
        end = head.find("-->" if comment else "?>")
        if end < 0:
            return False
        head = head[end + (3 if comment else 2) :].lstrip()
    return _HTML_START.match(head) is not None


def _html_title_and_text(page: str) -> tuple[str, str]:
    """The text of a page's first ``<title>``, and its rendered text (lines at blocks).

    A small scanner, not a parser: tags, comments and the contents of
    ``<script>`` and ``<style>`` are skipped, character references decoded.
    Each step moves forward, so the time is linear in ``len(page)``.
    """
    import html  # with the first HTML error page: html.entities is ~1 ms of import

    title: list[str] | None = None
    title_done = False
    parts: list[str] = []
    pos, n = 0, len(page)
    while pos < n:
        lt = page.find("<", pos)
        if lt < 0:
            lt = n
        if lt > pos:
            chunk = html.unescape(page[pos:lt])
            parts.append(chunk)
            if title is not None and not title_done:
                title.append(chunk)
        if lt >= n:
            break
        if page.startswith("<!--", lt):
            end = page.find("-->", lt + 4)
            pos = n if end < 0 else end + 3
            continue
        if page.startswith(("<!", "<?"), lt):  # <!DOCTYPE ...>, <?xml ...?>
            gt = page.find(">", lt + 2)
            if gt < 0:
                break
            pos = gt + 1
            continue
        match = _TAG_NAME.match(page, lt + 1)
        if match is None:  # a "<" that starts no tag is text, as browsers show it
            parts.append("<")
            if title is not None and not title_done:
                title.append("<")
            pos = lt + 1
            continue
        gt = page.find(">", match.end())
        if gt < 0:
            break  # an unterminated tag: what follows is not text
        pos = gt + 1
        name = match.group(1).lower()
        closing = page[lt + 1] == "/"
        if name == "title" and not title_done:
            if closing and title is not None:
                title_done = True
            elif not closing:
                title = []
        if name in _BLOCKS:
            parts.append("\n")
        raw = _RAW_TEXT.get(name)
        if raw is not None and not closing and not page[lt:gt].endswith("/"):
            found = raw.search(page, pos)
            pos = n if found is None else found.start()
    return "".join(title or ()), "".join(parts)


def _meaningful(line: str) -> bool:
    return any(c.isalnum() for c in line)


def summarize_body(text: str) -> str:
    """One printable line that says what an error body holds.

    - An HTML page gives its ``<title>``, or else its first line of text
      with a letter or digit in it, at most :data:`HTML_SUMMARY_CHARS`
      characters, followed by ``(an HTML page)``.
    - Any other body gives its text with every line break and run of
      whitespace collapsed to one space, at most :data:`TEXT_SUMMARY_CHARS`
      characters: a GraphPipe server's one-line model error stays whole.

    A longer summary is cut and ends with ``...``. An empty body gives ``""``.

    Example:
        >>> summarize_body("<html><head><title>502 Bad Gateway</title></head>"
        ...                "<body><h1>502 Bad Gateway</h1><hr>nginx</body></html>")
        '502 Bad Gateway (an HTML page)'
        >>> summarize_body("features must have shape (N, 4), got (1, 3)\\n")
        'features must have shape (N, 4), got (1, 3)'
    """
    if not looks_like_html(text):
        return one_line(text, TEXT_SUMMARY_CHARS)
    title, rendered = _html_title_and_text(text)
    summary = one_line(title, HTML_SUMMARY_CHARS)
    if not _meaningful(summary):
        first = next((line for line in rendered.split("\n") if _meaningful(line)), "")
        summary = one_line(first, HTML_SUMMARY_CHARS)
    if not summary:
        return "an HTML page without text"
    return summary + HTML_MARK


def status_message(status: int, reason: str, url: str, body: str) -> str:
    """The message of an :class:`~graphpipe_client.HTTPStatusError`: one line.

    ``HTTP <status> <reason> from <url>: <summary of the body>``, each part
    bounded (see :func:`summarize_body`).

    Example:
        >>> status_message(400, "Bad Request", "http://127.0.0.1:9000/", "no input 'x'\\n")
        "HTTP 400 Bad Request from http://127.0.0.1:9000/: no input 'x'"
    """
    reason = one_line(reason, REASON_CHARS)
    message = f"HTTP {status} {reason}" if reason else f"HTTP {status}"
    message += f" from {url}"
    summary = summarize_body(body)
    return f"{message}: {summary}" if summary else message
