"""Errors that the CLI prints as one line (no traceback) before exiting non-zero."""
from __future__ import annotations


class FaceganError(Exception):
    """Base class: a user-facing problem with a one-line message naming the culprit."""

    exit_code = 2


class RegistryError(FaceganError):
    """Unknown or duplicate component name."""


class RecipeError(FaceganError):
    """A recipe that does not validate (message starts with the TOML path)."""


class CheckpointError(FaceganError):
    """A checkpoint that is missing, truncated or from another recipe."""


class InputError(FaceganError):
    """A bad input file or argument (unreadable image, no face, out-of-range value...)."""


class ShapeError(FaceganError):
    """A component returned a tensor of the wrong shape (usually a plugin bug)."""


class NonFiniteLossError(FaceganError):
    """A loss became NaN or infinite during training."""
