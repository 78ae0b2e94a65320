"""A controller from another package trains: pip-install ``examples/custom-controller``
(``facegan-blend``), find it through its entry point, train two steps with it, run the
reusable contract checks and the package's own tests.

The package is installed offline (``--no-index --no-deps --no-build-isolation``; setuptools is
present) with ``pip install --target`` into a temporary folder that is put on ``sys.path`` for
this module only. That is exactly how site-packages is searched for distributions and entry
points, but it never changes the shared environment: other test runs (possibly in parallel)
do not see ``blend-ctrl``, and a crash leaves nothing behind. The source is copied first so that
the build writes no ``build/`` or ``*.egg-info`` into the checkout.
"""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facegan_kit.pm import clear_cache, default_registry
from facegan_kit.testing import check_component, check_controller, check_registered

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom-controller"
TINY = Path(__file__).parent / "fixtures" / "tiny.toml"


def _forget_blend() -> None:
    for name in [m for m in sys.modules if m == "facegan_blend" or m.startswith("facegan_blend.")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    clear_cache()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("blend")
    src = tmp / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
           "--no-build-isolation", "--disable-pip-version-check", "--target", str(site), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert list(site.glob("facegan_blend-*.dist-info")), f"no dist-info in {site}"
    sys.path.insert(0, str(site))
    _forget_blend()
    yield site
    sys.path.remove(str(site))
    _forget_blend()


def test_listed_by_facegan_plugins(installed, capsys):
    from facegan_kit.cli import main

    main(["plugins", "--kind", "controller"])
    out = capsys.readouterr().out
    line = next((ln for ln in out.splitlines() if "blend-ctrl" in ln), None)
    assert line is not None, out
    assert "facegan-blend:blend" in line and str(installed) in line, line


def test_registered_and_contract(installed):
    entry = check_registered("blend-ctrl", "controller", provider="facegan-blend")
    assert Path(entry.source_file).is_relative_to(installed)
    ctrl = check_component("controller", "blend-ctrl", num_classes=6, code_dim_per_class=5)
    check_controller(ctrl)
    blend = ctrl.blend_code({"happy": 0.6, "surprise": 0.3}).view(6, 5)[:, 0]
    assert torch.allclose(blend, torch.tensor([-1.0, -1.0, -1.0, 0.2, -1.0, -0.4]))


def test_trains_two_steps_and_is_evaluated(installed, tmp_path):
    """The package's controller and loss term train; ``facegan eval`` reports its metric."""
    import json

    from facegan_kit.checkpoint import load_checkpoint
    from facegan_kit.cli import main
    from facegan_kit.train import train

    assert "blend-ctrl" in default_registry().names("controller")
    torch.set_num_threads(1)
    result = train(TINY, tmp_path / "run", overrides=["model.controller.type=blend-ctrl",
                                                      "losses.fm.type=blend-feature-match", "stages.0.losses.fm=0.5"],
                   max_steps=2, progress=False)
    assert result.global_step == 2
    _, meta = load_checkpoint(result.checkpoint)
    assert meta["recipe"]["model"]["controller"]["type"] == "blend-ctrl"
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert "nan" not in log.lower()
    assert '"g/fm"' in log, log[:500]  # the loss term ran in the generator step

    main(["eval", str(result.checkpoint), "--out", str(tmp_path / "eval"), "--max-faces", "4",
          "--no-oracles", "--identity-faces", "1"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    value = metrics["plugin_metrics"]["blend-edit-change"]["edit_change_l1"]
    assert 0.0 < value < 1.0, value
    assert "blend-edit-change: edit_change_l1" in (tmp_path / "eval" / "report.md").read_text()


def test_package_own_tests(installed):
    """The example's tests (plain functions) pass against the installed package."""
    spec = importlib.util.spec_from_file_location("facegan_blend_tests", EXAMPLE / "tests" / "test_blend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, n) for n in dir(module) if n.startswith("test_")]
    assert len(tests) >= 8
    for test in tests:
        test()


def test_blocked_by_env(installed, monkeypatch):
    monkeypatch.setenv("FACEGAN_BLOCK_PLUGINS", "blend")
    assert "blend-ctrl" not in default_registry().names("controller")
    monkeypatch.setenv("FACEGAN_BLOCK_PLUGINS", "")
    monkeypatch.setenv("FACEGAN_ONLY_PLUGINS", "blend")
    assert default_registry().names("controller") == ["blend-ctrl"]
