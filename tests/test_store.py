"""The results store under sharing and damage: concurrent writers lose nothing, damaged rows are not
trusted, an unreadable file is one line, and a report is written whole or not at all."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from bench.store.aside import copy_aside, set_aside
from bench.report import build
from bench.store.results import COLUMNS, VALIDATION, ResultsStore
from registry import ConfigError

WRITERS, APPENDS = 4, 15


def row(run_id: str, **fields) -> dict:
    """A finished run as the harness records it (the report tests' schema, one id)."""
    from report.conftest import make_run  # tests/report/conftest.py: the runs.csv schema filled in

    return {**make_run("kd", 0, 70.0, dataset="toy"), "run_id": run_id, **fields}


def _append_many(root: str, writer: int) -> None:
    store = ResultsStore(Path(root), "toy")
    for i in range(APPENDS):
        store.append(row(f"w{writer}-{i}"), {"run_id": f"w{writer}-{i}"})


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    context = multiprocessing.get_context("spawn")  # real processes, each its own interpreter
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w)) for w in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    ids = pd.read_csv(tmp_path / "toy" / "runs.csv", dtype={"run_id": str})["run_id"]
    assert sorted(ids) == sorted(f"w{w}-{i}" for w in range(WRITERS) for i in range(APPENDS))
    assert len(list((tmp_path / "toy" / "configs").glob("*.json"))) == WRITERS * APPENDS
    assert not [p for p in (tmp_path / "toy").iterdir() if p.name.startswith(".runs.csv.")]  # no temporary left


def test_a_run_recorded_already_is_never_written_twice(tmp_path):
    store = ResultsStore(tmp_path, "toy")
    assert store.append(row("a"), {}) is True
    assert store.append(row("a", best_top1=1.0), {}) is False
    assert store.runs()["run_id"].tolist() == ["a"] and store.runs()["best_top1"].tolist() == [70.0]


def _store_with_cut_row(tmp_path: Path, cut: int) -> ResultsStore:
    store = ResultsStore(tmp_path, "toy")
    store.append(row("good"), {})
    store.append(row("cut"), {})
    text = store.runs_csv.read_text()
    store.runs_csv.write_text(text[:cut])
    return store


def test_a_row_cut_short_is_not_finished_and_is_named_with_its_line(tmp_path, capsys):
    store = _store_with_cut_row(tmp_path, -40)  # a cut in the last row: its command and finished_at are gone
    runs = store.read()
    assert runs.run_ids == {"good"}
    assert len(runs.damaged) == 1 and runs.damaged[0].startswith("line 3: ")
    store.report_damage()
    assert f"warning: {store.runs_csv} line 3: " in capsys.readouterr().err


def test_a_cut_inside_a_quoted_field_is_damage_not_a_traceback(tmp_path):
    store = ResultsStore(tmp_path, "toy")
    store.append(row("good"), {})
    store.append(row("cut"), {})
    text = store.runs_csv.read_text()
    store.runs_csv.write_text(text[:text.rindex('"[')] + '"[68.0, 7')  # open quote of the curve, never closed
    runs = store.read()
    assert runs.run_ids == {"good"} and runs.damaged[0].startswith("line 3: ")


def test_a_row_missing_a_value_is_damaged(tmp_path):
    store = ResultsStore(tmp_path, "toy")
    store.directory.mkdir()
    rows = [row("a"), row("b", teacher_top1=None), row("c", diverged="maybe")]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(store.runs_csv, index=False)
    assert store.read().run_ids == {"a"}
    assert [d.split(":")[0] for d in store.read().damaged] == ["line 3", "line 4"]


def test_damaged_rows_are_never_written_back(tmp_path, capsys):
    store = _store_with_cut_row(tmp_path, -40)
    store.append(row("next"), {})
    assert store.read().damaged == []
    assert sorted(store.runs()["run_id"]) == ["good", "next"]
    kept, = set_aside(tmp_path / "toy")
    assert kept.read_text().count("\n") == 2  # the file as it was, kept
    assert str(kept) in capsys.readouterr().err


def _cut_last_row(store: ResultsStore) -> str:
    """Cut the file's last row short, as a hand edit or a full disk would; returns the row's run id."""
    text = store.runs_csv.read_text()
    store.runs_csv.write_text(text[:-40])
    return text.splitlines()[-1].split(",")[0]


