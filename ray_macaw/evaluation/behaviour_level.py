"""The behaviour policies' level, measured as held-out evaluation measures a meta-trained policy:
deterministic episodes from the same start states (`held_out.evaluation_seed`), so that a
method's adapted return and the behaviour policy that made the task's data are paired (issue 18).

The policy is each task's last agent checkpoint from collection (`ROOT/<family>/_agents/`), i.e.
the agent at the end of its lifetime buffer; its mean action (SB3's `deterministic=True`). A
shared task-conditioned agent (`collect/shared.py`) is told the task's condition, as it was while
it collected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ray_macaw.collect.behaviour import LEARNED_ALGOS, make_agent
from ray_macaw.collect.behaviour import load_checkpoint as load_agent
from ray_macaw.collect.collector import AGENTS_DIR
from ray_macaw.collect.shared import TaskConditionedEnv, group_dir_name
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.storage import StoragePath
from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.evaluation.held_out import evaluation_seed, mean_stderr, rollout, stderr
from ray_macaw.tasks import get_task_family


def agent_dir(family_dir: StoragePath, task_id: int) -> StoragePath:
    """The folder of the agent that collected a task: its own, or its shared group's."""
    agents: StoragePath = family_dir / AGENTS_DIR
    for group in agents.glob("shared=*"):
        if task_id in group_of(group):
            return group
    return agents / f"task_id={task_id}"


def group_of(group_dir: StoragePath) -> list[int]:
    """The task ids of a shared agent's folder (`shared=0,2,4`)."""
    ids = [int(t) for t in group_dir.name.removeprefix("shared=").split(",")]
    assert group_dir.name == group_dir_name(ids)
    return ids


def last_checkpoint(family_dir: StoragePath, task_id: int) -> StoragePath:
    """The newest checkpoint of the agent that collected a task (saved with its last part)."""
    agents = agent_dir(family_dir, task_id)
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
    if algo not in LEARNED_ALGOS:
        raise DataError(
            f"the data was made by the '{algo}' collector, which has no behaviour agent",
            f"the behaviour level is defined for {' / '.join(LEARNED_ALGOS)} collections",
            data.family_dir,
        )
    tasks = get_task_family(family, seed=data.manifest.family_seed)
    shared = bool(collector.get("shared_agents"))
    per_task: dict[str, dict[str, Any]] = {}
    for task_id in task_ids:
        env = tasks.make_env(task_id)
        # The agent's input: the task's observation, plus its condition for a shared agent.
        agent_env = TaskConditionedEnv(tasks, [task_id], {}, 1, {task_id: 0}) if shared else env
        agent = make_agent(algo, agent_env, collector["hyperparameters"], seed=0, device="cpu")
        load_agent(agent, last_checkpoint(data.family_dir, task_id))
        condition = tasks.condition(task_id) if shared else None

        def policy(
            obs: torch.Tensor, agent: Any = agent, condition: Any = condition
        ) -> torch.Tensor:
            x = obs.numpy() if condition is None else np.concatenate([obs.numpy(), condition])
            action, _ = agent.predict(x, deterministic=True)
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
