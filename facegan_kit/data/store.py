"""A cached uint8 tensor store for prepared faces, plus on-device augmentation.

:func:`build_store` decodes the PNG crops listed in ``index.csv`` once and writes
safetensors shards (``images`` uint8 ``(N, 3, S, S)``, ``expression``, ``subject``,
``split``, ``row``) into ``<prepared>/.store/<key>/``, where ``key`` hashes the
bytes of ``index.csv`` together with each listed PNG's size and mtime. Editing the
index (or re-writing a crop) therefore changes the key and the store is rebuilt on
the next :func:`load_store`; stale stores are deleted. If the prepared folder is
read-only the store goes to ``cache_dir("stores", key)`` instead.

:class:`PreparedFaces` exposes one split as resident tensors; :func:`augment`
applies flips and optional colour / geometric jitter to a float batch on its
device with kornia.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import torch
from safetensors.torch import load_file, save_file

from facegan_kit.cache import cache_dir
from facegan_kit.data.io import ImageReadError, read_image
from facegan_kit.data.prepare import read_index
from facegan_kit.errors import InputError

__all__ = ["STORE_VERSION", "store_key", "build_store", "load_store", "read_store_meta",
           "PreparedFaces", "augment"]

STORE_VERSION = 1
_SPLITS = {"train": 0, "test": 1}


def store_key(prepared_dir) -> str:
    """Hash of ``index.csv`` bytes plus (size, mtime) of every listed crop."""
    root = Path(prepared_dir)
    index = root / "index.csv"
    try:
        data = index.read_bytes()
    except OSError as exc:
        raise InputError(f"{index}: cannot read index ({exc.strerror or exc})") from None
    h = hashlib.sha256(b"facegan-store-v%d\n" % STORE_VERSION)
    h.update(data)
    for row in read_index(root):
        try:
            st = (root / row["path"]).stat()
            h.update(f"{row['path']}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{row['path']}:missing\n".encode())
    return h.hexdigest()[:24]


def _store_parent(root: Path) -> Path:
    parent = root / ".store"
    try:
        parent.mkdir(exist_ok=True)
        if os.access(parent, os.W_OK):
            return parent
    except OSError:
        pass
    return cache_dir("stores")


def _find_store(root: Path, key: str) -> Optional[Path]:
    for parent in (root / ".store", cache_dir("stores")):
        cand = parent / key
        if (cand / "meta.json").is_file():
            return cand
    return None


def build_store(prepared_dir, shard_size: int = 2048, force: bool = False) -> Path:
    """Decode the prepared crops once into safetensors shards.

    Args:
        prepared_dir: Folder written by :func:`facegan_kit.data.prepare.prepare`.
        shard_size: Images per shard (2048 x 128 x 128 x 3 bytes = 100 MB).
        force: Rebuild even if an up-to-date store exists.

    Returns:
        The store folder (holding ``meta.json`` and ``shard_*.safetensors``).

    Raises:
        InputError: Missing/malformed index, or a listed crop that is unreadable or of
            the wrong size (message names the file).
    """
    root = Path(prepared_dir)
    key = store_key(root)
    existing = _find_store(root, key)
    if existing is not None and not force:
        return existing
    rows = read_index(root)
    subjects = sorted({r["subject"] for r in rows})
    subj_id = {s: i for i, s in enumerate(subjects)}
    parent = _store_parent(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=parent))
    try:
        size, shards = None, []
        for start in range(0, max(len(rows), 1), shard_size):
            chunk = rows[start:start + shard_size]
            imgs = []
            for r in chunk:
                path = root / r["path"]
                try:
                    arr = read_image(path)
                except ImageReadError as exc:
                    raise InputError(f"{path}: listed in {root / 'index.csv'} but {exc.detail}") \
                        from None
                if size is None:
                    size = arr.shape[0]
                if arr.shape != (size, size, 3):
                    raise InputError(f"{path}: crop is {arr.shape[1]}x{arr.shape[0]}, "
                                     f"expected {size}x{size}")
                imgs.append(torch.from_numpy(arr).permute(2, 0, 1))
            s = size or 0
            tensors = {
                "images": torch.stack(imgs) if imgs else torch.zeros(0, 3, s, s, dtype=torch.uint8),
                "expression": torch.tensor([int(r["expression"]) for r in chunk], dtype=torch.int64),
                "subject": torch.tensor([subj_id[r["subject"]] for r in chunk], dtype=torch.int64),
                "split": torch.tensor([_SPLITS.get(r["split"], 0) for r in chunk], dtype=torch.int8),
                "row": torch.arange(start, start + len(chunk), dtype=torch.int64),
            }
            name = f"shard_{len(shards):05d}.safetensors"
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / name))
            shards.append(name)
        meta = {"version": STORE_VERSION, "key": key, "n": len(rows), "size": size or 0,
                "subjects": subjects, "shards": shards, "paths": [r["path"] for r in rows]}
        (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
        final = parent / key
        try:
            os.rename(tmp, final)
        except OSError:  # another process won the race (or a stale copy): keep theirs
            if not (final / "meta.json").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        for other in parent.iterdir():  # drop stale stores of this folder
            if other.is_dir() and other.name != key and parent == root / ".store" \
                    and not other.name.startswith("."):
                shutil.rmtree(other, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_store_meta(prepared_dir, build: bool = True) -> dict:
    """``meta.json`` of the up-to-date store (subject names, size, paths...)."""
    root = Path(prepared_dir)
    store = build_store(root) if build else _find_store(root, store_key(root))
    if store is None:
        raise InputError(f"{root}: no up-to-date tensor store (call build_store)")
    return json.loads((store / "meta.json").read_text())


def load_store(prepared_dir, build: bool = True) -> Dict[str, torch.Tensor]:
    """Load the whole prepared dataset as tensors, (re)building the store if stale.

    Args:
        prepared_dir: Folder written by ``prepare``.
        build: Build the store when missing or stale (else raise).

    Returns:
        ``images`` uint8 ``(N, 3, S, S)``, ``expression`` int64, ``subject`` int64
        (index into ``read_store_meta(...)["subjects"]``), ``split`` int8 (0 train,
        1 test) and ``row`` int64 (row in ``index.csv``).
    """
    root = Path(prepared_dir)
    store = build_store(root) if build else _find_store(root, store_key(root))
    if store is None:
        raise InputError(f"{root}: no up-to-date tensor store (call build_store)")
    meta = json.loads((store / "meta.json").read_text())
    parts = [load_file(str(store / name)) for name in meta["shards"]]
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class PreparedFaces:
    """One split of a prepared dataset as resident tensors.

    Args:
        root: Prepared folder.
        split: ``"train"``, ``"test"`` or ``"all"``.
        device: Where to keep the tensors.

    Attributes:
        images: uint8 ``(N, 3, S, S)``.
        expression: int64 ``(N,)`` labels (0..5, 6 = neutral).
        subject: int64 ``(N,)`` ids into :attr:`subject_names` (shared by all splits).
        subject_names: Sorted subject names of the whole prepared set.
        paths: Crop paths relative to ``root``.
    """

    def __init__(self, root, split: str = "train", device: str = "cpu"):
        if split not in ("train", "test", "all"):
            raise InputError(f"unknown split {split!r} (use train, test or all)")
        self.root, self.split = Path(root), split
        data = load_store(self.root)
        meta = read_store_meta(self.root)
        keep = torch.ones_like(data["split"], dtype=torch.bool) if split == "all" else \
            data["split"] == _SPLITS[split]
        self.images = data["images"][keep].to(device)
        self.expression = data["expression"][keep].to(device)
        self.subject = data["subject"][keep].to(device)
        self.subject_names: List[str] = list(meta["subjects"])
        self.paths = [p for p, k in zip(meta["paths"], keep.tolist()) if k]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "expression": self.expression[i],
                "subject": self.subject[i]}

    @property
    def size(self) -> int:
        """Crop side."""
        return int(self.images.shape[-1])

    def as_face_split(self):
        """This split as a :class:`facegan_kit.data.base.FaceSplit`."""
        from facegan_kit.data.base import FaceSplit
        return FaceSplit(self.images, self.expression, self.subject)

    def batches(self, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                generator: Optional[torch.Generator] = None) -> Iterator[dict]:
        """Yield dicts with ``image`` float in [-1, 1], ``expression``, ``subject``."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.images.device)
        stop = n - n % batch_size if drop_last else n
        for s in range(0, stop, batch_size):
            idx = order[s:s + batch_size]
            yield {"image": self.images[idx].float().div(127.5).sub(1.0),
                   "expression": self.expression[idx], "subject": self.subject[idx]}


