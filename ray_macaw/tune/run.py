"""Run a `TuneSpec` with Ray Tune: trials are MACAW or Offline PEARL Algorithms
(`MetaRLTrainable`); resume; optional fine-tuning.

Every trial's config is validated before Tune starts, so a typo or missing data fails at once with
the fix rather than as N errored trials.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ray_macaw.algorithms.common.checkpoints import open_checkpoint
from ray_macaw.data.storage import root_path
from ray_macaw.errors import RayMacawError
from ray_macaw.outputs import FINETUNE_FILE, SEED_GRID, SPEC_FILE
from ray_macaw.runtime.ray_setup import ensure_ray
from ray_macaw.training.run_file import RunConfigError
from ray_macaw.tune.result_log import KeepResultLogOnRetry
from ray_macaw.tune.spec import TuneSpec
from ray_macaw.tune.trainable import SHARED, VARIANT, VARIANT_SETTINGS, MetaRLTrainable


class TrialsFailedError(RayMacawError, RuntimeError):
    """Some trials of an experiment ended with an error."""


class VariantSettings:
    """The settings of the trial's variant (a picklable `tune.sample_from` function)."""

    def __init__(self, variants: dict[str, dict[str, Any]]) -> None:
        self.variants = variants

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        return dict(self.variants[config[VARIANT]])


def _seed_of_trial(config: dict[str, Any]) -> int:
    """The trial's seed, from the seed grid (a picklable `tune.sample_from` function)."""
    return config[SEED_GRID]


def _domain(value: Any) -> Any:
    """A YAML search entry as a Tune search-space object."""
    if isinstance(value, list):
        return tune.grid_search(value)
    ((kind, args),) = value.items()
    if kind == "grid_search":
        return tune.grid_search(list(args))
    if kind == "choice":
        return tune.choice(list(args))
    return getattr(tune, kind)(*args)


def param_space(spec: TuneSpec) -> dict[str, Any]:
    """Each trial's flat run-file settings, with Tune search-space objects for what varies
    across trials (see `tune/trainable.py`)."""
    space: dict[str, Any] = {SHARED: dict(spec.config)}
    space[SEED_GRID] = tune.grid_search(list(spec.seeds))  # seeds vary slowest (outputs.SEED_GRID)
    space["seed"] = tune.sample_from(_seed_of_trial)
    if spec.variants:
        space[VARIANT] = tune.grid_search(list(spec.variants))
        space[VARIANT_SETTINGS] = tune.sample_from(VariantSettings(spec.variants))
    for key, value in spec.search.items():
        space[key] = _domain(value)
    return space


def scheduler(spec: TuneSpec) -> TrialScheduler:
    """FIFO, or ASHA on the held-out return with meta-steps as time."""
    s = spec.scheduler
    if s.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=s.metric,
        mode=s.mode,
        max_t=s.max_t or spec.stop_meta_steps,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
    )


def trial_name(trial: Any) -> str:
    """`<variant>_seed<k>_<trial id>`: readable names for Tune's table and trial directories."""
    config = trial.config
    name = config.get(VARIANT) or (config.get(SHARED) or {}).get("algorithm", "macaw")
    # The seed grid's value: `seed` itself is still a sample_from placeholder at naming time.
    return f"{name}_seed{config.get(SEED_GRID)}_{trial.trial_id}"


def experiment_path(spec: TuneSpec) -> str:
    """Where Tune writes this experiment: `<storage_path>/<name>`."""
    return f"{spec.storage_path.rstrip('/')}/{spec.name}"


def build_tuner(spec: TuneSpec, space: dict[str, Any] | None = None) -> tune.Tuner:
    """A fresh Tuner for the spec (`space`: a param space other than `param_space(spec)`)."""
    checkpoints = tune.CheckpointConfig(
        checkpoint_frequency=spec.checkpoint_every,
        checkpoint_at_end=True,
        num_to_keep=spec.keep_checkpoints,
    )
    return tune.Tuner(
        MetaRLTrainable,
        param_space=param_space(spec) if space is None else space,
        tune_config=tune.TuneConfig(
            num_samples=spec.num_samples,
            scheduler=scheduler(spec),
            max_concurrent_trials=spec.max_concurrent_trials,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage_path,
            stop={"training_iteration": spec.stop_meta_steps},
            checkpoint_config=checkpoints,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[KeepResultLogOnRetry()],
            verbose=1,
        ),
    )


def resumable(path: str, name: str, resume: bool) -> bool:
    """Whether the experiment at `path` exists and is to be resumed; an existing one without
    `resume` is refused, so results are never mixed."""
    exists = tune.Tuner.can_restore(path)
    if exists and not resume:
        raise RunConfigError(
            f"experiment '{name}' already exists at {path}",
            "pass --resume to continue it, or give it another name (--name)",
        )
    return exists


