"""Recipe loading, overrides and validation errors (before any tensor exists)."""
from __future__ import annotations

from pathlib import Path

import pytest

from facegan_kit.errors import RecipeError, RegistryError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import apply_overrides, load_recipe, parse_override, validate

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_validate(path):
    rec = validate(load_recipe(path), default_registry())
    assert rec.stages and "decoder" in rec.model


def _raw(*sets):
    return load_recipe(ROOT / "tests/fixtures/tiny.toml", sets)


@pytest.mark.parametrize("override, message", [
    ("model.controller.code_dm=3", "model.controller: unknown key 'code_dm'"),
    ("model.controller.type=fctl", "did you mean 'exprgan-fctrl'"),
    ("train.seed=abc", "train.seed: expected int, got str"),
    ("stages.0.losses.l2=1.0", "stages[0].losses: 'l2' is not a [losses.*] table"),
    ("stages.0.losses.l1=1.0", "stages[0].losses.l1: needs the encoder"),
    ("stages.1.train=[\"encoder\", \"dz\"]", "stages[1].train: 'dz' is not a [model.*] table"),
    ("stages.1.batch_size=0", "stages[1].batch_size: must be >= 1"),
    ("stages.1.lr_end_factor=1.5", "stages[1].lr_end_factor: must be in [0, 1]"),
    ("stages.1.identity=\"random\"", "stages[1].identity"),
    ("stages.2.losses.tv=-1", "weight must be a number >= 0"),
    ("train.on_nonfinite=\"ignore\"", "train.on_nonfinite"),
    ("model.decoder.channels=12", "model.decoder.channels: expected list"),
    ("recipe.nme=\"x\"", None),
])
def test_validation_errors_name_the_path(override, message):
    if message is None:  # unknown keys inside [recipe] are free-form metadata
        validate(_raw(override), default_registry())
        return
    with pytest.raises((RecipeError, RegistryError)) as err:
        validate(_raw(override), default_registry())
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_top_level_and_model_slot():
    raw = _raw()
    raw["trian"] = {}
    with pytest.raises(RecipeError, match="recipe: unknown key 'trian'.*did you mean 'train'"):
        validate(raw, default_registry())
    raw = _raw()
    raw["model"]["dimg"] = {"type": "exprgan-dimg"}
    with pytest.raises(RecipeError, match="model: unknown key 'dimg'"):
        validate(raw, default_registry())


def test_epochs_xor_steps():
    raw = _raw()
    raw["stages"][0]["epochs"] = 2
    with pytest.raises(RecipeError, match="exactly one of 'epochs' or 'steps'"):
        validate(raw, default_registry())


def test_override_parsing():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=2e-4") == (["a", "b"], 2e-4)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a.b=fctrl") == (["a", "b"], "fctrl")
    assert parse_override("a.b=true") == (["a", "b"], True)
    with pytest.raises(RecipeError, match="KEY.PATH=VALUE"):
        parse_override("novalue")
    raw = apply_overrides({"stages": [{"epochs": 1}]}, [parse_override("stages.0.epochs=5")])
    assert raw["stages"][0]["epochs"] == 5
    with pytest.raises(RecipeError, match="out of range"):
        apply_overrides({"stages": [{"epochs": 1}]}, [parse_override("stages.3.epochs=5")])


def test_shared_model_values_fill_components():
    rec = validate(_raw("model.image_size=32"), default_registry())
    assert rec.model["encoder"]["image_size"] == 32
    assert rec.model["decoder"]["image_size"] == 32
    assert "image_size" not in rec.model["controller"]  # FCtrl takes no image size
    assert rec.data["size"] == 32


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(RecipeError, match="invalid TOML"):
        load_recipe(bad)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")


def test_shipped_recipes_switch_to_prepared_data_as_the_readme_says(capsys):
    """README: `--set data.type=prepared --set data.root=...`; the recipes' [data] keys
    (include_neutral) must be valid for the prepared dataset too."""
    from facegan_kit.cli import main

    for name in ("exprgan.toml", "exprgan-quick.toml", "caae.toml"):
        main(["train", str(ROOT / "recipes" / name), "--set", "data.type=prepared", "--set",
              "data.root=some/folder", "--dry-run"])
        assert '"prepared"' in capsys.readouterr().out


def test_changing_a_type_leaves_out_the_old_types_keys_and_says_so(capsys):
    """`--set data.type=prepared` on a recipe with synthetic-only [data] keys (background,
    subjects) works: those keys are dropped with a note, keys the new type takes stay."""
    raw = apply_overrides(
        {**load_recipe(ROOT / "tests/fixtures/tiny.toml"),
         "data": {"type": "synthetic", "subjects": 12, "background": "plain", "include_neutral": True}},
        [parse_override("data.type=prepared"), parse_override("data.root=faces")])
    rec = validate(raw, default_registry())
    assert {k: rec.data[k] for k in ("type", "root", "include_neutral")} == \
        {"type": "prepared", "root": "faces", "include_neutral": True}
    assert "subjects" not in rec.data and "background" not in rec.data
    assert "subjects" not in rec.raw["data"] and "_retyped_by_override" not in rec.raw
    err = capsys.readouterr().err
    assert "leaving out data.subjects" in err and "data.background" in err and "root" not in err


def test_keys_set_on_the_command_line_stay_after_a_type_change():
    raw = load_recipe(ROOT / "tests/fixtures/tiny.toml",
                      ["data.subjects=3", "data.type=prepared", "data.root=faces"])
    with pytest.raises(RecipeError, match="data: unknown key 'subjects'"):
        validate(raw, default_registry())


def test_same_type_set_again_changes_nothing():
    raw = load_recipe(ROOT / "tests/fixtures/tiny.toml", ["model.controller.type=fctrl"])
    assert "_retyped_by_override" not in raw
    validate(raw, default_registry())
