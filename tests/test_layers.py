"""The house in layers: every module sits in a layer that the import contracts know.

``nox -s lint`` runs import-linter on the contracts of ``pyproject.toml``; these tests
make sure the contracts keep covering the package as it grows (docs/architecture.md).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import graphpipe_client

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(graphpipe_client.__file__).resolve().parent

#: Top-level entries outside the layers contract, each with its own place.
OUTSIDE_LAYERS = {
    "__init__": "the public API: imports from every layer",
    "__main__": "python -m graphpipe_client: the command line",
    "_version": "read by every layer",
    "codec": "the public face of _wire (contract 'codec')",
    "testing": "the bundled server, a peer on _wire (contracts 'testing', 'library-not-testing')",
}


def contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def layered_names() -> set[str]:
    layers = contracts()["layers"]["layers"]
    assert isinstance(layers, list)
    return {name.strip() for layer in layers for name in layer.replace(":", "|").split("|")}


def top_level() -> set[str]:
    return {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file())
    }


def test_every_top_level_module_is_in_a_layer_or_placed_on_purpose() -> None:
    unplaced = top_level() - layered_names() - set(OUTSIDE_LAYERS)
    assert not unplaced, (
        f"{sorted(unplaced)} belong to no layer: put them in a layer folder, or add them to "
        "the 'layers' contract in pyproject.toml (docs/architecture.md says where things go)"
    )


def test_the_contracts_name_only_what_exists() -> None:
    assert layered_names() <= top_level()
    for contract in contracts().values():
        for key in ("source_modules", "forbidden_modules"):
            for name in contract.get(key, []):  # type: ignore[attr-defined]
                if name.startswith("graphpipe_client."):
                    parts = name.split(".")[1:]
                    path = SRC.joinpath(*parts)
                    assert path.with_suffix(".py").is_file() or path.is_dir(), name


def test_few_modules_stay_flat() -> None:
    flat = list(SRC.glob("*.py"))
    assert len(flat) <= 16, sorted(p.name for p in flat)


def test_each_layer_folder_says_what_it_holds_and_what_it_may_import() -> None:
    for name in layered_names():
        init = SRC / name / "__init__.py"
        if not init.is_file() or name in {"_cli", "dask"}:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "May import" in doc, f"{name}/__init__.py: say what it holds and may import"
