"""Meta-step speed and peak memory: vectorised (vmap) vs per-task loop, in the same run.

Standard configuration at Cheetah sizes (spec §10): weight-transform layers, 3 x 100, latent 100,
5 tasks, batches of 256, one inner step, second order, plus the outer Adam steps. Each variant
runs in its own process so its peak RSS is its own. Prints one JSON line.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.warmup)))
        return
    import torch

    results = {}
    for name in VARIANTS:
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
    per_step = {k: v["seconds_per_step"] for k, v in results.items()}
    print(
        json.dumps(
            {
                "benchmark": "meta_step",
                "config": "cheetah WT 3x100 c=100, 5 tasks, batch 256, 1 inner step, 2nd order",
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
                "torch": torch.__version__,
                "variants": results,
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
