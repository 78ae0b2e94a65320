"""docs/plugins.md cannot silently go stale: every hook, every component kind and every
Protocol of the plugin API is documented there."""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Protocol

import pytest

from facegan_kit import hookspecs, interfaces
from facegan_kit.registry import KINDS

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def guide() -> str:
    assert GUIDE.is_file(), f"{GUIDE} is missing"
    return GUIDE.read_text(encoding="utf-8")


def _headings(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, flags=re.M)]


def _mentioned(name: str, text: str) -> bool:
    """In a heading, or in inline code / a code block as a whole word."""
    word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    if any(word.search(h) for h in _headings(text)):
        return True
    code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```.*?```", text, flags=re.S)
    return any(word.search(c) for c in code)


HOOKS = sorted(n for n, f in vars(hookspecs).items()
               if callable(f) and hasattr(f, hookspecs.PROJECT + "_spec"))
PROTOCOLS = sorted(n for n, c in vars(interfaces).items()
                   if inspect.isclass(c) and issubclass(c, Protocol) and c is not Protocol
                   and c.__module__ == interfaces.__name__)


def test_found_something():
    assert "facegan_register_components" in HOOKS
    assert {"Encoder", "Controller", "Loss"} <= set(PROTOCOLS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_documented(guide, hook):
    assert _mentioned(hook, guide), f"hook '{hook}' is not documented in docs/plugins.md"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_heading(guide, kind):
    assert any(re.search(rf"`{re.escape(kind)}`|\b{re.escape(kind)}\b", h) for h in _headings(guide)), (
        f"component kind '{kind}' has no heading in docs/plugins.md")


@pytest.mark.parametrize("name", PROTOCOLS)
def test_every_protocol_named(guide, name):
    assert _mentioned(name, guide), f"Protocol interfaces.{name} is not named in docs/plugins.md"


def test_env_vars_and_command_documented(guide):
    from facegan_kit import pm

    for text in (pm.BLOCK_ENV, pm.ONLY_ENV, "facegan plugins", "[project.entry-points.facegan]",
                 "facegan_kit.testing", "needs", "requires_encoder", "registry"):
        assert text in guide, f"docs/plugins.md does not mention {text}"


def test_testing_helpers_documented(guide):
    from facegan_kit import testing

    for name in testing.__all__:
        if callable(getattr(testing, name)):
            assert _mentioned(name, guide), f"facegan_kit.testing.{name} is not documented in docs/plugins.md"
