"""Turn a real-face dataset into aligned crops, an index and a skip report.

``prepare(src, out, layout)`` parses the layout (:mod:`facegan_kit.data.layouts`),
detects and aligns every selected file with one shared MTCNN
(:class:`~facegan_kit.data.align.FaceAligner`), and writes into ``out``:

* ``images/<subject>/<source path under src, "/" as "__">.png`` - aligned ``size`` x ``size``
  crops, written atomically (characters unsafe in file names become ``_``, in the subject
  names of ``index.csv`` too, so they match the folders);
* ``index.csv`` - columns :data:`INDEX_COLUMNS`; ``landmarks`` holds 10
  space-separated floats (x0 y0 ... x4 y4, crop pixel coordinates; empty with
  ``align=False``); ``split`` is ``train`` or ``test``, subject-disjoint;
* ``report.json`` and ``report.txt`` - counts plus every skipped file with its
  reason code and message.

One bad file never stops the run; files are processed in a stable order.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional

from PIL import Image

from facegan_kit.errors import InputError
from facegan_kit.outputs import atomic_write
from facegan_kit.data.io import ImageReadError, read_image, resize_square, write_png_atomic
from facegan_kit.data.layouts import label_name, parse_layout

__all__ = ["INDEX_COLUMNS", "SkippedFile", "PrepareReport", "PrepareOptions", "prepare", "subject_split",
           "prepare_cli_summary", "read_index"]

INDEX_COLUMNS = ("path", "subject", "expression", "expression_name", "source", "landmarks",
                 "score", "split")


@dataclass
class SkippedFile:
    """A file (or sequence) that produced no crop.

    Attributes:
        path: The input path.
        reason: Short code (``no_face``, ``several_faces``, ``truncated``, ``empty``,
            ``not_an_image``, ``too_large``, ``permission_denied``, ``unreadable``, ``missing``,
            ``broken_link`` (a symbolic link loop or a link to nothing), ``layout``,
            ``error``).
        detail: Human-readable one-line explanation.
    """

    path: str
    reason: str
    detail: str


@dataclass
class PrepareReport:
    """Summary of a :func:`prepare` run (also written as report.json/report.txt).

    Attributes:
        src, out, layout, size, frames, seed, test_ratio, align: The run's settings.
        n_candidates: Files selected by the layout (before detection).
        n_written: Crops written to ``index.csv``.
        skipped: Every skipped input with its reason.
        n_train, n_test: Rows per split.
        train_subjects, test_subjects: Subject names per split.
        per_expression: Written rows per expression name.
        seconds: Wall time.
    """

    src: str
    out: str
    layout: str
    size: int
    frames: str
    seed: int
    test_ratio: float
    align: bool
    n_candidates: int = 0
    n_written: int = 0
    skipped: List[SkippedFile] = field(default_factory=list)
    n_train: int = 0
    n_test: int = 0
    train_subjects: List[str] = field(default_factory=list)
    test_subjects: List[str] = field(default_factory=list)
    per_expression: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def skipped_by_reason(self) -> Dict[str, int]:
        """Number of skipped inputs per reason code."""
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["skipped_by_reason"] = self.skipped_by_reason
        return d


def subject_split(subjects, test_ratio: float, seed: int) -> set:
    """Pick test subjects: a seeded shuffle of the sorted unique names.

    Args:
        subjects: Iterable of subject names.
        test_ratio: Fraction of *subjects* in the test split (rounded, at least one
            when ratio > 0 and there are two or more subjects; never all of them).
        seed: Shuffle seed.

    Returns:
        The set of test subject names.
    """
    names = sorted(set(subjects))
    if test_ratio <= 0 or len(names) < 2:
        return set()
    n_test = min(len(names) - 1, max(1, int(round(test_ratio * len(names)))))
    random.Random(seed).shuffle(names)
    return set(names[:n_test])


def _safe(name: str) -> str:
    """A file-system-safe version of a name (no separators, no leading dot)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")[:180] or "_"


def _mangle(rel: str) -> str:
    """``"P001/Happiness/005.jpeg"`` -> ``"P001__Happiness__005.png"``."""
    stem = os.path.splitext(rel)[0].replace("/", "__").replace("\\", "__")
    return _safe(stem) + ".png"