def _uniform(n: int, lo: float, hi: float, generator, device) -> torch.Tensor:
    gdev = generator.device if generator is not None else torch.device("cpu")
    return (torch.rand(n, generator=generator, device=gdev) * (hi - lo) + lo).to(device)


def augment(batch: torch.Tensor, flip: bool = True, color_jitter: float = 0.0,
            affine_jitter: float = 0.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Random per-sample augmentation of a float batch, on the batch's device.

    Args:
        batch: ``(N, 3, H, W)`` float in [-1, 1].
        flip: Mirror each sample horizontally with probability 0.5.
        color_jitter: Strength c in [0, 1]: brightness +-0.2c, contrast and
            saturation x(1 +- 0.3c), hue +-0.05c turns.
        affine_jitter: Strength a in [0, 1]: rotation +-10a degrees, scale 1 +- 0.05a,
            translation +-0.05a of the side (reflection padding).
        generator: Torch generator for reproducible draws.

    Returns:
        A new ``(N, 3, H, W)`` float tensor in [-1, 1].
    """
    import kornia.enhance as KE
    from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"augment expects (N,3,H,W), got {tuple(batch.shape)}")
    x = batch.float()
    n, _, h, w = x.shape
    dev = x.device
    if flip:
        mask = _uniform(n, 0, 1, generator, dev) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    if color_jitter > 0:
        c = float(color_jitter)
        y = (x + 1) / 2
        y = KE.adjust_brightness(y, _uniform(n, -0.2 * c, 0.2 * c, generator, dev))
        y = KE.adjust_contrast(y, _uniform(n, 1 - 0.3 * c, 1 + 0.3 * c, generator, dev))
        y = KE.adjust_saturation(y, _uniform(n, 1 - 0.3 * c, 1 + 0.3 * c, generator, dev))
        y = KE.adjust_hue(y, _uniform(n, -0.05 * c, 0.05 * c, generator, dev) * 2 * math.pi)
        x = y.clamp(0, 1) * 2 - 1
    if affine_jitter > 0:
        a = float(affine_jitter)
        centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], device=dev).expand(n, 2)
        angle = _uniform(n, -10 * a, 10 * a, generator, dev)
        scale = _uniform(n, 1 - 0.05 * a, 1 + 0.05 * a, generator, dev)
        m = get_rotation_matrix2d(centre, angle, torch.stack([scale, scale], dim=1))
        shift = torch.stack([_uniform(n, -0.05 * a, 0.05 * a, generator, dev) * w,
                             _uniform(n, -0.05 * a, 0.05 * a, generator, dev) * h], dim=1)
        m = m.clone()
        m[:, :, 2] += shift
        x = warp_affine(x, m, dsize=(h, w), mode="bilinear", padding_mode="reflection",
                        align_corners=True).clamp(-1, 1)
    return x
