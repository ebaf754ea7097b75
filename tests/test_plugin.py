"""The example plugin, installed for real: discovered with its provider, refused on a clash, hidden by the
switch, listed next to a broken plugin, checked, and trained end to end by ``bench run``."""

import importlib
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pandas as pd
import pytest
import torch

from bench.cli import main
from losses import LOSSES, DistillLoss
from losses.kd import KD
from registry import DISABLE_PLUGINS_ENV, ConfigError, Registry
from registry.core import BUILTIN_PROVIDER

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "examples" / "distillbench-example-plugin"
DIST = "distillbench-example-plugin"
GROUP = "distillbench.losses"


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> Iterator[metadata.Distribution]:
    """The example plugin installed for real by pip, into a temporary folder put on ``sys.path`` (and on the
    PYTHONPATH of child interpreters) for the session, then removed: the user's environment never holds it.
    pip builds from a copy, so no build files appear in the repository."""
    root = tmp_path_factory.mktemp("example-plugin")
    source, target = root / "source", root / "site-packages"
    shutil.copytree(PLUGIN_DIR, source)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
               "--no-compile", "--target", str(target), str(source)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    sys.path.append(str(target))
    importlib.invalidate_caches()
    try:
        yield metadata.distribution(DIST)
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("distillbench_example_plugin", None)
        shutil.rmtree(root)
        importlib.invalidate_caches()


@pytest.fixture
def rediscovered(monkeypatch, plugin):
    """The global loss registry with its built-ins only, so that it discovers plugins again (it does so once)."""
    builtins = {name: entry for name, entry in LOSSES._entries.items() if entry.provider == BUILTIN_PROVIDER}
    monkeypatch.setattr(LOSSES, "_entries", builtins)
    monkeypatch.setattr(LOSSES, "_aliases", {a: n for a, n in LOSSES._aliases.items() if n in builtins})
    monkeypatch.setattr(LOSSES, "_plugins_loaded", False)
    return LOSSES


@pytest.fixture
def one_thread():
    """Tiny models train several times faster on one thread than on two that other processes compete for."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_installed_plugin_is_listed_with_its_provider_and_imported_on_use(plugin, rediscovered):
    entry = Registry("loss", entry_point_group=GROUP).entry("cosine-kd")
    assert entry.obj is None  # listed from package metadata alone
    assert f"{entry.provider} {entry.version}" == "distillbench-example-plugin 0.1.0"
    cls = entry.load()
    assert issubclass(cls, DistillLoss) and cls.__module__ == "distillbench_example_plugin"
    assert rediscovered.entry("cosine-kd").provider == DIST


def test_a_name_clash_with_a_builtin_names_both_providers(monkeypatch, plugin, rediscovered, cli):
    clash = SimpleNamespace(name="kd", group=GROUP, dist=plugin, load=lambda: KD)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [clash] if group == GROUP else [])
    losses = Registry("loss", entry_point_group=GROUP)
    losses.register("kd")(KD)
    monkeypatch.setenv("COLUMNS", "200")  # the listing's rows on one line each
    both = r"loss name 'kd' is provided twice: by distillbench \S+ and by distillbench-example-plugin 0.1.0"
    assert losses.names() == ["kd"]  # the clash is listed; only the name itself is refused
    with pytest.raises(ConfigError, match=both):
        losses.get("kd")
    result = cli("losses", "list")
    assert result.code == 0 and "clash: loss name 'kd'" in result.out and "distillbench-example-plugin" in result.out


def test_the_switch_hides_every_plugin(monkeypatch, rediscovered, cli):
    monkeypatch.setenv(DISABLE_PLUGINS_ENV, "1")
    assert "cosine-kd" not in Registry("loss", entry_point_group=GROUP)
    result = cli("losses", "list")
    assert result.code == 0 and "cosine-kd" not in result.out and "kd" in result.out


def test_a_broken_plugin_is_listed_as_broken_without_breaking_the_command(monkeypatch, rediscovered, cli):
    real = metadata.entry_points
    broken = metadata.EntryPoint("broken-loss", "no_such_module_xyz:Loss", GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*real(group=group), broken])
    monkeypatch.setenv("COLUMNS", "200")  # the listing's rows on one line each
    listing = cli("losses", "list")
    assert listing.code == 0
    assert "broken:" in next(line for line in listing.out.splitlines() if "broken-loss" in line)
    assert "cosine-kd" in listing.out
    checked = cli("losses", "check", "broken-loss")
    assert checked.code == 2 and "is broken (ModuleNotFoundError" in checked.err


def test_a_fresh_interpreter_finds_the_plugin(plugin):
    code = "from bench.cli import main; raise SystemExit(main(['losses', 'list']))"
    path = os.pathsep.join(p for p in (str(Path(plugin.locate_file(""))), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "cosine-kd" in line)
    assert "distillbench-example-plugin 0.1.0" in row


def test_the_plugin_passes_the_conformance_kit(rediscovered, cli):
    result = cli("losses", "check", "cosine-kd")
    assert result.code == 0, result.out


def test_bench_run_trains_it_and_records_its_provider(rediscovered, tmp_path, teacher_cache, one_thread):
    results = tmp_path / "results"
    code = main(["run", "--dataset", "synthetic", "--losses", "vanilla,cosine-kd", "--results-dir", str(results),
                 "--cache-dir", str(teacher_cache), "--epochs", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    runs = pd.read_csv(results / "synthetic" / "runs.csv", dtype={"provider_version": str})
    row = runs.set_index("loss").loc["cosine-kd"]
    assert (row.provider, row.provider_version) == (DIST, "0.1.0")
    assert runs.set_index("loss").loc["vanilla"].provider == BUILTIN_PROVIDER


def test_the_suite_leaves_the_plugin_out_of_the_environment(plugin):
    """The plugin is installed for the session only: an interpreter started as the user starts one lists no
    cosine-kd (an install into the running environment would leave it there for good)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # the checkout, as the README's install puts it
    code = "from bench.cli import main; raise SystemExit(main(['losses', 'list']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "cosine-kd" not in done.stdout and "distillbench-example-plugin" not in done.stdout
