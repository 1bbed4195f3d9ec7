"""Collect per-task offline data with Ray actors, one per task (appendix D.2; architecture.md).

`collect(config)` resolves the tasks, refuses a root written with other settings, skips finished
tasks, runs a `CollectorActor` per unfinished unit (a task, or with `shared_agents` a group of
tasks sharing one agent; at most `max_concurrent` at once, spread over the cluster's nodes), shows
progress, restarts units whose actor died (they resume from their last complete parts), and
returns a summary.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import ray
from tqdm import tqdm

from ray_macaw.collect.actor import CollectorActor
from ray_macaw.collect.collector import (
    completed_tasks,
    discard_task,
    open_writer,
    task_owner_locks,
)
from ray_macaw.collect.config import CollectConfig, parse_tasks
from ray_macaw.data.storage import root_path
from ray_macaw.errors import RayMacawError
from ray_macaw.runtime.ownership import owning
from ray_macaw.runtime.ray_setup import check_resources, ensure_ray
from ray_macaw.runtime.shared_storage import check_shared
from ray_macaw.tasks import get_task_family

POLL_SECONDS = 1.0


class CollectionError(RayMacawError, RuntimeError):
    """A task could not be collected (its actor kept dying)."""


@dataclass
class _Running:
    task_ids: list[int]
    actor: Any
    attempt: int
    bar: Any = None

    @property
    def label(self) -> str:
        """'task 3', or 'tasks 0,2,4' for a shared agent's group."""
        if len(self.task_ids) == 1:
            return f"task {self.task_ids[0]}"
        return "tasks " + ",".join(str(t) for t in self.task_ids)


@dataclass
class _Display:
    """An overall progress bar plus one bar per running task (or nothing)."""

    enabled: bool
    total: int
    overall: Any = None
    done: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.enabled:
            self.overall = tqdm(
                total=self.total,
                desc="all tasks",
                unit="step",
                position=0,
                dynamic_ncols=True,
            )

    def task_bar(self, label: str, total: int, position: int) -> Any:
        if not self.enabled:
            return None
        return tqdm(
            total=total,
            desc=label if len(label) <= 16 else label[:13] + "...",
            unit="step",
            position=position,
            leave=False,
            dynamic_ncols=True,
        )

    def update(self, run: _Running, progress: dict[str, Any]) -> None:
        self.done[run.task_ids[0]] = progress["steps"]
        if not self.enabled:
            return
        run.bar.n = progress["steps"]
        recent = progress["recent_return"]
        run.bar.set_postfix(
            ret="-" if recent is None else f"{recent:.1f}",
            sps=f"{progress['steps_per_s']:.0f}",
            refresh=False,
        )
        run.bar.refresh()
        self.overall.n = sum(self.done.values())
        self.overall.refresh()

    def message(self, text: str) -> None:
        if self.enabled:
            tqdm.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.enabled:
            self.overall.close()


def collect(
    config: CollectConfig,
    *,
    address: str | None = None,
    show_progress: bool = True,
    recollect: str | None = None,
) -> dict[str, Any]:
    """Collect every selected task's lifetime buffer under `config.root`.

    The command owns each task it collects until it returns (a second collection of the same
    task is refused with the name of the running one).

    Args:
        config: The collection settings.
        address: Ray cluster address (default: RAY_ADDRESS, else a local Ray).
        show_progress: Progress bars.
        recollect: Tasks ('3', '0-2,7', 'all') whose data is discarded and collected again from
            scratch, finished or not; they are added to `config.tasks`.

    Returns:
        {"family", "root", "collected": {task_id: result}, "skipped": [...], "seconds"}.

    Raises:
        RayMacawError: Bad settings, a root written with other settings, a task another
            command is collecting, or a task whose actor died more than `max_retries` times
            (what was written so far is kept).
    """
    config = config.resolved()
    family = get_task_family(config.family, seed=config.family_seed)
    again = parse_tasks(recollect, family, config.split) if recollect else []
    task_ids = sorted(set(parse_tasks(config.tasks, family, config.split)) | set(again))
    env = family.make_env(task_ids[0])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]  # type: ignore[index]
    open_writer(config, family, obs_dim, act_dim)  # refuses a root written with other settings
    unfinished = [
        t for t in task_ids if t in again or t not in completed_tasks(config.root, family.name)
    ]
    started = time.monotonic()
    with owning(task_owner_locks(config.root, family.name, unfinished)):
        for task_id in again:
            discard_task(config.root, family.name, task_id)
        # Read again under ownership: another command may have finished a task meanwhile.
        finished = completed_tasks(config.root, family.name)
        # Units from every selected task, so a shared agent's group is the same on resume.
        todo = [u for u in config.units(task_ids) if not set(u) <= finished]
        collected = (
            _run_actors(config, todo, obs_dim, act_dim, address, show_progress) if todo else {}
        )
    return {
        "family": family.name,
        "root": str(root_path(config.root) / family.name),
        "collected": collected,
        "skipped": sorted(set(task_ids) & finished),
        "seconds": time.monotonic() - started,
    }


