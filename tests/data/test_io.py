"""read_image / write_png_atomic / tensor helpers on awkward inputs made in the test."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from facegan_kit.data.io import ImageReadError, read_image, to_tensor, to_uint8, write_png_atomic
from facegan_kit.errors import InputError


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_grayscale_becomes_rgb(tmp_path):
    g = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert (out == g[..., None]).all()


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top opaque red, bottom fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert (out[:4] == [200, 0, 0]).all()
    assert (out[4:] == 255).all()


def test_16bit_scaled_to_8bit(tmp_path):
    v = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(4, 0)
    Image.fromarray(v).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    out = read_image(tmp_path / "d.png")
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_cmyk_and_palette(tmp_path):
    Image.new("CMYK", (10, 6), (0, 0, 0, 0)).save(tmp_path / "c.jpg")
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (6, 10, 3) and out.min() > 240  # CMYK zero ink = white
    pal = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    assert (read_image(tmp_path / "p.png") == np.asarray(pal.convert("RGB"))).all()
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    out = read_image(tmp_path / "pt.png")
    idx = np.asarray(pal) == 0
    assert idx.any() and (out[idx] == 255).all()


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (20, 10, 3)
    assert out[:8].mean() > 200 and out[12:].mean() < 50  # white half now on top


@pytest.mark.parametrize("kind,reason", [
    ("empty", "empty"), ("text", "not_an_image"), ("truncated", "truncated"), ("big", "too_large"),
])
def test_bad_files_raise_one_line_input_error(tmp_path, kind, reason):
    path = tmp_path / f"bad_{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a picture\n")
    elif kind == "truncated":
        buf = io.BytesIO()
        Image.fromarray(_rgb(128, 128)).save(buf, "JPEG", quality=95)
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    else:
        Image.new("L", (2000, 1500)).save(path, quality=50)
    with pytest.raises(InputError) as info:
        read_image(path, max_pixels=1_000_000 if kind == "big" else 40_000_000)
    msg = str(info.value)
    assert isinstance(info.value, ImageReadError) and info.value.reason == reason
    assert msg.startswith(str(path)) and "\n" not in msg


def test_bomb_cap_checked_before_decoding(tmp_path, monkeypatch):
    Image.new("L", (1100, 1000)).save(tmp_path / "b.png")
    loaded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(1))
    with pytest.raises(InputError, match="too large"):
        read_image(tmp_path / "b.png", max_pixels=1_000_000)
    assert not loaded
    assert Image.MAX_IMAGE_PIXELS != 1_000_000  # global restored


@pytest.mark.parametrize("side", [1200, 1500])  # over the cap; over twice the cap (Pillow's own error)
def test_oversize_message_names_the_configured_cap(tmp_path, side):
    path = tmp_path / "big.png"
    Image.new("1", (side, 1000)).save(path)
    with pytest.raises(ImageReadError) as info:
        read_image(path, max_pixels=500_000)
    msg = str(info.value)
    assert info.value.reason == "too_large" and "cap of 500,000 pixels" in msg, msg
    assert f"{side * 1000:,} pixels" in msg and "1000000" not in msg and "decompression" not in msg.lower()


def test_permission_error_names_the_cause_and_the_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.fromarray(_rgb()).save(path)

    def denied(fp, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", denied)  # chmod 000 does not stop root
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    msg = str(info.value)
    assert info.value.reason == "permission_denied" and msg.startswith(f"{path}: permission denied"), msg
    assert "corrupt" not in msg


def test_png_atomic_roundtrip_and_tensor_helpers(tmp_path):
    arr = _rgb()
    p = write_png_atomic(tmp_path / "sub" / "x.png", arr)
    assert (read_image(p) == arr).all()
    assert [f.name for f in p.parent.iterdir()] == ["x.png"]  # no temp files left
    t = to_tensor(arr)
    assert t.shape == (3, 24, 32) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert (to_uint8(t) == arr).all()
    write_png_atomic(p, t)  # float CHW tensor overwrites in place
    assert (read_image(p) == arr).all()
    assert (to_uint8(t[None])[0] == arr).all()


def test_resize_square_crops_the_centre_and_keeps_chosen_filter():
    from PIL import Image

    from facegan_kit.data.io import centre_square, resize_square

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    assert np.array_equal(centre_square(img), img[:, 15:75])
    assert np.array_equal(resize_square(img, 60), img[:, 15:75])  # already that size: unchanged
    small = resize_square(img, 24)
    assert small.shape == (24, 24, 3) and small.flags.writeable
    # what `data prepare` always wrote: PIL bicubic of the centre square
    want = np.asarray(Image.fromarray(img[:, 15:75]).resize((24, 24), Image.Resampling.BICUBIC))
    assert np.array_equal(resize_square(img, 24, Image.Resampling.BICUBIC), want)
    assert not np.array_equal(small, want)  # the default (Lanczos) is another filter
