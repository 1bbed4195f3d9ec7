"""End-to-end training rate: meta-steps/s through `Algorithm.train()` against the bare meta-step.

Same run, same process, one core, one torch thread: the standard configuration (Cheetah sizes,
weight-transform 3 x 100, 5 tasks, batches of 256, second order) as
- `bare`: `meta_step.py`'s meta-gradient + Adam on fixed synthetic batches;
- `training_step`: the MACAW Algorithm's `training_step()` (sampling, meta-gradient, Adam,
  metrics) with 0 inner-loop workers;
- `train`: `Algorithm.train()` (RLlib's iteration: result assembly, metrics reduction), with
  evaluation off.
The data is synthetic, Cheetah-sized, in the real format. Prints one JSON line; issue 21 asks for
`train` at least 85% of the bare rate.

Usage: python benchmarks/train_rate.py [--steps 20] [--warmup 3] [--core 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _common import log, machine, write_root
from meta_step import STANDARD, make_step, time_steps


def algorithm(root: str):
    """The MACAW Algorithm on `root`: standard config, 0 workers, no evaluation."""
    from ray_macaw import MACAWConfig

    config = (
        MACAWConfig()
        .environment(family="cheetah-vel", train_tasks=list(range(8)), test_tasks=[8, 9])
        .offline_data(root=root)
        .inner_loop_workers(num_workers=0)
        .evaluation(evaluation_interval=None)
        .debugging(seed=0)
    )
    return config.build_algo()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    figures = {}
    with tempfile.TemporaryDirectory() as root:
        write_root(root, "cheetah", dict.fromkeys(range(10), 20_000))
        algo = algorithm(root)
        torch.set_num_threads(1)  # RLlib's set-up may change it
        bare, _ = make_step({**STANDARD, "vectorize": True, "low_rank_wt": True})
        runs = {"bare": bare, "training_step": algo.training_step, "train": algo.train}
        for name, fn in runs.items():
            log(f"timing {name}")
            figures[name] = time_steps(fn, args.steps, args.warmup)
        algo.stop()
    ray.shutdown()
    base = figures["bare"]["seconds_per_step"]
    for entry in figures.values():
        entry["rate_over_bare"] = round(base / entry["seconds_per_step"], 3)
    print(
        json.dumps(
            {
                "benchmark": "train_rate",
                "machine": machine(("ray",)),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "figures": figures,
                "train_at_least_85_percent_of_bare": figures["train"]["rate_over_bare"] >= 0.85,
            }
        )
    )


if __name__ == "__main__":
    main()
