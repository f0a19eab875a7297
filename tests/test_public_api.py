"""The public surface is deliberate: explicit, sorted ``__all__``, documented names.

A module of ``src/graphpipe_client`` whose name does not start with ``_`` is
public: it must be listed in PUBLIC_MODULES below (adding one is a decision,
not an accident), carry a docstring and an explicit ``__all__``.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import inspect
import pkgutil
import random
import re
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import graphpipe_client

SRC = Path(graphpipe_client.__file__).parent

#: Every public module, and why it is public.
PUBLIC_MODULES = {
    "graphpipe_client": "the clients, the errors, the metadata types, the drop-in functions",
    "graphpipe_client.codec": "the sans-I/O codec, for any transport",
    "graphpipe_client.remote": "drop-in replacement of the 2018 graphpipe.remote",
    "graphpipe_client.aio": "the asyncio counterpart of remote",
    "graphpipe_client.dask": "lazy predictions on Dask (the [dask] extra)",
    "graphpipe_client.testing": "a real GraphPipe server for tests and demos",
    "graphpipe_client.testing.pytest_plugin": "the pytest11 entry point (graphpipe_serve fixture)",
}

#: The modules whose every exported name must carry its own documentation.
DOCUMENTED = ["graphpipe_client", "graphpipe_client.codec", "graphpipe_client.dask"]

#: Names exempt from the documentation rule, and why.
SELF_EXPLANATORY = {"__version__": "PEP 396: a version string needs no prose"}


def discover(path: Path, prefix: str) -> set[str]:
    """Public modules under ``path``, found on disk (not from what happens to be imported)."""
    found = set()
    for info in pkgutil.iter_modules([str(path)]):
        if info.name.startswith("_"):
            continue
        name = f"{prefix}.{info.name}"
        found.add(name)
        if info.ispkg:
            found |= discover(path / info.name, name)
    return found


def public_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in PUBLIC_MODULES]


def isort_key(name: str) -> tuple[int, list[Any]]:
    """The order of ruff's RUF022 ("isort-style"): CONSTANTS, then Classes, then the rest.

    Within each group, a natural sort (digit runs compare as numbers).
    """
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
    return group, natural


def literal_all(module: ModuleType) -> list[str] | None:
    """The ``__all__`` written as a literal list/tuple of strings in the module's source."""
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = node.value
            if isinstance(value, (ast.List, ast.Tuple)) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
            ):
                return [e.value for e in value.elts]  # type: ignore[attr-defined]
            return None
    return None


def doc_comments() -> set[str]:
    """Names given a Sphinx ``#:`` doc comment on the line(s) above their assignment."""
    documented = set()
    pattern = re.compile(r"^((?:#:.*\n)+)([A-Za-z_][A-Za-z0-9_]*)\s*[:=]", re.MULTILINE)
    for path in SRC.rglob("*.py"):
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            documented.add(match.group(2))
    return documented


