"""Tensor store round trip, invalidation, PreparedFaces and augmentation."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from facegan_kit.data.io import read_image
from facegan_kit.data.prepare import prepare, read_index
from facegan_kit.data.store import PreparedFaces, augment, build_store, load_store, store_key
from facegan_kit.errors import InputError


@pytest.fixture()
def prepared(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    for s in range(6):
        for expr in ("Happiness", "Anger"):
            d = src / f"P{s:03d}" / expr
            d.mkdir(parents=True)
            for f in range(3):
                Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(
                    d / f"{f:03d}.png")
    out = tmp_path / "prepared"
    prepare(src, out, "oulu-casia", size=16, test_ratio=0.34, seed=0, align=False)
    return out


def test_round_trip_is_bit_exact(prepared):
    rows = read_index(prepared)
    store = build_store(prepared, shard_size=7)  # several shards
    assert len(list(store.glob("shard_*.safetensors"))) == 6
    data = load_store(prepared)
    assert data["images"].dtype == torch.uint8 and data["images"].shape == (36, 3, 16, 16)
    for i, r in enumerate(rows):
        decoded = torch.from_numpy(read_image(prepared / r["path"])).permute(2, 0, 1)
        assert torch.equal(data["images"][i], decoded)
        assert int(data["expression"][i]) == int(r["expression"])
        assert int(data["split"][i]) == (r["split"] == "test")
    assert build_store(prepared) == store  # cached, not rebuilt


def test_store_invalidated_when_index_changes(prepared):
    first = build_store(prepared)
    key = store_key(prepared)
    index = prepared / "index.csv"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:1] + lines[2:]))  # drop the first image
    assert store_key(prepared) != key
    data = load_store(prepared)
    assert data["images"].shape[0] == 35
    second = build_store(prepared)
    assert second != first and not first.exists()  # stale store removed
    # rewriting a crop (same index bytes) also invalidates
    row = read_index(prepared)[0]
    img = prepared / row["path"]
    os.utime(img, ns=(img.stat().st_atime_ns, img.stat().st_mtime_ns + 10**9))
    assert build_store(prepared) != second


def test_missing_crop_names_the_file(prepared):
    row = read_index(prepared)[3]
    (prepared / row["path"]).unlink()
    with pytest.raises(InputError, match=row["path"].split("/")[-1]):
        load_store(prepared)


def test_prepared_faces_splits(prepared):
    train, test = PreparedFaces(prepared, "train"), PreparedFaces(prepared, "test")
    assert len(train) + len(test) == 36 and len(test) == 12
    assert train.images.dtype == torch.uint8 and train.expression.dtype == torch.int64
    assert train.subject_names == test.subject_names == [f"P{i:03d}" for i in range(6)]
    assert not set(train.subject.tolist()) & set(test.subject.tolist())
    assert set(train.expression.tolist()) == {0, 3}
    batches = list(train.batches(10, generator=torch.Generator().manual_seed(0)))
    assert sum(len(b["image"]) for b in batches) == 24
    assert batches[0]["image"].min() >= -1 and batches[0]["image"].max() <= 1
    split = train.as_face_split()
    assert len(split) == 24


def test_augment_flip_and_jitter():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    g = torch.Generator().manual_seed(0)
    y = augment(x, generator=g)
    flipped = [(torch.equal(y[i], x[i].flip(-1)), torch.equal(y[i], x[i])) for i in range(8)]
    assert all(a or b for a, b in flipped) and any(a for a, _ in flipped)
    assert any(b for _, b in flipped)
    y1 = augment(x, color_jitter=0.5, affine_jitter=0.5, generator=torch.Generator().manual_seed(1))
    y2 = augment(x, color_jitter=0.5, affine_jitter=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and y1.shape == x.shape
    assert y1.min() >= -1 and y1.max() <= 1 and not torch.allclose(y1, x)
    assert torch.equal(augment(x, flip=False), x)
