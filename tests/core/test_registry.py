"""Registry and plugin loading: names, errors, providers, blocking."""
from __future__ import annotations

import pytest

from facegan_kit import KINDS, hookimpl
from facegan_kit.errors import RegistryError
from facegan_kit.pm import BLOCK_ENV, build_registry, clear_cache, default_registry, plugin_manager
from facegan_kit.registry import Registry


def test_every_paper_kind_exists():
    for kind in ("encoder", "decoder", "controller", "regularizer", "discriminator", "loss", "dataset", "metric"):
        assert kind in KINDS


def test_unknown_name_lists_known_and_closest():
    reg = Registry()
    reg.add("controller", "fctrl", lambda: None)
    reg.add("controller", "onehot", lambda: None)
    with pytest.raises(RegistryError) as err:
        reg.get("controller", "fctl")
    msg = str(err.value)
    assert "fctl" in msg and "fctrl, onehot" in msg and "did you mean 'fctrl'" in msg


def test_duplicate_names_both_providers():
    reg = Registry()
    reg.current_provider = "pkg-a"
    reg.add("loss", "l1", lambda: None)
    reg.current_provider = "pkg-b"
    with pytest.raises(RegistryError, match="pkg-a.*pkg-b"):
        reg.add("loss", "l1", lambda: None)


def test_unknown_kind_rejected():
    with pytest.raises(RegistryError, match="unknown component kind 'encodr'.*did you mean 'encoder'"):
        Registry().add("encodr", "x", lambda: None)


def test_builtins_register_through_entry_points():
    reg = build_registry()
    entry = reg.entry("controller", "exprgan-fctrl")
    assert entry.provider.startswith("facegan-kit:"), entry.provider
    assert entry.source_file.endswith("controller.py")
    assert "exprgan-decoder" in reg.names("decoder")


def test_block_env_removes_plugin(monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, "exprgan")
    clear_cache()
    try:
        reg = default_registry()
        assert "exprgan-fctrl" not in reg.names("controller")
        assert "conv-encoder" in reg.names("encoder")  # other plugins still load
    finally:
        monkeypatch.delenv(BLOCK_ENV)
        clear_cache()
    assert "exprgan-fctrl" in default_registry().names("controller")


def test_misspelled_hook_is_an_error():
    class Bad:
        @hookimpl
        def facegan_register_component(self, registry):  # missing the final "s"
            pass

    pm = plugin_manager()
    pm.register(Bad(), name="bad")
    with pytest.raises(Exception, match="unknown hook"):
        pm.check_pending()


def test_former_names_resolve_to_the_renamed_component():
    reg = Registry()
    reg.add("controller", "exprgan-fctrl", dict, aliases=("fctrl",))
    assert reg.entry("controller", "fctrl") is reg.entry("controller", "exprgan-fctrl")
    assert reg.get("controller", "fctrl") is dict
    assert reg.names("controller") == ["exprgan-fctrl"]  # an alias is not a component of its own
    assert [e.aliases for e in reg] == [("fctrl",)]
    with pytest.raises(RegistryError, match="did you mean 'exprgan-fctrl'"):
        reg.get("controller", "fctl")
    for clash in (dict(name="fctrl"), dict(name="other", aliases=("exprgan-fctrl",)), dict(name="x", aliases=("fctrl",))):
        with pytest.raises(RegistryError, match="registered twice"):
            reg.add("controller", clash["name"], list, aliases=clash.get("aliases", ()))


def test_builtin_controller_keeps_its_former_name():
    reg = build_registry()
    assert reg.entry("controller", "fctrl").name == "exprgan-fctrl"
    assert "fctrl" not in reg.names("controller")
