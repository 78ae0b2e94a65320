"""Same-person pairs (``pairs = "same-person"`` in a stage): the encoder reads another photo of
each row's person, the row stays the target of every loss."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from facegan_kit.checkpoint import load_checkpoint
from facegan_kit.data.base import FaceSplit
from facegan_kit.errors import RecipeError
from facegan_kit.pm import default_registry
from facegan_kit.recipe import load_recipe, validate
from facegan_kit.train import train
from facegan_kit.train.batches import SamePerson, make_batch
from facegan_kit.train.phases import forward_phase, plan_stage

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "fixtures" / "tiny.toml"
PAIRS = ['stages.1.pairs="same-person"', 'stages.2.pairs="same-person"']


def _split() -> FaceSplit:
    """7 photos of 3 people; every image is filled with its own index, so rows can be traced."""
    subject = torch.tensor([3, 1, 3, 2, 1, 3, 2])
    images = torch.arange(7, dtype=torch.uint8)[:, None, None, None].expand(7, 3, 4, 4).clone()
    images[:, :, :, 0] = 200  # a left column, to see the mirror
    return FaceSplit(images, torch.tensor([0, 1, 2, 3, 4, 5, 6]), subject)


def _index_of(img: torch.Tensor) -> int:
    """Which image of :func:`_split` this float image (unflipped or mirrored) is."""
    return int(round(((img[0, 1, 1].item() + 1) / 2 * 255)))


def test_partners_are_the_same_person_and_reach_all_their_photos():
    split = _split()
    partners = SamePerson(split.subject)
    index = torch.arange(7).repeat(300)
    got = partners(index, torch.Generator().manual_seed(0))
    assert torch.equal(split.subject[got], split.subject[index])
    for i in range(7):
        same = set((split.subject == split.subject[i]).nonzero().flatten().tolist())
        assert set(got[index == i].tolist()) == same, i  # the row's own photo included
    again = partners(index, torch.Generator().manual_seed(0))
    assert torch.equal(got, again)  # a pure function of the generator's state
    other = partners(index, torch.Generator().manual_seed(1))
    assert not torch.equal(got, other)


def test_a_person_with_one_photo_is_paired_with_it():
    partners = SamePerson(torch.tensor([0, 1, 1]))
    got = partners(torch.tensor([0, 0, 0, 0]), torch.Generator().manual_seed(3))
    assert got.tolist() == [0, 0, 0, 0]


def test_make_batch_carries_a_mirrored_same_person_source():
    split = _split()
    index = torch.arange(7).repeat(20)
    gen = torch.Generator().manual_seed(5)
    batch = make_batch(split, index, torch.device("cpu"), 6, True, gen, partners=SamePerson(split.subject))
    assert batch.x_source is not None and batch.x_source.shape == batch.x.shape
    assert batch.flip.any() and not batch.flip.all()
    for row in range(len(index)):
        src = batch.x_source[row]
        assert split.subject[_index_of(src)] == split.subject[index[row]]
        # mirrored with its row: the bright column is on the right exactly when the row flipped
        assert bool(src[0, 0, -1] > 0.5) == bool(batch.flip[row]) != bool(src[0, 0, 0] > 0.5)
    assert any(_index_of(batch.x_source[r]) != int(index[r]) for r in range(len(index)))
    plain = make_batch(split, index, torch.device("cpu"), 6, False, None)
    assert plain.x_source is None


class _Spy(nn.Module):
    def __init__(self, z_dim: int):
        super().__init__()
        self.z_dim, self.seen = z_dim, []

    def forward(self, x):
        self.seen.append(x)
        return torch.zeros(x.shape[0], self.z_dim)


def test_the_encoder_reads_the_source_and_the_losses_the_target():
    recipe = validate(load_recipe(TINY, PAIRS), default_registry())
    from facegan_kit.recipe import build_losses, build_model

    models = build_model(recipe, default_registry())
    spy = _Spy(models["decoder"].z_dim)
    models["encoder"] = spy
    plan = plan_stage(1, recipe.stages[1], 4, build_losses(recipe, default_registry(), "cpu"))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    source = torch.rand(3, 3, 16, 16) * 2 - 1
    y = torch.eye(6)[:3]
    batch = type(make_batch(_split(), torch.arange(3), torch.device("cpu"), 6, False, None))(
        x, y, torch.arange(3), torch.arange(3), None, x_source=source)
    ctx = forward_phase(models, plan, x, y, torch.Generator().manual_seed(0), batch=batch)
    assert torch.equal(spy.seen[-1], source) and ctx.x is x
    forward_phase(models, plan, x, y, torch.Generator().manual_seed(0))
    assert torch.equal(spy.seen[-1], x)  # no pairs: the paper's own-photo reconstruction


@pytest.mark.parametrize("overrides, needle", [
    (['stages.1.pairs="others"'], "must be 'self' or 'same-person'"),
    (['stages.0.pairs="same-person"'], "identity = 'noise'"),
])
def test_bad_pairs_are_named(overrides, needle):
    with pytest.raises(RecipeError, match=needle):
        validate(load_recipe(TINY, overrides), default_registry())


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def test_a_run_with_pairs_trains_differently_and_resumes_exactly(tiny_run, tmp_path):
    """The eager step in one go; the capture-ready step (``cuda_graphs = "on"``: on the CPU
    nothing is captured, the static-buffer step runs) stopped and resumed: the same run."""
    whole = train(TINY, tmp_path / "whole", overrides=PAIRS, progress=False)
    assert whole.finished
    reference = _log(tiny_run.out)
    got = _log(tmp_path / "whole")
    first_encoded = next(i for i, r in enumerate(reference) if "g/l1" in r)
    assert got[:first_encoded] == reference[:first_encoded]  # stage 1 (noise identity) unchanged
    assert got[first_encoded:] != reference[first_encoded:]
    ready = [*PAIRS, 'train.cuda_graphs="on"']
    part = train(TINY, tmp_path / "part", overrides=ready, max_steps=got[first_encoded]["step"] + 2,
                 progress=False)
    done = train(TINY, tmp_path / "part", overrides=ready, resume=part.checkpoint, progress=False)
    assert done.finished and _log(tmp_path / "part") == got
    a, _ = load_checkpoint(done.checkpoint)
    b, _ = load_checkpoint(whole.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model/"))
