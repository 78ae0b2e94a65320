"""The expression controller F_ctrl: Eq. 3 training codes and the edit-time codes."""
from __future__ import annotations

import pytest
import torch

from facegan_plugins.exprgan.controller import FCtrl

K, D = 6, 5


@pytest.fixture
def ctrl() -> FCtrl:
    return FCtrl(num_classes=K, code_dim_per_class=D)


def _blocks(c: torch.Tensor) -> torch.Tensor:
    return c.view(c.shape[0], K, D)


def test_attributes(ctrl: FCtrl) -> None:
    assert (ctrl.num_classes, ctrl.code_dim, ctrl.levels) == (K, K * D, D)
    assert FCtrl(levels=3).levels == 3


def test_eq3_signs_ranges_and_shared_magnitude(ctrl: FCtrl) -> None:
    labels = torch.arange(60) % K
    y = torch.nn.functional.one_hot(labels, K).float()
    c = _blocks(ctrl(y, generator=torch.Generator().manual_seed(0)))
    target = c[torch.arange(60), labels]
    assert ((target >= 0) & (target <= 1)).all()
    others = c[y == 0]
    assert ((others >= -1) & (others <= 0)).all()
    # every block has the same magnitudes |u| (one u per sample, shared by all blocks)
    assert torch.equal(c.abs(), target.abs()[:, None, :].expand_as(c))
    # |u| really varies between samples and elements
    assert target.std() > 0.1


def test_integer_labels_match_one_hot(ctrl: FCtrl) -> None:
    labels = torch.tensor([0, 5, 2])
    a = ctrl(labels, generator=torch.Generator().manual_seed(4))
    b = ctrl(torch.nn.functional.one_hot(labels, K).float(), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_neutral_rows_get_the_all_negative_code(ctrl: FCtrl) -> None:
    """A neutral training face (label K, or an all-zero y row) gets -|u| in every block: the
    training counterpart of the edit-time neutral code (all -1)."""
    labels = torch.tensor([K, 2, K])
    c = _blocks(ctrl(labels, generator=torch.Generator().manual_seed(1)))
    assert bool((c[[0, 2]] <= 0).all()) and bool((c[1, 2] >= 0).all()) and bool((c[1, [0, 1, 3, 4, 5]] <= 0).all())
    assert float(c[0].abs().max()) > 0  # magnitudes are drawn, not all zero
    # every block of a neutral row holds the same magnitudes, as every block of a class row does
    assert torch.equal(c[0], c[0, :1].expand(K, D))
    zero_rows = ctrl(torch.zeros(2, K), generator=torch.Generator().manual_seed(1))
    assert bool((zero_rows <= 0).all())
    with pytest.raises(ValueError, match="neutral"):
        ctrl(torch.tensor([K + 1]))


def test_deterministic_from_generator(ctrl: FCtrl) -> None:
    y = torch.eye(K)
    a = ctrl(y, generator=torch.Generator().manual_seed(7))
    b = ctrl(y, generator=torch.Generator().manual_seed(7))
    c = ctrl(y, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_target_is_the_code(ctrl: FCtrl) -> None:
    c = ctrl(torch.eye(K), generator=torch.Generator().manual_seed(0))
    assert ctrl.target(c, torch.eye(K)) is c


def test_neutral_code(ctrl: FCtrl) -> None:
    assert torch.equal(ctrl.neutral_code(), -torch.ones(K * D))


@pytest.mark.parametrize("k", [0, 3, K - 1])
@pytest.mark.parametrize("level", [1, 3, D])
def test_level_code(ctrl: FCtrl, k: int, level: int) -> None:
    code = ctrl.level_code(k, level)
    expected = -torch.ones(K * D)
    expected[k * D + level - 1] = 1
    assert torch.equal(code, expected)


def test_cumulative_level_codes() -> None:
    ctrl = FCtrl(num_classes=K, code_dim_per_class=D, level_codes="cumulative")
    for level in range(1, D + 1):
        code = _blocks(ctrl.level_code(2, level)[None])[0]
        assert code[2].tolist() == [1.0] * level + [-1.0] * (D - level)
        assert bool((code[[0, 1, 3, 4, 5]] == -1).all())
    # the top level is the strongest class code, the end of the intensity path
    assert torch.equal(ctrl.level_code(2, D), ctrl.intensity_code(2, 1.0))
    # an edit-time setting: switching it on a built controller changes only the level codes
    ctrl.level_codes = "single"
    assert int((ctrl.level_code(2, 3) > 0).sum()) == 1
    with pytest.raises(ValueError, match="level_codes"):
        FCtrl(level_codes="steps")


def test_intensity_path(ctrl: FCtrl) -> None:
    k = 2
    assert torch.equal(ctrl.intensity_code(k, 0.0), ctrl.neutral_code())
    strongest = -torch.ones(K * D)
    strongest[k * D : (k + 1) * D] = 1
    assert torch.equal(ctrl.intensity_code(k, 1.0), strongest)
    ts = torch.linspace(0, 1, 11)
    path = torch.stack([ctrl.intensity_code(k, float(t)) for t in ts])
    block = path[:, k * D : (k + 1) * D]
    assert (block.diff(dim=0) > 0).all()  # strictly increasing in t
    assert torch.allclose(block, (2 * ts - 1)[:, None].expand_as(block))  # linear
    others = torch.cat([path[:, : k * D], path[:, (k + 1) * D :]], dim=1)
    assert (others == -1).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: c.level_code(K, 1), r"0\.\.5"),
        (lambda c: c.level_code(-1, 1), r"0\.\.5"),
        (lambda c: c.level_code(0, 0), r"1\.\.5"),
        (lambda c: c.level_code(0, D + 1), r"1\.\.5"),
        (lambda c: c.intensity_code(0, 1.5), r"\[0, 1\]"),
        (lambda c: c.intensity_code(0, -0.1), r"\[0, 1\]"),
        (lambda c: c.intensity_code(0, float("nan")), r"\[0, 1\]"),
        (lambda c: c.intensity_code(K, 0.5), r"0\.\.5"),
        (lambda c: c(torch.zeros(2, K + 1)), r"\(N, 6\)"),
    ],
)
def test_range_errors(ctrl: FCtrl, call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(ctrl)


def test_bad_levels() -> None:
    with pytest.raises(ValueError, match=r"1\.\.5"):
        FCtrl(levels=6)
