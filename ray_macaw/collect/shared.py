"""One task-conditioned behaviour agent shared by a group of a family's tasks (`--shared-agents`).

Per-task agents learn each task from scratch: on Cheetah-Vel that is 40 separate learning curves,
hours of both cores for competent data. A shared agent sees the task's condition (its parameters,
`TaskFamily.condition`) appended to the observation and runs one task per episode, the task with
the fewest steps so far (round robin when episodes have equal length), so what it learns on one
velocity serves its neighbours. Rows are stored per task, without the condition: the data has the
layout and meaning of per-task collection, and each task's lifetime buffer still runs from the
agent's first (random) steps to its last.

Checkpoints: one agent per group, saved with every part any of its tasks records, holding each
task's recorded row count. On resume the newest checkpoint that no task is behind is loaded (a
crash between two tasks' parts leaves some tasks ahead of it: they keep their rows, and the
scheduler gives the tasks behind them episodes first until they catch up).
"""

from __future__ import annotations

import io
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ray_macaw.collect.behaviour import (
    load_checkpoint,
    make_agent,
    refill_replay_buffer,
    save_checkpoint,
)
from ray_macaw.collect.collector import (
    AGENTS_DIR,
    RECENT_EPISODES,
    finish_task,
    open_writer,
    run_record,
)
from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.curves import curve_of
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.episodes import EpisodeRecorder
from ray_macaw.data.manifest import PartRecord
from ray_macaw.data.storage import ObjectPath
from ray_macaw.data.task_data import TaskData
from ray_macaw.errors import MissingDataError, recollect_fix
from ray_macaw.tasks import TaskFamily, get_task_family


def group_dir_name(task_ids: list[int]) -> str:
    """The folder of a group's agent checkpoints under `_agents/`."""
    return "shared=" + ",".join(str(t) for t in sorted(task_ids))


class TaskConditionedEnv(gym.Env):
    """Each episode runs one of `task_ids`; observations carry the task's condition at the end.

    Args:
        family: The task family.
        task_ids: The group's tasks.
        steps_done: Steps each task already holds (its data so far).
        budget: Steps per task; a task's episode is cut (truncated) when it reaches it.
        seeds: Per task, the seed of its episodes' start states.
    """

    def __init__(
        self,
        family: TaskFamily,
        task_ids: list[int],
        steps_done: dict[int, int],
        budget: int,
        seeds: dict[int, int],
    ) -> None:
        self.envs = {t: family.make_env(t) for t in task_ids}
        self.conditions = {t: family.condition(t) for t in task_ids}
        first = self.envs[task_ids[0]]
        base = first.observation_space
        assert isinstance(base, gym.spaces.Box) and len(base.shape) == 1
        self.obs_dim = base.shape[0]
        width = len(self.conditions[task_ids[0]])
        shape = (self.obs_dim + width,)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape, base.dtype)  # type: ignore[arg-type]
        self.action_space = first.action_space
        self.steps = {t: int(steps_done.get(t, 0)) for t in task_ids}
        self.budget = budget
        self.seeds = seeds
        self.episodes = dict.fromkeys(task_ids, 0)
        self.current = task_ids[0]
        self.stepped = task_ids[0]  # the task of the last step (SB3 resets before it stores it)

    def next_task(self) -> int:
        """The task with the fewest steps (lowest id on ties)."""
        return min(self.steps, key=lambda t: (self.steps[t], t))

    def observe(self, task_id: int, obs: np.ndarray) -> np.ndarray:
        """A task observation with its condition appended."""
        return np.concatenate([obs, self.conditions[task_id].astype(obs.dtype)])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        """Start an episode of the next task; its start state depends on (task seed, episode)."""
        super().reset(seed=seed)
        self.current = self.next_task()
        self.episodes[self.current] += 1
        episode_seed = np.random.SeedSequence(
            [self.seeds[self.current], self.steps[self.current], self.episodes[self.current]]
        ).generate_state(1)[0]
        obs, info = self.envs[self.current].reset(seed=int(episode_seed), options=options)
        return self.observe(self.current, obs), {**info, "task_id": self.current}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        """Step the current task; cut the episode when the task's buffer is full."""
        task = self.current
        obs, reward, terminated, truncated, info = self.envs[task].step(action)
        self.steps[task] += 1
        self.stepped = task
        if self.steps[task] >= self.budget and not terminated:
            truncated = True
        return self.observe(task, obs), float(reward), terminated, truncated, info


