"""Server-side sessions of ``facegan serve``: one uploaded face each, in a thread-safe LRU map."""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from facegan_kit.serve.limits import HTTPError

__all__ = ["Session", "SessionStore", "TOKEN_RE"]

#: What a session token looks like (anything else is answered 404 without a lookup).
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass
class Session:
    """One uploaded face. Immutable after creation, so readers need no lock."""

    token: str
    crop: np.ndarray  # (S, S, 3) uint8: what the model sees
    code: torch.Tensor  # (1, Z) identity code
    width: int
    height: int
    pre_aligned: bool
    photo_bytes: bytes | None = None  # the uploaded file, kept for paste-back (photos only)
    aligned_face: Any = None  # facegan_kit.data.align.AlignedFace (photos only)
    created: float = field(default_factory=time.time)

    @property
    def nbytes(self) -> int:
        return len(self.photo_bytes or b"") + int(self.crop.nbytes) + 1024


class SessionStore:
    """A thread-safe LRU map token -> :class:`Session`, capped by count and bytes."""

    def __init__(self, max_sessions: int, max_bytes: int):
        self.max_sessions = max(1, int(max_sessions))
        self.max_bytes = max(1, int(max_bytes))
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, session: Session) -> None:
        with self._lock:
            old = self._items.pop(session.token, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[session.token] = session
            self._bytes += session.nbytes
            while len(self._items) > self.max_sessions or (self._bytes > self.max_bytes and len(self._items) > 1):
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes

    def get(self, token: str) -> Session:
        if not isinstance(token, str) or not TOKEN_RE.match(token):
            raise HTTPError(404, "unknown or expired token (upload the face again)")
        with self._lock:
            s = self._items.get(token)
            if s is None:
                raise HTTPError(404, "unknown or expired token (upload the face again)")
            self._items.move_to_end(token)
            return s

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
