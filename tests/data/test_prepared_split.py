"""The prepared dataset holds out the people a recipe names (several splits of one folder)."""
from __future__ import annotations

import pytest
from PIL import Image

from facegan_kit.data.prepare import prepare
from facegan_kit.errors import InputError
from plugins.data import prepared


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("prepared")
    for s in range(4):
        for e in ("happy", "sad", "neutral"):
            Image.new("RGB", (24, 24), (40 * s, 90, 30)).save(src / f"p{s}_{e}.png")
    prepare(src, out, "regex", size=16, align=False, include_neutral=True, test_ratio=0.25, seed=0,
            pattern=r"(?P<subject>p\d)_(?P<expression>[a-z]+)")
    return out



def test_named_people_are_held_out_instead_of_the_index_split(folder):
    data = prepared(str(folder), test_subjects=["p1", "p3"])
    from facegan_kit.data.store import PreparedFaces

    names = PreparedFaces(folder, split="all").subject_names
    test = {names[i] for i in data.test.subject.unique().tolist()}
    train = {names[i] for i in data.train.subject.unique().tolist()}
    assert test == {"p1", "p3"} and train == {"p0", "p2"}
    assert len(data.test) == 6 and len(data.train) == 6
    default = prepared(str(folder))
    assert len(default.test) == 3  # index.csv's own split: one person of four


def test_neutral_can_still_be_left_out_and_size_changes(folder):
    data = prepared(str(folder), size=8, include_neutral=False, test_subjects=["p0"])
    assert len(data.test) == 2 and data.test.images.shape[-1] == 8


def test_unknown_person_is_one_clear_error(folder):
    with pytest.raises(InputError, match=r"data.test_subjects: \['p9'\] not among the 4 subjects"):
        prepared(str(folder), test_subjects=["p9"])
