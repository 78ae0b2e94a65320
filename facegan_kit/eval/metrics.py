"""The keys of :func:`facegan_kit.eval.suite.evaluate`'s result, their valid ranges, and checks."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: Scalar keys of :func:`evaluate`'s result, with their valid range (``None`` = unbounded).
SCALAR_KEYS: dict[str, tuple[float | None, float | None]] = {
    "expression_accuracy": (0.0, 1.0),
    "judge_accuracy_real": (0.0, 1.0),
    "identity_distance_median": (0.0, None),
    "identity_rate_under_0.6": (0.0, 1.0),
    "recon_l1": (0.0, 1.0),
    "recon_psnr": (0.0, None),
    "recon_ssim": (-1.0, 1.0),
    "intensity_rho_levels": (-1.0, 1.0),
    "intensity_rho_continuous": (-1.0, 1.0),
    "neutral_rate": (0.0, 1.0),
    "fer_feature_frechet": (0.0, None),
    "oracle_expression_accuracy": (0.0, 1.0),
    "oracle_accuracy_real": (0.0, 1.0),
    "oracle_identity_match_rate": (0.0, 1.0),
    "oracle_identity_kept_rate": (0.0, 1.0),
    "oracle_recon_identity_kept_rate": (0.0, 1.0),
    "oracle_intensity_rho_levels": (-1.0, 1.0),
    "oracle_intensity_rho_continuous": (-1.0, 1.0),
    "oracle_neutral_rate": (0.0, 1.0),
}
#: Keys for real (non-synthetic) faces: the judges' ceilings on the real photos, edits of neutral
#: photos and a classical identity measure (:mod:`facegan_kit.eval.real`); ``None`` elsewhere.
REAL_KEYS: dict[str, tuple[float | None, float | None]] = {
    "ceiling_judge_accuracy_native": (0.0, 1.0),
    "ceiling_identity_same_person_median": (0.0, None),
    "ceiling_identity_same_person_rate_under_0.6": (0.0, 1.0),
    "ceiling_identity_other_people_median": (0.0, None),
    "ceiling_identity_roundtrip_median": (0.0, None),
    "ceiling_intensity_rho_morph": (-1.0, 1.0),
    "neutral_source_expression_accuracy": (0.0, 1.0),
    "neutral_source_identity_distance_median": (0.0, None),
    "neutral_source_identity_rate_under_0.6": (0.0, 1.0),
    "classical_identity_rate": (0.0, 1.0),
    "classical_identity_rate_real": (0.0, 1.0),
    "classical_identity_chance": (0.0, 1.0),
}
SCALAR_KEYS.update(REAL_KEYS)
#: Per-class dictionaries (target expression name -> value), with their valid range.
PER_CLASS_KEYS: dict[str, tuple[float, float]] = {
    "expression_accuracy_per_class": (0.0, 1.0),
    "oracle_expression_accuracy_per_class": (0.0, 1.0),
    "intensity_rho_levels_per_class": (-1.0, 1.0),
    "ceiling_judge_accuracy_native_per_class": (0.0, 1.0),
    "ceiling_intensity_rho_morph_per_class": (-1.0, 1.0),
}
#: Which judge or oracle each key needs.
KEY_SOURCE = {
    **{k: "expression" for k in ("expression_accuracy", "judge_accuracy_real", "intensity_rho_levels",
                                 "intensity_rho_continuous", "neutral_rate", "fer_feature_frechet",
                                 "expression_accuracy_per_class", "intensity_rho_levels_per_class")},
    "identity_distance_median": "identity", "identity_rate_under_0.6": "identity",
    **{k: "real" for k in (*REAL_KEYS, "ceiling_judge_accuracy_native_per_class",
                           "ceiling_intensity_rho_morph_per_class")},
    **{k: "oracle" for k in SCALAR_KEYS if k.startswith("oracle_")},
    "oracle_expression_accuracy_per_class": "oracle",
}


def check_metrics(metrics: dict[str, Any]) -> list[str]:
    """Problems with a metrics dict: missing keys and values outside their valid range."""
    problems = []
    for key, (lo, hi) in SCALAR_KEYS.items():
        if key not in metrics:
            problems.append(f"missing key {key}")
            continue
        v = metrics[key]
        if v is None:
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            problems.append(f"{key} = {v!r} is not a finite number")
        elif (lo is not None and v < lo - 1e-9) or (hi is not None and v > hi + 1e-9):
            problems.append(f"{key} = {v} outside [{lo}, {hi}]")
    for key, (lo, hi) in PER_CLASS_KEYS.items():
        if key not in metrics:
            problems.append(f"missing key {key}")
        elif metrics[key] is not None:
            for name, v in metrics[key].items():
                if v is not None and not lo - 1e-9 <= v <= hi + 1e-9:
                    problems.append(f"{key}[{name}] = {v} outside [{lo}, {hi}]")
    return problems


def save_metrics(metrics: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    return path
