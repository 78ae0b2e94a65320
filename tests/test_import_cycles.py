"""No module of facegan_kit or the built-in plugins imports a module that imports it back (at
module level or inside a function; ``if TYPE_CHECKING:`` blocks never run and are ignored), and
every module imports on its own."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (("facegan_kit", "facegan_kit"), ("plugins", "facegan_plugins"))


def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(name: str, source: str, known=MODULES) -> set[str]:
    """The known modules ``source`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    found: set[str] = set()
    stack = [ast.parse(source)]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
        stack.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in known and m != name}


def test_found_modules():
    assert "facegan_kit.eval.suite" in MODULES and "facegan_plugins.losses.terms" in MODULES


def test_no_two_modules_import_each_other():
    graph = {m: imports_of(m, p.read_text()) for m, p in MODULES.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph[b]})
    assert not pairs, f"modules importing each other: {pairs}"


def test_the_check_sees_lazy_imports_and_skips_type_checking():
    known = {"p.a": None, "p.b": None, "p": None}
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.b\ndef f():\n    from p import a\n"
    assert imports_of("p.c", src, known) == {"p.a"}


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_imports(name):
    importlib.import_module(name)
