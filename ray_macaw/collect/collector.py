"""One task's collection: a behaviour policy whose every stored transition streams to Parquet.

`TaskCollection` is plain Python (tested without Ray); `actor.CollectorActor` runs it as a Ray
actor with a second thread for progress queries.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ray_macaw.collect.behaviour import (
    LEARNED_ALGOS,
    ScriptedBehaviour,
    load_checkpoint,
    make_agent,
    refill_replay_buffer,
    save_checkpoint,
)
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.curves import curve_of, curve_paths, summarise, write_curve
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.episodes import EpisodeRecorder
from ray_macaw.data.manifest import Manifest, PartRecord, TaskRecord, update_manifest
from ray_macaw.data.shards import DatasetWriter, task_dir_name
from ray_macaw.data.storage import ObjectPath, local_lock_dir, remove_tree, root_path
from ray_macaw.data.task_data import TaskData
from ray_macaw.errors import MissingDataError, recollect_fix
from ray_macaw.tasks import TaskFamily, get_task_family

AGENTS_DIR = "_agents"  # leading underscore: skipped by pyarrow's dataset discovery
OWNERS_DIR = "_owners"  # one lock file per task, held by the command collecting it
RECENT_EPISODES = 10
KEEP_CHECKPOINTS = 2


def open_writer(
    config: CollectConfig, family: TaskFamily, obs_dim: int, act_dim: int
) -> DatasetWriter:
    """The collection's writer: creates the manifest, or checks an existing one's settings."""
    return DatasetWriter(
        config.root,
        family,
        obs_dim=obs_dim,
        act_dim=act_dim,
        gamma=config.gamma,
        bootstrap_after_termination=config.bootstrap_after_termination,
        split=config.split,
        collector=config.collector_record(),
        seeds={
            "seed": config.seed,
            "family_seed": config.family_seed,
            "task_seed": "SeedSequence([seed, task_id]).generate_state(1)[0]",
        },
    )


def run_record(config: CollectConfig, task_id: int, start_rows: int) -> dict[str, Any]:
    """What the manifest lists about one collection run of a task (resumes add more)."""
    return {
        "start_rows": start_rows,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "seed": config.task_seed(task_id),
    }


def finish_task(dataset: DatasetWriter, task_id: int, recorder: EpisodeRecorder) -> None:
    """Write the episode in progress and the last part, the curve, and mark the task complete."""
    recorder.close()
    recorder.writer.flush()
    write_curve(dataset.family_dir, task_id, recorder.curve)
    dataset.mark_complete(task_id, {"behaviour_curve": summarise(recorder.curve)})


class TaskCollection:
    """Collect (or resume collecting) one task's lifetime buffer.

    Args:
        config: The resolved collection settings.
        task_id: Which task.
        obs_dim: Observation size.
        act_dim: Action size.
    """

    def __init__(self, config: CollectConfig, task_id: int, obs_dim: int, act_dim: int) -> None:
        if config.algo is None or config.steps is None:
            raise ValueError("pass a resolved CollectConfig (config.resolved())")
        self.config = config
        self.algo: str = config.algo
        self.steps: int = config.steps
        self.task_id = task_id
        self.family = get_task_family(config.family, seed=config.family_seed)
        self.dataset = open_writer(config, self.family, obs_dim, act_dim)
        self.writer = self.dataset.task_writer(task_id, rows_per_part=config.rows_per_part)
        self.recorder = EpisodeRecorder(self.writer)
        self.started = time.monotonic()
        self.start_rows = self.writer.rows_written
        self.recent: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.agent: Any = None

    @property
    def agent_dir(self) -> Path | ObjectPath:
        """Where this task's agent checkpoints live."""
        return self.dataset.family_dir / AGENTS_DIR / f"task_id={self.task_id}"

    def progress(self) -> dict[str, Any]:
        """Steps so far, recent behaviour return and speed."""
        steps = self.writer.rows_written + self.recorder.pending_steps
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "task_id": self.task_id,
            "steps": steps,
            "total": self.steps,
            "episodes": len(self.recorder.curve),
            "recent_return": float(np.mean(self.recent)) if self.recent else None,
            "steps_per_s": (steps - self.start_rows) / elapsed,
        }

    def run(self) -> dict[str, Any]:
        """Collect until the task holds `steps` transitions; mark it complete."""
        # On resume, the data already written is read once: for the curve and the agent's buffer.
        existing = (
            TaskDatasets(self.config.root, self.family.name).load(self.task_id)
            if self.writer.rows_written
            else None
        )
        if existing is not None:
            self.recorder.curve.extend(curve_of(existing))
        self.dataset.record_run(
            self.task_id, run_record(self.config, self.task_id, self.writer.rows_written)
        )
        remaining = self.steps - self.writer.rows_written
        if remaining > 0:
            if self.algo in LEARNED_ALGOS:
                self._run_agent(remaining, existing)
            else:
                self._run_scripted(remaining)
        finish_task(self.dataset, self.task_id, self.recorder)
        return {**self.progress(), "seconds": time.monotonic() - self.started}

    def _on_step(self, obs, action, reward, next_obs, *, terminated: bool, truncated: bool) -> None:
        episode_return = self.recorder.add(
            obs, action, reward, next_obs, terminated=terminated, truncated=truncated
        )
        if episode_return is not None:
            self.recent.append(episode_return)

    def _run_agent(self, remaining: int, existing: TaskData | None) -> None:
        config = self.config
        device = "cuda" if config.num_gpus_per_task > 0 else "cpu"
        env = self.family.make_env(self.task_id)
        self.agent = make_agent(
            self.algo,
            env,
            config.hyperparameters,
            config.task_seed(self.task_id),
            device,
        )
        if existing is not None:
            self._resume_agent(existing)
        self.agent.replay_buffer.sink = self._on_step
        self.writer.before_record = self._checkpoint
        self.agent.learn(total_timesteps=remaining, reset_num_timesteps=False)

    def _resume_agent(self, existing: TaskData) -> None:
        rows = self.writer.rows_written
        load_checkpoint(self.agent, self._checkpoint_for(rows))
        refill_replay_buffer(self.agent, [(existing, None)])
        self.agent.num_timesteps = rows

    def _checkpoint_for(self, rows: int) -> Path | ObjectPath:
        """The checkpoint saved with the last complete part (or the newest one before it)."""
        found = sorted((int(p.stem.split("-")[1]), p) for p in self.agent_dir.glob("ckpt-*.pt"))
        usable = [path for saved, path in found if saved <= rows]
        if not usable:
            raise MissingDataError(
                f"task {self.task_id} has {rows} rows but no agent checkpoint to resume from",
                f"restore {self.agent_dir}, or "
                + recollect_fix(self.dataset.family_dir, self.task_id),
                self.agent_dir,
            )
        return usable[-1]

    def _checkpoint(self, part: PartRecord) -> None:
        rows = part.first_step + part.rows
        save_checkpoint(self.agent, self.agent_dir / f"ckpt-{rows:012d}.pt", rows)
        saved: list[Path | ObjectPath] = sorted(self.agent_dir.glob("ckpt-*.pt"), key=str)
        for old in saved[:-KEEP_CHECKPOINTS]:
            old.unlink()

    def _run_scripted(self, remaining: int) -> None:
        env = self.family.make_env(self.task_id)
        seed = self.config.task_seed(self.task_id)
        behaviour = ScriptedBehaviour(
            self.algo,
            env,
            seed,
            **self.config.hyperparameters,
        )
        episode = self.writer.next_episode
        while remaining > 0:
            # Each episode's randomness depends only on (seed, episode): resuming repeats nothing.
            rng = np.random.default_rng([seed, episode])
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            done = False
            while not done and remaining > 0:
                action = behaviour.act(obs, rng)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                self._on_step(
                    obs, action, float(reward), next_obs, terminated=terminated, truncated=truncated
                )
                obs, done, remaining = next_obs, terminated or truncated, remaining - 1
            episode += 1


