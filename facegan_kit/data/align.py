"""Face detection, 5-point similarity alignment, and paste-back into the photo.

Detection uses facenet-pytorch's MTCNN, whose weights ship inside the pip package
(nothing is downloaded). Coordinates everywhere are *pixel-index* coordinates:
the centre of pixel ``(row r, col c)`` is at ``(x=c, y=r)`` (OpenCV / kornia
``align_corners=True`` convention).

Canonical template (:data:`TEMPLATE_NORM`): normalised ``(x, y)`` of the five
landmarks in a square crop, where ``(0, 0)`` is the crop's top-left corner and
``(1, 1)`` its bottom-right corner. The values were chosen for a *tight* face
crop like the paper's Oulu-CASIA faces (forehead to chin, little background):
eyes at y = 0.40 and x = 0.32 / 0.68 (inter-ocular distance 0.36 of the crop),
nose tip at (0.50, 0.60), mouth corners at y = 0.76 and x = 0.34 / 0.66.
For a ``size`` crop the pixel template is ``TEMPLATE_NORM * size - 0.5``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import warp_affine

from facegan_kit.errors import InputError

__all__ = [
    "TEMPLATE_NORM",
    "LANDMARK_NAMES",
    "Detection",
    "AlignedFace",
    "FaceCountError",
    "FaceAligner",
    "template",
    "estimate_similarity",
    "invert_affine",
    "transform_points",
    "align_face",
]

#: Landmark order used throughout (image left/right, i.e. as seen in the photo).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

#: Canonical 5-point template in normalised crop coordinates (see module docstring).
TEMPLATE_NORM = np.array(
    [[0.32, 0.40], [0.68, 0.40], [0.50, 0.60], [0.34, 0.76], [0.66, 0.76]], dtype=np.float32
)


class FaceCountError(InputError):
    """No face, or more faces than the policy allows.

    Attributes:
        reason: ``"no_face"`` or ``"several_faces"``.
        count: Number of faces found.
    """

    def __init__(self, message: str, reason: str, count: int):
        super().__init__(message)
        self.reason = reason
        self.count = count


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float32 ``x0, y0, x1, y1``.
        landmarks: ``(5, 2)`` float32 in :data:`LANDMARK_NAMES` order.
        score: Detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        """Box area in pixels."""
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


@dataclass(frozen=True)
class AlignedFace:
    """A face warped onto the canonical template.

    Attributes:
        crop: ``(S, S, 3)`` uint8 aligned face.
        matrix: ``(2, 3)`` float64, photo pixel coords -> crop pixel coords.
        inverse: ``(2, 3)`` float64, crop pixel coords -> photo pixel coords.
        landmarks_in_crop: ``(5, 2)`` float32 detected landmarks mapped into the crop.
        source_size: ``(H, W)`` of the photo the face came from.
    """

    crop: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray
    landmarks_in_crop: np.ndarray
    source_size: tuple


def template(size: int) -> np.ndarray:
    """The canonical landmarks, ``(5, 2)`` float32 pixel coordinates for a ``size`` crop."""
    return (TEMPLATE_NORM * float(size) - 0.5).astype(np.float32)


def estimate_similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation; no reflection).

    Umeyama's closed form (1991) as scikit-image implements it (``SimilarityTransform``; part of
    the ``faces`` extra, like the MTCNN detector that gives the landmarks). It agrees with a
    direct numpy Umeyama to about 1e-12 on face landmarks, mirrored ones included.

    Args:
        src_pts: ``(N, 2)`` source points, N >= 2.
        dst_pts: ``(N, 2)`` destination points.

    Returns:
        ``(2, 3)`` float64 matrix ``M`` with ``dst ~= M[:, :2] @ src + M[:, 2]``.
    """
    from skimage.transform import SimilarityTransform

    src = np.asarray(src_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    if ((src - src.mean(0)) ** 2).sum() / len(src) <= 1e-12:
        raise ValueError("degenerate source points (all equal)")
    tf = SimilarityTransform.from_estimate(src, dst)
    if not tf:
        raise ValueError(f"no similarity transform fits these points ({tf})")
    return np.array(tf.params[:2], dtype=np.float64)


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Invert a ``(2, 3)`` affine matrix."""
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine to ``(N, 2)`` points."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(m, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def _hwc_to_batch(img: np.ndarray) -> torch.Tensor:
    arr = img if img.flags.writeable and img.flags.c_contiguous else np.array(img)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].float()


def _check_rgb(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {arr.dtype} {arr.shape}")
    return arr


class FaceAligner:
    """MTCNN detector plus template alignment; create once and reuse.

    Args:
        size: Output crop side S.
        device: Torch device for MTCNN and the warps.
        min_score: Detections below this confidence are discarded.
        min_face_size: MTCNN's smallest face (pixels).
    """

    def __init__(self, size: int = 128, device: str = "cpu", min_score: float = 0.90,
                 min_face_size: int = 20):
        from facenet_pytorch import MTCNN  # local import: optional dependency

        self.size = int(size)
        self.device = torch.device(device)
        self.min_score = float(min_score)
        self._mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=self.device,
                            post_process=False, select_largest=False)
        self._lock = threading.Lock()

    # -- detection -----------------------------------------------------------------
    def detect(self, img: np.ndarray) -> List[Detection]:
        """Detect faces, largest first.

        Args:
            img: ``(H, W, 3)`` uint8 RGB.

        Returns:
            Detections with score >= ``min_score``, sorted by box area (descending).
        """
        arr = _check_rgb(img)
        if min(arr.shape[:2]) < self._mtcnn.min_face_size:
            return []  # MTCNN has no scale for an image smaller than its smallest face (and fails)
        with self._lock, torch.no_grad():
            boxes, probs, points = self._mtcnn.detect(arr, landmarks=True)
        if boxes is None or points is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        probs = np.asarray(probs, dtype=np.float32).reshape(-1)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
        dets = [Detection(box=b.copy(), landmarks=p.copy(), score=float(s))
                for b, s, p in zip(boxes, probs, points)
                if np.isfinite(s) and s >= self.min_score and np.isfinite(p).all()]
        dets.sort(key=lambda d: d.area, reverse=True)
        return dets

    # -- alignment -----------------------------------------------------------------
    def align(self, img: np.ndarray, det: Detection | np.ndarray) -> AlignedFace:
        """Warp a face onto the template.

        Args:
            img: ``(H, W, 3)`` uint8 RGB photo.
            det: A :class:`Detection` or raw ``(5, 2)`` landmarks.

        Returns:
            The :class:`AlignedFace` (bilinear warp, zero padding outside the photo).
        """
        arr = _check_rgb(img)
        pts = det.landmarks if isinstance(det, Detection) else np.asarray(det, np.float32)
        s = self.size
        m = estimate_similarity(pts, template(s))
        src = _hwc_to_batch(arr).to(self.device)
        mt = torch.as_tensor(m, dtype=torch.float32, device=self.device)[None]
        out = warp_affine(src, mt, dsize=(s, s), mode="bilinear", padding_mode="zeros",
                          align_corners=True)
        crop = out[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return AlignedFace(crop=np.ascontiguousarray(crop), matrix=m, inverse=invert_affine(m),
                           landmarks_in_crop=transform_points(m, pts).astype(np.float32),
                           source_size=(arr.shape[0], arr.shape[1]))

    def paste_back(self, original: np.ndarray, edited_crop, aligned: AlignedFace,
                   feather: float = 0.06) -> np.ndarray:
        """See :func:`paste_back` (uses this aligner's device)."""
        return paste_back(original, edited_crop, aligned, feather=feather, device=self.device)

    def align_face(self, img: np.ndarray, policy: str = "largest") -> tuple:
        """Detect and align one face.

        Args:
            img: ``(H, W, 3)`` uint8 RGB photo.
            policy: ``"largest"`` keeps the biggest face; ``"single"`` requires exactly one.

        Returns:
            ``(AlignedFace, Detection)``.

        Raises:
            FaceCountError: ``"no face found"`` or ``"N faces found"`` (an InputError).
        """
        if policy not in ("largest", "single"):
            raise InputError(f"unknown face policy {policy!r} (use 'largest' or 'single')")
        dets = self.detect(img)
        if not dets:
            raise FaceCountError(no_face_message(img), "no_face", 0)
        if policy == "single" and len(dets) > 1:
            raise FaceCountError(f"{len(dets)} faces found", "several_faces", len(dets))
        return self.align(img, dets[0]), dets[0]


def no_face_message(img: np.ndarray) -> str:
    """``"no face found (image is WxH pixels)"``: the size tells a tiny or thin image apart."""
    h, w = np.asarray(img).shape[:2]
    return f"no face found (image is {w}x{h} pixels)"


def _feather_mask(size: int, feather: float) -> torch.Tensor:
    """Crop-space mask, 1 in the middle and exactly 0 on a border of ~feather*size px."""
    s = int(size)
    rad = max(1, int(round(feather * s)))
    mask = torch.zeros(1, 1, s, s)
    mask[..., rad:s - rad, rad:s - rad] = 1.0
    k = 2 * (rad // 2) + 1
    if k >= 3:
        mask = gaussian_blur2d(mask, (k, k), (rad / 3.0, rad / 3.0), border_type="constant")
    # the outermost ring of the crop is forced to 0 so bilinear sampling fades to 0
    mask[..., : max(1, rad // 2), :] = 0
    mask[..., s - max(1, rad // 2):, :] = 0
    mask[..., :, : max(1, rad // 2)] = 0
    mask[..., :, s - max(1, rad // 2):] = 0
    return mask


def paste_back(original: np.ndarray, edited_crop, aligned: AlignedFace, feather: float = 0.06,
               device: str | torch.device = "cpu") -> np.ndarray:
    """Blend an edited aligned crop back into the original photo.

    The crop is inverse-warped into the photo frame together with a feathered mask
    (zero on a border of about ``feather * S`` pixels of the crop, Gaussian-blurred
    inside). Only the bounding box of the warped crop is processed, and photo
    pixels where the warped mask is 0 are returned *exactly* unchanged.

    Args:
        original: ``(H, W, 3)`` uint8 photo the face was aligned from.
        edited_crop: ``(S, S, 3)`` uint8 array, or ``(3, S, S)`` float tensor in [-1, 1].
        aligned: The :class:`AlignedFace` returned by ``align``.
        feather: Feather width as a fraction of the crop side.
        device: Torch device for the warp.

    Returns:
        ``(H, W, 3)`` uint8 composited photo (a new array).
    """
    orig = _check_rgb(original)
    if isinstance(edited_crop, torch.Tensor):
        from facegan_kit.data.io import to_uint8
        edited_crop = to_uint8(edited_crop)
    crop = _check_rgb(edited_crop)
    s = crop.shape[0]
    if crop.shape[1] != s:
        raise ValueError(f"edited crop must be square, got {crop.shape}")
    h, w = orig.shape[:2]
    # the matrix was estimated for aligned.crop's size s0; an edited crop of size s
    # maps to it by c0 = (c + 0.5) * s0 / s - 0.5 (pixel-index coordinates)
    r = aligned.crop.shape[0] / s
    inv = aligned.inverse.copy()
    inv[:, 2] = inv[:, 2] + inv[:, :2] @ np.full(2, 0.5 * r - 0.5)
    inv[:, :2] = inv[:, :2] * r
    # bounding box of the crop in the photo, clipped
    corners = transform_points(inv, np.array([[0, 0], [s - 1, 0], [0, s - 1], [s - 1, s - 1]]))
    x0 = int(max(0, np.floor(corners[:, 0].min()) - 1))
    y0 = int(max(0, np.floor(corners[:, 1].min()) - 1))
    x1 = int(min(w, np.ceil(corners[:, 0].max()) + 2))
    y1 = int(min(h, np.ceil(corners[:, 1].max()) + 2))
    result = orig.copy()
    if x1 <= x0 or y1 <= y0:
        return result
    roi_m = inv.copy()
    roi_m[:, 2] -= (x0, y0)
    dev = torch.device(device)
    mt = torch.as_tensor(roi_m, dtype=torch.float32, device=dev)[None]
    src = torch.cat([_hwc_to_batch(crop).to(dev), _feather_mask(s, feather).to(dev)], dim=1)
    warped = warp_affine(src, mt, dsize=(y1 - y0, x1 - x0), mode="bilinear",
                         padding_mode="zeros", align_corners=True)[0].cpu()
    face, mask = warped[:3], warped[3:].clamp(0, 1)
    roi = _hwc_to_batch(orig[y0:y1, x0:x1])[0]
    blended = (roi * (1 - mask) + face * mask).round().clamp(0, 255).to(torch.uint8)
    blended = torch.where(mask > 0, blended, roi.to(torch.uint8))
    result[y0:y1, x0:x1] = blended.permute(1, 2, 0).numpy()
    return result


_DEFAULT: dict = {}


def align_face(img: np.ndarray, policy: str = "largest", size: int = 128,
               aligner: Optional[FaceAligner] = None) -> AlignedFace:
    """Detect and align one face with a shared default :class:`FaceAligner`.

    Args:
        img: ``(H, W, 3)`` uint8 RGB photo.
        policy: ``"largest"`` or ``"single"``.
        size: Crop side (ignored when ``aligner`` is given).
        aligner: Reuse this aligner instead of the cached default.

    Returns:
        The :class:`AlignedFace`.

    Raises:
        FaceCountError: ``"no face found"`` / ``"N faces found"`` (an InputError).
    """
    if aligner is None:
        aligner = _DEFAULT.get(size)
        if aligner is None:
            aligner = _DEFAULT[size] = FaceAligner(size=size)
    return aligner.align_face(img, policy=policy)[0]


def eye_centres(landmarks: Sequence) -> np.ndarray:
    """The two eye landmarks, ``(2, 2)`` float32 (left, right)."""
    return np.asarray(landmarks, dtype=np.float32).reshape(5, 2)[:2]
