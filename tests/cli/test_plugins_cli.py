"""facegan plugins: every component with its provider and file; former names shown."""
from __future__ import annotations

import json

from click.testing import CliRunner

from facegan_kit.cli.plugins import plugins_cmd


def test_lists_controllers_with_former_names():
    result = CliRunner().invoke(plugins_cmd, ["--kind", "controller"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "exprgan-fctrl" in ln)
    assert "(also: fctrl)" in line and "facegan-kit:exprgan" in line and line.endswith("controller.py")
    assert all(ln.startswith("controller") for ln in result.output.splitlines())


def test_json():
    result = CliRunner().invoke(plugins_cmd, ["--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    fctrl = next(r for r in rows if r["name"] == "exprgan-fctrl")
    assert fctrl["aliases"] == ["fctrl"] and fctrl["kind"] == "controller"
    assert {r["kind"] for r in rows} >= {"encoder", "decoder", "controller", "loss", "dataset", "backbone"}