def completed_tasks(root: str, family: str) -> set[int]:
    """Ids of the tasks the manifest marks complete."""
    manifest = Manifest.load(root_path(root) / family)
    return {k for k, record in manifest.tasks.items() if record.complete}


def task_owner_locks(root: str, family: str, task_ids: list[int]) -> list[tuple[Path, str, str]]:
    """The `(lock file, what, fix)` of each task, for `ownership.owning`. Object storage has no
    locks: a root there is owned through lock files of this machine (`ray job submit` runs every
    job's driver on the head node, so jobs on one cluster still exclude each other)."""
    family_dir = root_path(root) / family
    fix = (
        "wait for that command to finish, or stop it (the Ray actors of a killed command stop a "
        "few seconds after it), then re-run this one: it resumes from the last complete part"
    )
    return [
        (
            local_lock_dir(family_dir) / OWNERS_DIR / f"task_id={t}.lock",
            f"task {t} of {family_dir}",
            fix,
        )
        for t in task_ids
    ]


def discard_task(root: str, family: str, task_id: int) -> None:
    """Forget a task's data (manifest first, so no reader is sent to a deleted file), then delete
    its parts, agent checkpoints and curve; call while owning the task."""
    family_dir = root_path(root) / family

    def reset(manifest: Manifest) -> None:
        manifest.tasks[task_id] = TaskRecord(task_id, manifest.tasks[task_id].params)

    update_manifest(family_dir, reset)
    remove_tree(family_dir / task_dir_name(task_id))
    remove_tree(family_dir / AGENTS_DIR / f"task_id={task_id}")
    for path in curve_paths(family_dir, task_id):
        path.unlink(missing_ok=True)
