"""Offline PEARL's training step at appendix Table 2's sizes, against rlkit's structure from the
same run, on one core.

Sizes: Cheetah observations (20) and actions (6), 3 x 300 policy / Q / V networks, a 3 x 200
encoder, latent 5, 10 tasks x 256 SAC rows and 10 x 100 context rows per step (Table 2). The
baseline is the same step with rlkit's full backward passes (every network's gradients computed,
the unstepped ones discarded); ours computes only the stepped networks' (`pearl/losses.py`
`_apply`). Both variants start from one seed and must end bit-identical (`identical`). The step's
matrix-product GFLOP are counted and the core's rate for its dominant product measured, so
`possible` is the step's time were its products its only work. Steps of the two variants
alternate, so a load change on a shared machine hits both.

Usage: python benchmarks/pearl_step.py [--steps 20] [--warmup 3] [--core 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
from _common import log, machine

from ray_macaw.data import columns as C
from ray_macaw.pearl import PEARLModel, PEARLModelConfig, SACConfig, losses, meta_batch_step

OBS_DIM, ACT_DIM, TASKS, ROWS, CONTEXT_ROWS = 20, 6, 10, 256, 100
LRS = {"policy": 3e-4, "qf1": 3e-4, "qf2": 3e-4, "vf": 3e-4, "context": 3e-4}
NETWORKS = {"policy": "policy", "qf1": "qf1", "qf2": "qf2", "vf": "vf", "context": "encoder"}


def full_backward(loss, optimizers, names, model) -> bool:
    """rlkit's `_take_step` stage: backward into every network, step the named optimizers."""
    if not torch.isfinite(loss):
        return False
    model.zero_grad(set_to_none=True)
    loss.backward()
    for name in names:
        optimizers[name].step()
    return True


def batch(rows: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """(tasks, rows, ...) random transitions."""
    shape = (TASKS, rows)
    return {
        C.OBS: torch.randn(*shape, OBS_DIM, generator=generator),
        C.ACTIONS: torch.rand(*shape, ACT_DIM, generator=generator) * 2 - 1,
        C.REWARDS: torch.randn(*shape, generator=generator),
        C.NEXT_OBS: torch.randn(*shape, OBS_DIM, generator=generator),
        C.TERMINATED: torch.zeros(*shape),
    }


def make_step(apply):
    """A step function of a fresh seed-0 model whose stages back-propagate with `apply`."""
    torch.manual_seed(0)
    config = PEARLModelConfig(OBS_DIM, ACT_DIM, (-1.0,) * ACT_DIM, (1.0,) * ACT_DIM)
    model = PEARLModel(config)
    optimizers = {
        name: torch.optim.Adam(getattr(model, NETWORKS[name]).parameters(), lr=lr)
        for name, lr in LRS.items()
    }
    data = torch.Generator().manual_seed(1)
    noise = torch.Generator().manual_seed(2)

    def step() -> None:
        contexts, rows = batch(CONTEXT_ROWS, data), batch(ROWS, data)
        state = torch.get_rng_state()
        torch.set_rng_state(noise.get_state())  # each variant draws its own, identical noise
        original, losses._apply = losses._apply, apply
        try:
            meta_batch_step(model, optimizers, contexts, rows, SACConfig())
        finally:
            losses._apply = original
            noise.set_state(torch.get_rng_state())
            torch.set_rng_state(state)

    return step, model


def gemm_rate() -> float:
    """GFLOP/s of the step's dominant product, (2,560 x 300) @ (300 x 300), warm, best of 5."""
    a, b = torch.randn(TASKS * ROWS, 300), torch.randn(300, 300)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(20):
            a @ b
        best = min(best, (time.perf_counter() - start) / 20)
    return 2 * a.numel() * b.shape[1] / best / 1e9


def matmul_gflop(step) -> float:
    """Matrix-product GFLOP of one call of `step` (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--core", type=int, default=0, help="the CPU core to run on")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    torch.set_num_threads(1)
    variants = {"ours": make_step(losses._apply), "rlkit_full_backward": make_step(full_backward)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.warmup + args.steps):
        for name, (step, _) in variants.items():
            start = time.perf_counter()
            step()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
        log(f"step {i + 1}/{args.warmup + args.steps}")
    (ours, model), (_, baseline_model) = variants["ours"], variants["rlkit_full_backward"]
    identical = all(
        torch.equal(a, b)
        for a, b in zip(
            model.state_dict().values(), baseline_model.state_dict().values(), strict=True
        )
    )
    seconds = {name: statistics.median(t) for name, t in times.items()}
    gflop, rate = matmul_gflop(ours), gemm_rate()
    print(
        json.dumps(
            {
                "benchmark": "pearl_step",
                "sizes": {
                    "tasks": TASKS,
                    "rows": ROWS,
                    "context_rows": CONTEXT_ROWS,
                    "hidden": [300, 300, 300],
                    "encoder_hidden": [200, 200, 200],
                },
                "seconds_per_step": {k: round(v, 4) for k, v in seconds.items()},
                "speedup_over_rlkit_full_backward": round(
                    seconds["rlkit_full_backward"] / seconds["ours"], 3
                ),
                "identical": identical,
                "gflop_per_step": round(gflop, 2),
                "gemm_gflops": round(rate, 1),
                "possible_seconds_per_step": round(gflop / rate, 4),
                "steps": args.steps,
                "core": args.core,
                "machine": machine(("torch",)),
            }
        )
    )
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
