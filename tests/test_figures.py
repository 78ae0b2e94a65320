"""Pictures meant for a person: faces at least 128 px wide, named columns, the source size stated;
loss curves that break where a loss has no data and name the stages."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from facegan_kit import EXPRESSIONS
from facegan_kit.figures import GAP, HEADER, MIN_CELL, cell_origin

torch.set_num_threads(1)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _check_labelled(img: np.ndarray, nrows: int, ncols: int, face: int, footer: bool = True) -> int:
    """Asserts the layout of a labelled :func:`sheet` and returns its row-label column width."""
    cell = max(MIN_CELL, face)
    left = img.shape[1] - (ncols * (cell + GAP) - GAP)
    assert 0 <= left <= cell, (img.shape, ncols)  # ncols cells of >= 128 px (plus row labels)
    bottom = HEADER + nrows * (cell + GAP) - GAP
    assert img.shape[0] >= bottom + (10 if footer else 0)  # nrows cells of >= 128 px, a footer
    header = img[:HEADER, left:]
    assert (header < 128).sum() > 30 * ncols  # ink in the header band: every column is named
    if footer:
        assert (img[bottom:] < 200).sum() > 100  # the footer's "faces NxN px, shown enlarged ..."
    return left


def _upscaled(face: torch.Tensor, cell: int) -> np.ndarray:
    u8 = ((face.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return np.asarray(Image.fromarray(u8).resize((cell, cell), Image.Resampling.BICUBIC), dtype=np.int16)


@pytest.fixture(scope="module")
def editor(tiny_checkpoint):
    from facegan_kit.edit import Editor

    return Editor.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def faces():
    from facegan_kit.data.synthetic import render_face, subject_attributes

    imgs = [render_face(subject_attributes(s), k, 0.9, 16, 0, s) for s, k in enumerate(range(6))]
    return torch.stack([torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1 for a in imgs])


def test_training_sample_grid_is_labelled_and_enlarged(editor, faces, tmp_path):
    from facegan_kit.train.report import sample_grid

    y = torch.eye(6)
    path = sample_grid(editor.models, faces, y, "encoder", tmp_path / "s.png")
    img = _png(path)
    left = _check_labelled(img, nrows=6, ncols=9, face=16)
    assert (img[HEADER:HEADER + MIN_CELL, :left] < 128).any()  # the row is named ("angry face")
    y0, x0 = cell_origin(2, 0, MIN_CELL, top=HEADER, left=left)
    shown = img[y0:y0 + MIN_CELL, x0:x0 + MIN_CELL]
    assert np.abs(shown - _upscaled(faces[2], MIN_CELL)).mean() < 2  # the input face, enlarged smoothly


def test_eval_figures_are_labelled_and_enlarged(editor, faces, tmp_path):
    from facegan_kit.eval.report import write_eval_report

    n = 3
    x = faces[:n]
    edits = torch.stack([editor.edit(x, e) for e in EXPRESSIONS])
    metrics = {"recipe": "tiny", "data": "synthetic", "split": "test", "faces": n, "image_size": 16,
               "judges": {"expression": None, "identity": None, "oracles": None}, "identity_faces": 0,
               "seconds": 1.0, "notes": [], "path_t": [0.2, 0.4, 0.6, 0.8, 1.0]}
    files = write_eval_report(metrics, tmp_path, editor=editor, x=x, recon=editor.edit(x, "happy"), edits=edits,
                              neutral=editor.edit(x, "neutral"), labels=torch.arange(n))
    _check_labelled(_png(files["edits"]), nrows=n, ncols=9, face=16)
    levels = editor.controller.levels
    _check_labelled(_png(files["intensity"]), nrows=6, ncols=levels + 5, face=16)


def test_bench_edit_grid_is_labelled_and_enlarged(editor, faces, tmp_path):
    from facegan_kit.eval.report import bench_edit_grid

    path = bench_edit_grid({"a": editor, "b": editor}, faces[:2], tmp_path / "edits.png")
    img = _png(path)
    left = _check_labelled(img, nrows=4, ncols=8, face=16)
    assert left > 40  # "face 1: a" ... name the rows


def test_serve_grid_is_labelled_and_enlarged(editor):
    import io

    from facegan_kit.serve.service import EditService

    svc = EditService(editor)
    try:
        tok = svc.sample(1)["token"]
        img = np.asarray(Image.open(io.BytesIO(svc.grid_png(tok))).convert("RGB"), dtype=np.int16)
    finally:
        svc.close()
    _check_labelled(img, nrows=editor.controller.levels, ncols=7, face=16)


# -- losses.png --------------------------------------------------------------------------------

ROWS = ([{"step": s, "stage": "controller", "d/adv_img": 1.0 + s, "g/q": 2.0} for s in (1, 2, 3)]
        + [{"step": s, "stage": "reconstruction", "g/l1": 0.5, "g/q": 2.0} for s in (4, 5, 6)]
        + [{"step": s, "stage": "refining", "d/adv_img": 1.0 + s, "g/l1": 0.4, "g/q": 2.0} for s in (7, 8)])


def test_loss_series_breaks_where_a_loss_is_absent():
    from facegan_kit.train.report import loss_series

    steps, values = loss_series(ROWS, "d/adv_img")
    assert steps.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [math.isnan(v) for v in values] == [False] * 3 + [True] * 3 + [False] * 2
    _, l1 = loss_series(ROWS, "g/l1")
    assert np.isnan(l1[:3]).all() and not np.isnan(l1[3:]).any()


def test_losses_png_draws_separate_segments_and_names_the_stages(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from facegan_kit.train.report import plot_losses, stage_starts

    assert stage_starts(ROWS) == [(1, "controller"), (4, "reconstruction"), (7, "refining")]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    seen = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):  # inspect the drawn figure just before it is written
        for ax in fig.axes:
            if ax.get_title():
                seen[ax.get_title()] = ax
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    assert plot_losses(log, tmp_path / "losses.png").is_file()
    ax: Axes = seen["d/adv_img"]
    path = ax.lines[0].get_path()  # NaN breaks the line: two pieces, nothing drawn over steps 4-6
    pieces = [seg for seg, code in path.iter_segments() if code == path.MOVETO]
    assert len(pieces) == 2
    drawn_x = np.asarray(ax.lines[0].get_xdata())[~np.isnan(ax.lines[0].get_ydata())]
    assert not any(4 <= x <= 6 for x in drawn_x)
    boundaries = sorted(ln.get_xdata()[0] for ln in ax.lines[1:])
    assert boundaries == [4, 7]  # a vertical line where each later stage starts
    assert {t.get_text().strip() for t in ax.texts} == {"controller", "reconstruction", "refining"}
