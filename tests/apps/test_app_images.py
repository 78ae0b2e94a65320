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
    from facegan_kit.figures import GAP, cell_origin

    x = torch.zeros(3, 16, 16)
    plain = sheet([[x, None, x], [None, x]], note=False)
    assert plain.shape == (2 * 128 + GAP, 3 * 128 + 2 * GAP, 3)  # 16 px faces shown 128 px wide
    y, xo = cell_origin(1, 0, 128)
    assert (plain[y:y + 128, xo:xo + 128] == 255).all() and (plain[:128, :128] == 128).all()
    lab = sheet([[x, x]], col_labels=["a", "b"], captions=[["c", "d"]], note=False)
    assert lab.shape == (HEADER + 128 + HEADER, 2 * 128 + GAP, 3)
    assert (lab[:HEADER] < 255).any()  # text was drawn
    assert sheet([[torch.zeros(3, 160, 160)]], note=False).shape == (160, 160, 3)  # big faces keep their size


def test_sheet_states_the_source_size_and_enlarges_smoothly():
    face = torch.zeros(3, 16, 16)
    face[:, :8] = 1.0  # top half white, bottom half black: a hard edge
    out = sheet([[face]])
    assert out.shape[1] == 128 and out.shape[0] > 128  # a footer below the cell
    assert (out[130:] < 200).any()  # its text ("faces 16x16 px, shown enlarged to 128 px") was drawn
    column = out[:128, 64, 0].astype(int)
    # a smooth filter puts intermediate greys at the edge; nearest-neighbour would jump 255 -> 0
    assert ((column > 20) & (column < 235)).sum() >= 2


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
