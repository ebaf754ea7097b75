"""One search from plan to overlay: rounds of trials, one trial of every loss per round.

Round r asks each loss's study (Optuna, TPE) for its trial r, then trains those trials as one
``bench run`` cohort (one teacher forward for all of them) on the students' training data, scored on
the validation split; the test split is never read for a choice. Trial 0 of every loss is its
recipe's values. A round is claimed by a file lock, so workers sharing a storage and a results
directory never train one trial twice; a killed worker's round is taken up again with the trial's
stored settings and its students resume from their epoch checkpoints. The sampler of round r is
seeded by (seed, loss, r), so a resumed search asks what an uninterrupted one would have asked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import optuna
from filelock import FileLock, Timeout
from sqlalchemy.engine import make_url

from bench.store.collapse import collapse_reason
from bench.recipes.resolve import content_hash, parse_overrides
from bench.console.progress import Reporter
from bench.store.results import ResultsStore
from bench.run.runner import RunRequest, execute, plan_run
from bench.seeding import derive_seed
from bench.store.overlay import overlay_path, write_overlay
from bench.tune.space import Dimension, initial_values, search_space
from bench.tune.storage import check_storage, open_storage, storage_url, tuning_directory
from registry import ConfigError

WORST = 0.0  # the score of a trial that diverged or collapsed: below any student that learned
OBJECTIVE = "validation top-1 (%) at the validation-selected epoch"
optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(row: Mapping[str, Any], num_classes: int) -> tuple[float, str]:
    """A finished trial's score and status: its validation top-1, or WORST for a run that diverged or collapsed.
    Collapse is judged on the validation split (its last epoch within bench.store.collapse's margin of chance), so the
    test split plays no part in a choice."""
    if str(row["diverged"]) == "True":
        return WORST, "diverged"
    if collapse_reason(json.loads(row["val_curve"])[-1], 0.0, num_classes):
        return WORST, "collapsed"
    return float(row["val_top1"]), "finished"


def startup_trials(trials: int) -> int:
    """Trials drawn at random (trial 0, the recipe's values, among them) before TPE models the rest."""
    return max(1, trials // 2)


@dataclass(frozen=True)
class TuneRequest:
    run: RunRequest  # the cohort every round trains: data, pair, budget, seeds=(the search's seed,), --set
    trials: int
    space: tuple[str, ...] = ()  # --space LOSS.KEY=TABLE
    storage: str | None = None  # None: an SQLite file in the results directory
    command: str = "bench tune"


@dataclass(frozen=True)
class LossStudy:
    loss: str
    study: str  # the Optuna study's name
    space: dict[str, Dimension]
    initial: dict[str, Any]  # trial 0: the recipe's value of every searched setting
    fixed: dict[str, Any]  # the search's --set for this loss, part of every trial
    rounds: int  # 1 when nothing is searched: more trials would repeat trial 0

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {key: dim.distribution() for key, dim in self.space.items()}


@dataclass
class Search:
    request: TuneRequest
    search_id: str
    url: str
    studies: list[LossStudy]
    description: dict[str, Any]  # what tuned.toml records of the search


def plan_search(request: TuneRequest) -> Search:
    """Validate everything (the cohort, the spaces, the storage); write nothing."""
    if request.trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {request.trials}")
    results_dir = request.run.results_dir
    run = replace(request.run, results_dir=tuning_directory(results_dir, request.run.dataset).parent)
    plan = plan_run(run)
    [seed] = run.seeds
    runs = plan.planned[seed]
    names = [r.loss.name for r in runs]
    spaces = parse_overrides(list(request.space), names, "--space")
    fixed = parse_overrides(list(run.overrides), names)
    first = runs[0].as_dict()
    first.pop("loss")
    search_id = content_hash(first)
    url = storage_url(request.storage, results_dir, run.dataset)
    check_storage(url)
    studies = []
    for spec in (r.loss for r in runs):
        space = search_space(spec, spaces.get(spec.name, {}))
        values = initial_values(spec)
        studies.append(LossStudy(spec.name, f"{search_id}-{spec.name}-{content_hash([spec, space])[:8]}", space,
                                 {key: values[key] for key in space}, fixed.get(spec.name, {}),
                                 request.trials if space else 1))
    train = runs[0].train
    description = {
        "dataset": run.dataset, "pair": runs[0].pair.name, "teacher": runs[0].teacher_source, "protocol": run.protocol,
        "epochs": train.epochs, "batch_size": train.batch_size, "lr": train.lr,
        "train_images": len(plan.student_data.train), "split": _split(plan), "trials": request.trials,
        "startup_trials": startup_trials(request.trials), "sampler": "TPE", "pruner": _pruner_name(train.epochs),
        "objective": OBJECTIVE, "seed": seed, "storage": make_url(url).render_as_string(hide_password=True),
        "command": request.command,
    }
    if runs[0].teacher_seed is not None:
        description["teacher_seed"] = runs[0].teacher_seed
    return Search(replace(request, run=run), search_id, url, studies, description)


def _split(plan) -> str:
    validation = plan.student_data.validation
    if validation is None:
        raise ConfigError(f"bench tune chooses settings on a validation split, and {plan.request.dataset} has none "
                          f"here; expected --validation-size N (or a [validation] size in its recipe)")
    return f"validation: {len(validation)} training images held out, stratified, fixed by the dataset"


def _pruner_name(epochs: int) -> str:
    return "median on per-epoch validation top-1" if epochs > 1 else "none (one epoch)"


def _pruner(epochs: int, trials: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=startup_trials(trials)) if epochs > 1 else optuna.pruners.NopPruner()


def run_search(search: Search, reporter: Reporter) -> Path | None:
    """Train every round no other worker holds; write tuned.toml once every trial of the search is done."""
    storage = open_storage(search.url)
    for study in search.studies:
        created = optuna.create_study(study_name=study.study, storage=storage, direction="maximize", load_if_exists=True)
        created.set_user_attr("search", {**search.description, "id": search.search_id, "loss": study.loss})
    claims = search.request.run.results_dir / search.request.run.dataset / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    busy = []
    for number in range(max(s.rounds for s in search.studies)):
        try:
            with FileLock(claims / f"{search.search_id}-round-{number}.lock").acquire(timeout=0):
                _run_round(search, storage, number, reporter)
        except Timeout:
            busy.append(number)
    if busy:
        reporter.info(f"round(s) {', '.join(map(str, busy))} were trained by another worker")
    return _write_if_complete(search, storage, reporter)


def _load(search: Search, storage, study: LossStudy, number: int) -> optuna.Study:
    seed = search.description["seed"]
    sampler = optuna.samplers.TPESampler(seed=derive_seed(seed, "tune", study.loss, number) % 2 ** 32,
                                         n_startup_trials=startup_trials(search.request.trials), constant_liar=True)
    return optuna.load_study(study_name=study.study, storage=storage, sampler=sampler,
                             pruner=_pruner(search.description["epochs"], search.request.trials))


def _trial(optuna_study: optuna.Study, study: LossStudy, number: int) -> optuna.Trial | None:
    """Trial ``number`` of a study: None when it is done; the stored one when a stopped worker left it
    running (this worker holds its round now); else a new one (trial 0: the recipe's values)."""
    for frozen in optuna_study.get_trials(deepcopy=False):
        if frozen.user_attrs.get("round") == number:
            if frozen.state.is_finished():
                return None
            return optuna.Trial(optuna_study, frozen._trial_id)  # Optuna gives no public handle to a stored trial
    if number == 0:
        optuna_study.enqueue_trial(study.initial, user_attrs={"round": 0})
    trial = optuna_study.ask(study.distributions())
    trial.set_user_attr("round", number)
    return trial


def _run_round(search: Search, storage, number: int, reporter: Reporter) -> None:
    asked = {}
    for study in search.studies:
        if number < study.rounds:
            optuna_study = _load(search, storage, study, number)
            trial = _trial(optuna_study, study, number)
            if trial is not None:
                asked[study.loss] = (study, optuna_study, trial)
    if not asked:
        return
    settings = [f"{loss}.{key}={json.dumps(value)}" for loss, (study, _, trial) in asked.items()
                for key, value in {**study.fixed, **trial.params}.items()]
    run = replace(search.request.run, losses=",".join(asked), overrides=tuple(settings))
    plan = plan_run(run)
    [seed] = run.seeds
    run_ids = {r.loss.name: r.run_id for r in plan.planned[seed]}
    epochs = search.description["epochs"]
    pruned = set()

    def on_epoch(spec, epoch: int, record: dict) -> bool:
        trial = asked[spec.loss.name][2]
        score = record.get("val_top1")
        if score is None or math.isnan(score):
            return False
        trial.report(score, epoch)
        if epochs > 1 and epoch < epochs and trial.should_prune():
            pruned.add(spec.loss.name)
            return True
        return False

    reporter.info(f"round {number + 1}/{max(s.rounds for s in search.studies)}: trial {number} of "
                  f"{', '.join(asked)}")
    execute(plan, on_epoch=on_epoch)
    rows = ResultsStore(run.results_dir, run.dataset).runs().set_index("run_id")
    summary = []
    for loss, (study, optuna_study, trial) in asked.items():
        trial.set_user_attr("run_id", run_ids[loss])
        if loss in pruned:
            trial.set_user_attr("status", "pruned")
            optuna_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            summary.append(f"{loss} pruned")
            continue
        value, status = objective(rows.loc[run_ids[loss]], plan.data.info.num_classes)
        trial.set_user_attr("status", status)
        optuna_study.tell(trial, value)
        summary.append(f"{loss} {value:.2f}" if status == "finished" else f"{loss} {status}")
    reporter.info(f"round {number + 1}: validation top-1 " + "  ".join(summary))


def _write_if_complete(search: Search, storage, reporter: Reporter) -> Path | None:
    entries = {}
    for study in search.studies:
        trials = [t for t in optuna.load_study(study_name=study.study, storage=storage).get_trials(deepcopy=False)
                  if t.state.is_finished() and t.user_attrs.get("round", math.inf) < study.rounds]
        if len({t.user_attrs["round"] for t in trials}) < study.rounds:
            reporter.info(f"{study.loss}: {len(trials)} of {study.rounds} trial(s) done; tuned.toml is written "
                          f"when every trial of the search is")
            return None
        scored = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(scored, key=lambda t: (t.value, -t.number))
        entries[study.loss] = {
            "search": search.search_id, "study": study.study, "trial": best.user_attrs["round"],
            "value": round(best.value, 2), "status": best.user_attrs.get("status", "finished"),
            "settings": {**study.fixed, **best.params},
            "trials": {state: sum(t.user_attrs.get("status") == state for t in trials)
                       for state in ("finished", "pruned", "diverged", "collapsed")},
        }
    results_dir = search.request.run.results_dir.parent
    path = overlay_path(results_dir, search.request.run.dataset)
    finished = {**search.description, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_overlay(path, search.search_id, finished, entries)
    return path
