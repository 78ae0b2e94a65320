"""The work behind ``facegan serve``'s routes, with no HTTP in it: decode and align
uploads, keep sessions, and answer edits, grids, transfers and downloads as PNG."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import threading

import numpy as np

from facegan_kit import EXPRESSIONS, NEUTRAL
from facegan_kit.data.io import resize_square, to_tensor, to_uint8
from facegan_kit.serve.images import png_bytes, resize
from facegan_kit.serve.limits import HTTPError, ServeLimits, one_line
from facegan_kit.serve.sessions import Session, SessionStore

__all__ = ["EditService", "SAMPLE_COUNT", "SAMPLE_RENDER_SIZE", "DETECT_MAX_SIDE"]

#: Number of built-in synthetic faces offered by the page.
SAMPLE_COUNT = 12
#: Side at which built-in synthetic faces are rendered before resizing to the model's size.
SAMPLE_RENDER_SIZE = 128
#: Photos whose longer side exceeds this are detected on a downscaled copy (alignment
#: itself always samples the full-resolution photo).
DETECT_MAX_SIDE = 1280


class EditService:
    """Everything the routes do, on top of an :class:`~facegan_kit.edit.Editor`.

    Args:
        editor: The loaded model.
        limits: Resource caps.
        aligner: A :class:`~facegan_kit.data.align.FaceAligner` for full photos (created
            on first use when None; needs ``facenet-pytorch``).
    """

    def __init__(self, editor, limits: ServeLimits = ServeLimits(), aligner=None):
        self.editor = editor
        self.limits = limits
        self.sessions = SessionStore(limits.max_sessions, limits.max_session_bytes)
        self._aligner = aligner
        self._aligner_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one forward pass at a time
        self._tmpdir = tempfile.mkdtemp(prefix="facegan-serve-")
        self._sample_cache: dict[tuple, np.ndarray] = {}

    def close(self) -> None:
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    # -- info -----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.editor.image_size

    @property
    def can_transfer(self) -> bool:
        return "d_img" in self.editor.models and "q" in self.editor.models

    @staticmethod
    def can_align() -> bool:
        import importlib.util

        return importlib.util.find_spec("facenet_pytorch") is not None

    def info(self) -> dict:
        return {
            "expressions": list(EXPRESSIONS),
            "neutral": NEUTRAL,
            "image_size": self.size,
            "levels": int(self.editor.controller.levels),
            "max_upload_bytes": self.limits.max_upload_bytes,
            "max_pixels": self.limits.max_pixels,
            "samples": SAMPLE_COUNT,
            "transfer": self.can_transfer,
            "face_detection": self.can_align(),
            "trained_on": self.editor.trained_on,
            # shown by the page once a person uploads their own image (see Editor.photo_warning)
            "photo_warning": self.editor.photo_warning,
        }

    # -- decoding uploads -------------------------------------------------------------------------
    def decode_image(self, data: bytes) -> np.ndarray:
        """Bytes -> ``(H, W, 3)`` uint8 through the toolkit's safe reader."""
        from facegan_kit.data.io import ImageReadError, read_image

        if not data:
            raise HTTPError(400, "empty upload (no image data)")
        fd, tmp = tempfile.mkstemp(prefix="upload-", dir=self._tmpdir)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return read_image(tmp, max_pixels=self.limits.max_pixels)
        except ImageReadError as exc:
            status = 413 if exc.reason == "too_large" else 400
            raise HTTPError(status, one_line(exc)) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _get_aligner(self):
        with self._aligner_lock:
            if self._aligner is None:
                if not self.can_align():
                    raise HTTPError(501, "face detection needs facenet-pytorch (pip install 'facegan-kit[faces]'); "
                                         "tick 'pre-aligned crop' to upload an aligned face instead")
                from facegan_kit.data.align import FaceAligner

                self._aligner = FaceAligner(size=self.size)
            return self._aligner

    def _align_photo(self, arr: np.ndarray):
        """Detect (on a downscaled copy of big photos) and align the largest face."""
        from facegan_kit.data.align import FaceCountError, no_face_message

        aligner = self._get_aligner()
        h, w = arr.shape[:2]
        scale = max(h, w) / DETECT_MAX_SIDE
        small = arr if scale <= 1 else resize(arr, int(round(h / scale)), int(round(w / scale)))
        dets = aligner.detect(small)
        if not dets:
            raise FaceCountError(f"{no_face_message(arr)}; tick 'pre-aligned crop' if the image is already an "
                                 "aligned face", "no_face", 0)
        pts = dets[0].landmarks.astype(np.float64)
        if small is not arr:  # pixel-index coordinates: (x + 0.5) * ratio - 0.5
            pts = (pts + 0.5) * np.array([w / small.shape[1], h / small.shape[0]]) - 0.5
        return aligner.align(arr, pts.astype(np.float32))

    # -- sessions ---------------------------------------------------------------------------------
    def _new_session(self, crop: np.ndarray, width: int, height: int, pre_aligned: bool,
                     photo_bytes: bytes | None = None, aligned_face=None) -> Session:
        crop = resize_square(crop, self.size)  # the same pixels as `facegan edit --no-align`
        with self._model_lock:
            code = self.editor.encode(to_tensor(crop)[None]).detach().cpu().clone()
        s = Session(token=secrets.token_urlsafe(18), crop=crop, code=code, width=width, height=height,
                    pre_aligned=pre_aligned, photo_bytes=photo_bytes, aligned_face=aligned_face)
        self.sessions.add(s)
        return s

    @staticmethod
    def _describe(s: Session) -> dict:
        return {"token": s.token, "width": s.width, "height": s.height, "aligned": s.pre_aligned,
                "size": int(s.crop.shape[0])}

    def upload(self, data: bytes, pre_aligned: bool) -> dict:
        """Decode, (align,) encode and store one face; returns the session description."""
        arr = self.decode_image(data)
        h, w = arr.shape[:2]
        if pre_aligned:
            s = self._new_session(arr, w, h, True)
        else:
            af = self._align_photo(arr)
            s = self._new_session(af.crop, w, h, False, photo_bytes=bytes(data), aligned_face=af)
        return self._describe(s)

    def sample_image(self, subject: int, expression: str = NEUTRAL, intensity: float = 1.0) -> np.ndarray:
        """A built-in synthetic face (``SAMPLE_RENDER_SIZE`` square, uint8)."""
        from facegan_kit.data.synthetic import render_face, subject_attributes
        from facegan_kit.edit import expression_index

        if not 0 <= subject < SAMPLE_COUNT:
            raise HTTPError(400, f"subject must be 0..{SAMPLE_COUNT - 1}")
        k = expression_index(expression)
        label = 6 if k is None else k
        t = 0.0 if k is None else intensity
        key = (subject, label, round(t, 4))
        img = self._sample_cache.get(key)
        if img is None:
            img = render_face(subject_attributes(subject), label, t, SAMPLE_RENDER_SIZE, None, subject)
            if len(self._sample_cache) < 256:
                self._sample_cache[key] = img
        return img

    def sample(self, subject: int, expression: str = NEUTRAL, intensity: float = 1.0) -> dict:
        img = self.sample_image(subject, expression, intensity)
        return self._describe(self._new_session(img, img.shape[1], img.shape[0], True))

    # -- edits ------------------------------------------------------------------------------------
    def _photo(self, s: Session) -> dict:
        """The session's face for decoders that blend the photo in (``Editor.uses_source``); an
        editor without that attribute is called as before."""
        return {"source": to_tensor(s.crop)[None]} if getattr(self.editor, "uses_source", False) else {}

    def _edited(self, s: Session, expression: str, intensity: float) -> np.ndarray:
        c = self.editor.code(expression, intensity=intensity)  # InputError for bad values
        with self._model_lock:
            out = self.editor.decode(s.code, c, **self._photo(s))
        return to_uint8(out[0])

    def _transferred(self, target: Session, source: Session, label: str) -> np.ndarray:
        from facegan_kit.edit import expression_index

        k = expression_index(label)
        if k is None:
            raise HTTPError(400, f"label: the source face's expression, one of: {', '.join(EXPRESSIONS)}")
        if not self.can_transfer:
            raise HTTPError(501, "this checkpoint has no D_img/Q, which expression transfer needs")
        with self._model_lock:
            c = self.editor.code_from_image(to_tensor(source.crop)[None], k)
            out = self.editor.decode(target.code, c, **self._photo(target))
        return to_uint8(out[0])

    def original_png(self, token: str) -> bytes:
        return png_bytes(self.sessions.get(token).crop)

    def edit_png(self, token: str, expression: str, intensity: float) -> bytes:
        return png_bytes(self._edited(self.sessions.get(token), expression, intensity))

    def transfer_png(self, target: str, source: str, label: str) -> bytes:
        return png_bytes(self._transferred(self.sessions.get(target), self.sessions.get(source), label))

    def grid_png(self, token: str) -> bytes:
        s = self.sessions.get(token)
        with self._model_lock:
            g = self.editor.grid(to_tensor(s.crop)[None]).cpu()
        from facegan_kit.figures import sheet

        return png_bytes(sheet([list(row) for row in g], col_labels=[*EXPRESSIONS, NEUTRAL],
                               row_labels=[f"level {i + 1}" for i in range(g.shape[0])]))

    def download_png(self, token: str, expression: str | None = None, intensity: float = 1.0,
                     source: str | None = None, label: str | None = None) -> tuple[bytes, str]:
        """The edit (or transfer) as a full photo (pasted back) or as the crop.
        Returns ``(png, filename)``."""
        s = self.sessions.get(token)
        if source:
            crop = self._transferred(s, self.sessions.get(source), label or "")
            name = f"facegan-transfer-{(label or '').strip().lower()}"
        else:
            expression = expression or NEUTRAL
            crop = self._edited(s, expression, intensity)
            name = f"facegan-{expression.strip().lower()}-{intensity:.2f}"
        if s.photo_bytes is None or s.aligned_face is None:
            return png_bytes(crop, compress_level=6), name + ".png"
        from facegan_kit.data.align import paste_back

        photo = self.decode_image(s.photo_bytes)
        return png_bytes(paste_back(photo, crop, s.aligned_face), compress_level=6), name + "-photo.png"
