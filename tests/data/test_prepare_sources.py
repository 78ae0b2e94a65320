"""prepare() on awkward sources: every skipped file is named, names follow SRC, tiny images."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from facegan_kit.data.prepare import prepare, read_index


def _img(path, size=(20, 16), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)
    return path


def test_symlink_loops_and_dead_links_are_listed_as_skipped(tmp_path):
    src = tmp_path / "src"
    _img(src / "happy" / "p1_01.png")
    os.symlink("loop_01.png", src / "happy" / "loop_01.png")  # points at itself
    (src / "sad").mkdir()
    os.symlink("b_01.png", src / "sad" / "a_01.png")
    os.symlink("a_01.png", src / "sad" / "b_01.png")  # a -> b -> a
    os.symlink("gone.png", src / "sad" / "dead_01.png")
    rep = prepare(src, tmp_path / "out", "folder", size=16, align=False, test_ratio=0.0)
    skipped = {os.path.relpath(s.path, src): s for s in rep.skipped}
    assert set(skipped) == {"happy/loop_01.png", "sad/a_01.png", "sad/b_01.png", "sad/dead_01.png"}
    assert all(s.reason == "broken_link" for s in skipped.values())
    assert "loop" in skipped["happy/loop_01.png"].detail and "target" in skipped["sad/dead_01.png"].detail
    text = (tmp_path / "out" / "report.txt").read_text()
    assert "loop_01.png" in text and "dead_01.png" in text and rep.n_written == 1


def test_subject_in_index_matches_its_folder(tmp_path):
    src = tmp_path / "src"
    _img(src / "happy" / "s03\nbad_01.png")
    _img(src / "happy" / "s04\tx_01.png")
    prepare(src, tmp_path / "out", "folder", size=16, align=False, test_ratio=0.0)
    rows = read_index(tmp_path / "out")
    assert len(rows) == 2
    for row in rows:
        assert row["path"].split("/")[1] == row["subject"], row
        assert (tmp_path / "out" / row["path"]).is_file()
    assert {r["subject"] for r in rows} == {"s03_bad", "s04_x"}


def test_crops_are_named_after_their_path_under_src(tmp_path):
    """A dataset assembled from symbolic links: names come from SRC, not the link targets."""
    store = tmp_path / "data" / "store"
    src = tmp_path / "assembled"
    for name, subject in (("x1.png", "p1"), ("x2.png", "p2")):
        target = _img(store / "deep" / "folders" / name)
        (src / "happy").mkdir(parents=True, exist_ok=True)
        os.symlink(target, src / "happy" / f"{subject}_01.png")
    _img(src / "sad" / "p1_02.png")
    prepare(src, tmp_path / "out", "folder", size=16, align=False, test_ratio=0.0)
    rows = {r["source"]: r for r in read_index(tmp_path / "out")}
    assert set(rows) == {"happy/p1_01.png", "happy/p2_01.png", "sad/p1_02.png"}
    assert rows["happy/p1_01.png"]["path"] == "images/p1/happy__p1_01.png"
    names = [p.name for p in (tmp_path / "out" / "images").rglob("*.png")]
    assert not any("store" in n or "tmp" in n for n in names), names


def test_tiny_and_thin_images_are_skipped_as_no_face(tmp_path):
    pytest.importorskip("facenet_pytorch")
    src = tmp_path / "src"
    for w, h in ((3, 3), (12, 12), (200, 5), (10000, 1)):
        _img(src / "happy" / f"t{w}x{h}_01.png", size=(w, h))
    rep = prepare(src, tmp_path / "out", "folder", size=32, test_ratio=0.0)
    got = {os.path.basename(s.path): (s.reason, s.detail) for s in rep.skipped}
    assert len(got) == 4 and rep.n_written == 0
    for w, h in ((3, 3), (12, 12), (200, 5), (10000, 1)):
        reason, detail = got[f"t{w}x{h}_01.png"]
        assert reason == "no_face" and detail == f"no face found (image is {w}x{h} pixels)", detail


def test_options_and_keywords_prepare_the_same_and_misspelt_keywords_fail(tmp_path):
    """``prepare(..., PrepareOptions(size=16))`` and ``prepare(..., size=16)`` write the same index;
    a keyword overrides the options' field; an unknown keyword is a TypeError, not ignored."""
    from facegan_kit.data.prepare import PrepareOptions

    src = tmp_path / "src"
    for i in range(3):
        _img(src / "happy" / f"p{i}_01.png", value=40 * i)
    by_kw = prepare(src, tmp_path / "kw", "folder", size=16, align=False, test_ratio=0.0)
    by_opts = prepare(src, tmp_path / "opts", "folder", PrepareOptions(size=32, align=False, test_ratio=0.0), size=16)
    assert by_kw.size == by_opts.size == 16 and by_kw.n_written == by_opts.n_written == 3
    assert (tmp_path / "kw" / "index.csv").read_text() == (tmp_path / "opts" / "index.csv").read_text()
    with pytest.raises(TypeError, match="sise"):
        prepare(src, tmp_path / "bad", "folder", sise=16, align=False)
