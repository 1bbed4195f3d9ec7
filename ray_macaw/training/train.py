"""Run a MACAW or Offline PEARL config to its stop condition: checkpoints, metrics log, resume
(`train` command)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ray_macaw.algorithms.common.config import OfflineMetaConfig
from ray_macaw.algorithms.common.offline_meta import OfflineMetaAlgorithm
from ray_macaw.outputs import EVALUATION_AT_START, LATEST, METRICS_FILE, OWNER_FILE
from ray_macaw.runtime.ownership import OwnerLock
from ray_macaw.training.run_file import RunConfigError, RunOptions


def _scalar_view(result: dict[str, Any]) -> dict[str, Any]:
    """The figures worth a line of the metrics log (no per-lr detail, no config)."""
    learners = result.get("learners", {})
    view = {
        "meta_step": result.get("num_meta_steps_lifetime"),
        "time_s": result.get("time_total_s"),
        **learners.get("macaw", {}),  # MACAW's losses
        **learners.get("pearl", {}),  # Offline PEARL's
    }
    evaluation = result.get("evaluation")
    if evaluation:
        view.update({k: v for k, v in evaluation.items() if k != "per_task"})
    return view


def _start_view(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The metrics-log row of the evaluation before training (meta-step 0)."""
    return {"meta_step": 0, **{k: v for k, v in evaluation.items() if k != "per_task"}}


