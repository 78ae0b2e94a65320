"""Input loading, output safety and sheet layout."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facegan_kit.apps import check_outputs, edit_name
from facegan_kit.apps.images import HEADER, load_crops, load_face, read_folder, resize_square, sheet
from facegan_kit.errors import InputError


def test_edit_names():
    assert edit_name("face", "Happy", intensity=0.7) == "face_happy_i0.70.png"
    assert edit_name("face", "sad", level=3) == "face_sad_l3.png"
    assert edit_name("face", "neutral") == "face_neutral.png"
    assert edit_name("f", "sad", level=3, suffix="_face") == "f_sad_l3_face.png"


def test_check_outputs(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    check_outputs([tmp_path / "b.png"], [a])
    with pytest.raises(InputError, match="input"):
        check_outputs([tmp_path / "." / "a.png"], [a])
    with pytest.raises(InputError, match="same path"):
        check_outputs([tmp_path / "c.png", tmp_path / "c.png"], [a])


def test_no_align_crops_and_resizes(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 10:50] = 200  # the centre square is bright, the side strips dark
    p = tmp_path / "wide.png"
    Image.fromarray(img).save(p)
    face = load_face(p, 16, align=False)
    assert face.face.shape == (3, 16, 16) and face.photo is None
    assert face.face.min() > 0.5  # only the centre square was kept
    assert resize_square(img, 40).shape == (40, 40, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png"):
        load_face(bad, 16, align=False)


def test_sheet_geometry_and_labels():
    x = torch.zeros(3, 16, 16)
    plain = sheet([[x, None, x], [None, x]])
    assert plain.shape == (2 * 64, 3 * 64, 3)
    assert (plain[64:, :64] == 255).all() and (plain[:64, :64] == 128).all()
    lab = sheet([[x, x]], col_labels=["a", "b"], captions=[["c", "d"]])
    assert lab.shape == (HEADER + 64 + HEADER, 128, 3)
    assert (lab[:HEADER] < 255).any()  # text was drawn
    assert sheet([[torch.zeros(3, 80, 80)]]).shape == (80, 80, 3)


def test_read_folder_labels(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "index.csv").write_text("path,subject,expression_name,split\na.png,s1,happy,train\n"
                                        "b.png,s1,neutral,test\nc.png,s2,,train\n")
    rows = read_folder(tmp_path)
    assert [r["label"] for r in rows] == [3, None, None]
    assert [r["subject"] for r in rows] == ["s1", "s1", "s2"]
    assert load_crops([r["file"] for r in rows], 4).shape == (3, 3, 4, 4)
    (tmp_path / "index.csv").unlink()
    assert [r["file"].name for r in read_folder(tmp_path)] == ["a.png", "b.png", "c.png"]
    with pytest.raises(InputError, match="index.csv"):
        read_folder(tmp_path, require_index=True)
