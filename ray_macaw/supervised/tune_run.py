"""Run a `SupervisedExperiment` with Ray Tune: one function trainable per model and seed.

Each trial reports its train / validation evaluations with `tune.report` and a checkpoint (the
learner, Adam and the task sampler's RNG), so a failed trial restarts from its last evaluation
and `--resume` continues an interrupted experiment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from ray_macaw.errors import RayMacawError
from ray_macaw.runtime.ray_setup import ensure_ray
from ray_macaw.supervised.config import SupervisedConfig
from ray_macaw.supervised.experiment import SupervisedExperiment
from ray_macaw.supervised.train import META_STEP, train
from ray_macaw.tune.result_log import KeepResultLogOnRetry
from ray_macaw.tune.run import resumable

SPEC_FILE = "ray_macaw_supervised.yaml"  # the experiment, saved next to the trials for reports
STATE_FILE = "state.pt"
EXCESSIVE_SYNC_WARNING = "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"


class SupervisedTrialsFailedError(RayMacawError, RuntimeError):
    """Some trials of a supervised experiment ended with an error."""


def supervised_trainable(settings: dict[str, Any]) -> None:
    """Tune function trainable: meta-train one `SupervisedConfig`, resuming from a checkpoint."""
    config = SupervisedConfig.from_dict(settings)
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / STATE_FILE, weights_only=True)

    def report(metrics: dict[str, Any], state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, Path(directory) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    train(config, report, state)


def trial_name(trial: Any) -> str:
    """`<model>_seed<k>_<trial id>`: readable trial directories."""
    return f"{trial.config.get('model')}_seed{trial.config.get('seed')}_{trial.trial_id}"


def experiment_path(spec: SupervisedExperiment) -> str:
    """`<storage_path>/<name>`."""
    return f"{spec.storage_path.rstrip('/')}/{spec.name}"


def param_space(spec: SupervisedExperiment) -> dict[str, Any]:
    """The shared settings (family defaults filled in) with a grid over models and seeds."""
    space = spec.trial_configs()[0].to_dict()
    space["model"] = tune.grid_search(list(spec.models))
    space["seed"] = tune.grid_search(list(spec.seeds))
    return space


def _trainable(spec: SupervisedExperiment) -> Any:
    return tune.with_resources(supervised_trainable, {"cpu": spec.cpus_per_trial})


def build_tuner(spec: SupervisedExperiment) -> tune.Tuner:
    """A fresh Tuner for the experiment."""
    return tune.Tuner(
        _trainable(spec),
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.max_concurrent_trials,
            reuse_actors=True,  # a new trial skips the worker start-up and imports (seconds)
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage_path,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.keep_checkpoints),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[KeepResultLogOnRetry()],
            verbose=1,
        ),
    )


def run_experiment(
    spec: SupervisedExperiment,
    *,
    resume: bool = False,
    address: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Validate every trial (and the data), run or resume the experiment; returns a summary.

    Raises `SupervisedTrialsFailedError` when a trial failed.
    """
    spec.validate(check_data=True)  # fix-it errors before Ray starts
    ensure_ray(address)
    path = experiment_path(spec)
    if resumable(path, spec.name, resume):
        log(f"resuming {path}")
        tuner = tune.Tuner.restore(
            path, trainable=_trainable(spec), resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = build_tuner(spec)
        if "://" not in path:  # reports read the spec from a local experiment directory
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / SPEC_FILE).write_text(spec.to_yaml())
    # Every evaluation checkpoints and `num_to_keep` then forces an experiment snapshot; Tune
    # warns about that when evaluations are seconds apart (small configs). Expected here.
    os.environ.setdefault(EXCESSIVE_SYNC_WARNING, "0")
    results = tuner.fit()
    trials = [
        {
            "trial_dir": str(result.path),
            "error": None if result.error is None else str(result.error),
            META_STEP: (result.metrics or {}).get(META_STEP),
        }
        for result in (results[i] for i in range(len(results)))
    ]
    _check_trials(trials, spec.trial_configs()[0].meta_steps, path, log)
    return {"experiment": path, "trials": trials}


def _check_trials(trials: list[dict[str, Any]], meta_steps: int, path: str, log: Any) -> None:
    """Raise when a trial failed or stopped early (an interrupted run), with the fix."""
    errored = [str(t["trial_dir"]) for t in trials if t["error"] is not None]
    unfinished = [t for t in trials if t["error"] is None and t[META_STEP] != meta_steps]
    log(
        f"{len(trials)} trials, {len(errored)} errored, {len(unfinished)} unfinished; "
        f"results in {path}"
    )
    if errored:
        raise SupervisedTrialsFailedError(
            f"{len(errored)} of {len(trials)} trials failed: {', '.join(errored)}",
            "read error.txt in each trial directory, fix the cause, then re-run with --resume",
            path,
        )
    if unfinished:
        raise SupervisedTrialsFailedError(
            f"the experiment stopped with {len(unfinished)} of {len(trials)} trials unfinished",
            "run the same command with --resume to continue them from their last checkpoints",
            path,
        )
