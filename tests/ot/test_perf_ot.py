"""``bench perf ot`` end to end on a tiny grid: it writes the CSV and the plot, and records where it ran."""

import pandas as pd
import pytest

from bench.cli import main

COLUMNS = {"device", "device_name", "torch_version", "pot_version", "geomloss_version", "command", "method",
           "implementation", "n", "d", "repeats", "time_ms", "time_ms_median", "value", "reference", "rel_error",
           "reference_kind", "settings"}


def test_perf_ot_writes_csv_and_plot(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # at 100 piped columns a slow machine's wider times wrap the header
    args = ["perf", "ot", "--sizes", "16", "--dims", "8", "--repeats", "1", "--device", "cpu", "--out", str(tmp_path)]
    assert main(args) == 0
    csvs = list(tmp_path.glob("ot_cpu*.csv"))
    assert len(csvs) == 1
    frame = pd.read_csv(csvs[0])
    assert COLUMNS <= set(frame.columns)
    assert set(frame["implementation"]) >= {"distillbench", "POT"}
    assert (frame["rel_error"] < 1e-2).all()  # IPOT (50 steps) approximates the exact EMD of the reference
    assert frame["command"].iloc[0].startswith("bench perf ot --sizes 16")
    for suffix in (".png", ".svg"):
        assert csvs[0].with_suffix(suffix).exists()
    assert "POT / ours" in capsys.readouterr().out


def test_perf_ot_rejects_unknown_methods(tmp_path, capsys):
    assert main(["perf", "ot", "--methods", "emd,hungarian", "--out", str(tmp_path)]) == 2
    assert "expected one of: emd, ipot" in capsys.readouterr().err


def test_perf_ot_times_geomloss_against_the_quantity_it_computes(tmp_path):
    """geomloss returns the entropic objective, not the transport cost: its reference is that objective."""
    pytest.importorskip("geomloss")
    args = ["perf", "ot", "--sizes", "16", "--dims", "8", "--methods", "sinkhorn,sinkhorn_divergence", "--repeats", "1",
            "--device", "cpu", "--out", str(tmp_path)]
    assert main(args) == 0
    frame = pd.read_csv(next(tmp_path.glob("ot_cpu*.csv"))).set_index(["method", "implementation"])
    for method in ("sinkhorn", "sinkhorn_divergence"):
        ours, theirs = frame.loc[(method, "distillbench")], frame.loc[(method, "geomloss")]
        assert "entropic objective" in theirs["reference_kind"] and "entropic" not in ours["reference_kind"]
        assert theirs["rel_error"] < 1e-2 and ours["rel_error"] < 1e-5
    # at one plan, the entropic objective exceeds the transport cost by eps * KL >= 0
    assert frame.loc[("sinkhorn", "geomloss"), "reference"] > frame.loc[("sinkhorn", "distillbench"), "reference"]
