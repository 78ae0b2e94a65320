"""Bad inputs end in one-line errors and non-zero exits, never tracebacks; nothing written is lost."""
from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facegan_kit.cli import main
from facegan_kit.data.io import read_image
from facegan_kit.errors import FaceganError, InputError, NonFiniteLossError, ShapeError
from facegan_kit.train import train

TINY = Path(__file__).resolve().parents[1] / "fixtures" / "tiny.toml"


def run_cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
        raise SystemExit(0)
    err = capsys.readouterr().err
    return exc.value.code, err


def assert_one_line_error(code: int, err: str) -> None:
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    assert len([ln for ln in err.strip().splitlines() if ln.startswith("facegan: error")]) <= 1, err


def test_non_finite_loss_stops_naming_term_and_step(tmp_path, monkeypatch):
    from facegan_plugins.losses import terms

    calls = {"n": 0}
    original = terms.L1Loss.g_loss

    def poisoned(self, ctx):
        calls["n"] += 1
        value = original(self, ctx)
        return value * float("nan") if calls["n"] == 2 else value

    monkeypatch.setattr(terms.L1Loss, "g_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss 'g/l1' became non-finite at step 4") as err:
        train(TINY, tmp_path / "run", progress=False)
    assert "\n" not in str(err.value)
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("*.safetensors"))
    assert ckpts, "the last good checkpoint must be kept"


def test_non_finite_skip_counts(tmp_path, monkeypatch):
    from facegan_plugins.losses import terms

    monkeypatch.setattr(terms.L1Loss, "g_loss", lambda self, ctx: torch.tensor(float("inf")))
    result = train(TINY, tmp_path / "run", overrides=["train.on_nonfinite=\"skip\""], progress=False)
    assert result.finished
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert '"skipped/g": 1.0' in log


def test_plugin_with_wrong_shape_is_named(tmp_path, monkeypatch):
    from facegan_plugins.exprgan import controller

    original = controller.FCtrl.forward
    monkeypatch.setattr(controller.FCtrl, "forward", lambda self, y, generator=None: original(self, y, generator)[:, :7])
    with pytest.raises(ShapeError, match=r"model.controller returned shape \(8, 7\), expected \(\*?8, 30\)"):
        train(TINY, tmp_path / "run", progress=False)


@pytest.mark.parametrize("args, needle", [
    (["train", "missing.toml"], "recipe file not found"),
    (["train", TINY, "--set", "model.controller.type=nope", "--dry-run"], "unknown controller 'nope'"),
    (["train", TINY, "--set", "nonsense", "--dry-run"], "KEY.PATH=VALUE"),
    (["train", TINY, "--device", "tpu"], "device 'tpu'"),
    (["edit", "missing.safetensors", "x.png", "--expression", "happy"], "not found"),
    (["plugins", "--kind", "nope"], "Invalid value"),
])
def test_cli_errors_are_one_line(args, needle, capsys):
    code, err = run_cli(args, capsys)
    assert_one_line_error(code, err)
    assert needle in err


def test_edit_bad_image_writes_nothing(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    for name, data in [("empty.png", b""), ("text.png", b"hello"), ("trunc.png", _png_bytes()[:60])]:
        bad = tmp_path / name
        bad.write_bytes(data)
        code, err = run_cli(["edit", tiny_checkpoint, bad, "--expression", "happy", "--no-align", "--out", out], capsys)
        assert_one_line_error(code, err)
        assert name in err
    assert not out.exists() or not any(out.iterdir())


def _png_bytes(size=(24, 24), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format="PNG")
    return buf.getvalue()


# --- fuzzing: malformed recipes, argument lists and image files ------------------------------

_KEYS = ["model.controller.type", "model.decoder.channels", "train.seed", "stages.0.batch_size", "stages.1.losses.l1",
         "model.encoder.z_dim", "data.subjects", "model.q.likelihood", "train.device", "stages.2.train", "recipe.name",
         "model.image_size", "losses.l1.type", "stages.0.epochs", "model.d_img.fc_dim", "train.flip"]
_VALUES = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=8), st.lists(st.integers(-3, 64), max_size=4))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_KEYS), _VALUES), min_size=1, max_size=3))
def test_fuzz_recipes_never_traceback(capsys, sets):
    args = ["train", str(TINY), "--dry-run"]
    for key, value in sets:
        args += ["--set", f"{key}={_toml(value)}"]
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if exc.value.code:
        assert err.startswith("facegan: error: ") and err.count("\n") == 1, err


_ARGS = st.lists(st.sampled_from(["edit", "grid", "generate", "retrieve", "transfer", "tsne", "eval", "embed", "train",
                                  "--expression", "happy", "joy", "--intensity", "2", "-1", "nan", "--level", "0",
                                  "9", "--n", "-3", "--out", "missing.safetensors", "--by", "smell", "--set",
                                  "a=b", "--device", "--no-align", "x.png", "--k", "0"]), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_ARGS)
def test_fuzz_cli_arguments_never_traceback(capsys, tmp_path_factory, args):
    workdir = tmp_path_factory.mktemp("cli")
    import os

    old = os.getcwd()
    os.chdir(workdir)
    try:
        with pytest.raises(SystemExit):
            main(args)
            raise SystemExit(0)
    finally:
        os.chdir(old)
    assert "Traceback" not in capsys.readouterr().err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64), st.integers(0, 400), st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "TIFF"]))
