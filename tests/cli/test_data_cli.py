"""facegan data synthetic / prepare."""
from __future__ import annotations

import csv

import numpy as np
from PIL import Image


def test_data_synthetic_writes_index_and_sheet(run, tmp_path):
    out = tmp_path / "syn"
    code, text, err = run("data", "synthetic", "--out", out, "--subjects", 3, "--size", 16)
    assert code == 0, text + err
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 18  # 6 expressions x 3 frames per subject
    assert all((out / r["path"]).is_file() for r in rows)
    assert {r["split"] for r in rows} == {"train", "test"}
    assert "54 faces" in text and str(out / "contact_sheet.png") in text
    assert (out / "contact_sheet.png").is_file()


def test_data_synthetic_neutral_frames(run, tmp_path):
    out = tmp_path / "neu"
    code, text, err = run("data", "synthetic", "--out", out, "--subjects", 2, "--size", 16, "--frames", 1,
                          "--neutral-frames", 4, "--test-subjects", 1)
    assert code == 0, text + err
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [r["expression_name"] for r in rows]
    assert len(rows) == 2 * 10 and names.count("neutral") == 8 and "20 faces" in text and "10 test" in text
    assert all(float(r["intensity"]) == 0.0 for r in rows if r["expression_name"] == "neutral")
    assert len({r["path"] for r in rows}) == 20 and all((out / r["path"]).is_file() for r in rows)


def test_data_synthetic_plain_background(run, tmp_path):
    from PIL import Image

    out = tmp_path / "plain"
    code, text, err = run("data", "synthetic", "--out", out, "--subjects", 2, "--size", 32, "--background", "plain")
    assert code == 0, text + err
    with open(out / "index.csv", newline="") as fh:
        paths = [r["path"] for r in csv.DictReader(fh)]
    corners = np.stack([np.asarray(Image.open(out / p).convert("RGB"))[:3, :3].reshape(-1, 3).mean(0) for p in paths])
    # one lab grey: brightness follows the lighting, the colour (each corner minus its grey level) stays
    chroma = corners - corners.mean(1, keepdims=True)
    assert chroma.std(0).max() < 6 and abs(chroma.mean(0)).max() < 12
    code, _, err = run("data", "synthetic", "--out", tmp_path / "x", "--background", "sky")
    assert code != 0 and "background" in err


def test_data_synthetic_bad_size_is_rejected(run, tmp_path):
    code, _, err = run("data", "synthetic", "--out", tmp_path / "s", "--size", 8)
    assert code != 0 and "size" in err and not (tmp_path / "s").exists()


def _tree(root):
    """A 'folder' layout: <expression>/<file> with two subjects in the names."""
    rng = np.random.default_rng(0)
    for expr in ("happy", "sad", "angry"):
        for subj in ("p1", "p2", "p3"):
            p = root / expr / f"{subj}_{expr}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(p)
    (root / "happy" / "broken.png").write_bytes(b"not a png")


def test_data_prepare_no_align_summary_and_failures(run, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    _tree(src)
    code, text, err = run("data", "prepare", src, out, "--layout", "folder", "--no-align",
                          "--size", 16, "--frames", "all")
    assert code == 0, text + err
    assert text.startswith("prepared ") and "skipped 1" in text and "not_an_image" in text
    with open(out / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 and Image.open(out / rows[0]["path"]).size == (16, 16)
    # nothing preparable -> non-zero exit, summary still printed
    empty = tmp_path / "empty" / "happy"
    empty.mkdir(parents=True)
    (empty / "x.png").write_bytes(b"")
    code, text, err = run("data", "prepare", tmp_path / "empty", tmp_path / "o2", "--layout", "folder",
                          "--no-align")
    assert code != 0 and "prepared 0/" in text and "nothing could be prepared" in err
    # the output may not be the source
    code, _, err = run("data", "prepare", src, src, "--layout", "folder", "--no-align")
    assert code != 0 and err.count("\n") == 1 and "input" in err
