"""Meta-step speed and peak memory against a baseline from the same run, on one core.

The baseline is the reference structure: a per-task loop with plain autograd (adapted copies of
every tensor, `low_rank_wt=False`) and torch's default per-tensor Adam, as the authors' `higher`
loop runs. Configurations (spec §10): the standard one (Cheetah sizes, weight-transform layers
3 x 100, latent 100) and the bias-transform ablation at width 100 and 725 (spec §2.3); 5 tasks,
batches of 256, one inner step, second order, the outer Adam steps included. Each variant runs in
its own process, pinned to one core with one torch thread, so its peak RSS is its own. Each
variant's matrix-product GFLOP per step are counted, and the core's peak rate for the step's
product shapes is measured in the same run, so every acceptance check also says what the
variant's products alone would allow (`possible`). Prints one JSON line with medians, ratios and
the issue-21 acceptance checks.

Usage: python benchmarks/meta_step.py [--steps 20] [--warmup 3] [--core 0] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

STANDARD = {"layer": "weight_transform", "width": 100}
VARIANTS = {
    "standard": {**STANDARD, "vectorize": True, "low_rank_wt": True},
    "standard_loop": {**STANDARD, "vectorize": False, "low_rank_wt": True},
    "standard_plain_loop": {**STANDARD, "vectorize": False, "low_rank_wt": False, "ref": True},
    "bias_transform_100": {"layer": "bias_transform", "width": 100, "vectorize": True},
    "bias_transform_100_plain_loop": {
        "layer": "bias_transform",
        "width": 100,
        "vectorize": False,
        "ref": True,
    },
    "bias_transform_725": {"layer": "bias_transform", "width": 725, "vectorize": True},
    "bias_transform_725_plain_loop": {
        "layer": "bias_transform",
        "width": 725,
        "vectorize": False,
        "ref": True,
    },
}
# Issue 21's acceptance: (variant, s per meta-step at most) and (variant, its baseline, speed-up).
MAX_SECONDS = {"standard": 0.045, "bias_transform_100": 0.025}
MIN_SPEEDUP = {
    "standard": ("standard_plain_loop", 10.0),
    "bias_transform_725": ("bias_transform_725_plain_loop", 1.5),
}
MAX_PEAK_RSS_MB = {"standard": 550.0}


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_batch(seed: int, obs_dim: int = 20, act_dim: int = 6) -> dict:
    """5 tasks x 256 rows of random transitions in the batch columns."""
    import torch

    from ray_macaw.data.columns import ACTIONS, MC_RETURN, OBS, TERMINAL_DISCOUNT, TERMINAL_OBS

    g = torch.Generator().manual_seed(seed)
    return {
        OBS: torch.randn(5, 256, obs_dim, generator=g),
        ACTIONS: torch.rand(5, 256, act_dim, generator=g) * 2 - 1,
        MC_RETURN: torch.randn(5, 256, generator=g),
        TERMINAL_OBS: torch.randn(5, 256, obs_dim, generator=g),
        TERMINAL_DISCOUNT: torch.rand(5, 256, generator=g),
    }


def make_step(spec: dict):
    """A zero-argument meta-step (meta-gradient + Adam) of one variant, and its model."""
    import torch

    from ray_macaw.macaw import (
        InnerLoopConfig,
        MACAWModel,
        ModelConfig,
        build_optimizers,
        meta_backward,
    )

    torch.manual_seed(0)
    model = MACAWModel(
        ModelConfig(
            obs_dim=20,
            act_dim=6,
            hidden=(spec["width"],) * 3,
            policy_layer=spec["layer"],
            value_layer=spec["layer"],
        )
    )
    if spec.get("ref"):  # the reference structure's per-tensor Adam
        learned = [*model.value_lr.parameters(), *model.policy_lr.parameters(), model.adv_coef_raw]
        optimisers = [
            torch.optim.Adam(model.value.parameters(), lr=1e-5),
            torch.optim.Adam(model.policy.parameters(), lr=1e-4),
            torch.optim.Adam(learned, lr=1e-3),
        ]
    else:
        optimisers = list(build_optimizers(model, 1e-5, 1e-4, 1e-3).values())
    config = InnerLoopConfig(low_rank_wt=spec.get("low_rank_wt", True))
    batches = [(synthetic_batch(2 * i), synthetic_batch(2 * i + 1)) for i in range(4)]
    count = [0]

    def step() -> None:
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        inner, outer = batches[count[0] % len(batches)]
        count[0] += 1
        meta_backward(model, inner, outer, config, 35, vectorize=spec["vectorize"])
        for opt in optimisers:
            opt.step()

    return step, model


def time_steps(step, steps: int, warmup: int) -> dict:
    """Median wall and CPU seconds per call of `step` after `warmup` calls."""
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    median = statistics.median(wall)
    return {
        "seconds_per_step": round(median, 4),
        "cpu_seconds_per_step": round(statistics.median(cpu), 4),
        "steps_per_s": round(1 / median, 2),
    }


def run_variant(name: str, steps: int, warmup: int) -> dict:
    """Time one variant in this process (one torch thread)."""
    import torch

    from ray_macaw.runtime.memory import retain_freed_memory

    torch.set_num_threads(1)
    retain_freed_memory()  # as every training process does (MACAW.setup, replicas)
    spec = VARIANTS[name]
    if spec["width"] > 100:  # width 725 is ~20x the work: fewer steps keep the run short
        steps, warmup = max(3, steps // 4), 1
    step, _ = make_step(spec)
    timing = {**time_steps(step, steps, warmup), "peak_rss_mb": round(rss_mb(), 1)}
    gflop = matmul_gflop(step)
    return {
        **timing,
        "gflop_per_step": gflop,
        "gflops": round(gflop / timing["seconds_per_step"], 1),
    }


def matmul_gflop(step) -> float:
    """Matrix-product GFLOP of one call of `step` (torch's FLOP counter: mm, bmm, addmm...)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return round(counter.get_total_flops() / 1e9, 3)


# The meta-step's dominant products at their real shapes (batches of 256 rows, 5 tasks), and how
# many times each is timed per round.
PEAK_SHAPES = {
    "width_100": ((5, 256, 100), (5, 100, 100), 200),
    "width_725": ((256, 725), (725, 725), 20),
}


def gemm_peak() -> dict:
    """GFLOP/s of each `PEAK_SHAPES` product on this core, warm, best of 5 rounds: no step runs
    its products faster, so (GFLOP per step) / (this rate) bounds its time from below."""
    import torch

    torch.set_num_threads(1)
    rates = {}
    for name, (a_shape, b_shape, repeats) in PEAK_SHAPES.items():
        a, b = torch.randn(*a_shape), torch.randn(*b_shape)
        best = math.inf
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                torch.matmul(a, b)
            best = min(best, (time.perf_counter() - start) / repeats)
        rates[name] = round(2 * a.numel() * b.shape[-1] / best / 1e9, 1)
    return rates


def run_isolated(args: list[str], core: int) -> dict:
    """This script in a fresh process pinned to `core`; its last stdout line as JSON."""
    command = [sys.executable, __file__, *args]
    out = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def floor_seconds(result: dict, width: int, peak: dict) -> float:
    """A variant's products alone at this core's peak rate for their width: its lowest
    possible time, whatever else the step did."""
    return result["gflop_per_step"] / peak[f"width_{width}"]


def acceptance(results: dict, peak: dict) -> dict:
    """Issue 21's checks on the figures of this run; `possible` is each target's figure were the
    variant's products its only work, at the core's peak rate (`gemm_peak`)."""
    checks = {}
    for name, limit in MAX_SECONDS.items():
        got = results[name]["seconds_per_step"]
        floor = floor_seconds(results[name], VARIANTS[name]["width"], peak)
        checks[f"{name}_at_most_{limit}s"] = {
            "value": got,
            "met": got <= limit,
            "possible": round(floor, 4),
        }
    for name, (base, factor) in MIN_SPEEDUP.items():
        base_seconds = results[base]["seconds_per_step"]
        ratio = base_seconds / results[name]["seconds_per_step"]
        best = base_seconds / floor_seconds(results[name], VARIANTS[name]["width"], peak)
        checks[f"{name}_{factor}x_over_{base}"] = {
            "value": round(ratio, 2),
            "met": ratio >= factor,
            "possible": round(best, 2),
        }
    for name, limit in MAX_PEAK_RSS_MB.items():
        got = results[name]["peak_rss_mb"]
        checks[f"{name}_peak_rss_at_most_{limit}mb"] = {"value": got, "met": got <= limit}
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="the CPU core every variant runs on")
    parser.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants to run")
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak:
        print(json.dumps(gemm_peak()))
        return
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.steps, args.warmup)))
        return
    import torch

    names = args.only or list(VARIANTS)
    timing = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    results = {n: run_isolated(["--variant", n, *timing], args.core) for n in names}
    peak = run_isolated(["--peak"], args.core)
    report = {
        "benchmark": "meta_step",
        "config": "5 tasks, batch 256, 1 inner step, 2nd order, Adam; one core, one thread",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, core {args.core}, CPU",
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "gemm_peak_gflops": peak,
        "variants": results,
    }
    if set(VARIANTS) <= set(results):
        report["acceptance"] = acceptance(results, peak)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