def test_fuzz_image_files_raise_input_error_only(tmp_path_factory, noise, cut, fmt):
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buf, format=fmt)
    data = bytearray(buf.getvalue())
    rnd = random.Random(cut)
    for b in noise:
        data[rnd.randrange(len(data))] = b
    path = tmp_path_factory.mktemp("img") / f"f.{fmt.lower()}"
    path.write_bytes(bytes(data[: max(cut, 1)]) if cut < len(data) else bytes(data))
    try:
        img = read_image(path)
    except InputError as exc:
        assert "\n" not in str(exc) and path.name in str(exc)
    else:
        assert img.dtype.name == "uint8" and img.ndim == 3 and img.shape[2] == 3


def test_faceganerror_is_base_of_user_errors():
    for cls in (InputError, ShapeError, NonFiniteLossError):
        assert issubclass(cls, FaceganError)


# --- fuzzing: output paths of every command that writes ---------------------------------------

OUT = object()  # where a writer's output path goes in its argument list


@pytest.fixture(scope="module")
def writers(tiny_checkpoint, tmp_path_factory):
    """command -> its arguments, with OUT where the output path goes."""
    from facegan_kit.data.synthetic import SyntheticConfig, write_dataset

    root = tmp_path_factory.mktemp("writer-inputs")
    faces = write_dataset(root / "faces", SyntheticConfig(subjects=2, size=16, frames=1))
    face, other = sorted((faces / "train").glob("*.png"))[:2]
    (root / "weights.pth").write_bytes(b"not read: the output is checked first")
    ck = str(tiny_checkpoint)
    return {
        "data synthetic": ["data", "synthetic", "--subjects", 2, "--size", 16, "--out", OUT],
        "data prepare": ["data", "prepare", faces / "train", OUT, "--layout", "folder", "--no-align"],
        "edit": ["edit", ck, face, "-e", "happy", "--no-align", "--out", OUT],
        "grid": ["grid", ck, face, "--no-align", "--out", OUT],
        "transfer": ["transfer", ck, "--identity", face, "--expression", other, "--label", "sad", "--no-align",
                     "--out", OUT],
        "generate": ["generate", ck, "--n", 2, "--out", OUT],
        "retrieve": ["retrieve", ck, "--query", face, "--gallery", faces / "train", "--by", "pixel", "--no-align",
                     "--out", OUT],
        "tsne": ["tsne", ck, "--data", faces, "--out", OUT],
        "augment-experiment": ["augment-experiment", ck, "--data", "synthetic", "--sizes", "0", "--out", OUT],
        "eval": ["eval", ck, "--no-oracles", "--out", OUT],
        "bench": ["bench", "--recipes", "", "--checkpoints", f"tiny={ck}", "--out", OUT],
        "weights convert": ["weights", "convert", root / "weights.pth", OUT],
        "train": ["train", TINY, "--max-steps", 1, "--quiet", "--out", OUT],
    }


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _output_path(case: str, ws: Path) -> Path:
    (ws / "taken.png").write_bytes(_png_bytes())
    result = ws / "result.png"  # a folder named like a file output: every command accepts the name
    (result / "images").mkdir(parents=True)
    for name in ("index.csv", "log.jsonl", "final.safetensors", "face_happy.png", "images/a.png"):
        (result / name).write_bytes(f"earlier {name}".encode())
    locked = ws / "locked"
    locked.mkdir(mode=0o500)
    return {"existing file": ws / "taken.png", "file/sub": ws / "taken.png" / "sub.png",
            "unwritable": Path("/proc/facegan-out/out.png"), "read-only folder": locked / "out.png",
            "existing result": result}[case]


@pytest.mark.parametrize("case", ["existing file", "file/sub", "unwritable", "read-only folder", "existing result"])
@pytest.mark.parametrize("command", ["data synthetic", "data prepare", "edit", "grid", "transfer", "generate",
                                     "retrieve", "tsne", "augment-experiment", "eval", "bench", "weights convert",
                                     "train"])
def test_fuzz_output_paths_never_traceback_nor_lose_files(writers, command, case, tmp_path, capsys, monkeypatch):
    if case == "read-only folder" and os.geteuid() == 0:
        pytest.skip("root writes in read-only folders (the /proc case covers an unwritable path)")
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    out = _output_path(case, ws)
    if case == "existing result" and command in ("grid", "transfer", "retrieve", "tsne", "weights convert"):
        out = ws / "taken.png"  # a file output's earlier result is a file
    if case == "existing result" and command == "edit":
        (ws / "face.png").write_bytes(_png_bytes())  # an earlier edit of another photo named 'face'
    before = _snapshot(ws)
    args = [out if a is OUT else a for a in writers[command]]
    if command == "edit" and case == "existing result":
        args[2] = ws / "face.png"
    code, err = run_cli(args, capsys)
    assert "Traceback" not in err, err
    after = _snapshot(ws)
    if command == "train" and case == "existing result":  # train moves an earlier run aside instead
        assert code == 0, err
        assert sorted(before.values()) == sorted(v for v in after.values() if v in before.values())
        return
    assert_one_line_error(code, err)
    assert str(out) in err, err  # the message names the path given
    assert {k: after.get(k) for k in before} == before  # nothing lost or changed

