"""The ``timm-encoder`` plugin: contract, input sizes, user weights, classifier, and the
``recipes/exprgan-timm.toml`` recipe training two steps on CPU (stage 2 uses the encoder)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from facegan_kit.errors import CheckpointError, FaceganError, RecipeError
from facegan_kit.testing import check_component, check_registered
from facegan_plugins.timm_encoder.encoder import TimmEncoder, auto_input_size, timm_classifier

timm = pytest.importorskip("timm")
ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "exprgan-timm.toml"


def test_registered_through_entry_point():
    check_registered("timm-encoder", "encoder", provider="facegan-kit")


#: timm's own tiny test networks keep these tests fast; the recipe test uses resnet18.
SMALL = "test_resnet"


def test_contract_pooled():
    enc = check_component("encoder", TimmEncoder, image_size=16, z_dim=4, model_name=SMALL)
    assert (enc.stride, enc.input_size, enc.feature_dim) == (32, 64, enc.trunk.num_features)


def test_contract_features_only_keeps_layout():
    enc = check_component("encoder", TimmEncoder, image_size=24, z_dim=4, model_name=SMALL,
                          features_only=True, out_index=2)
    # stride-8 map of a 24x24 input (already a multiple of 8): C x 3 x 3, flattened
    channels = enc.trunk.feature_info.channels()[-1]
    assert (enc.stride, enc.input_size, enc.feature_dim) == (8, 24, channels * 3 * 3)


def test_fixed_size_model_gets_its_size():
    enc = TimmEncoder(image_size=20, z_dim=4, model_name="test_vit")
    assert enc.input_size == 160  # the model's fixed size
    enc = TimmEncoder(image_size=20, z_dim=4, model_name="test_vit", model_kwargs={"img_size": 32})
    assert enc.input_size == 32
    assert enc(torch.zeros(2, 3, 20, 20)).shape == (2, 4)


def test_auto_input_size():
    assert auto_input_size(48, 32) == 64
    assert auto_input_size(128, 32) == 128
    assert auto_input_size(16, 32) == 64
    assert auto_input_size(48, 8) == 48
    assert auto_input_size(48, 16, fixed=224) == 224


def test_explicit_input_size_and_shape_check():
    enc = TimmEncoder(image_size=16, z_dim=4, model_name=SMALL, input_size=96)
    assert enc.input_size == 96
    with pytest.raises(ValueError, match=r"expects images \(N, 3, 16, 16\)"):
        enc(torch.zeros(1, 3, 32, 32))


def test_unknown_model_names_close_ones():
    with pytest.raises(ValueError, match="unknown timm model 'resnet81'.*resnet18"):
        TimmEncoder(model_name="resnet81")


def test_recipe_rejects_misspelled_key():
    from facegan_kit.pm import default_registry
    from facegan_kit.recipe import load_recipe, validate

    raw = load_recipe(RECIPE, ["model.encoder.model_nme=resnet18"])
    with pytest.raises(RecipeError, match="model.encoder: unknown key 'model_nme' .*did you mean 'model_name'"):
        validate(raw, default_registry())


@pytest.fixture(scope="module")
def imagenet_like() -> dict[str, torch.Tensor]:
    """A full timm state dict (random values, 1000-class head ``fc``): what a user brings."""
    torch.manual_seed(7)
    return timm.create_model(SMALL, pretrained=False).state_dict()


def test_weights_from_safetensors_and_torch_files(tmp_path, imagenet_like):
    sd = imagenet_like
    st = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(st))
    pt = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, str(pt))
    for path in (st, pt):
        enc = TimmEncoder(image_size=32, z_dim=4, model_name=SMALL, weights=str(path))
        got = enc.trunk.state_dict()
        assert all(torch.equal(got[k], sd[k]) for k in got)
        assert set(enc.ignored_weight_keys) == {"fc.weight", "fc.bias"}


def test_weights_of_another_model_fail_clearly(tmp_path):
    bad = tmp_path / "other.safetensors"
    save_file({"conv1.weight": torch.zeros(8, 3, 3, 3)}, str(bad))
    with pytest.raises(FaceganError, match="timm-encoder: weights .* do not fit"):
        TimmEncoder(image_size=32, z_dim=4, model_name=SMALL, weights=str(bad))
    with pytest.raises(FaceganError, match="weights file not found"):
        TimmEncoder(image_size=32, z_dim=4, model_name=SMALL, weights=str(tmp_path / "nope.pth"))


def test_freeze_backbone():
    enc = TimmEncoder(image_size=32, z_dim=4, model_name=SMALL, freeze_backbone=True)
    enc.train()
    assert not enc.trunk.training and enc.fc.training
    assert not any(p.requires_grad for p in enc.trunk.parameters())
    enc(torch.zeros(2, 3, 32, 32)).sum().backward()
    assert enc.fc.weight.grad is not None


def test_timm_classifier(tmp_path, imagenet_like):
    clf = timm_classifier(SMALL, num_classes=6)
    x = torch.rand(3, 3, 48, 48) * 2 - 1
    assert clf(x).shape == (3, 6)
    assert clf.embed(x).shape == (3, clf.net.num_features)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in imagenet_like.items()}, str(path))
    clf = timm_classifier(SMALL, num_classes=6, weights=path)  # 1000-class head: left fresh
    assert torch.equal(clf.net.conv1[0].weight, imagenet_like["conv1.0.weight"])
    assert clf.net.fc.weight.shape == (6, clf.net.num_features)


def test_classifier_backbone_via_encoder_spec():
    """The project's expression classifier (encoder + FC) accepts a timm-encoder table."""
    classifier = pytest.importorskip("facegan_kit.apps.classifier")
    clf = classifier.build_classifier({"type": "timm-encoder", "image_size": 32, "z_dim": 8,
                                       "model_name": SMALL}, seed=0)
    assert clf(torch.zeros(2, 3, 32, 32)).shape == (2, 6)


