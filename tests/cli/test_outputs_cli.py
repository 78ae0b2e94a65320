"""Commands never replace an earlier result unasked; --overwrite replaces it whole, never mixed."""
from __future__ import annotations

import csv
import os
import stat

import pytest
from PIL import Image

WRITERS = [("data", "synthetic"), ("data", "prepare"), ("edit",), ("grid",), ("transfer",), ("generate",),
           ("retrieve",), ("tsne",), ("augment-experiment",), ("eval",), ("bench",), ("weights", "convert")]


def files(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def index_paths(folder) -> set:
    with open(folder / "index.csv", newline="") as fh:
        return {row["path"] for row in csv.DictReader(fh)}


def refused(run, *args) -> str:
    code, _, err = run(*args)
    assert code != 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("facegan: error")]  # warnings may come first
    assert len(lines) == 1 and "--overwrite" in lines[0], err
    return lines[0]


@pytest.mark.parametrize("command", WRITERS, ids=lambda c: " ".join(c))
def test_every_writer_states_the_rule_in_its_help(run, command):
    code, text, _ = run(*command, "--help")
    assert code == 0 and "--overwrite" in text and "earlier result" in " ".join(text.split())


def test_train_help_says_where_an_earlier_run_goes(run):
    code, text, _ = run("train", "--help")
    assert code == 0 and "previous/<UTC time>" in text


def test_data_synthetic_refuses_an_earlier_set_and_replaces_it_whole(run, tmp_path):
    out = tmp_path / "syn"
    assert run("data", "synthetic", "--out", out, "--subjects", 3, "--size", 16, "--frames", 2)[0] == 0
    before = files(out)
    line = refused(run, "data", "synthetic", "--out", out, "--subjects", 2, "--size", 16, "--frames", 1)
    assert str(out) in line and files(out) == before
    assert run("data", "synthetic", "--out", out, "--subjects", 2, "--size", 16, "--frames", 1, "--overwrite")[0] == 0
    rows = index_paths(out)
    assert len(rows) == 2 * 6 * 1
    assert set(files(out)) == rows | {"index.csv", "contact_sheet.png"}  # no stray images of the first set
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]


def _faces(folder, n):
    for i in range(n):
        p = folder / "happy" / f"p{i}_01.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 24), (10 * i, 80, 120)).save(p)


def test_data_prepare_refuses_an_earlier_set_and_replaces_it_whole(run, tmp_path):
    src, out = tmp_path / "src", tmp_path / "prepared"
    _faces(src, 4)
    args = ["data", "prepare", src, out, "--layout", "folder", "--no-align", "--size", 16, "--test-ratio", 0]
    assert run(*args)[0] == 0
    before = files(out)
    assert str(out) in refused(run, *args) and files(out) == before
    for p in list((src / "happy").iterdir())[:2]:
        p.unlink()
    assert run(*args, "--overwrite")[0] == 0
    rows = index_paths(out)
    assert len(rows) == 2 and set(files(out)) == rows | {"index.csv", "report.json", "report.txt"}


def test_data_prepare_overwrite_never_deletes_its_source(run, tmp_path):
    out = tmp_path / "out"
    _faces(out / "src", 2)
    (out / "index.csv").write_text("path\n")
    code, _, err = run("data", "prepare", out / "src", out, "--layout", "folder", "--no-align", "--overwrite")
    assert code != 0 and "inside it" in err and len(list((out / "src").rglob("*.png"))) == 2


def test_edit_refuses_an_earlier_result_of_the_same_name(run, tiny_checkpoint, tmp_path):
    a, b = tmp_path / "a" / "face.png", tmp_path / "b" / "face.png"
    for p, colour in ((a, (200, 120, 90)), (b, (40, 60, 200))):
        p.parent.mkdir()
        Image.new("RGB", (32, 32), colour).save(p)
    out = tmp_path / "edits"
    edit = ["edit", tiny_checkpoint, "--no-align", "-e", "happy", "--out", out]
    assert run(*edit[:2], a, *edit[2:])[0] == 0
    result = out / "face_happy.png"
    before, inode = result.read_bytes(), os.stat(result).st_ino
    line = refused(run, *edit[:2], b, *edit[2:])  # another photo, the same output name
    assert str(result) in line and result.read_bytes() == before and os.stat(result).st_ino == inode
    assert run(*edit[:2], b, *edit[2:], "--overwrite")[0] == 0
    assert os.stat(result).st_ino != inode  # replaced (atomically: a new file renamed over the old)
    assert sorted(p.name for p in out.iterdir()) == ["face_happy.png"]
    with open(tmp_path / "plain", "w"):
        pass
    assert stat.S_IMODE(os.stat(result).st_mode) == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)


def test_edit_tiny_photo_is_no_face_with_its_size(run, tiny_checkpoint, tmp_path):
    pytest.importorskip("facenet_pytorch")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (3, 3), (128, 100, 90)).save(tiny)
    code, _, err = run("edit", tiny_checkpoint, tiny, "-e", "happy", "--out", tmp_path / "e")
    assert code != 0 and "Traceback" not in err and "torch.cat" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("facegan: error")]
    assert len(errors) == 1 and f"{tiny}: no face found (image is 3x3 pixels)" in errors[0], err
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())


def test_a_write_the_file_system_refuses_is_one_line_naming_the_file(run, tiny_checkpoint, tmp_path, monkeypatch):
    import errno

    import facegan_kit.data.io as dio

    def full(path, image):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(dio, "write_png_atomic", full)
    face = tmp_path / "face.png"
    Image.new("RGB", (32, 32), (90, 80, 70)).save(face)
    code, _, err = run("edit", tiny_checkpoint, face, "--no-align", "-e", "sad", "--out", tmp_path / "e")
    assert code != 0 and "Traceback" not in err, err
    assert f"facegan: error: {tmp_path / 'e' / 'face_sad.png'}: No space left on device" in err, err