def test_every_damaged_copy_is_kept_and_bench_report_says_where(tmp_path, cli):
    store = ResultsStore(tmp_path, "toy")
    for name in ("good", "first"):
        store.append(row(name), {})
    first = _cut_last_row(store)
    store.append(row("second"), {})  # sets the file holding "first" aside
    second = _cut_last_row(store)
    store.append(row("third"), {})  # ... and, in the same second, the one holding "second"
    kept = set_aside(store.directory)
    assert len(kept) == 2 and all(p.name.startswith("runs.csv.") and p.name.endswith(".damaged") for p in kept)
    assert sorted(line.split(",")[0] for p in kept for line in p.read_text().splitlines()[-1:]) == [first, second]
    assert sorted(store.runs()["run_id"]) == ["good", "third"]
    result = cli("report", "--results-dir", tmp_path)
    assert result.code == 0, result.err
    where, = [line for line in result.err.splitlines() if "set aside" in line]
    assert all(p.name in where for p in kept) and str(store.directory) in where


def _set_aside_a_copy(path: str, copies: int) -> None:
    for _ in range(copies):
        copy_aside(Path(path))


def test_writers_setting_aside_at_once_never_share_a_name(tmp_path):
    damaged = tmp_path / "runs.csv"
    damaged.write_text("run_id\n")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_set_aside_a_copy, args=(str(damaged), 10)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert len(set_aside(tmp_path)) == 30


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage", b"not,a,runs,file\n1,2,3,4\n"])
def test_an_unreadable_runs_csv_is_one_line(tmp_path, content, cli):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "runs.csv").write_bytes(content)
    with pytest.raises(ConfigError, match="runs.csv"):
        ResultsStore(tmp_path, "toy").read()
    result = cli("report", "--results-dir", tmp_path)
    assert result.code == 2 and result.err.startswith("error: ") and result.err.count("\n") == 1


def test_report_leaves_out_damaged_rows(tmp_path, cli):
    store = _store_with_cut_row(tmp_path, -40)
    result = cli("report", "--results-dir", tmp_path)
    assert result.code == 0, result.err
    assert "line 3" in result.err
    assert pd.read_csv(tmp_path / "toy" / "leaderboard.csv")["loss"].tolist() == ["kd"]
    assert store.runs_csv.read_text().count("\n") == 2  # reading never rewrites


def test_a_failing_report_writes_no_file(tmp_path, cli, monkeypatch):
    ResultsStore(tmp_path, "toy").append(row("a"), {})

    def broken(*args):
        raise RuntimeError("markdown writer failed")

    monkeypatch.setattr(build, "leaderboard_markdown", broken)
    with pytest.raises(RuntimeError):
        cli("report", "--results-dir", tmp_path)
    assert sorted(p.name for p in (tmp_path / "toy").iterdir() if not p.name.startswith(".")) == ["configs", "runs.csv"]


# The header of the committed results/fashion-mnist/runs.csv, written before these columns existed.
LATER_COLUMNS = ("teacher_seed", "numpy_version", "pot_version", "python_version")


@pytest.mark.parametrize("missing", [LATER_COLUMNS[:1], LATER_COLUMNS, (*LATER_COLUMNS, *sorted(VALIDATION))])
def test_a_file_from_before_a_column_was_added_is_read_and_extended(tmp_path, missing):
    store = ResultsStore(tmp_path, "toy")
    store.directory.mkdir()
    older = [c for c in COLUMNS if c not in missing]
    pd.DataFrame([row("old")], columns=older).to_csv(store.runs_csv, index=False)
    assert store.read().run_ids == {"old"} and store.read().damaged == []
    store.append(row("new"), {})
    store.append(row("newer"), {})  # the rewritten old row, empty in the new columns, is still trusted
    assert store.runs_csv.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert store.runs()["run_id"].tolist() == ["old", "new", "newer"] and store.read().damaged == []


def test_the_columns_written_are_the_columns_read(tmp_path):
    store = ResultsStore(tmp_path, "toy")
    store.append(row("a", loss_ms=None, best_epoch=None), {})
    assert list(store.runs().columns) == COLUMNS and store.read().damaged == []
