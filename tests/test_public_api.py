"""The plugin API is what ``facegan_kit`` exports: the built-in plugins use nothing else, so a
third-party package can do whatever they do."""
from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

import facegan_kit
from facegan_kit import interfaces

ROOT = Path(__file__).resolve().parent.parent
#: core modules a plugin may import (besides the ``facegan_kit`` package itself)
PUBLIC_MODULES = {"facegan_kit", "facegan_kit.interfaces", "facegan_kit.data", "facegan_kit.testing"}
PLUGIN_FILES = sorted((ROOT / "plugins").rglob("*.py"))


def core_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every ``facegan_kit`` import in ``source``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m == "facegan_kit" or m.startswith("facegan_kit.")]


def test_found_plugins():
    assert len(PLUGIN_FILES) > 10


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_public_modules(path):
    bad = [f"line {line}: {m}" for line, m in core_imports(path.read_text()) if m not in PUBLIC_MODULES]
    assert not bad, f"{path.relative_to(ROOT)} imports internal modules: {bad}; export the name from facegan_kit"


def test_the_check_sees_nested_and_internal_imports():
    source = "from facegan_kit import hookimpl\ndef f():\n    from facegan_kit.train.context import X\n"
    assert [m for _, m in core_imports(source) if m not in PUBLIC_MODULES] == ["facegan_kit.train.context"]


@pytest.mark.parametrize("name", facegan_kit.__all__)
def test_every_public_name_resolves(name):
    assert getattr(facegan_kit, name) is not None


def test_public_modules_export_what_they_list():
    import facegan_kit.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None, name
    with pytest.raises(AttributeError):
        facegan_kit.not_a_public_name  # noqa: B018


def test_trainer_context_satisfies_the_protocol():
    """The context the trainer builds has every member the public Protocol promises, so a loss
    typed against :class:`facegan_kit.StepContext` reads only what exists."""
    from facegan_kit.testing import tiny_step_context

    ctx = tiny_step_context()
    assert isinstance(ctx, facegan_kit.StepContext)
    members = set(typing.get_type_hints(interfaces.StepContext)) | {"memo", "d_img_fake", "d_img_real"}
    fields = {f.name for f in dataclasses.fields(ctx)}
    missing = [m for m in members if m not in fields and not callable(getattr(type(ctx), m, None))]
    assert not missing, f"the trainer's StepContext lacks {missing}"


def test_bce_logits_is_the_sigmoid_cross_entropy():
    import torch

    logit = torch.tensor([0.0, 2.0])
    want = -(torch.log(torch.sigmoid(logit))).mean()
    assert torch.allclose(facegan_kit.bce_logits(logit, 1.0), want)
    assert facegan_kit.bce_logits(logit, 0.0) > facegan_kit.bce_logits(logit, 1.0)
