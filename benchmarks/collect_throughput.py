"""Collector overhead: env-steps/s of a collection (SB3 agent + streaming Parquet writer +
checkpoints) against the same SB3 agent's `learn()` alone, same task, same run.

Both run in this process, one after the other, with one torch thread, twice each (best kept).
Prints one JSON line. Usage: python benchmarks/collect_throughput.py [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace

import torch

from ray_macaw.collect.behaviour import make_agent
from ray_macaw.collect.collector import TaskCollection
from ray_macaw.collect.config import CollectConfig
from ray_macaw.tasks import get_task_family

CASES = {"cheetah-dir": {"learning_starts": 500}, "point-robot": {}}


def sb3_alone(config: CollectConfig, steps: int) -> float:
    """Steps/s of `learn()` with SB3's own buffer and no streaming."""
    env = get_task_family(config.family).make_env(0)
    algo = config.algo or "sac"
    agent = make_agent(algo, env, config.hyperparameters, config.task_seed(0), "cpu")
    start = time.perf_counter()
    agent.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def collector(config: CollectConfig, steps: int) -> float:
    """Steps/s of a full task collection into a fresh root."""
    with tempfile.TemporaryDirectory() as root:
        run = TaskCollection(replace(config, root=root), 0, *_dims(config.family))
        start = time.perf_counter()
        run.run()
        return steps / (time.perf_counter() - start)


def _dims(family: str) -> tuple[int, int]:
    env = get_task_family(family).make_env(0)
    return env.observation_space.shape[0], env.action_space.shape[0]  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    figures = {}
    for family, overrides in CASES.items():
        config = CollectConfig(
            family=family,
            root="unused",
            tasks="0",
            steps=args.steps,
            algo="sac",
            hyperparameters=overrides,
            rows_per_part=args.steps // 3,
        ).resolved()
        alone, streamed = [], []
        for _ in range(2):
            alone.append(sb3_alone(config, args.steps))
            streamed.append(collector(config, args.steps))
        best_alone, best_streamed = max(alone), max(streamed)
        figures[family] = {
            "sb3_learn_steps_per_s": round(best_alone, 1),
            "collector_steps_per_s": round(best_streamed, 1),
            "ratio_collector_over_sb3": round(best_streamed / best_alone, 3),
            "overhead_percent": round(100 * (1 - best_streamed / best_alone), 1),
        }
    print(
        json.dumps(
            {
                "benchmark": "collect_throughput",
                "steps": args.steps,
                "machine": f"{platform.machine()}, 1 torch thread, CPU",
                "results": figures,
                "target_overhead_percent_max": 10,
            }
        )
    )


if __name__ == "__main__":
    main()
