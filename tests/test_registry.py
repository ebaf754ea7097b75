"""The generic registry: decorator, aliases, duplicates, entry-point plugins, autoload switch."""

from importlib import metadata

import pytest

from registry import DISABLE_PLUGINS_ENV, ConfigError, Registry, UnknownNameError, parse_names
from losses import LOSSES


def fake_entry_points(monkeypatch, *entry_points):
    monkeypatch.setattr(metadata, "entry_points", lambda group: [ep for ep in entry_points if ep.group == group])


def test_decorator_registers_with_aliases():
    things = Registry("thing")

    @things.register("alpha", aliases=("a",))
    def alpha():
        return 1

    assert things.get("alpha") is alpha and things.get("a") is alpha
    assert things.canonical("a") == "alpha"
    assert things.names() == ["alpha"] and things.names(with_aliases=True) == ["a", "alpha"]
    entry = things.entry("alpha")
    assert entry.provider == "distillbench" and entry.aliases == ("a",)


def test_unknown_name_lists_choices():
    things = Registry("thing")
    things.register("alpha")(object)
    with pytest.raises(UnknownNameError, match=r"unknown thing 'beta'; expected one of: alpha"):
        things.get("beta")


def test_duplicate_name_or_alias_is_refused_naming_both_providers(monkeypatch):
    things = Registry("thing", entry_point_group="test.things")
    things.register("alpha", aliases=("a",))(object)
    fake_entry_points(monkeypatch, metadata.EntryPoint("a", "math:sqrt", "test.things"))
    assert things.names() == ["alpha"]  # listed, refused on use
    with pytest.raises(ConfigError, match=r"provided twice: by distillbench .* and by unknown"):
        things.get("a")


def test_entry_point_plugin_is_listed_without_import_and_loaded_on_use(monkeypatch):
    things = Registry("thing", entry_point_group="test.things")
    fake_entry_points(monkeypatch, metadata.EntryPoint("root", "math:sqrt", "test.things"),
                      metadata.EntryPoint("broken", "no_such_module_xyz:thing", "test.things"))
    assert things.names() == ["broken", "root"]
    assert things.entry("root").obj is None  # listed from metadata only
    import math

    assert things.get("root") is math.sqrt
    with pytest.raises(ConfigError, match=r"plugin 'broken' .* is broken \(ModuleNotFoundError"):
        things.get("broken")
    assert things.entry("broken").broken


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv(DISABLE_PLUGINS_ENV, "1")
    things = Registry("thing", entry_point_group="test.things")
    fake_entry_points(monkeypatch, metadata.EntryPoint("root", "math:sqrt", "test.things"))
    assert "root" not in things


def test_kl_is_kd_and_parse_names_validates():
    assert LOSSES.get("kl") is LOSSES.get("kd")
    assert parse_names("vanilla, kl", LOSSES) == ["vanilla", "kd"]
    with pytest.raises(ConfigError, match="listed twice"):
        parse_names("kd,kl", LOSSES)
    with pytest.raises(UnknownNameError, match="expected one of"):
        parse_names("kd,nope", LOSSES)
