"""Comparisons printed in full: one loss against another seed by seed (``bench report --compare``) and
one protocol's ranking against another's (``--compare-protocols``).

Both read the runs ``select_runs`` picked and write nothing. Each comparison stands alone, so its
p-values are not corrected for others (the leaderboard's marks are).
"""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from bench.report.display import MISSING, number, signed
from bench.report.keys import COMPARISON
from bench.report.protocols import ProtocolComparison, agreement_summary, protocol_comparisons
from bench.report.stats import ALPHA, EFFECT, EPOCHS, MIN_WILCOXON, PAIRED_ON, POWER, baseline_runs, paired_test, study_size
from registry import ConfigError


def two_names(kind: str, text: str) -> tuple[str, str]:
    """``"a,b"`` as two distinct names, or a ConfigError saying what is expected."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if len(parts) != 2 or parts[0] == parts[1]:
        raise ConfigError(f"--compare{'-protocols' if kind == 'protocol' else ''} expects two different {kind}"
                          f"{'s' if kind == 'protocol' else 'es'} "
                          f"separated by a comma, e.g. {'fast,standard' if kind == 'protocol' else 'kd,vanilla'}; "
                          f"got {text!r}")
    return parts[0], parts[1]


def compare_losses(selected: dict[str, pd.DataFrame], a: str, b: str) -> Group:
    """Every comparison holding both losses: per seed a, b and Δ = a - b (best and last epoch), then the tests."""
    _check_present("loss", (a, b), {loss for runs in selected.values() for loss in runs["loss"]})
    parts = []
    for dataset, runs in selected.items():
        for _, comparison in runs.groupby(COMPARISON, dropna=False, sort=False):
            own = {loss: baseline_runs(comparison, loss) for loss in (a, b)}
            if any(frame.empty for frame in own.values()):
                continue
            parts += _paired_in_full(dataset, comparison.iloc[0], own[a], own[b], a, b)
    if not parts:
        raise ConfigError(f"no comparison (dataset, pair, protocol, budget) has runs of both {a!r} and {b!r}")
    return Group(*parts)


def _paired_in_full(dataset: str, first: pd.Series, runs_a: pd.DataFrame, runs_b: pd.DataFrame, a: str, b: str) -> list:
    title = f"{dataset} · {first['pair']} ({first['protocol']}, {first['epochs']} ep): {a} − {b}, paired by seed"
    columns = ["seed", *(f"{name} {epoch}" for epoch in EPOCHS for name in (a, b, "Δ"))]
    table = Table(*columns, title=Text(title, style="bold"), pad_edge=False, collapse_padding=True)
    merged = runs_a.merge(runs_b, on=PAIRED_ON, how="outer", suffixes=("_a", "_b")).sort_values("seed")
    for _, row in merged.iterrows():
        cells = [str(int(row["seed"]))]
        for metric in EPOCHS.values():
            values = [_seed_value(row, metric, side) for side in ("a", "b")]
            both = all(isinstance(v, float) and not math.isnan(v) for v in values)
            cells += [v if isinstance(v, str) else number(v) for v in values]
            cells.append(signed(values[0] - values[1]) if both else MISSING)
        table.add_row(*cells)
    lines = [table]
    finished = merged[~merged["diverged_a"].eq(True) & ~merged["diverged_b"].eq(True)]
    for epoch, metric in EPOCHS.items():
        shared = finished.dropna(subset=[f"{metric}_a", f"{metric}_b"])
        test = paired_test(shared[f"{metric}_a"], shared[f"{metric}_b"])
        lines.append(Text(f"{epoch} epoch: " + _in_words(test)))
    excluded = [f"{name}: {int(runs['diverged'].sum())} diverged run(s) excluded"
                for name, runs in ((a, runs_a), (b, runs_b)) if runs["diverged"].any()]
    lines += [Text(line, style="dim") for line in excluded]
    lines.append(Text(f"One planned comparison: p-values not corrected for multiplicity; α = {ALPHA}.", style="dim"))
    return lines


def _seed_value(row: pd.Series, metric: str, side: str):
    if pd.isna(row[f"run_id_{side}"]):
        return "missing"
    return "diverged" if row[f"diverged_{side}"] else float(row[f"{metric}_{side}"])


def _in_words(test) -> str:
    if test.why_no_test:
        delta = "" if math.isnan(test.delta) else f"Δ = {test.delta:+.2f}, "
        return f"{delta}{test.why_no_test} (n = {test.n})."
    wilcoxon = (f"Wilcoxon signed-rank p = {test.p_wilcoxon:.3g}" if test.n >= MIN_WILCOXON
                else f"Wilcoxon needs ≥ {MIN_WILCOXON} seeds")
    needed, low, high = study_size(test.sd, test.n, ALPHA)
    return (f"Δ = {test.delta:+.2f}, 95% CI [{test.ci_low:+.2f}, {test.ci_high:+.2f}], "
            f"paired t-test p = {test.p_t:.3g}, "
            f"{wilcoxon} (n = {test.n} shared seeds, SD of Δ {test.sd:.2f}); {int(needed)} seeds "
            f"({int(low)}–{int(high)} from the SD's 95% interval) would resolve Δ = {EFFECT} with {POWER:.0%} power "
            f"at α = {ALPHA}.")


def compare_protocols(selected: dict[str, pd.DataFrame], first: str, second: str) -> Group:
    """Per dataset and pair: Kendall's τ between the two protocols' rankings by mean selected top-1."""
    _check_present("protocol", (first, second), {p for runs in selected.values() for p in runs["protocol"]})
    found = [c for dataset, runs in selected.items() for c in protocol_comparisons(dataset, runs, first, second)]
    if not found:
        raise ConfigError(f"no pair has finished runs under both protocols {first!r} and {second!r}")
    return Group(*(part for comparison in found for part in _agreement(comparison)))


def _agreement(comparison: ProtocolComparison) -> list:
    names, result = comparison.names, comparison.agreement
    heading = Text(f"{comparison.dataset} · {comparison.pair}: {names[0]} vs {names[1]}", style="bold")
    if result is None:
        return [heading, Text("fewer than 3 losses under both: no ranking to compare.")]
    ranks = comparison.ranks
    table = Table("loss", *(f"rank {name}" for name in names), pad_edge=False, collapse_padding=True)
    for loss in ranks[0].sort_values().index:
        table.add_row(loss, *(str(rank[loss]) for rank in ranks))
    return [heading, table, Text(agreement_summary(comparison))]


def _check_present(kind: str, asked: tuple[str, str], present: set[str]) -> None:
    unknown = [name for name in asked if name not in present]
    if unknown:
        raise ConfigError(f"no results for {kind} {', '.join(map(repr, unknown))}; "
                          f"expected one of: {', '.join(sorted(present))}")