#: Small data and batches; one step of stage 1 (noise identities) and one of stage 2 (encoder).
TWO_STEP = ["data.subjects=10", "data.test_subjects=2", "data.frames=1", "train.sample_every=0",
            "train.checkpoint_every=1000"] + [f"stages.{i}.{k}" for i in range(3)
                                              for k in ("epochs=0.01", "batch_size=8")]


def test_recipe_trains_two_steps_and_loads_back(tmp_path):
    from facegan_kit.checkpoint import load_checkpoint
    from facegan_kit.pm import default_registry
    from facegan_kit.recipe import build_model, validate
    from facegan_kit.train import train

    torch.set_num_threads(1)
    result = train(RECIPE, tmp_path / "run", overrides=TWO_STEP, max_steps=2, progress=False)
    assert result.global_step == 2 and "reconstruction" in result.images_per_second
    tensors, meta = load_checkpoint(result.checkpoint)
    recipe = validate(meta["recipe"], default_registry())
    assert recipe.model["encoder"] == {"type": "timm-encoder", "model_name": "resnet18",
                                       "image_size": 48, "z_dim": 50}
    models = build_model(recipe, default_registry())
    for slot, module in models.items():  # strict load of every slot that has state
        sd = {k.split("/", 2)[2]: v for k, v in tensors.items() if k.startswith(f"model/{slot}/")}
        if module.state_dict():
            module.load_state_dict(sd, strict=True)
    enc = models["encoder"].eval()
    assert isinstance(enc, TimmEncoder) and enc.input_size == 64
    assert enc(torch.zeros(2, 3, 48, 48)).shape == (2, 50)

    from facegan_kit.edit import Editor

    try:
        editor = Editor.from_checkpoint(result.checkpoint)
    except CheckpointError as exc:  # core bug: a parameter-free controller has no tensors
        if "no weights for model.controller" in str(exc):
            pytest.xfail(f"facegan_kit.train.state.load_model_weights rejects parameter-free slots: {exc}")
        raise
    assert editor.encode(torch.zeros(1, 3, 48, 48)).shape == (1, 50)
