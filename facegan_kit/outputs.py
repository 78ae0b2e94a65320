"""Writing results: atomic files with ordinary permissions, and one rule for outputs that exist.

Atomic files: each file is written under a temporary name in its own folder, flushed, fsynced and
renamed over the destination, so a reader or a crash never sees half a file. ``mkstemp`` creates
files readable by their owner only; the finished file gets the mode a plain ``open()`` would have
given (``0o666`` minus the umask), so results can be shared like any other file.

The rule every command that writes follows: an earlier result is never replaced unless the user
asks with ``--overwrite``. A file that exists, or an output folder that is not empty, is refused
before any work starts, in one line naming it and the flag. With ``--overwrite`` a file is
replaced atomically and a folder is replaced whole: the earlier folder is moved aside, the new
one written, and the earlier one deleted only once the command has succeeded (put back if it
fails), so a folder never mixes two results. Paths that cannot be created (a file where a folder
is needed, a read-only or virtual file system) are refused up front in one line naming the path.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable, Iterable, Union

from facegan_kit.errors import InputError

__all__ = ["OVERWRITE_HELP", "OutputExistsError", "OutputFolder", "atomic_write", "check_new_files",
           "claim_folder", "ensure_folder", "file_mode"]

#: ``--help`` text of every command's ``--overwrite`` flag.
OVERWRITE_HELP = ("Replace an earlier result at the output path. Without it an existing output file or "
                  "non-empty output folder is refused and left untouched.")

_UMASK_LOCK = threading.Lock()


class OutputExistsError(InputError):
    """The output already holds an earlier result and ``--overwrite`` was not given."""


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` minus the process umask."""
    # reading the umask means setting it: put it back at once, one thread at a time (meanwhile a file
    # another thread creates is only more private, never less)
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old)
    return 0o666 & ~old


Payload = Union[bytes, str, Callable[[IO[bytes]], None]]


def atomic_write(path, data: Payload) -> Path:
    """Write ``data`` (bytes, UTF-8 text, or a ``callback(binary_file)``) to ``path`` atomically.

    The parent folder is created. On any failure the temporary file is removed and an earlier
    file at ``path`` is left as it was; the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def _blocking_file(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) that is not a folder."""
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def _folder_problem(folder: Path) -> str | None:
    """Create ``folder`` (and parents) and try writing in it; why that failed, or ``None``."""
    blocker = _blocking_file(folder)
    if blocker is not None:
        return f"cannot create the output folder ({blocker} is a file, not a folder)"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the output folder ({exc.strerror or exc})"
    try:
        fd, probe = tempfile.mkstemp(prefix=".facegan-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write in the output folder ({exc.strerror or exc})"
    return None


def ensure_folder(folder) -> Path:
    """Create ``folder`` (and parents) and check that files can be written in it.

    Raises:
        InputError: one line naming the folder and why it cannot be used.
    """
    folder = Path(folder)
    problem = _folder_problem(folder)
    if problem is not None:
        raise InputError(f"{folder}: {problem}")
    return folder


def check_new_files(paths: Iterable, overwrite: bool) -> None:
    """Refuse output files that already exist (unless ``overwrite``) or cannot be created.

    Call it before any work: nothing is written by the check except the output folders.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.is_dir():
            raise InputError(f"{p}: is a folder; give a file name for the output")
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{existing[0]}{more}: already exists (an earlier result); pass --overwrite "
                                "to replace it, or choose another output")
    for p in paths:
        problem = _folder_problem(p.parent)
        if problem is not None:
            raise InputError(f"{p}: {problem}")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _key(path) -> Path:
    p = Path(path).expanduser()
    try:
        return p.resolve()
    except OSError:  # a symlink loop
        return p.absolute()


class OutputFolder:
    """A claimed output folder; ``with`` it around the writing (see :func:`claim_folder`)."""

    def __init__(self, path: Path, replace: bool, aside: Path | None = None):
        self.path, self.replace, self.aside = path, replace, aside

    def __enter__(self) -> Path:
        if self.replace:
            try:
                os.rename(self.path, self.aside)
            except OSError as exc:
                raise InputError(f"{self.path}: cannot move the earlier result aside to replace it "
                                 f"({exc.strerror or exc})") from None
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.replace:
            return
        if exc_type is None:
            shutil.rmtree(self.aside, ignore_errors=True)
            return
        shutil.rmtree(self.path, ignore_errors=True)  # the half-written new result
        with contextlib.suppress(OSError):
            os.rename(self.aside, self.path)


def claim_folder(out, overwrite: bool, inputs: Iterable = ()) -> OutputFolder:
    """Check an output folder before any work: it must be new or empty, or ``overwrite`` given.

    ``inputs`` are files and folders the command reads: a folder holding one of them is never
    replaced, and the earlier result is moved aside outside any input folder holding ``out``.

    Raises:
        OutputExistsError: ``out`` is not empty and ``overwrite`` is false.
        InputError: ``out`` is a file, cannot be created, or holds one of the inputs.
    """
    out = Path(out)
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    ensure_folder(out)
    if not any(out.iterdir()):
        return OutputFolder(out, replace=False)
    if not overwrite:
        raise OutputExistsError(f"{out}: the output folder already holds an earlier result; pass --overwrite "
                                "to replace it, or choose another output folder")
    if out.is_symlink():  # replace the folder it points to and keep the link
        out = _key(out)
    target = _key(out)
    anchor = target
    for p in [Path.cwd(), *inputs]:
        if _inside(_key(p), target):
            raise InputError(f"{out}: --overwrite would delete {p}, which is inside it; choose another output")
    for p in inputs:  # the outermost input folder holding out: the earlier result goes beside it
        k = _key(p)
        if k.is_dir() and _inside(anchor, k):
            anchor = k
    return OutputFolder(out, replace=True, aside=anchor.parent / f".{out.name}.earlier-{os.getpid()}")
