"""The output rule (facegan_kit.outputs): refuse earlier results unless asked, replace folders whole,
written files get ordinary permissions, uncreatable paths are one-line errors."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from facegan_kit.checkpoint import save_checkpoint
from facegan_kit.data.io import write_png_atomic
from facegan_kit.errors import InputError
from facegan_kit.outputs import OutputExistsError, atomic_write, check_new_files, claim_folder, ensure_folder


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_mode_open_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
        png = write_png_atomic(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
        ckpt = save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {})
        text = atomic_write(tmp_path / "t.csv", "a,b\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "plain.txt") == 0o666 & ~umask
    for p in (png, ckpt, text):
        assert mode(p) == 0o666 & ~umask, p  # mkstemp alone gives 0o600


def test_existing_file_is_refused_naming_it_and_the_flag(tmp_path):
    old = tmp_path / "grid.png"
    old.write_bytes(b"earlier")
    with pytest.raises(OutputExistsError, match=r"grid\.png: already exists.*--overwrite"):
        check_new_files([tmp_path / "new.png", old], overwrite=False)
    check_new_files([old], overwrite=True)
    assert old.read_bytes() == b"earlier"  # the check itself writes nothing


@pytest.mark.parametrize("make, words", [
    (lambda t: t / "f.png" / "sub", "f.png is a file, not a folder"),
    (lambda t: t / "f.png" / "a" / "b", "f.png is a file, not a folder"),
    (lambda t: "/proc/facegan-out", "cannot"),
])
def test_folders_that_cannot_be_made_are_one_line(tmp_path, make, words):
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(InputError, match=words) as err:
        ensure_folder(make(tmp_path))
    assert str(make(tmp_path)) in str(err.value) and "\n" not in str(err.value)


def test_nonempty_folder_is_refused_and_replaced_whole(tmp_path):
    out = tmp_path / "set"
    (out / "images").mkdir(parents=True)
    (out / "images" / "old.png").write_bytes(b"old")
    (out / "index.csv").write_text("old\n")
    with pytest.raises(OutputExistsError, match=r"set: the output folder already holds.*--overwrite"):
        claim_folder(out, overwrite=False)
    assert (out / "images" / "old.png").read_bytes() == b"old"
    with claim_folder(out, overwrite=True) as folder:
        assert list(folder.iterdir()) == []  # the new result starts from an empty folder
        (folder / "index.csv").write_text("new\n")
    assert sorted(p.name for p in out.rglob("*")) == ["index.csv"]
    assert (out / "index.csv").read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # nothing left aside


def test_a_failed_replacement_puts_the_earlier_result_back(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "index.csv").write_text("old\n")
    with pytest.raises(RuntimeError):
        with claim_folder(out, overwrite=True):
            (out / "half.png").write_bytes(b"new")
            raise RuntimeError("killed half-way")
    assert sorted(p.name for p in out.iterdir()) == ["index.csv"]
    assert (out / "index.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_overwrite_never_deletes_an_input_or_the_working_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "src").mkdir(parents=True)
    with pytest.raises(InputError, match="inside it"):
        claim_folder(out, overwrite=True, inputs=[out / "src"])
    monkeypatch.chdir(out / "src")
    with pytest.raises(InputError, match="inside it"):
        claim_folder(out, overwrite=True)
    assert (out / "src").is_dir()


def test_earlier_result_inside_an_input_folder_is_set_aside_outside_it(tmp_path):
    src = tmp_path / "dataset"
    out = src / "prepared"
    out.mkdir(parents=True)
    (out / "index.csv").write_text("old\n")
    claim = claim_folder(out, overwrite=True, inputs=[src])
    assert claim.aside.parent == tmp_path.resolve()  # a walk over src never meets the old set
    with claim:
        assert not any(p.name.startswith(".prepared") for p in src.iterdir())
    assert list(out.iterdir()) == []


def test_overwriting_through_a_symlinked_folder_keeps_the_link(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    (real / "old.png").write_bytes(b"old")
    link.symlink_to(real)
    with claim_folder(link, overwrite=True) as folder:
        (folder / "new.png").write_bytes(b"new")
    assert link.is_symlink() and [p.name for p in real.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]
