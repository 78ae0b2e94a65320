"""MTCNN alignment on a real photo (skimage's astronaut) and paste-back."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("facenet_pytorch")
skdata = pytest.importorskip("skimage.data")

from facegan_kit.data.align import (  # noqa: E402
    FaceAligner, FaceCountError, estimate_similarity, template, transform_points,
)
from facegan_kit.errors import InputError  # noqa: E402


@pytest.fixture(scope="module")
def aligner():
    return FaceAligner(size=128)


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skdata.astronaut())


@pytest.fixture(scope="module")
def aligned(aligner, astronaut):
    return aligner.align_face(astronaut, policy="single")


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([4.0, -9.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ rot.T + t
    m = estimate_similarity(src, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-7)
    # reflections are never returned
    m2 = estimate_similarity(src, dst * [-1, 1])
    assert np.linalg.det(m2[:, :2]) > 0
    with pytest.raises(ValueError, match="degenerate"):
        estimate_similarity(np.ones((5, 2)), dst)


def test_similarity_matches_a_direct_umeyama_on_noisy_landmarks():
    """scikit-image's estimate is Umeyama's least-squares solution (no reflection)."""
    rng = np.random.default_rng(1)
    dst = template(128).astype(np.float64)
    for trial in range(50):
        src = dst @ rng.normal(0, 2, (2, 2)) + rng.uniform(-200, 200, 2) + rng.normal(0, 5, (5, 2))
        m = estimate_similarity(src, dst)
        mu_s, mu_d = src.mean(0), dst.mean(0)
        u, sig, vt = np.linalg.svd((dst - mu_d).T @ (src - mu_s) / 5)
        d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
        scale = (sig * d).sum() / (((src - mu_s) ** 2).sum() / 5)
        rot = scale * u @ np.diag(d) @ vt
        assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], mu_d - rot @ mu_s, atol=1e-6)


def test_detect_returns_five_float32_landmarks(aligned):
    face, det = aligned
    assert det.landmarks.shape == (5, 2) and det.landmarks.dtype == np.float32
    assert det.score > 0.95
    le, re_ = det.landmarks[0], det.landmarks[1]
    assert le[0] < re_[0]  # image-left eye first
    assert face.crop.shape == (128, 128, 3) and face.crop.dtype == np.uint8


def test_eye_centres_land_on_template(aligner, aligned):
    face, det = aligned
    tmpl = template(128)[:2]
    mapped = transform_points(face.matrix, det.landmarks[:2])
    err_mapped = np.linalg.norm(mapped - tmpl, axis=1)
    # independent check: re-detect on the crop (edge-padded so MTCNN sees context)
    pad = 32
    padded = np.pad(face.crop, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    again = aligner.detect(padded)
    assert again, "face not re-detected in its own aligned crop"
    err_redetect = np.linalg.norm(again[0].landmarks[:2] - pad - tmpl, axis=1)
    print(f"eye error px mapped={err_mapped.round(2)} redetected={err_redetect.round(2)}")
    assert err_mapped.max() < 3.0
    assert err_redetect.max() < 3.0
    assert np.allclose(face.matrix @ np.r_[face.inverse, [[0, 0, 1]]], np.eye(3)[:2], atol=1e-9)


def test_paste_back_changes_face_only(aligner, astronaut, aligned):
    face, _ = aligned
    edited = 255 - face.crop  # a drastic edit
    out = aligner.paste_back(astronaut, edited, face, feather=0.08)
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    changed = (out != astronaut).any(axis=2)
    # the face region (crop centre mapped back) changed a lot
    cx, cy = transform_points(face.inverse, [[63.5, 63.5]])[0].round().astype(int)
    assert np.abs(out[cy - 5:cy + 5, cx - 5:cx + 5].astype(int)
                  - astronaut[cy - 5:cy + 5, cx - 5:cx + 5]).mean() > 50
    # everything outside the crop's footprint is bit-identical
    ys, xs = np.nonzero(changed)
    corners = transform_points(face.inverse, [[0, 0], [127, 0], [0, 127], [127, 127]])
    assert xs.min() >= corners[:, 0].min() - 1 and xs.max() <= corners[:, 0].max() + 1
    assert ys.min() >= corners[:, 1].min() - 1 and ys.max() <= corners[:, 1].max() + 1
    assert (out[:40] == astronaut[:40]).all() and (out[200:] == astronaut[200:]).all()
    # and the feathered border: a crop-edge ring maps to unchanged pixels
    ring = transform_points(face.inverse, [[1, 64], [126, 64], [64, 1], [64, 126]])
    for x, y in ring.round().astype(int):
        assert (out[y, x] == astronaut[y, x]).all()
    # pasting the unedited crop back is almost lossless inside the mask
    same = aligner.paste_back(astronaut, face.crop, face)
    assert np.abs(same.astype(int) - astronaut).mean() < 1.0


def test_no_face_and_several_faces(aligner, astronaut):
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.float32)[None, :, None], (150, 1, 3))
    with pytest.raises(InputError, match="no face found"):
        aligner.align_face(gradient.astype(np.uint8))
    two = np.concatenate([astronaut[:256, 100:350], astronaut[:256, 100:350]], axis=1)
    with pytest.raises(FaceCountError, match="2 faces found") as info:
        aligner.align_face(np.ascontiguousarray(two), policy="single")
    assert info.value.reason == "several_faces"
    face, det = aligner.align_face(np.ascontiguousarray(two), policy="largest")
    assert face.crop.shape == (128, 128, 3)


@pytest.mark.parametrize("w, h", [(3, 3), (12, 12), (200, 5), (10000, 1)])
def test_tiny_and_thin_images_have_no_face(aligner, w, h):
    img = np.full((h, w, 3), 128, np.uint8)
    assert aligner.detect(img) == []  # MTCNN itself fails on images smaller than its smallest face
    with pytest.raises(FaceCountError, match=rf"^no face found \(image is {w}x{h} pixels\)$"):
        aligner.align_face(img)
