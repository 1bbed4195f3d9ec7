"""Meta-step speed and peak memory: vectorised (vmap) vs per-task loop, in the same run.

Standard configuration at Cheetah sizes (spec §10): weight-transform layers, 3 x 100, latent 100,
5 tasks, batches of 256, one inner step, second order, plus the outer Adam steps. Each variant
runs in its own process so its peak RSS is its own. Then the MACAW Algorithm's meta-step with 0, 1
and 2 inner-loop worker actors on synthetic data in the real format. Prints one JSON line.

Usage: python benchmarks/meta_step.py [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

VARIANTS = {
    "vmap": {"vectorize": True, "low_rank_wt": True},
    "loop": {"vectorize": False, "low_rank_wt": True},
    "vmap_plain_autograd": {"vectorize": True, "low_rank_wt": False},
    "loop_plain_autograd": {"vectorize": False, "low_rank_wt": False},
}


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(name: str, steps: int, warmup: int) -> dict:
    """Time `steps` meta-steps of one variant in this process."""
    import torch

    from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS
    from ray_macaw.macaw import InnerLoopConfig, MACAWModel, ModelConfig, meta_backward

    torch.manual_seed(0)
    model = MACAWModel(ModelConfig(obs_dim=20, act_dim=6))
    optimisers = [
        torch.optim.Adam(model.value.parameters(), lr=1e-5),
        torch.optim.Adam(model.policy.parameters(), lr=1e-4),
        torch.optim.Adam(
            [*model.value_lr.parameters(), *model.policy_lr.parameters(), model.adv_coef_raw],
            lr=1e-3,
        ),
    ]
    config = InnerLoopConfig(low_rank_wt=VARIANTS[name]["low_rank_wt"])

    def batch(seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        return {
            OBS: torch.randn(5, 256, 20, generator=g),
            ACTIONS: torch.rand(5, 256, 6, generator=g) * 2 - 1,
            MC_RETURN: torch.randn(5, 256, generator=g),
            TERMINAL_OBS: torch.randn(5, 256, 20, generator=g),
            TERMINAL_DISCOUNT: torch.rand(5, 256, generator=g),
        }

    batches = [(batch(2 * i), batch(2 * i + 1)) for i in range(4)]
    baseline = rss_mb()

    def step(i: int) -> None:
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        inner, outer = batches[i % len(batches)]
        meta_backward(model, inner, outer, config, 35, vectorize=VARIANTS[name]["vectorize"])
        for opt in optimisers:
            opt.step()

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    seconds = (time.perf_counter() - start) / steps
    return {
        "seconds_per_step": round(seconds, 4),
        "steps_per_s": round(1 / seconds, 2),
        "peak_rss_mb": round(rss_mb(), 1),
        "peak_rss_over_setup_mb": round(rss_mb() - baseline, 1),
    }


def write_synthetic_root(root: str, tasks: int, rows: int) -> None:
    """Cheetah-sized random transitions in the real Parquet format (200-step episodes)."""
    import numpy as np

    from ray_macaw.data.shards import DatasetWriter
    from ray_macaw.tasks import get_task_family

    writer = DatasetWriter(root, get_task_family("cheetah-vel"), obs_dim=20, act_dim=6)
    rng = np.random.default_rng(0)
    for task_id in range(tasks):
        task_writer = writer.task_writer(task_id)
        for _ in range(rows // 200):
            obs = rng.normal(size=(201, 20)).astype(np.float32)
            task_writer.add_episode(
                obs[:-1],
                rng.uniform(-1, 1, (200, 6)),
                rng.normal(size=200),
                obs[1:],
                terminated=False,
            )
        task_writer.flush()


def worker_scaling(steps: int, warmup: int) -> dict:
    """Seconds per meta-step of the MACAW Algorithm with 0, 1 and 2 inner-loop workers."""
    import tempfile

    import ray

    from ray_macaw.algorithm import MACAWConfig

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    figures = {}
    with tempfile.TemporaryDirectory() as root:
        write_synthetic_root(root, tasks=10, rows=20_000)
        for workers in (0, 1, 2):
            config = (
                MACAWConfig()
                .environment(family="cheetah-vel", train_tasks=list(range(8)), test_tasks=[8, 9])
                .offline_data(root=root)
                .inner_loop_workers(num_workers=workers, num_cpus_per_worker=1)
                .debugging(seed=0)
            )
            algo = config.build_algo()
            for _ in range(warmup):
                algo.training_step()
            start = time.perf_counter()
            for _ in range(steps):
                algo.training_step()
            seconds = (time.perf_counter() - start) / steps
            algo.stop()
            figures[f"{workers}_workers"] = {
                "seconds_per_step": round(seconds, 4),
                "steps_per_s": round(1 / seconds, 2),
            }
    ray.shutdown()
    base = figures["0_workers"]["seconds_per_step"]
    for entry in figures.values():
        entry["speed_over_0_workers"] = round(base / entry["seconds_per_step"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variant", choices=[*sorted(VARIANTS), "workers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant == "workers":
        print(json.dumps(worker_scaling(args.steps, args.warmup)))
        return
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.warmup)))
        return
    import torch

    results = {}
    for name in [*VARIANTS, "workers"]:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--variant",
                name,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    per_step = {k: v["seconds_per_step"] for k, v in results.items() if k in VARIANTS}
    print(
        json.dumps(
            {
                "benchmark": "meta_step",
                "config": "cheetah WT 3x100 c=100, 5 tasks, batch 256, 1 inner step, 2nd order",
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
                "torch": torch.__version__,
                "variants": {k: v for k, v in results.items() if k != "workers"},
                "algorithm_worker_scaling": results["workers"],
                "ratio_vmap_over_loop": round(per_step["loop"] / per_step["vmap"], 2),
                "ratio_vmap_over_loop_plain_autograd": round(
                    per_step["loop_plain_autograd"] / per_step["vmap"], 2
                ),
                "authors_reference_seconds_per_step": 0.45,
                "ratio_vmap_over_authors_reference": round(0.45 / per_step["vmap"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
