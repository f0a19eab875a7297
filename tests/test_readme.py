"""The README's example runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_example_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert out.getvalue().splitlines()[0] == "('input0',) [0. 2. 4. 6.]"


def test_readme_set_up_commands_are_the_ones_ci_runs() -> None:
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    for command in re.findall(r"^(python -m pip install nox && nox .*)$", text, flags=re.M):
        assert command in ci


QUICKSTART = README.parent / "docs" / "quickstart.md"


def test_quickstart_all_in_one_script_runs_as_written() -> None:
    text = QUICKSTART.read_text()
    caption, block = re.search(r"Or all in one script(.*?)```python\n(.*?)```", text, re.S).groups()  # type: ignore[union-attr]
    # The caption must not claim the block is another file (it once named examples/quickstart.py).
    assert "examples/" not in caption
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "quickstart.md", "exec"), {})
    assert out.getvalue().splitlines()[0] == "[0. 2. 4. 6.]"


def test_install_commands_work_from_a_clone_and_name_the_release() -> None:
    for path in (README, QUICKSTART):
        text = path.read_text()
        assert "python -m pip install ." in text, path
        # `pip install graphpipe-client` is only promised for once it is released.
        for line in text.splitlines():
            if "pip install graphpipe-client" in line:
                assert "once" in line.lower() or "released" in line.lower(), (path, line)