def _crop_name(rel: str, expression: int, used: set) -> str:
    """A crop's file name after its path under SRC, unique within the prepared set."""
    name = _mangle(rel)
    if expression == 6 or name in used:  # the same file as a neutral face / a clash
        name = name[:-4] + f"__{label_name(expression)}.png"
    base, n = name[:-4], 2
    while name in used:
        name, n = f"{base}__{n}.png", n + 1
    used.add(name)
    return name


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else its folder and file name (a CSV layout
    may list files anywhere: their absolute path would make unreadable crop names)."""
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return "/".join(path.parts[-2:])


def _walk_source(src: Path, out_abs: Path) -> tuple[Dict[Path, str], List[SkippedFile]]:
    """Walk ``src`` (through symlinked folders, each real folder once).

    Returns every file's resolved path mapped to its path relative to ``src`` as the user sees
    it (the layouts give resolved paths, which for a symlinked file lie outside ``src``), and
    the symbolic links that lead nowhere (loops, missing targets), which the layouts pass over
    without a word but the report must name.
    """
    names: Dict[Path, str] = {}
    dead: List[SkippedFile] = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        here = Path(dirpath)
        if (st.st_dev, st.st_ino) in seen or here.resolve() == out_abs:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in sorted(filenames):
            path = here / name
            try:
                os.stat(path)
            except OSError as exc:
                if os.path.islink(path):
                    why = ("symbolic link loop (it never reaches a file)" if exc.errno == errno.ELOOP
                           else "broken symbolic link (its target does not exist)")
                    dead.append(SkippedFile(str(path), "broken_link", why))
                continue
            names.setdefault(Path(os.path.realpath(path)), path.relative_to(src).as_posix())
    return names, dead


def _report_text(rep: PrepareReport) -> str:
    lines = [prepare_cli_summary(rep), "", f"skipped files ({len(rep.skipped)}):"]
    lines += [f"  {s.path}\t{s.reason}\t{s.detail}" for s in rep.skipped] or ["  (none)"]
    return "\n".join(lines) + "\n"


@dataclass
class PrepareOptions:
    """How :func:`prepare` selects, crops and splits (``facegan data prepare``'s options).

    Attributes:
        size: Crop side in pixels (at least 16).
        frames: ``"last3"`` (paper), ``"peak"`` or ``"all"``.
        test_ratio: Fraction of subjects held out for the test split, in ``[0, 1)``.
        seed: Split seed.
        align: If False, skip detection and centre-crop + resize instead.
        policy: ``"single"`` skips photos with several faces; ``"largest"`` keeps the
            biggest one.
        include_neutral: Keep neutral (label 6) records.
        neutral_first: Oulu-CASIA / CK+: add each sequence's first frame as a neutral face
            (what the recipes' neutral code trains on).
        device: Torch device for MTCNN.
        pattern, codes: ``layout="regex"``: the file-name pattern with ``subject`` and
            ``expression`` groups and the ``CODE=EXPRESSION`` map
            (:mod:`facegan_kit.data.regex_layout`).
        max_pixels: Decompression-bomb cap passed to :func:`read_image`.
    """

    size: int = 128
    frames: str = "last3"
    test_ratio: float = 0.1
    seed: int = 0
    align: bool = True
    policy: str = "single"
    include_neutral: bool = False
    neutral_first: bool = False
    device: str = "cpu"
    pattern: Optional[str] = None
    codes: Optional[str] = None
    max_pixels: int = 40_000_000


def prepare(src, out, layout: str, options: Optional[PrepareOptions] = None, *, aligner=None,
            progress: Optional[Callable[[int, int], None]] = None, **kwargs) -> PrepareReport:
    """Detect, align and index a dataset.

    Args:
        src: Dataset root (or CSV file for ``layout="csv"``).
        out: Output folder (created). ``index.csv`` there is replaced atomically.
        layout: See :data:`facegan_kit.data.layouts.LAYOUTS`.
        options: A :class:`PrepareOptions`; keyword arguments named like its fields set (or
            override) them, e.g. ``prepare(src, out, "folder", size=64, align=False)``.
        aligner: An existing :class:`FaceAligner` of the same size to reuse.
        progress: Optional ``callback(done, total)``.

    Returns:
        The :class:`PrepareReport` (also written to ``report.json``/``report.txt``).

    Raises:
        InputError: Bad layout / source / arguments (never for a single bad file).
    """
    t0 = time.perf_counter()
    o = replace(options or PrepareOptions(), **kwargs)
    if not 0.0 <= float(o.test_ratio) < 1.0:
        raise InputError(f"test_ratio must be in [0, 1), got {o.test_ratio}")
    if int(o.size) < 16:
        raise InputError(f"size must be at least 16, got {o.size}")
    size = int(o.size)
    src, out = Path(src), Path(out)
    parsed = parse_layout(src, layout, frames=o.frames, include_neutral=o.include_neutral,
                          neutral_first=o.neutral_first, pattern=o.pattern, codes=o.codes)
    out.mkdir(parents=True, exist_ok=True)
    root = src if src.is_dir() else src.parent
    rep = PrepareReport(str(src), str(out), layout, size, o.frames, int(o.seed),
                        float(o.test_ratio), bool(o.align), n_candidates=len(parsed.records))
    rep.skipped = [SkippedFile(p, "layout", why) for p, why in parsed.skipped]
    if o.align and aligner is None:
        from facegan_kit.data.align import FaceAligner
        aligner = FaceAligner(size=o.size, device=o.device)
    if o.align and aligner.size != size:
        raise InputError(f"aligner size {aligner.size} does not match size={o.size}")

    rows, used_names = [], set()
    out_abs = out.resolve()
    # already sorted by (subject, expression, path, frame); never re-ingest our own output
    records = [r for r in parsed.records if out_abs not in r.path.parents]
    rep.n_candidates = len(records)
    rep.skipped = [s for s in rep.skipped if out_abs not in Path(s.path).resolve().parents]
    names, dead_links = _walk_source(src, out_abs) if src.is_dir() else ({}, [])
    rep.skipped += dead_links
    for i, rec in enumerate(records):
        rel = names.get(rec.path) or _relative(rec.path, root)
        got = _crop_one(rec, rel, out, size, aligner if o.align else None, o.policy, o.max_pixels, used_names)
        (rep.skipped if isinstance(got, SkippedFile) else rows).append(got)
        if progress is not None:
            progress(i + 1, len(records))

    rep.seconds = time.perf_counter() - t0
    _write_index_and_report(out, rows, rep)
    return rep


def _crop_one(rec, rel: str, out: Path, size: int, aligner, policy: str, max_pixels: int,
              used_names: set) -> dict | SkippedFile:
    """Read, align (or centre-crop without an ``aligner``) and write one record's face: its
    ``index.csv`` row, or why it was skipped (one bad file never stops the run)."""
    subject = _safe(rec.subject)  # index.csv and the folder name agree
    try:
        img = read_image(rec.path, max_pixels=max_pixels)
        if aligner is not None:
            face, det = aligner.align_face(img, policy=policy)
            crop, lms, score = face.crop, face.landmarks_in_crop.reshape(-1), det.score
        else:
            crop, lms, score = resize_square(img, size, Image.Resampling.BICUBIC), None, 1.0
        dest = Path("images") / subject / _crop_name(rel, rec.expression, used_names)
        write_png_atomic(out / dest, crop)
    except ImageReadError as exc:
        return SkippedFile(str(rec.path), exc.reason, exc.detail)
    except InputError as exc:  # FaceCountError and friends
        return SkippedFile(str(rec.path), getattr(exc, "reason", "error"), str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
        return SkippedFile(str(rec.path), "error", " ".join(f"{type(exc).__name__}: {exc}".split()))
    return {
        "path": dest.as_posix(), "subject": subject, "expression": rec.expression,
        "expression_name": label_name(rec.expression), "source": rel,
        "landmarks": "" if lms is None else " ".join(f"{v:.2f}" for v in lms),
        "score": f"{score:.4f}",
    }


def _write_index_and_report(out: Path, rows: List[dict], rep: PrepareReport) -> None:
    """Split ``rows`` by subject, write ``index.csv`` and fill in and write the report."""
    test = subject_split((r["subject"] for r in rows), rep.test_ratio, rep.seed)
    for r in rows:
        r["split"] = "test" if r["subject"] in test else "train"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(INDEX_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "index.csv", buf.getvalue())

    rep.n_written = len(rows)
    rep.n_test = sum(r["split"] == "test" for r in rows)
    rep.n_train = rep.n_written - rep.n_test
    rep.test_subjects = sorted(test)
    rep.train_subjects = sorted({r["subject"] for r in rows} - test)
    rep.per_expression = dict(sorted(Counter(r["expression_name"] for r in rows).items()))
    rep.skipped.sort(key=lambda s: (s.path, s.reason))
    rep.seconds = round(rep.seconds, 3)
    atomic_write(out / "report.json", json.dumps(rep.to_dict(), indent=2) + "\n")
    atomic_write(out / "report.txt", _report_text(rep))


def read_index(prepared_dir) -> List[dict]:
    """Read ``index.csv`` of a prepared folder as a list of row dicts.

    Raises:
        InputError: Missing or malformed index (message names the file).
    """
    path = Path(prepared_dir) / "index.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(INDEX_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise InputError(f"{path}: missing columns {', '.join(sorted(missing))}")
            return list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: not found (run prepare first)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: unreadable index ({exc})") from None


def prepare_cli_summary(report: PrepareReport) -> str:
    """A short multi-line summary for the CLI.

    Args:
        report: The :class:`PrepareReport` returned by :func:`prepare`.

    Returns:
        Text such as ``"prepared 1296/1310 faces (128x128, oulu-casia) -> out"`` followed
        by the split, per-expression counts and skip reasons.
    """
    r = report
    lines = [
        f"prepared {r.n_written}/{r.n_candidates} faces ({r.size}x{r.size}, {r.layout}, "
        f"frames={r.frames}) -> {r.out}",
        f"split: {r.n_train} train / {r.n_test} test images, "
        f"{len(r.train_subjects)} / {len(r.test_subjects)} subjects (seed {r.seed})",
    ]
    if r.per_expression:
        lines.append("expressions: " + ", ".join(f"{k} {v}" for k, v in r.per_expression.items()))
    if r.skipped:
        reasons = ", ".join(f"{k} {v}" for k, v in r.skipped_by_reason.items())
        lines.append(f"skipped {len(r.skipped)}: {reasons} (see {Path(r.out) / 'report.txt'})")
    else:
        lines.append("skipped 0")
    lines.append(f"time: {r.seconds:.1f} s")
    return "\n".join(lines)