def _run_actors(
    config: CollectConfig,
    todo: list[list[int]],
    obs_dim: int,
    act_dim: int,
    address: str | None,
    show_progress: bool,
) -> dict[int, dict[str, Any]]:
    ensure_ray(address)
    check_resources(
        "each collector actor",
        [{"CPU": config.num_cpus_per_task, "GPU": config.num_gpus_per_task}],
        "lower --num-cpus-per-task / --num-gpus-per-task to what one node has",
        log=print,
    )
    check_shared(config.root)  # every actor writes its task's parts under ROOT
    limit = config.max_concurrent or len(todo)
    pending = deque((unit, 0) for unit in todo)
    running: dict[Any, _Running] = {}
    results: dict[int, dict[str, Any]] = {}
    display = _Display(show_progress, total=config.steps * sum(map(len, todo)))  # type: ignore[operator]
    resources = {
        "num_cpus": config.num_cpus_per_task,
        "num_gpus": config.num_gpus_per_task,
        "scheduling_strategy": "SPREAD",
    }
    try:
        while pending or running:
            while pending and len(running) < limit:
                unit, attempt = pending.popleft()
                actor = CollectorActor.options(  # type: ignore[attr-defined]
                    name=actor_name(config, unit[0], attempt), **resources
                ).remote(config, unit, obs_dim, act_dim)
                run = _Running(unit, actor, attempt)
                run.bar = display.task_bar(run.label, config.steps * len(unit), len(running) + 1)  # type: ignore[operator]
                running[actor.run.remote()] = run
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                _finish(ref, running.pop(ref), config, pending, results, display)
            _poll(running, display)
    except BaseException:
        for run in running.values():
            ray.kill(run.actor)
        raise
    finally:
        display.close()
    return results


def actor_name(config: CollectConfig, task_id: int, attempt: int = 0) -> str:
    """Name of a task's collector actor, or of its group's (by the group's first task): unique
    per root, family, task and attempt (a dead actor's name can stay registered for a while)."""
    root = root_path(config.root).resolve()
    return f"ray-macaw-collect:{root}:{config.family}:{task_id}:{attempt}"


def _finish(
    ref: Any,
    run: _Running,
    config: CollectConfig,
    pending: deque,
    results: dict[int, dict[str, Any]],
    display: _Display,
) -> None:
    if run.bar is not None:
        run.bar.close()
    try:
        result = ray.get(ref)
    except ray.exceptions.RayActorError as e:
        if run.attempt >= config.max_retries:
            raise CollectionError(
                f"the collector of {run.label} died {run.attempt + 1} times ({e})",
                "check the worker's logs (out of memory?); re-running the command resumes "
                "from the last complete part",
            ) from e
        ray.kill(run.actor, no_restart=True)
        display.message(
            f"{run.label}: actor died, restarting from its last part (attempt {run.attempt + 2})"
        )
        pending.appendleft((run.task_ids, run.attempt + 1))
        return
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, RayMacawError):
            raise e.cause from None  # a one-line, fix-it error from the actor (bad data...)
        raise
    ray.kill(run.actor)
    results.update(result)
    display.done[run.task_ids[0]] = sum(r["steps"] for r in result.values())
    for task_id, task_result in sorted(result.items()):
        recent = task_result["recent_return"]
        display.message(
            f"task {task_id}: {task_result['steps']} steps, {task_result['episodes']} episodes, "
            f"recent return {'-' if recent is None else f'{recent:.2f}'}, "
            f"{task_result['seconds']:.1f} s"
        )


def _poll(running: dict[Any, _Running], display: _Display) -> None:
    """Ask every running actor for its progress (a dead actor is handled when `run` fails)."""
    refs = {run.actor.progress.remote(): run for run in running.values()}
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=POLL_SECONDS)
    for ref in ready:
        try:
            display.update(refs[ref], ray.get(ref))
        except ray.exceptions.RayError:
            continue
