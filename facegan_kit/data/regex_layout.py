"""The ``regex`` layout: subject and expression read from each file's name.

Many expression datasets encode everything in the file name and ship no label file. A regular
expression with two named groups, ``subject`` and ``expression``, says where they are; an
optional code map says what the expression codes mean. The pattern must match the file's path
relative to the dataset root, without its suffix (``re.fullmatch``), so it can also read folder
names (``(?P<subject>[^/]+)/(?P<expression>[^/]+)/.*``).

Example, the Taiwanese facial expression set (``faces_256x256/0111b02.jpg``: performer ``01``,
performance type ``1``, view ``1``, expression letter ``b``, take ``02``; neutral takes of type
``0`` may carry the letter ``a`` or no letter at all)::

    pattern = r"(?P<subject>\\d\\d)\\d\\d(?P<expression>[a-g]?)\\d+"
    codes = "a=neutral,=neutral,b=happy,c=sad,d=angry,e=disgust,f=fear,g=surprise"

An empty code (``=neutral``) is what an empty or absent ``expression`` group maps to. Without a
code map the group's text is read as an expression name or number (``"happy"``, ``"HA"``,
``"3"``; see :func:`facegan_kit.data.layouts.parse_expression`).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional

from facegan_kit.errors import InputError

__all__ = ["compile_pattern", "parse_codes", "regex_records"]

_GROUPS = ("subject", "expression")


def compile_pattern(pattern: str) -> re.Pattern:
    """Compile ``pattern`` and check it names the ``subject`` and ``expression`` groups.

    Raises:
        InputError: Invalid regular expression, or a group is missing.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"--pattern {pattern!r} is not a valid regular expression ({exc})") from None
    missing = [g for g in _GROUPS if g not in rx.groupindex]
    if missing:
        raise InputError(f"--pattern {pattern!r} needs the named group(s) "
                         + ", ".join(f"(?P<{g}>...)" for g in missing))
    return rx


def parse_codes(codes: Optional[str], parse_expression: Callable[[str], Optional[int]]) -> Dict[str, int]:
    """Parse ``"a=neutral,b=happy,..."`` into ``{"a": 6, "b": 3, ...}``.

    Codes are case-sensitive (``a`` and ``A`` may differ); names go through
    ``parse_expression`` (names, abbreviations, 0..6). ``None`` or ``""`` gives ``{}``.

    Raises:
        InputError: An entry without ``=``, an unknown expression name, or a repeated code.
    """
    table: Dict[str, int] = {}
    for entry in (codes or "").split(","):
        if not entry.strip():
            continue
        if "=" not in entry:
            raise InputError(f"--map entry {entry.strip()!r} must be CODE=EXPRESSION (e.g. b=happy)")
        code, name = entry.split("=", 1)
        code, name = code.strip(), name.strip()
        label = parse_expression(name)
        if label is None:
            raise InputError(f"--map entry {entry.strip()!r}: unknown expression {name!r}")
        if code in table:
            raise InputError(f"--map names code {code!r} twice")
        table[code] = label
    return table


def regex_records(root: Path, files: Iterable[Path], pattern: str, codes: Optional[str],
                  parse_expression: Callable[[str], Optional[int]]):
    """Yield ``(path, subject, label)`` or ``(path, None, reason)`` for each file.

    A label of ``-1`` (contempt) is reported by the caller like any layout's contempt.
    """
    rx = compile_pattern(pattern)
    table = parse_codes(codes, parse_expression)
    for path in files:
        rel = path.relative_to(root).with_suffix("").as_posix()
        m = rx.fullmatch(rel)
        if m is None:
            yield path, None, "name does not match --pattern"
            continue
        subject, code = m.group("subject"), m.group("expression") or ""
        if not subject:
            yield path, None, "the pattern's subject group matched nothing"
            continue
        if table:
            label = table.get(code)
            why = f"expression code {code!r} is not in --map"
        else:
            label = parse_expression(code) if code else None
            why = f"unknown expression {code!r} (give --map CODE=EXPRESSION,...)"
        if label is None:
            yield path, None, why
        else:
            yield path, subject, label
