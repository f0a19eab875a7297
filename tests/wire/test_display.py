"""Plain-text and HTML renderings for terminals and Jupyter."""

from __future__ import annotations

import numpy as np

import graphpipe_client as gp

META = gp.ModelMetadata(
    name="iris",
    version="1",
    server="test",
    description="a <b>model</b>",
    inputs=(gp.IOMetadata("features", "cm", (None, 4), np.dtype("float32")),),
    outputs=(
        gp.IOMetadata("label", "", (None,), np.dtype("int64")),
        gp.IOMetadata("names", "", None, np.dtype(object)),
    ),
)


def test_metadata_text_is_an_aligned_table() -> None:
    text = str(META)
    assert text.splitlines()[:2] == ["model: iris, version 1", "server: test"]
    lines = [line for line in text.splitlines() if line.startswith(("input", "output"))]
    assert lines == [
        "input   features  float32  (?, 4)  cm",
        "output  label     int64    (?,)",
        "output  names     string   ?",
    ]


def test_metadata_html_is_escaped_table() -> None:
    html = META._repr_html_()
    assert "<table>" in html
    assert "<code>features</code>" in html
    assert "a &lt;b&gt;model&lt;/b&gt;" in html  # descriptions are escaped


def test_metadata_text_labels_a_model_without_name_or_version() -> None:
    assert str(gp.ModelMetadata()) == "model: (unnamed)"
    assert str(gp.ModelMetadata(name="m")).splitlines()[0] == "model: m"
    assert str(gp.ModelMetadata(version="2")).splitlines()[0] == "model: (unnamed), version 2"


def test_io_text() -> None:
    assert str(META.inputs[0]) == "features: float32 (?, 4)  cm"


def test_exception_html_shows_status_and_every_entry_up_to_a_cap() -> None:
    exc = gp.HTTPStatusError(
        "HTTP 400 from x: <bad>", status_code=400, body="<bad>", url="http://h/"
    )
    html = exc._repr_html_()
    assert "HTTPStatusError" in html
    assert "&lt;bad&gt;" in html
    assert "400" in html
    many = gp.RemoteError(errors=[gp.ErrorEntry(i, "m" * 10_000) for i in range(250)])
    html = many._repr_html_()
    assert html.count("<tr>") == 2 + 100 + 1  # error, message, 100 entries, "... more"
    assert "150 more entries" in html
    assert "m" * 4097 not in html
