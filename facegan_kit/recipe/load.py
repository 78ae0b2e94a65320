"""Reading a recipe file and applying ``--set a.b=value`` overrides (no config inheritance)."""
from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from facegan_kit.errors import RecipeError


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a TOML recipe and apply ``a.b=value`` overrides. Returns the raw (unvalidated) dict."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: invalid TOML: {exc}") from None
    return apply_overrides(raw, [parse_override(o) for o in overrides])


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.controller.type=exprgan-fctrl"`` -> (["model","controller","type"], "exprgan-fctrl").

    The value is read as a TOML value when it parses as one (``3``, ``2e-4``, ``true``,
    ``[1, 2]``, ``"x"``), otherwise taken as a bare string.
    """
    key, sep, value = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not sep or not all(parts):
        raise RecipeError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. train.seed=1")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


#: Top-level key of a raw recipe listing the tables whose ``type`` an override changed (see
#: :func:`apply_overrides`); :func:`facegan_kit.recipe.schema.validate` consumes it.
RETYPED_KEY = "_retyped_by_override"


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a copy of ``raw``.

    ``--set data.type=prepared`` on a recipe whose ``[data]`` is synthetic swaps the component:
    the table's other recipe keys then belong to the old type, so the result records the table
    under :data:`RETYPED_KEY` (with the keys the overrides set themselves) and validation leaves
    out those the new type does not take, saying so, instead of failing on a key the user
    cannot remove from the command line.
    """
    out = copy.deepcopy(raw)
    retyped: dict[str, set[str]] = {}
    for parts, value in overrides:
        if parts[-1] == "type" and _get(out, parts[:-1]).get("type", value) != value:
            retyped.setdefault(".".join(parts[:-1]), set())
        node: Any = out
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):  # stages.1.epochs
                node = _list_item(node, part, parts[: i + 1])
                continue
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise RecipeError(f"--set {'.'.join(parts)}: '{'.'.join(parts[:i + 1])}' is not a table")
        if isinstance(node, list):
            idx = _index(parts[-1], parts)
            node[idx] = value
        else:
            node[parts[-1]] = value
    for parts, _ in overrides:  # keys set on the command line stay, whatever their order
        if ".".join(parts[:-1]) in retyped:
            retyped[".".join(parts[:-1])].add(parts[-1])
    if retyped:
        out[RETYPED_KEY] = {table: sorted(keys) for table, keys in retyped.items()}
    return out


def _get(raw: dict[str, Any], parts: list[str]) -> dict:
    """The table at ``parts`` (``{}`` when absent or not a table)."""
    node: Any = raw
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _index(part: str, parts: list[str]) -> int:
    try:
        return int(part)
    except ValueError:
        raise RecipeError(f"--set {'.'.join(parts)}: '{part}' must be a list index") from None


def _list_item(node: list, part: str, parts: list[str]) -> Any:
    idx = _index(part, parts)
    if not -len(node) <= idx < len(node):
        raise RecipeError(f"--set {'.'.join(parts)}: index {idx} out of range (0..{len(node) - 1})")
    return node[idx]