def own_docstring(obj: Any) -> str | None:
    """The docstring ``obj`` has of its own (not inherited, not dataclass-generated)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        if doc and doc.startswith(f"{obj.__name__}("):
            return None  # what @dataclass writes when the class has no docstring
        return doc
    return getattr(obj, "__doc__", None)


# --------------------------------------------------------------------------


def test_public_modules_are_deliberate() -> None:
    on_disk = discover(SRC, "graphpipe_client") | {"graphpipe_client"}
    assert on_disk == set(PUBLIC_MODULES), (
        "a public module (no leading underscore) was added or removed: "
        "make it private or list it in PUBLIC_MODULES"
    )


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_public_module_has_a_docstring_and_an_explicit_all(name: str) -> None:
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no docstring"
    assert isinstance(module.__all__, (list, tuple))
    assert literal_all(module) == list(module.__all__), (
        f"{name}.__all__ must be one literal list of names in the module's source"
    )
    assert len(set(module.__all__)) == len(module.__all__), "duplicates in __all__"


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_all_is_sorted(name: str) -> None:
    names = list(importlib.import_module(name).__all__)
    assert names == sorted(names, key=isort_key)


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_every_exported_name_exists_and_is_ours(name: str) -> None:
    module = importlib.import_module(name)
    for export in module.__all__:
        assert hasattr(module, export), f"{name}.{export} is in __all__ but does not exist"
        obj = getattr(module, export)
        if inspect.ismodule(obj):
            assert obj.__name__ in PUBLIC_MODULES, f"{name}.{export} is a private module"
        elif inspect.isclass(obj) or inspect.isroutine(obj):
            # Not a re-export of a builtin or third-party object by mistake
            # (TimeoutError must be ours, not the builtin).
            assert obj.__module__.startswith("graphpipe_client"), (
                f"{name}.{export} comes from {obj.__module__}"
            )


@pytest.mark.parametrize("name", sorted(PUBLIC_MODULES))
def test_exported_classes_and_functions_have_docstrings(name: str) -> None:
    module = importlib.import_module(name)
    missing = [
        export
        for export in module.__all__
        if (inspect.isclass(obj := getattr(module, export)) or inspect.isroutine(obj))
        and not (own_docstring(obj) or "").strip()
    ]
    assert not missing, f"without a docstring in {name}: {missing}"


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_exported_name_is_documented(name: str) -> None:
    module = importlib.import_module(name)
    commented = doc_comments()
    missing = []
    for export in module.__all__:
        obj = getattr(module, export)
        if export in SELF_EXPLANATORY:
            continue
        if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
            documented = bool((own_docstring(obj) or "").strip())
        elif isinstance(obj, enum.Enum):
            documented = bool((type(obj).__doc__ or "").strip()) or export in commented
        else:
            # Plain data (a number, a type alias): a `#:` doc comment at its definition.
            documented = export in commented
        if not documented:
            missing.append(export)
    assert not missing, f"undocumented in {name}: {missing}"


@pytest.mark.parametrize("name", DOCUMENTED)
def test_no_private_names_leak(name: str) -> None:
    module = importlib.import_module(name)
    # Nothing private is exported (the version dunder excepted).
    assert [n for n in module.__all__ if n.startswith("_") and n not in SELF_EXPLANATORY] == []
    # What a user sees without underscores is exactly __all__: no helper,
    # typing name or third-party module hangs off the public namespace.
    # (``annotations`` is the __future__ import; public submodules appear
    # once imported.)
    # (pytest's assertion rewriting adds "@py_builtins" and the like to a
    # package that ships a pytest plugin, as ours does: not identifiers.)
    visible = {n for n in vars(module) if not n.startswith("_") and n.isidentifier()}
    extras = visible - set(module.__all__) - {"annotations"}
    extras -= {n for n in extras if f"{name}.{n}" in PUBLIC_MODULES}
    assert extras == set(), f"{name} exposes names outside __all__: {sorted(extras)}"
    # ``from ... import *`` brings in __all__ and nothing private.
    namespace: dict[str, Any] = {}
    exec(f"from {name} import *", namespace)
    assert {n for n in namespace if n != "__builtins__"} == set(module.__all__)


def test_codec_and_package_agree_on_shared_names() -> None:
    from graphpipe_client import codec

    for shared in set(codec.__all__) & set(graphpipe_client.__all__):
        assert getattr(codec, shared) is getattr(graphpipe_client, shared), shared


def test_isort_key_matches_ruff() -> None:
    # The order `ruff check --select RUF022 --fix` produced for these names.
    ruff_order = [
        "A1", "AB_C", "Ab", "B", "IOMetadata", "InferRequest", "TLSError", "Timeout",
        "__version__", "_x", "a", "b9", "b10",
    ]  # fmt: skip
    shuffled = random.Random(0).sample(ruff_order, len(ruff_order))
    assert sorted(shuffled, key=isort_key) == ruff_order


def test_batched_execution_is_public_on_every_surface() -> None:
    from graphpipe_client import aio, remote

    assert "BatchError" in graphpipe_client.__all__
    assert issubclass(graphpipe_client.BatchError, graphpipe_client.GraphPipeError)
    assert "execute_batched" in remote.__all__ and "execute_batched" in aio.__all__
    assert inspect.iscoroutinefunction(aio.execute_batched)
    for cls in (graphpipe_client.Client, graphpipe_client.AsyncClient):
        for method in (
            "execute_batched",
            "execute_stream",
            "is_ready",
            "is_alive",
            "wait_until_ready",
        ):
            assert (own_docstring(getattr(cls, method)) or "").strip(), f"{cls.__name__}.{method}"
    # The module functions take the client methods' options, under the same names.
    ours = inspect.signature(graphpipe_client.Client.execute_batched).parameters
    for fn in (remote.execute_batched, aio.execute_batched):
        theirs = inspect.signature(fn).parameters
        assert set(ours) - {"self", "url"} == set(theirs) - {"uri"}


def test_the_row_cache_is_public_and_in_the_reference() -> None:
    """``RowCache`` (``Client(url, cache=...)``) and its ``CacheStats`` are API, documented."""
    reference = (SRC.parent.parent / "docs" / "reference.md").read_text(encoding="utf-8")
    for name in ("RowCache", "CacheStats"):
        assert name in graphpipe_client.__all__
        assert f"::: graphpipe_client.{name}" in reference
    assert "cache" in inspect.signature(graphpipe_client.Client).parameters
    assert "cache" in inspect.signature(graphpipe_client.AsyncClient).parameters


def test_replicas_are_public_on_every_surface() -> None:
    from graphpipe_client import aio, remote

    assert "ReplicaStats" in graphpipe_client.__all__
    fields = {f.name for f in dataclasses.fields(graphpipe_client.ReplicaStats)}
    assert {"url", "in_flight", "sent", "failed", "ejections", "ready"} <= fields
    for cls in (graphpipe_client.Client, graphpipe_client.AsyncClient):
        for name in ("replicas", "urls", "replica_stats"):
            assert (inspect.getdoc(getattr(cls, name)) or "").strip(), f"{cls.__name__}.{name}"
    # The module functions take a list of URLs where they take one.
    for fn in (remote.execute, aio.execute, remote.execute_batched, aio.execute_batched):
        hint = eval(inspect.signature(fn).parameters["uri"].annotation, fn.__globals__)
        assert list[str] in typing.get_args(hint), fn.__name__
