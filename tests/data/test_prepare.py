"""Dataset layouts on tiny fake trees, subject-disjoint split, and prepare() end to end."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from facegan_kit.data.layouts import NEUTRAL_LABEL, parse_expression, parse_layout
from facegan_kit.data.prepare import prepare, prepare_cli_summary, read_index, subject_split
from facegan_kit.errors import InputError


def _touch_img(path, value=128, size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value // 2, 255 - value)).save(path)
    return path


def test_expression_names_and_synonyms():
    assert parse_expression("Happiness") == 3 and parse_expression("HA") == 3
    assert parse_expression("anger") == parse_expression("ANGRY") == 0
    assert parse_expression("surprised") == 5 and parse_expression("Sadness") == 4
    assert parse_expression("neutral") == NEUTRAL_LABEL and parse_expression("2") == 2
    assert parse_expression("contempt") == -1 and parse_expression("bored") is None


def test_oulu_casia_frames(tmp_path):
    root = tmp_path / "OriginalImg" / "VL" / "Strong"
    for subj in ("P001", "P002"):
        for expr in ("Anger", "Happiness", "surprise"):
            for f in range(6):
                _touch_img(root / subj / expr / f"{f:03d}.jpeg")
    _touch_img(root / "P001" / "Bored" / "000.jpeg")
    res = parse_layout(tmp_path, "oulu-casia", frames="last3")
    assert len(res.records) == 2 * 3 * 3
    assert {r.frame for r in res.records} == {3, 4, 5}
    assert {r.subject for r in res.records} == {"P001", "P002"}
    assert {r.expression for r in res.records} == {0, 3, 5}
    assert [p for p, _ in res.skipped] == [str(root / "P001" / "Bored" / "000.jpeg")]
    assert len(parse_layout(tmp_path, "oulu", frames="peak").records) == 6
    assert len(parse_layout(tmp_path, "oulu-casia", frames="all").records) == 36
    again = parse_layout(tmp_path, "oulu-casia")
    assert again.records == res.records  # stable order
    neu = parse_layout(tmp_path, "oulu-casia", neutral_first=True)
    first = [r for r in neu.records if r.expression == NEUTRAL_LABEL]
    assert len(neu.records) == len(res.records) + 6 and {r.frame for r in first} == {0}


def test_ckplus_contempt_skipped_and_neutral_first(tmp_path):
    imgs, emo = tmp_path / "cohn-kanade-images", tmp_path / "Emotion"
    seqs = {("S005", "001"): 3.0, ("S010", "002"): 2.0, ("S011", "001"): 5.0, ("S011", "004"): None}
    for (s, q), code in seqs.items():
        for f in range(1, 6):
            _touch_img(imgs / s / q / f"{s}_{q}_{f:08d}.png")
        if code is not None:
            (emo / s / q).mkdir(parents=True)
            (emo / s / q / f"{s}_{q}_00000005_emotion.txt").write_text(f"   {code:.7e}\n")
    res = parse_layout(tmp_path, "ckplus", frames="last3")
    assert {(r.subject, r.expression) for r in res.records} == {("S005", 1), ("S011", 3)}
    assert len(res.records) == 6 and {r.frame for r in res.records} == {3, 4, 5}
    reasons = dict(res.skipped)
    assert "contempt" in reasons[str(imgs / "S010" / "002")]
    assert "no emotion label" in reasons[str(imgs / "S011" / "004")]
    peak = parse_layout(tmp_path, "ck+", frames="peak", neutral_first=True)
    assert sorted((r.subject, r.expression, r.frame) for r in peak.records) == [
        ("S005", 1, 5), ("S005", NEUTRAL_LABEL, 1), ("S011", 3, 5), ("S011", NEUTRAL_LABEL, 1)]


def test_jaffe_names(tmp_path):
    for name in ("KA.AN1.39.tiff", "KA.HA2.30.tiff", "YM.SU3.60.tiff", "YM.NE1.49.tiff", "x.tiff"):
        _touch_img(tmp_path / name)
    res = parse_layout(tmp_path, "jaffe")
    assert [(r.subject, r.expression, r.frame) for r in res.records] == [
        ("KA", 0, 39), ("KA", 3, 30), ("YM", 5, 60)]
    reasons = {p.split("/")[-1]: why for p, why in res.skipped}
    assert "neutral" in reasons["YM.NE1.49.tiff"] and "JAFFE" in reasons["x.tiff"]
    assert len(parse_layout(tmp_path, "jaffe", include_neutral=True).records) == 4


def test_folder_and_csv(tmp_path):
    for cls, names in {"Happy": ["S01_a.png", "S02_b.png"], "sad": ["S01_c.png"],
                       "contempt": ["S03_x.png"]}.items():
        for n in names:
            _touch_img(tmp_path / "f" / cls / n)
    res = parse_layout(tmp_path / "f", "folder")
    assert [(r.subject, r.expression) for r in res.records] == [("S01", 3), ("S01", 4), ("S02", 3)]
    assert "contempt" in res.skipped[0][1]
    # no separator in stems -> one subject per file
    _touch_img(tmp_path / "g" / "fear" / "one.png")
    _touch_img(tmp_path / "g" / "fear" / "two.png")
    assert {r.subject for r in parse_layout(tmp_path / "g", "folder").records} == {"one", "two"}

    _touch_img(tmp_path / "c" / "imgs" / "a.png")
    _touch_img(tmp_path / "c" / "imgs" / "b.png")
    with open(tmp_path / "c" / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["path", "label", "subject"], ["imgs/a.png", "happy", "alice"],
                     ["imgs/b.png", "5", "bob"], ["imgs/gone.png", "sad", "carl"],
                     ["imgs/a.png", "meh", "alice"]])
    res = parse_layout(tmp_path / "c", "csv")
    assert [(r.subject, r.expression) for r in res.records] == [("alice", 3), ("bob", 5)]
    reasons = sorted(why for _, why in res.skipped)
    assert reasons == ["listed in CSV but missing", "unknown label 'meh'"]


def test_unknown_layout_lists_known(tmp_path):
    with pytest.raises(InputError, match="known layouts: oulu-casia, ckplus, jaffe, folder, regex, csv"):
        parse_layout(tmp_path, "affectnet")


def test_split_is_subject_disjoint_and_seeded(tmp_path):
    subjects = [f"P{i:03d}" for i in range(20)]
    test = subject_split(subjects * 3, 0.25, seed=3)
    assert len(test) == 5 and test == subject_split(reversed(subjects), 0.25, seed=3)
    assert test != subject_split(subjects, 0.25, seed=4)
    # end to end without alignment (fast): index split never mixes a subject
    src = tmp_path / "oulu"
    for i, s in enumerate(subjects[:10]):
        for expr in ("Fear", "Sadness"):
            for f in range(4):
                _touch_img(src / s / expr / f"{f:03d}.jpeg", value=10 * i + f, size=(40, 30))
    rep = prepare(src, tmp_path / "out", "oulu-casia", size=32, test_ratio=0.2, seed=1,
                  align=False)
    rows = read_index(tmp_path / "out")
    assert rep.n_written == len(rows) == 10 * 2 * 3 and not rep.skipped
    by_split = {sp: {r["subject"] for r in rows if r["split"] == sp} for sp in ("train", "test")}
    assert len(by_split["test"]) == 2 and not (by_split["train"] & by_split["test"])
    assert rep.n_test == 12 and rep.test_subjects == sorted(by_split["test"])
    # --neutral-first: each sequence's first frame joins as a neutral face (label 6)
    rep = prepare(src, tmp_path / "out_neu", "oulu-casia", size=32, test_ratio=0.2, seed=1,
                  align=False, neutral_first=True)
    rows = read_index(tmp_path / "out_neu")
    neutral = [r for r in rows if int(r["expression"]) == 6]
    assert rep.n_written == len(rows) == 10 * 2 * 4 and len(neutral) == 10 * 2
    assert all(r["expression_name"] == "neutral" for r in neutral)
    # the prepared dataset keeps them (they train the neutral code) unless told not to
    from facegan_plugins.data import prepared

    with_neu, without = prepared(str(tmp_path / "out_neu")), prepared(str(tmp_path / "out_neu"), include_neutral=False)
    assert int((with_neu.train.expression == 6).sum()) + int((with_neu.test.expression == 6).sum()) == 20
    assert len(without.train) + len(without.test) == 60 and not bool((without.train.expression == 6).any())


def test_prepare_mixed_folder(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    pytest.importorskip("facenet_pytorch")
    src = tmp_path / "mixed"
    (src / "happy").mkdir(parents=True)
    (src / "sad").mkdir()
    Image.fromarray(skdata.astronaut()).save(src / "happy" / "astro_01.png")
    grad = np.tile(np.linspace(0, 255, 160, dtype=np.float32)[None, :, None], (120, 1, 3))
    Image.fromarray(grad.astype(np.uint8)).save(src / "sad" / "gradient_01.png")
    Image.fromarray(skdata.coffee()[::2, ::2]).save(src / "sad" / "coffee_01.jpg")
    (src / "sad" / "notes_01.jpg").write_text("shopping list\n")
    Image.fromarray(skdata.astronaut()).save(src / "happy" / "cut_01.jpg", quality=90)
    data = (src / "happy" / "cut_01.jpg").read_bytes()
    (src / "happy" / "cut_01.jpg").write_bytes(data[: len(data) // 3])
    (src / "sad" / "empty_01.png").write_bytes(b"")

    out = tmp_path / "prepared"
    rep = prepare(src, out, "folder", size=128, test_ratio=0.0)
    rows = read_index(out)
    assert rep.n_candidates == 6 and rep.n_written == 1 and len(rows) == 1
    row = rows[0]
    assert row["source"] == "happy/astro_01.png" and row["expression_name"] == "happy"
    assert len(row["landmarks"].split()) == 10 and float(row["score"]) > 0.9
    crop = np.asarray(Image.open(out / row["path"]))
    assert crop.shape == (128, 128, 3)
    expected = {"sad/gradient_01.png": "no_face", "sad/coffee_01.jpg": "no_face",
                "sad/notes_01.jpg": "not_an_image", "happy/cut_01.jpg": "truncated",
                "sad/empty_01.png": "empty"}
    got = {s.path[len(str(src)) + 1:]: s.reason for s in rep.skipped}
    assert got == expected
    report = json.loads((out / "report.json").read_text())
    assert {s["reason"] for s in report["skipped"]} == set(expected.values())
    text = (out / "report.txt").read_text()
    for name in expected:
        assert name.split("/")[1] in text
    assert "no face found" in text and "truncated" in text
    summary = prepare_cli_summary(rep)
    assert "prepared 1/6" in summary and "no_face 2" in summary
    assert not list(out.rglob("*.tmp"))
