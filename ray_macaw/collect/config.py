"""Settings of a collection run, with per-family defaults from appendix D.2 and validation."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ray_macaw.collect.behaviour import ALGOS, LEARNED_ALGOS, default_hyperparameters
from ray_macaw.errors import RayMacawError, unknown_name
from ray_macaw.tasks import FAMILIES, TaskFamily

# Lifetime buffer per task (appendix D.2); point-robot is the fast family (not in the paper).
DEFAULT_STEPS = {
    "ml45": 5_000_000,
    "cheetah-vel": 2_500_000,
    "cheetah-dir": 2_500_000,
    "ant-dir": 2_000_000,
    "walker-params": 1_000_000,
    "point-robot": 3_000,
}
for _variant in ("ml45-goal", "ml45-fixed-stick", "ml45-authors"):  # ML45's options
    DEFAULT_STEPS[_variant] = DEFAULT_STEPS["ml45"]
# SAC everywhere but Cheetah-Vel, where the paper used TD3 "as it proved more stable".
DEFAULT_ALGO = {"cheetah-vel": "td3"}


class CollectConfigError(RayMacawError, ValueError):
    """An impossible collection setting."""


@dataclass(frozen=True)
class CollectConfig:
    """One collection run: which tasks, how much data, which behaviour policy, which resources.

    Attributes:
        family: Task family name.
        root: Data root; data goes to `<root>/<family>/`.
        tasks: 'all', 'train', 'test', or ids and ranges such as '0-4,7'.
        split: Split used to resolve 'train' / 'test' (the family's default when None).
        steps: Lifetime transitions per task (appendix D.2 default of the family when None).
        algo: 'sac', 'td3', 'random' or 'noisy-init' (TD3 for cheetah-vel, else SAC, when None).
        hyperparameters: Overrides of the behaviour policy's settings.
        seed: Base seed; each task's seed derives from (seed, task id).
        family_seed: Seed of the family's task parameters.
        gamma: Discount of the stored MC returns and terminal discounts.
        bootstrap_after_termination: Store g = gamma^(L-t) also after true terminations, as the
            authors' data did (spec §4.1); False stores g = 0 there.
        rows_per_part: Transitions per Parquet part (also the checkpoint cadence).
        num_cpus_per_task: CPUs each collector actor reserves.
        num_gpus_per_task: GPUs each collector actor reserves (the agent trains on CUDA if > 0).
        max_concurrent: At most this many tasks at once (None: as many as resources allow).
        max_retries: Times a task whose actor died is restarted (it resumes from its last part).
        shared_agents: 0: one behaviour agent per task. N > 0: N task-conditioned agents, each
            shared by every N-th selected task (`shared.py`); resume with the same N and tasks.
    """

    family: str
    root: str
    tasks: str = "all"
    split: str | None = None
    steps: int | None = None
    algo: str | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    family_seed: int = 0
    gamma: float = 0.99
    bootstrap_after_termination: bool = True
    rows_per_part: int = 100_000
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0
    max_concurrent: int | None = None
    max_retries: int = 3
    shared_agents: int = 0

    def resolved(self) -> CollectConfig:
        """Defaults filled in and every setting checked."""
        if self.family not in FAMILIES:
            raise unknown_name("task family", self.family, FAMILIES)
        algo = self.algo or DEFAULT_ALGO.get(self.family, "sac")
        if algo not in ALGOS:
            raise unknown_name("behaviour algorithm", algo, ALGOS)
        defaults = default_hyperparameters(self.family, algo)
        unknown = sorted(set(self.hyperparameters) - set(defaults))
        if unknown:
            raise unknown_name(f"{algo} hyperparameter", unknown[0], defaults)
        for key, value in self.hyperparameters.items():
            _check_hyperparameter(algo, key, value, defaults[key])
        config = replace(
            self,
            algo=algo,
            steps=self.steps or DEFAULT_STEPS[self.family],
            hyperparameters={**defaults, **self.hyperparameters},
        )
        config._check_numbers()
        return config

    def _check_numbers(self) -> None:
        checks = [
            (self.steps is not None and self.steps > 0, "steps must be positive", "--steps 3000"),
            (self.rows_per_part > 0, "rows_per_part must be positive", "e.g. 100000"),
            (self.num_cpus_per_task > 0, "num_cpus_per_task must be positive", "e.g. 1"),
            (self.num_gpus_per_task >= 0, "num_gpus_per_task cannot be negative", "use 0"),
            (
                self.max_concurrent is None or self.max_concurrent > 0,
                "max_concurrent must be positive",
                "omit it to run as many as resources allow",
            ),
            (0.0 <= self.gamma <= 1.0, "gamma must lie in [0, 1]", "use 0.99"),
            (self.max_retries >= 0, "max_retries cannot be negative", "use 0 to never retry"),
            (self.shared_agents >= 0, "shared_agents cannot be negative", "use 0 for per-task"),
            (
                self.shared_agents == 0 or self.algo in LEARNED_ALGOS,
                f"shared agents need a learning behaviour policy, not '{self.algo}'",
                f"use --algo one of {', '.join(LEARNED_ALGOS)}, or --shared-agents 0",
            ),
        ]
        for ok, problem, fix in checks:
            if not ok:
                raise CollectConfigError(problem, fix)

    def collector_record(self) -> dict[str, Any]:
        """What the manifest records: settings that shape the data (must match on resume)."""
        record = {
            "algo": self.algo,
            "steps": self.steps,
            "seed": self.seed,
            "hyperparameters": dict(self.hyperparameters),
        }
        if self.shared_agents:  # absent for per-task agents: roots written before stay valid
            record["shared_agents"] = self.shared_agents
            record["conditioning"] = (
                "one agent per group of tasks sees TaskFamily.condition(task) appended to its "
                "observation; stored observations exclude it"
            )
        return record

    def units(self, task_ids: Sequence[int]) -> list[list[int]]:
        """What one collector actor collects: a task, or a shared agent's group of tasks (every
        N-th of the selected tasks, so each group spans the family's parameter range)."""
        ordered = sorted(task_ids)
        if not self.shared_agents:
            return [[t] for t in ordered]
        if self.shared_agents > len(ordered):
            raise CollectConfigError(
                f"--shared-agents {self.shared_agents} is more than the {len(ordered)} "
                "selected tasks",
                f"use at most {len(ordered)}",
            )
        return [ordered[g :: self.shared_agents] for g in range(self.shared_agents)]

    def task_seed(self, task_id: int) -> int:
        """A task's seed, derived from (seed, task id)."""
        return int(np.random.SeedSequence([self.seed, task_id]).generate_state(1)[0])


# Behaviour settings that may be zero or negative (SB3: gradient_steps -1 = as many as steps).
_MAY_BE_ZERO = {"learning_starts", "tau", "gamma", "ent_coef", "action_noise_sigma"}
_IN_UNIT = {"tau", "gamma"}


def _check_hyperparameter(algo: str, key: str, value: Any, default: Any) -> None:
    """Refuse a `--set` value of the wrong type or range before it reaches the manifest."""
    integer = isinstance(value, int) and not isinstance(value, bool)
    number = integer or isinstance(value, float)
    if isinstance(default, list):
        ok = isinstance(value, list) and bool(value)
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    elif isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        minimum = -1 if key == "gradient_steps" else 0
        ok = integer and value >= minimum
    elif isinstance(default, float):
        ok = number and value >= 0
    else:  # a string setting (ent_coef 'auto_0.1' may also be a number)
        ok = isinstance(value, str) or (number and value >= 0)
    if ok and number and key not in _MAY_BE_ZERO and key != "gradient_steps":
        ok = value > 0
    if ok and key in _IN_UNIT:
        ok = 0 <= value <= 1
    if not ok:
        example = json.dumps(default).replace(" ", "")
        raise CollectConfigError(
            f"{algo} hyperparameter {key}={json.dumps(value)} is not a valid value",
            f"give e.g. --set {key}={example} (the default)",
        )


def parse_tasks(spec: str, family: TaskFamily, split: str | None = None) -> list[int]:
    """Task ids from 'all', 'train', 'test' or a list of ids and ranges ('0-4,7')."""
    if spec == "all":
        return list(range(family.num_tasks))
    if spec in ("train", "test"):
        chosen = family.split(split)
        return sorted(set(chosen.train if spec == "train" else chosen.test))
    ids: list[int] = []
    for part in spec.split(","):
        ids.extend(_parse_range(part.strip(), spec))
    for task_id in ids:
        family.task(task_id)  # unknown ids raise with the valid range
    return sorted(set(ids))


def _parse_range(part: str, spec: str) -> Sequence[int]:
    try:
        if "-" in part:
            first, last = (int(x) for x in part.split("-", 1))
            if last < first:
                raise ValueError
            return range(first, last + 1)
        return [int(part)]
    except ValueError:
        raise CollectConfigError(
            f"cannot read task selection '{spec}'",
            "use all, train, test, or ids and ranges such as 0-4,7",
        ) from None
