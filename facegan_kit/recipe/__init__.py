"""Recipes: TOML files that name registered components, validated before any tensor exists."""
from facegan_kit.recipe.load import apply_overrides, load_recipe, parse_override
from facegan_kit.recipe.schema import MODEL_SLOTS, Recipe, StageSpec, TrainSpec, validate
from facegan_kit.recipe.build import build_dataset, build_losses, build_model

__all__ = [
    "MODEL_SLOTS", "Recipe", "StageSpec", "TrainSpec", "apply_overrides", "build_dataset",
    "build_losses", "build_model", "load_recipe", "parse_override", "validate",
]