def run_tune(
    spec: TuneSpec, *, resume: bool = False, address: str | None = None, log: Any = print
) -> dict[str, Any]:
    """Validate every trial, then join or start Ray (`address`), run or resume the experiment,
    fine-tune if asked; returns a summary. Raises `TrialsFailedError` if any trial failed."""
    spec.validate()  # fix-it errors before Ray starts
    ensure_ray(address)
    path = experiment_path(spec)
    if resumable(path, spec.name, resume):
        _warn_if_changed(spec, path, log)
        log(f"resuming {path}")
        tuner = tune.Tuner.restore(
            path, trainable=MetaRLTrainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = build_tuner(spec)
        _save_spec(spec, path)
    results = tuner.fit()
    trials = []
    for i, result in enumerate(results[i] for i in range(len(results))):
        metrics = result.metrics or {}
        trial = {
            "trial_dir": str(result.path),
            "error": None if result.error is None else str(result.error),
            "meta_steps": metrics.get("training_iteration"),
            "held_out": metrics.get("held_out"),
            "checkpoint": None if result.checkpoint is None else result.checkpoint.path,
            "status": _status(results, i),
        }
        finished = metrics.get("training_iteration") == spec.stop_meta_steps
        if spec.finetune is not None and result.error is None and finished:
            trial["finetune"] = _finetune_trial(spec, result, log)  # not ASHA-stopped ones
        trials.append(trial)
    errored = [str(t["trial_dir"]) for t in trials if t["error"] is not None]
    log(f"{len(trials)} trials, {len(errored)} errored; results in {path}")
    if errored:
        raise TrialsFailedError(
            f"{len(errored)} of {len(trials)} trials failed: {', '.join(errored)}",
            "read error.txt in each trial directory, fix the cause, then re-run with --resume "
            "(finished trials are kept)",
            path,
        )
    _check_finished(spec, trials, path)
    return {"experiment": path, "trials": trials}


def _status(results: Any, index: int) -> str | None:
    """Tune's status of a trial (TERMINATED, PAUSED, PENDING, ...), when the result grid says."""
    analysis = getattr(results, "_experiment_analysis", None)
    found = getattr(analysis, "trials", None) or []
    return str(found[index].status) if index < len(found) else None


def unfinished(trials: list[dict[str, Any]], stop: int, early_stopping: bool) -> list[str]:
    """'NAME (19/60 meta-steps)' for each trial that ended without error before `stop`; with an
    early-stopping scheduler (ASHA), only those Tune did not terminate itself."""
    names = []
    for trial in trials:
        steps = trial["meta_steps"] or 0
        if trial["error"] is not None or steps >= stop:
            continue
        if early_stopping and trial.get("status") == "TERMINATED":
            continue  # stopped by ASHA: a result, not an interruption
        names.append(f"{Path(str(trial['trial_dir'])).name} ({steps}/{stop} meta-steps)")
    return names


def _check_finished(spec: TuneSpec, trials: list[dict[str, Any]], path: str) -> None:
    """An interrupted experiment is no success: name the unfinished trials and the fix."""
    left = unfinished(trials, spec.stop_meta_steps, spec.scheduler.type == "asha")
    if left:
        raise TrialsFailedError(
            f"{len(left)} of {len(trials)} trials did not reach stop_meta_steps: "
            + ", ".join(left),
            "re-run the same `ray-macaw tune` command with --resume to finish them from their "
            "checkpoints (finished trials are kept)",
            path,
        )


def _warn_if_changed(spec: TuneSpec, path: str, log: Any) -> None:
    saved = root_path(path) / SPEC_FILE
    if saved.is_file() and saved.read_text() != spec.to_yaml():
        log(
            f"warning: the experiment file or --set values differ from {saved}; a resumed "
            "experiment keeps the settings it started with (start a new --name to change them)"
        )


def _save_spec(spec: TuneSpec, path: str) -> None:
    """The spec beside the trials (local or object storage), for reports and resumes."""
    experiment = root_path(path)
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / SPEC_FILE).write_text(spec.to_yaml())


def _finetune_trial(spec: TuneSpec, result: Any, log: Any) -> dict[str, Any]:
    """Online fine-tuning from a finished trial's last checkpoint; kept in the trial directory
    (local or remote storage) so a resumed experiment does not repeat it."""
    from pyarrow import fs as pafs

    from ray_macaw.evaluation.finetune import finetune

    assert spec.finetune is not None
    target = f"{result.path}/{FINETUNE_FILE}"
    storage = result.filesystem
    if storage.get_file_info(target).type != pafs.FileType.NotFound:
        with storage.open_input_stream(target) as stream:
            return json.loads(stream.read())
    log(f"fine-tuning {Path(result.path).name}")
    with result.checkpoint.as_directory() as checkpoint:
        algo: Any = open_checkpoint(checkpoint)
        try:
            summary = finetune(algo, spec.finetune)
        finally:
            algo.stop()
    with storage.open_output_stream(target) as stream:
        stream.write(json.dumps(summary, indent=2).encode())
    return summary
