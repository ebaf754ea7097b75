"""The example plugin, installed for real: discovered with its provider, refused on a clash, hidden by the
switch, listed next to a broken plugin, checked, and trained end to end by ``bench run``."""

import importlib
import importlib.util
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from filelock import FileLock

from bench.cli import main
from losses import LOSSES, DistillLoss
from losses.kd import KD
from registry import DISABLE_PLUGINS_ENV, ConfigError, Registry
from registry.core import BUILTIN_PROVIDER

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "examples" / "distillbench-example-plugin"
DIST = "distillbench-example-plugin"
GROUP = "distillbench.losses"


def _installed() -> bool:
    try:
        return any(ep.name == "cosine-kd" for ep in metadata.distribution(DIST).entry_points if ep.group == GROUP)
    except metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="session")
def plugin(tmp_path_factory) -> metadata.Distribution:
    """The example plugin installed (editable) into the running interpreter, once for all test processes."""
    with FileLock(tmp_path_factory.getbasetemp().parent / "example-plugin.lock"):
        if not _installed():
            command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                       "-e", str(PLUGIN_DIR)]
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    importlib.invalidate_caches()
    if importlib.util.find_spec("distillbench_example_plugin") is None:
        sys.path.append(str(PLUGIN_DIR))  # an editable install's .pth file is read only when Python starts
    return metadata.distribution(DIST)


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
    listing = cli("losses", "list")
    assert listing.code == 0
    assert "broken:" in next(line for line in listing.out.splitlines() if "broken-loss" in line)
    assert "cosine-kd" in listing.out
    checked = cli("losses", "check", "broken-loss")
    assert checked.code == 2 and "is broken (ModuleNotFoundError" in checked.err


def test_a_fresh_interpreter_finds_the_plugin(plugin):
    code = "from bench.cli import main; raise SystemExit(main(['losses', 'list']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
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
