"""The behaviour policies' level, measured as held-out evaluation measures a meta-trained policy:
deterministic episodes from the same start states (`held_out.evaluation_seed`), so that a
method's adapted return and the behaviour policy that made the task's data are paired (issue 18).

The policy is each task's last agent checkpoint from collection (`ROOT/<family>/_agents/`), i.e.
the agent at the end of its lifetime buffer; its mean action (SB3's `deterministic=True`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ray_macaw.collect.behaviour import load_checkpoint as load_agent
from ray_macaw.collect.behaviour import make_agent
from ray_macaw.collect.collector import AGENTS_DIR
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.storage import StoragePath
from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.evaluation.held_out import evaluation_seed, mean_stderr, rollout, stderr
from ray_macaw.tasks import get_task_family

LEARNED = ("sac", "td3")  # collectors that leave agent checkpoints


def last_checkpoint(family_dir: StoragePath, task_id: int) -> StoragePath:
    """The newest agent checkpoint of a task (saved with its last part)."""
    agents: StoragePath = family_dir / AGENTS_DIR / f"task_id={task_id}"
    found: list[StoragePath] = sorted(agents.glob("ckpt-*.pt"), key=lambda p: p.name)
    if not found:
        raise MissingDataError(
            f"task {task_id} has no behaviour agent checkpoint",
            "the behaviour level needs the agents `ray-macaw collect` saves under _agents/; "
            "collect the task again if they were deleted",
            family_dir / AGENTS_DIR,
        )
    return found[-1]


def behaviour_level(
    root: str, family: str, task_ids: Iterable[int], run_seed: int = 0, episodes: int = 5
) -> dict[str, Any]:
    """Per task, the behaviour agent's deterministic returns from the start states a run with
    seed `run_seed` evaluates on; the mean over tasks and its standard error over episodes."""
    data = TaskDatasets(root, family)
    collector = data.manifest.collector
    algo = collector.get("algo")
    if algo not in LEARNED:
        raise DataError(
            f"the data was made by the '{algo}' collector, which has no behaviour agent",
            f"the behaviour level is defined for {' / '.join(LEARNED)} collections",
            data.family_dir,
        )
    tasks = get_task_family(family, seed=data.manifest.family_seed)
    per_task: dict[str, dict[str, Any]] = {}
    for task_id in task_ids:
        env = tasks.make_env(task_id)
        agent = make_agent(algo, env, collector["hyperparameters"], seed=0, device="cpu")
        load_agent(agent, last_checkpoint(data.family_dir, task_id))

        def policy(obs: torch.Tensor, agent: Any = agent) -> torch.Tensor:
            action, _ = agent.predict(obs.numpy(), deterministic=True)
            return torch.as_tensor(action)

        returns = rollout(env, policy, episodes, evaluation_seed(run_seed, task_id))
        per_task[str(task_id)] = {
            "task_id": task_id,
            "return": float(np.mean(returns)),
            "return_stderr": stderr(np.asarray(returns)),
            "returns": returns,
        }
    return {
        "behaviour_return_mean": float(np.mean([t["return"] for t in per_task.values()])),
        "behaviour_return_stderr": mean_stderr([t["return_stderr"] for t in per_task.values()]),
        "episodes": episodes,
        "seed": run_seed,
        "per_task": per_task,
    }