class SharedCollection:
    """Collect (or resume collecting) the lifetime buffers of a group of tasks with one agent.

    Args:
        config: The resolved collection settings (`shared_agents` > 0, a learned `algo`).
        task_ids: The group's tasks.
        obs_dim: Observation size of the tasks (the stored one, without the condition).
        act_dim: Action size.
    """

    def __init__(
        self, config: CollectConfig, task_ids: list[int], obs_dim: int, act_dim: int
    ) -> None:
        if config.algo is None or config.steps is None:
            raise ValueError("pass a resolved CollectConfig (config.resolved())")
        self.config = config
        self.steps: int = config.steps
        self.task_ids = sorted(task_ids)
        self.family = get_task_family(config.family, seed=config.family_seed)
        self.dataset = open_writer(config, self.family, obs_dim, act_dim)
        self.writers = {
            t: self.dataset.task_writer(t, rows_per_part=config.rows_per_part)
            for t in self.task_ids
        }
        self.recorders = {t: EpisodeRecorder(w) for t, w in self.writers.items()}
        self.recent: dict[int, deque[float]] = {
            t: deque(maxlen=RECENT_EPISODES) for t in self.task_ids
        }
        self.obs_dim = obs_dim
        self.started = time.monotonic()
        self.start_rows = self._rows()
        self.agent: Any = None
        self.env: TaskConditionedEnv | None = None

    @property
    def agent_dir(self) -> Path | ObjectPath:
        """Where the group's agent checkpoints live."""
        return self.dataset.family_dir / AGENTS_DIR / group_dir_name(self.task_ids)

    def _rows(self) -> int:
        return sum(
            w.rows_written + self.recorders[t].pending_steps for t, w in self.writers.items()
        )

    def progress(self) -> dict[str, Any]:
        """Steps so far over the group, the mean of its tasks' recent returns, and speed."""
        rows = self._rows()
        recent = [float(np.mean(r)) for r in self.recent.values() if r]
        return {
            "task_ids": self.task_ids,
            "steps": rows,
            "total": self.steps * len(self.task_ids),
            "episodes": sum(len(r.curve) for r in self.recorders.values()),
            "recent_return": float(np.mean(recent)) if recent else None,
            "steps_per_s": (rows - self.start_rows) / max(time.monotonic() - self.started, 1e-9),
        }

    def run(self) -> dict[int, dict[str, Any]]:
        """Collect until every task holds `steps` transitions; mark each complete."""
        data = TaskDatasets(self.config.root, self.family.name)
        existing = {t: data.load(t) for t, w in self.writers.items() if w.rows_written}
        for task_id, task_data in existing.items():
            self.recorders[task_id].curve.extend(curve_of(task_data))
        for task_id in self.task_ids:
            start_rows = self.writers[task_id].rows_written
            record = run_record(self.config, task_id, start_rows)
            self.dataset.record_run(task_id, {**record, "shared_with": self.task_ids})
        remaining = sum(max(self.steps - w.rows_written, 0) for w in self.writers.values())
        if remaining > 0:
            self._run_agent(remaining, existing)
        results = {}
        seconds = time.monotonic() - self.started
        for task_id, recorder in self.recorders.items():
            finish_task(self.dataset, task_id, recorder)
            recent = self.recent[task_id]
            results[task_id] = {
                "task_id": task_id,
                "steps": self.writers[task_id].rows_written,
                "episodes": len(recorder.curve),
                "recent_return": float(np.mean(recent)) if recent else None,
                "seconds": seconds,
            }
        return results

    def _run_agent(self, remaining: int, existing: dict[int, TaskData]) -> None:
        config = self.config
        done = {t: w.rows_written for t, w in self.writers.items()}
        seeds = {t: config.task_seed(t) for t in self.task_ids}
        self.env = TaskConditionedEnv(self.family, self.task_ids, done, self.steps, seeds)
        device = "cuda" if config.num_gpus_per_task > 0 else "cpu"
        agent_seed = int(np.random.SeedSequence([config.seed, *self.task_ids]).generate_state(1)[0])
        self.agent = make_agent(config.algo, self.env, config.hyperparameters, agent_seed, device)  # type: ignore[arg-type]
        if existing:
            load_checkpoint(self.agent, self._checkpoint_for(done))
            refill_replay_buffer(
                self.agent, [(d, self.env.conditions[t]) for t, d in existing.items()]
            )
            self.agent.num_timesteps = sum(done.values())
        self.agent.replay_buffer.sink = self._on_step
        for task_id, writer in self.writers.items():
            writer.before_record = partial(self._checkpoint, task_id)
        self.agent.learn(total_timesteps=remaining, reset_num_timesteps=False)

    def _on_step(self, obs, action, reward, next_obs, *, terminated: bool, truncated: bool) -> None:
        """Route a stored transition to its task's recorder, without the condition."""
        assert self.env is not None
        task = self.env.stepped
        episode_return = self.recorders[task].add(
            obs[: self.obs_dim],
            action,
            reward,
            next_obs[: self.obs_dim],
            terminated=terminated,
            truncated=truncated,
        )
        if episode_return is not None:
            self.recent[task].append(episode_return)

    def _checkpoint(self, task_id: int, part: PartRecord) -> None:
        """Save the agent with each task's recorded rows, `task_id`'s new part included."""
        rows = {t: w.rows_recorded for t, w in self.writers.items()}
        rows[task_id] = part.first_step + part.rows
        total = sum(rows.values())
        save_checkpoint(self.agent, self.agent_dir / f"ckpt-{total:012d}.pt", rows)
        saved: list[Path | ObjectPath] = sorted(self.agent_dir.glob("ckpt-*.pt"), key=str)
        for old in saved[: -(len(self.task_ids) + 1)]:  # a whole round of parts, plus one
            old.unlink()

    def _checkpoint_for(self, done: dict[int, int]) -> Path | ObjectPath:
        """The newest checkpoint no task's data is behind."""
        saved: list[Path | ObjectPath] = list(self.agent_dir.glob("ckpt-*.pt"))
        for path in sorted(saved, key=lambda p: p.name, reverse=True):
            rows = checkpoint_rows(path)
            if all(rows.get(t, 0) <= done[t] for t in self.task_ids):
                return path
        raise MissingDataError(
            f"tasks {self.task_ids} have data but no shared agent checkpoint to resume from",
            f"collect with the same --tasks and --shared-agents as before, restore "
            f"{self.agent_dir}, or " + recollect_fix(self.dataset.family_dir, self.task_ids[0]),
            self.agent_dir,
        )


def checkpoint_rows(path: Path | ObjectPath) -> dict[int, int]:
    """The {task id: rows} a shared agent's checkpoint was saved with."""
    state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    return {int(t): int(n) for t, n in state["rows"].items()}