def train(
    config: OfflineMetaConfig,
    options: RunOptions,
    *,
    resume: bool = False,
    log: Any = print,
    progress: bool = False,
) -> dict[str, Any]:
    """Train until `options.stop_meta_steps`; returns the last result's scalar view.

    With `resume`, continues from `<out>/latest` when it exists (the driver was killed, say);
    without it, an `out` that already holds a run is refused, so nothing is overwritten. The
    run owns `out` until it returns: a second run on it is refused with the first one's name.
    With `progress`, a progress bar replaces the periodic lines (evaluations are still logged).
    """
    out = Path(options.out).expanduser().resolve()  # RLlib's pyarrow filesystem wants absolute
    check_output(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    owner = OwnerLock(
        out / OWNER_FILE,
        f"the output directory {out}",
        "wait for that run to finish or stop it, or give this run its own --out",
    )
    try:
        check_output(out, resume)  # again, now that no other run can be writing it
        return _train_owned(config, options, out, resume, log, progress)
    finally:
        owner.release()


def check_run_resources(config: OfflineMetaConfig) -> None:
    """The inner-loop workers and an evaluation task, held at once, fit the cluster (else
    `ray.get` on them would wait forever)."""
    from ray_macaw.runtime.ray_setup import check_resources

    workers = int(getattr(config, "num_inner_loop_workers", 0) or 0)
    worker = {
        "CPU": float(getattr(config, "num_cpus_per_inner_worker", 0.0)),
        "GPU": float(getattr(config, "num_gpus_per_inner_worker", 0.0)),
    }
    demands = [worker] * workers
    if config.evaluation_interval:
        demands.append({"CPU": float(config.eval_num_cpus_per_task)})
    check_resources(
        f"{workers} inner-loop worker(s) and an evaluation task",
        demands,
        "lower num_inner_loop_workers, num_cpus_per_inner_worker or eval_num_cpus_per_task",
    )


def check_output(out: str | Path, resume: bool) -> None:
    """Refuse to start a fresh run in a directory that holds one (a checkpoint or a metrics
    log): it would truncate the log and replace the checkpoint."""
    out = Path(out).expanduser().resolve()
    if resume:
        return
    found = [n for n in (LATEST, f"{LATEST}.previous", METRICS_FILE) if (out / n).exists()]
    if found:
        raise RunConfigError(
            f"the output directory already holds a run ({', '.join(found)})",
            "add --resume to continue it, or give this run another --out (or delete the "
            "directory to start over)",
            out,
        )


def _train_owned(
    config: OfflineMetaConfig,
    options: RunOptions,
    out: Path,
    resume: bool,
    log: Any,
    progress: bool,
) -> dict[str, Any]:
    latest = out / LATEST
    algo: OfflineMetaAlgorithm
    checkpoint = _last_checkpoint(out) if resume else None
    check_run_resources(config)
    if checkpoint is not None:
        algo = _restore(config, checkpoint, log)
        log(f"resumed from {checkpoint} at meta-step {algo.num_meta_steps}")
    else:
        algo = config.build_algo()  # type: ignore[assignment]
    # Rows a dead run wrote after its last checkpoint are redone.
    _truncate_metrics(out / METRICS_FILE, algo.num_meta_steps)
    bar = tqdm(
        total=options.stop_meta_steps,
        initial=algo.num_meta_steps,
        desc=f"meta-training {out.name}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    nodes = algo.inner_worker_nodes()
    if nodes:
        log(f"{len(nodes)} inner-loop workers on {len(set(nodes))} node(s)")
    view: dict[str, Any] = {}
    try:
        with open(out / METRICS_FILE, "a") as metrics:
            while algo.num_meta_steps < options.stop_meta_steps:
                start = time.perf_counter()
                result = algo.train()
                if EVALUATION_AT_START in result:
                    metrics.write(json.dumps(_start_view(result[EVALUATION_AT_START])) + "\n")
                view = _scalar_view(result)
                metrics.write(json.dumps(view) + "\n")
                step = algo.num_meta_steps
                bar.update(1)
                evaluated = "pre_adaptation_return_mean" in view
                if evaluated or (not progress and step % options.log_every == 0):
                    line = _progress_line(view, time.perf_counter() - start)
                    (tqdm.write if progress else log)(line)
                if step % options.checkpoint_every == 0 or step >= options.stop_meta_steps:
                    metrics.flush()  # the log reaches the checkpoint's step before it exists
                    os.fsync(metrics.fileno())
                    save_checkpoint(algo, out)
    finally:
        bar.close()
        algo.stop()
    log(f"done: {algo.num_meta_steps} meta-steps; checkpoint {latest}")
    from ray_macaw.tasks import get_task_family

    environment = get_task_family(config.family, seed=config.family_seed).environment()
    return {
        **view,
        "checkpoint": str(latest),
        "inner_worker_nodes": nodes,
        "environment": environment,
    }


def save_checkpoint(algo: OfflineMetaAlgorithm, out: Path) -> Path:
    """Write `<out>/latest` so that a crash at any moment leaves a complete checkpoint: the new one
    is written beside it and swapped in by renames; the old one is deleted only once the new one
    is in place (after a crash mid-swap, `latest.previous` is the whole one)."""
    latest, staging, previous = out / LATEST, out / f"{LATEST}.saving", out / f"{LATEST}.previous"
    shutil.rmtree(staging, ignore_errors=True)
    algo.save_to_path(str(staging))
    if latest.exists():
        shutil.rmtree(previous, ignore_errors=True)
        os.replace(latest, previous)
    os.replace(staging, latest)
    shutil.rmtree(previous, ignore_errors=True)
    return latest


def _restore(config: OfflineMetaConfig, checkpoint: Path, log: Any) -> OfflineMetaAlgorithm:
    """The algorithm saved at `checkpoint`, as the class that wrote it (so a checkpoint of
    another algorithm reaches the same-run check instead of failing inside RLlib); settings
    that differ from the run file's are named in a warning (the checkpoint's are kept)."""
    from ray_macaw.algorithms.common.checkpoints import open_checkpoint

    algo = open_checkpoint(checkpoint)
    _check_same_run(algo, config, checkpoint)
    changed = changed_settings(algo.config, config)
    if changed:
        log(
            f"warning: the run file's settings differ from the checkpoint's ({'; '.join(changed)});"
            " the resumed run keeps the checkpoint's settings (give a new --out to use the new "
            "ones)"
        )
    return algo


def changed_settings(saved: OfflineMetaConfig, wanted: OfflineMetaConfig) -> list[str]:
    """'name A (checkpoint) -> B (run file)' for each setting, the seed and the evaluation
    interval that differ."""

    def value(config: OfflineMetaConfig, name: str) -> Any:
        v = getattr(config, name, None)
        return list(v) if isinstance(v, tuple) else v

    names = [*type(wanted).settings(), "seed", "evaluation_interval"]
    return [
        f"{n} {value(saved, n)!r} (checkpoint) -> {value(wanted, n)!r} (run file)"
        for n in names
        if value(saved, n) != value(wanted, n)
    ]


def _check_same_run(
    algo: OfflineMetaAlgorithm, config: OfflineMetaConfig, checkpoint: Path
) -> None:
    """Refuse to resume a checkpoint written for another algorithm, family, data root or
    network."""

    def value(config: OfflineMetaConfig, name: str) -> Any:
        v = getattr(config, name, None)
        return tuple(v) if isinstance(v, list) else v

    saved, wanted = algo.config, config
    names = (
        "algorithm_name",
        "family",
        "data_root",
        "hidden",
        "policy_layer",
        "value_layer",
        "objective",
        "latent_dim",
    )
    differ = [n for n in names if value(saved, n) != value(wanted, n)]
    if differ:
        algo.stop()
        what = ", ".join(f"{n} {value(saved, n)!r} (not {value(wanted, n)!r})" for n in differ)
        raise RunConfigError(
            f"the checkpoint to resume belongs to another run: {what}",
            "give this run its own --out, or delete the old run's directory",
            checkpoint,
        )


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the log rows a dead run wrote after its last checkpoint (they are redone), and a
    torn last line, so the log has each meta-step once."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["meta_step"] <= last_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def _last_checkpoint(out: Path) -> Path | None:
    """`latest`, or the one kept while a newer one was being swapped in when the run died."""
    for candidate in (out / LATEST, out / f"{LATEST}.previous"):
        if (candidate / "rllib_checkpoint.json").exists():
            return candidate
    return None


def _progress_line(view: dict[str, Any], seconds: float) -> str:
    losses = {  # MACAW's, or Offline PEARL's
        "outer V": "outer_value_loss",
        "outer pi": "outer_policy_loss",
        "Q": "qf_loss",
        "V": "vf_loss",
        "pi": "policy_loss",
        "KL": "kl_div",
    }
    parts = [f"step {view['meta_step']}", f"{seconds:.2f} s/step"]
    parts += [f"{label} {view[key]:.3f}" for label, key in losses.items() if key in view]
    if "pre_adaptation_return_mean" in view:
        parts.append(
            f"eval pre {view['pre_adaptation_return_mean']:.2f} -> post "
            f"{view['post_adaptation_return_mean']:.2f}"
        )
    return ", ".join(parts)
