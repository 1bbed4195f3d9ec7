"""Meta-step time and bytes moved per step with 0, 1 and 2 inner-loop workers, one run (issue 16).

The MACAW Algorithm's `training_step` (standard networks: Cheetah sizes, weight-transform 3 x 100,
latent 100, task batch 5, batches of 256, second order, Adam) on a synthetic Cheetah-shaped root
in the real format. 0 workers: the driver computes the step vectorised with all the machine's
threads. N workers: N data-parallel replicas of cores / N CPUs (and torch threads) each, which
all-reduce their gradients over gloo and step alike. Bytes per step: what each replica sends into
the one all-reduce (gradient, has-a-gradient flags, non-finite count) and what a ring all-reduce
sends per replica, 2 (N - 1) / N of it; the pickled step arguments (task and row indices) and
answers (stats) that travel through Ray; against the design before issue 16 (the weights to every
worker, every worker's gradient back), sized from the same model. For the projection to more
workers (benchmarks/RESULTS.md), the per-task meta-gradient, Adam and one all-reduce are timed on
their own: compute with one torch thread in this process, the all-reduce between the replicas.
Prints one JSON line; logs go to stderr.

Usage: python benchmarks/workers.py [--tasks 8] [--rows 20000] [--steps 10] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

# Keep Ray on 127.0.0.1 (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from _common import log, machine, write_root

WORKERS = (0, 1, 2)
MAX_RATIO_2_WORKERS = 1.3  # issue 16: 2 workers at most 1.3x the 0-worker time


def build(root: str, tasks: int, workers: int) -> Any:
    from ray_macaw import MACAWConfig
    from ray_macaw.tasks import get_task_family

    split = get_task_family("cheetah-vel").split(None)
    cpus = (os.cpu_count() or 1) / max(workers, 1)
    return (
        MACAWConfig()
        .environment(family="cheetah-vel", train_tasks=list(split.train[:tasks]),
                     test_tasks=[split.test[0]])
        .offline_data(root=root)
        .inner_loop_workers(num_workers=workers, num_cpus_per_worker=cpus)
        .evaluation(evaluation_interval=0, at_start=False)
        .debugging(seed=0)
        .build_algo()
    )  # fmt: skip


def step_times(algo: Any, steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        algo.training_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        algo.training_step()
        times.append(time.perf_counter() - start)
    return times


def bytes_per_step(algo: Any, workers: int) -> dict[str, Any]:
    """What one step moves, with replicas; and what the design before issue 16 moved."""
    import ray
    from ray import cloudpickle

    from ray_macaw.data.batches import sample_requests

    model = algo.model  # rank 0's state (read once, outside the timed steps)
    weights = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    gradient = sum(p.numel() * p.element_size() for p in model.parameters())
    before = {"weights_to_each_worker": weights, "gradient_from_each_worker": gradient}
    if not workers:
        return {"before_issue_16_total": 0, **before}
    cfg = algo.config
    requests = sample_requests(algo.layout, algo.split.train, cfg.task_batch_size,
                               cfg.inner_batch_size, cfg.outer_batch_size, algo.rng)  # fmt: skip
    results = algo.pool.step(requests, 35.0, False)
    shares = algo.pool.log[-1].shares
    payload = ray.get(algo.inner_workers[0].all_reduce_bytes.remote())
    return {
        "all_reduce_payload_per_replica": payload,
        "ring_all_reduce_sent_per_replica": round(2 * (workers - 1) / workers * payload),
        "step_arguments_through_ray": sum(len(cloudpickle.dumps((s, 35.0, False))) for s in shares),
        "step_answers_through_ray": sum(len(cloudpickle.dumps(r)) for r in results),
        "weights_sent": 0,
        "before_issue_16_total": workers * (weights + gradient),
        **before,
    }


def all_reduce_seconds(algo: Any, repeats: int = 5) -> float:
    """Median time of one all-reduce of the step's buffer between the replicas."""
    import ray

    def once(replica: Any) -> float:
        import torch.distributed as dist

        buffer = replica.reducer.flat.clone()
        start = time.perf_counter()
        dist.all_reduce(buffer)
        return time.perf_counter() - start

    times = [
        max(ray.get([w.__ray_call__.remote(once) for w in algo.inner_workers]))
        for _ in range(repeats)
    ]
    return statistics.median(times)


def compute_seconds(algo: Any, repeats: int = 3) -> dict[str, float]:
    """One torch thread: the meta-gradient of 1 and of 5 tasks, and the Adam steps."""
    import torch

    from ray_macaw.algorithms.macaw.workers import add_adam_step
    from ray_macaw.data.batches import sample_requests

    cfg, threads = algo.config, torch.get_num_threads()
    torch.set_num_threads(1)
    requests = sample_requests(algo.layout, algo.split.train, 5, cfg.inner_batch_size,
                               cfg.outer_batch_size, algo.rng)  # fmt: skip
    out = {}
    for k in (1, 5):
        times = []
        for _ in range(repeats):
            algo.model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            algo.local.accumulate(requests[:k], 35.0)
            times.append(time.perf_counter() - start)
        out[f"meta_gradient_{k}_tasks_s"] = round(statistics.median(times), 4)
    start = time.perf_counter()
    for _ in range(repeats):
        add_adam_step(algo.model, algo.optimizers, None)
    out["adam_s"] = round((time.perf_counter() - start) / repeats, 4)
    torch.set_num_threads(threads)
    return out


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    from ray_macaw.tasks import get_task_family

    split = get_task_family("cheetah-vel").split(None)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    results: dict[str, Any] = {}
    start_load = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as root:
        rows = {**dict.fromkeys(split.train[: args.tasks], args.rows), split.test[0]: 2000}
        write_root(root, "cheetah", rows)
        for workers in WORKERS:
            algo = build(root, args.tasks, workers)
            times = step_times(algo, args.steps, args.warmup)
            entry = {"s_per_step_median": round(statistics.median(times), 4),
                     "s_per_step_min": round(min(times), 4),
                     "bytes_per_step": bytes_per_step(algo, workers)}  # fmt: skip
            if workers == 0:
                entry["compute_one_thread"] = compute_seconds(algo)
            if workers == 2:
                entry["all_reduce_s"] = round(all_reduce_seconds(algo), 4)
            results[f"{workers}_workers"] = entry
            log(f"{workers} workers: {json.dumps(entry)}")
            algo.stop()
    ray.shutdown()
    zero = results["0_workers"]["s_per_step_median"]
    ratios = {k: round(v["s_per_step_median"] / zero, 3) for k, v in results.items()}
    two = results["2_workers"]["bytes_per_step"]
    print(json.dumps({
        "benchmark": "workers",
        "config": f"cheetah shape, standard MACAW networks, task batch 5, batches 256, "
                  f"{args.tasks} training tasks x {args.rows} rows (stride 7), "
                  f"{args.steps} timed steps after {args.warmup}; replicas of cores / N CPUs",
        "machine": {**machine(("torch", "ray")), "load_average_at_start": start_load},
        "results": results,
        "ratio_to_0_workers": ratios,
        "acceptance": {
            "2_workers_at_most_1.3x_0_workers": ratios["2_workers"] <= MAX_RATIO_2_WORKERS,
            "bytes_at_most_one_all_reduce_and_no_weights": two["weights_sent"] == 0
            and two["ring_all_reduce_sent_per_replica"] <= two["all_reduce_payload_per_replica"],
        },
    }))  # fmt: skip


if __name__ == "__main__":
    main()
