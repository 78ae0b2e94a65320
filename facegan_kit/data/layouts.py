"""Parse face-expression dataset layouts into labelled records.

Labels follow :data:`facegan_kit.EXPRESSIONS` (0 angry .. 5 surprise) with
:data:`NEUTRAL_LABEL` = 6. Every parser returns a :class:`LayoutResult`: the
records in a stable order plus the files (or sequences) that were skipped, each
with a reason. Supported layouts (:data:`LAYOUTS`):

``oulu-casia``
    ``<subject>/<Expression>/<frame>.jpeg`` found at any depth (so
    ``VL/Strong/P001/Happiness/005.jpeg`` works; the same subject under several
    lighting folders stays one subject). A sequence is one folder.
``ckplus``
    ``cohn-kanade-images/S005/001/S005_001_00000011.png`` with the label in
    ``Emotion/S005/001/S005_001_00000011_emotion.txt`` (float CK+ code). Unlabelled
    sequences and contempt (code 2) are skipped with a reason. ``neutral_first``
    adds the first frame of each labelled sequence as neutral (Oulu-CASIA too).
``jaffe``
    ``KA.AN1.39.tiff``: subject ``KA``, code ``AN`` (AN DI FE HA SA SU NE).
``folder``
    ``<root>/<expression>/<file>``; the subject is the file stem's prefix before the
    first ``_``, ``-``, ``.`` or space (``S005_001.png`` -> ``S005``); when there is no
    separator, or every file would share one prefix, each file is its own subject.
``regex``
    subject and expression read from each file's relative path by a regular expression with
    named groups, plus an optional ``CODE=EXPRESSION`` map (:mod:`facegan_kit.data.regex_layout`,
    with an example).
``csv``
    ``path,label[,subject]`` (header optional); ``label`` is a name or an integer
    0..6; relative paths are resolved against the CSV's folder. ``src`` is the
    CSV file, or a folder holding exactly one ``*.csv``.

``frames`` selects frames of each *sequence* (oulu-casia, ckplus): ``"last3"``
(the paper), ``"peak"`` (last frame) or ``"all"``. Neutral records (label 6) are
kept only with ``include_neutral=True``; otherwise they are reported as skipped.
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from facegan_kit import EXPRESSIONS, NEUTRAL
from facegan_kit.errors import InputError

__all__ = [
    "LAYOUTS", "FRAMES", "NEUTRAL_LABEL", "Record", "LayoutResult",
    "parse_expression", "label_name", "parse_layout", "IMAGE_SUFFIXES",
]

NEUTRAL_LABEL = 6
LAYOUTS = ("oulu-casia", "ckplus", "jaffe", "folder", "regex", "csv")
FRAMES = ("last3", "peak", "all")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm",
                  ".pgm"}

_SYNONYMS = {
    0: ("angry", "anger", "an", "ang", "mad", "annoyed", "rage"),
    1: ("disgust", "disgusted", "disgusting", "di", "dis", "disg"),
    2: ("fear", "fearful", "afraid", "scared", "fe", "fea"),
    3: ("happy", "happiness", "joy", "joyful", "smile", "smiling", "ha", "hap"),
    4: ("sad", "sadness", "sa", "unhappy", "sorrow"),
    5: ("surprise", "surprised", "surprising", "su", "sur", "surp"),
    NEUTRAL_LABEL: ("neutral", "ne", "neu", "calm", "none"),
}
_NAME_TO_LABEL = {name: lab for lab, names in _SYNONYMS.items() for name in names}
_CONTEMPT = ("contempt", "co", "contemptuous")
# CK+ emotion codes -> our labels (2 = contempt has no counterpart).
_CKPLUS = {0: NEUTRAL_LABEL, 1: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}


@dataclass(frozen=True)
class Record:
    """One labelled image.

    Attributes:
        path: Absolute image path.
        subject: Identity name (used for the subject-disjoint split).
        expression: 0..5 (:data:`facegan_kit.EXPRESSIONS`) or 6 (neutral).
        frame: Frame index within its sequence (0 when unknown).
    """

    path: Path
    subject: str
    expression: int
    frame: int = 0


@dataclass
class LayoutResult:
    """Parsed records and skipped inputs.

    Attributes:
        records: Records sorted by (subject, expression, path, frame).
        skipped: ``(path, reason)`` pairs for files or sequences left out.
    """

    records: List[Record] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)


def label_name(label: int) -> str:
    """Name of a label 0..6 (``"neutral"`` for 6)."""
    return NEUTRAL if label == NEUTRAL_LABEL else EXPRESSIONS[label]


def parse_expression(text: str) -> Optional[int]:
    """Map an expression name or integer string to a label.

    Args:
        text: e.g. ``"Happiness"``, ``"HA"``, ``"surprised"``, ``"3"``.

    Returns:
        0..6, ``-1`` for contempt (not modelled), or None if unknown.
    """
    key = str(text).strip().lower()
    if re.fullmatch(r"[+-]?\d+(\.0+)?", key):
        value = int(float(key))
        return value if 0 <= value <= NEUTRAL_LABEL else None
    if key in _CONTEMPT:
        return -1
    return _NAME_TO_LABEL.get(key)


def _frame_of(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else 0


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _select(frames: List[Path], mode: str) -> List[Path]:
    ordered = sorted(frames, key=lambda p: (_frame_of(p), p.name))
    if mode == "peak":
        return ordered[-1:]
    if mode == "last3":
        return ordered[-3:]
    return ordered


def _finish(result: LayoutResult, include_neutral: bool) -> LayoutResult:
    kept = []
    for rec in result.records:
        if rec.expression == NEUTRAL_LABEL and not include_neutral:
            result.skipped.append((str(rec.path), "neutral expression (include_neutral=False)"))
        else:
            kept.append(rec)
    kept.sort(key=lambda r: (r.subject, r.expression, str(r.path), r.frame))
    result.records = kept
    result.skipped.sort()
    return result


def _oulu(root: Path, frames: str, neutral_first: bool = False) -> LayoutResult:
    res = LayoutResult()
    sequences: Dict[Path, List[Path]] = defaultdict(list)
    for path in sorted(p for p in root.rglob("*") if _is_image(p)):
        sequences[path.parent].append(path)
    for folder, files in sorted(sequences.items()):
        label = parse_expression(folder.name)
        if folder == root or label is None:
            why = ("not inside <subject>/<Expression>/" if folder == root
                   else f"unknown expression folder {folder.name!r}")
            res.skipped.extend((str(f), why) for f in files)
            continue
        if label < 0:
            res.skipped.extend((str(f), "contempt label (not modelled)") for f in files)
            continue
        subject = folder.parent.name
        for f in _select(files, frames):
            res.records.append(Record(f.resolve(), subject, label, _frame_of(f)))
        if neutral_first and len(files) > 1 and frames != "all":  # sequences start neutral
            f = min(files, key=lambda p: (_frame_of(p), p.name))
            res.records.append(Record(f.resolve(), subject, NEUTRAL_LABEL, _frame_of(f)))
    return res


def _ckplus(root: Path, frames: str, neutral_first: bool) -> LayoutResult:
    res = LayoutResult()
    img_root = next((d for d in (root / "cohn-kanade-images", root) if d.is_dir()), root)
    emo_root = root / "Emotion"
    if not emo_root.is_dir():
        raise InputError(f"{root}: CK+ layout needs an 'Emotion' folder next to "
                         "'cohn-kanade-images'")
    for subj_dir in sorted(d for d in img_root.iterdir() if d.is_dir() and d != emo_root):
        for seq_dir in sorted(d for d in subj_dir.iterdir() if d.is_dir()):
            files = sorted((p for p in seq_dir.iterdir() if _is_image(p)),
                           key=lambda p: (_frame_of(p), p.name))
            if not files:
                continue
            labels = sorted((emo_root / subj_dir.name / seq_dir.name).glob("*_emotion.txt"))
            if not labels:
                res.skipped.append((str(seq_dir), "no emotion label for this sequence"))
                continue
            try:
                code = int(round(float(labels[-1].read_text().split()[0])))
            except (ValueError, IndexError, OSError):
                res.skipped.append((str(labels[-1]), "unreadable CK+ emotion file"))
                continue
            if code == 2:
                res.skipped.append((str(seq_dir), "contempt label (CK+ code 2, not modelled)"))
                continue
            if code not in _CKPLUS:
                res.skipped.append((str(seq_dir), f"unknown CK+ emotion code {code}"))
                continue
            label = _CKPLUS[code]
            for f in _select(files, frames):
                res.records.append(Record(f.resolve(), subj_dir.name, label, _frame_of(f)))
            if neutral_first and len(files) > 1 and frames != "all":
                f = files[0]
                res.records.append(Record(f.resolve(), subj_dir.name, NEUTRAL_LABEL,
                                          _frame_of(f)))
    return res


def _jaffe(root: Path) -> LayoutResult:
    res = LayoutResult()
    for f in sorted(p for p in root.rglob("*") if _is_image(p)):
        parts = f.name.split(".")
        label = parse_expression(parts[1][:2]) if len(parts) >= 3 else None
        if label is None or label < 0:
            res.skipped.append((str(f), "name is not JAFFE-style SUBJECT.XXn.ID.ext"))
            continue
        res.records.append(Record(f.resolve(), parts[0], label, _frame_of(f)))
    return res


def _prefix(stem: str) -> str:
    return re.split(r"[_\-. ]", stem, maxsplit=1)[0]


def _assign_subjects(paths: List[Path]) -> Dict[Path, str]:
    """Subject = stem prefix, unless there is no separator or only one prefix overall."""
    prefixes = {p: _prefix(p.stem) for p in paths}
    per_file = len(set(prefixes.values())) <= 1 and len(paths) > 1
    return {p: (p.stem if per_file or prefixes[p] == p.stem or not prefixes[p] else prefixes[p])
            for p in paths}


def _folder(root: Path) -> LayoutResult:
    res = LayoutResult()
    pending: List[Tuple[Path, int]] = []
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        label = parse_expression(class_dir.name)
        files = sorted(p for p in class_dir.rglob("*") if _is_image(p))
        if label is None or label < 0:
            why = "contempt label (not modelled)" if label == -1 else \
                f"unknown expression folder {class_dir.name!r}"
            res.skipped.extend((str(f), why) for f in files)
            continue
        pending.extend((f, label) for f in files)
    subjects = _assign_subjects([f for f, _ in pending])
    res.records = [Record(f.resolve(), subjects[f], lab, _frame_of(f)) for f, lab in pending]
    return res


def _regex(root: Path, pattern: Optional[str], codes: Optional[str]) -> LayoutResult:
    from facegan_kit.data.regex_layout import regex_records

    if not pattern:
        raise InputError("the regex layout needs --pattern with (?P<subject>...) and "
                         "(?P<expression>...) groups")
    res = LayoutResult()
    files = sorted(p for p in root.rglob("*") if _is_image(p))
    for path, subject, what in regex_records(root, files, pattern, codes, parse_expression):
        if subject is None:
            res.skipped.append((str(path), what))
        elif what < 0:
            res.skipped.append((str(path), "contempt label (not modelled)"))
        else:
            res.records.append(Record(path.resolve(), subject, what, _frame_of(path)))
    return res


def _csv(src: Path) -> LayoutResult:
    if src.is_dir():
        found = sorted(src.glob("*.csv"))
        if len(found) != 1:
            raise InputError(f"{src}: csv layout needs a CSV file or a folder with exactly one "
                             f"*.csv (found {len(found)})")
        src = found[0]
    res = LayoutResult()
    try:
        with open(src, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{src}: cannot read CSV ({exc})") from None
    if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image"):
        rows = rows[1:]
    pending: List[Tuple[Path, int, str]] = []
    for lineno, row in enumerate(rows, 1):
        if len(row) < 2:
            res.skipped.append((f"{src}:{lineno}", "CSV row needs path,label[,subject]"))
            continue
        path = Path(row[0].strip())
        path = path if path.is_absolute() else src.parent / path
        label = parse_expression(row[1])
        if label is None or label < 0:
            why = "contempt label (not modelled)" if label == -1 else f"unknown label {row[1]!r}"
            res.skipped.append((str(path), why))
        elif not path.is_file():
            res.skipped.append((str(path), "listed in CSV but missing"))
        else:
            pending.append((path, label, row[2].strip() if len(row) > 2 else ""))
    derived = _assign_subjects([p for p, _, s in pending if not s])
    res.records = [Record(p.resolve(), s or derived[p], lab, _frame_of(p)) for p, lab, s in pending]
    return res


def parse_layout(src, layout: str, frames: str = "last3", include_neutral: bool = False,
                 neutral_first: bool = False, pattern: Optional[str] = None,
                 codes: Optional[str] = None) -> LayoutResult:
    """Parse a dataset tree into records.

    Args:
        src: Dataset root (or CSV file for ``layout="csv"``).
        layout: One of :data:`LAYOUTS` (``"ck+"``/``"oulu"`` aliases accepted).
        frames: ``"last3"``, ``"peak"`` or ``"all"`` (sequence layouts only).
        include_neutral: Keep label-6 records instead of reporting them skipped.
        neutral_first: Oulu-CASIA and CK+: add each labelled sequence's first frame as neutral
            (implies keeping neutral records).
        pattern, codes: ``regex`` layout only: the file-name pattern and the code map
            (:mod:`facegan_kit.data.regex_layout`).

    Returns:
        A :class:`LayoutResult`.

    Raises:
        InputError: Unknown layout or frames mode, or a missing source.
    """
    src = Path(src)
    key = layout.strip().lower().replace("_", "-")
    key = {"ck+": "ckplus", "ck": "ckplus", "oulu": "oulu-casia", "oulucasia": "oulu-casia"}.get(
        key, key)
    if key not in LAYOUTS:
        raise InputError(f"unknown dataset layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")
    if frames not in FRAMES:
        raise InputError(f"unknown frames mode {frames!r}; use one of {', '.join(FRAMES)}")
    if not src.exists():
        raise InputError(f"{src}: dataset source not found")
    if pattern is not None and key != "regex":
        raise InputError(f"--pattern is for the regex layout, not {key}")
    if key != "csv" and not src.is_dir():
        raise InputError(f"{src}: {key} layout needs a folder")
    if key == "oulu-casia":
        res = _oulu(src, frames, neutral_first)
        include_neutral = include_neutral or neutral_first
    elif key == "ckplus":
        res = _ckplus(src, frames, neutral_first)
        include_neutral = include_neutral or neutral_first
    elif key == "jaffe":
        res = _jaffe(src)
    elif key == "folder":
        res = _folder(src)
    elif key == "regex":
        res = _regex(src, pattern, codes)
    else:
        res = _csv(src)
    return _finish(res, include_neutral)
