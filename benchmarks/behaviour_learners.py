"""Env steps/s of the behaviour learners on one core, Cheetah-Vel task 20, learning phase.

Each candidate runs in its own process pinned to one core (`taskset -c CORE`), after a warm-up
that includes SBX's compilation; the baseline is SB3 SAC measured in the same run. Prints one
JSON line: steps/s per candidate and its ratio to the baseline.

    python benchmarks/behaviour_learners.py [--core 0] [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CANDIDATES = {
    "sb3-sac": ("sac", {}),
    "sbx-sac": ("sbx-sac", {}),
    "sbx-td3": ("sbx-td3", {}),
    "sbx-sac-utd0.5": ("sbx-sac", {"train_freq": 8, "gradient_steps": 4}),
}


def measure(algo: str, overrides: dict, steps: int) -> float:
    """Steps/s of one learner after 1,000 random steps and a 200-step warm-up."""
    from ray_macaw.collect.behaviour import default_hyperparameters, make_agent
    from ray_macaw.tasks import get_task_family

    env = get_task_family("cheetah-vel").make_env(20)
    hp = {**default_hyperparameters("cheetah-vel", algo), "learning_starts": 1000, **overrides}
    agent = make_agent(algo, env, hp, seed=0, device="cpu")
    agent.learn(1200)
    start = time.perf_counter()
    agent.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(1)
        algo, overrides = CANDIDATES[args.one]
        print(measure(algo, overrides, args.steps))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rates = {}
    for name in CANDIDATES:
        cmd = ["taskset", "-c", str(args.core), sys.executable, __file__, "--one", name]
        run = [*cmd, "--steps", str(args.steps)]
        out = subprocess.run(run, env=env, check=True, capture_output=True, text=True).stdout
        rates[name] = round(float(out.strip().splitlines()[-1]), 1)
    base = rates["sb3-sac"]
    ratios = {k: round(v / base, 2) for k, v in rates.items()}
    doc = {"core": args.core, "steps": args.steps, "steps_per_s": rates, "ratio": ratios}
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
