"""Meta-step time and bytes moved per step with 0, 1 and 2 inner-loop workers, one run (issue 16).

The MACAW Algorithm's `training_step` (standard networks: Cheetah sizes, weight-transform 3 x 100,
latent 100, task batch 5, batches of 256, second order, Adam) on a synthetic Cheetah-shaped root in
the real format. 0 workers: the driver computes the step vectorised with all the machine's threads.
N workers: N data-parallel replicas of cores / N CPUs (and torch threads) each, which all-reduce
their gradients over gloo and step alike. The 0- and 2-worker steps (and the driver's step with one
torch thread) are taken in turn, one of each per round, so that they meet the same load; the
1-worker run follows (its replica needs the CPUs the 2 hold). Bytes per step: what each replica
sends into the all-reduce (the gradients but the transform matrices', has-a-gradient flags,
non-finite count) and what a ring all-reduce sends per replica, 2 (N - 1) / N of it; the
transform matrices' gradient factors each replica all-gathers (and a ring all-gather's N - 1
times that); the pickled step arguments (task and row
indices) and answers (stats) that travel through Ray; against the design before issue 16 (the
weights to every worker, every worker's gradient back), sized from the same model. For the
projection to more workers (benchmarks/RESULTS.md), the per-task meta-gradient, Adam and one all-
reduce are timed on their own: compute with one torch thread in this process, the all-reduce
between the replicas.

Ray runs its workers at niceness 15 and the driver at 0; on a machine other processes load, the
replicas would get less CPU than the 0-worker driver (and a replica with 2 torch threads was
seen 40x slower, its threads waiting on each other), so by default the workers run at the
driver's niceness, 0 (`--worker-niceness 15`: Ray's default). Prints one JSON line; logs go to
stderr.

Usage: python benchmarks/workers.py [--tasks 8] [--rows 20000] [--steps 10] [--warmup 2]
    [--worker-niceness 0]
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


def step_seconds(algo: Any, threads: int | None = None) -> float:
    """One `training_step`, with the driver's torch threads set to `threads` (when given)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    start = time.perf_counter()
    algo.training_step()
    seconds = time.perf_counter() - start
    torch.set_num_threads(before)
    return seconds


def interleaved(variants: dict[str, tuple[Any, int | None]], steps: int, warmup: int) -> dict:
    """Steps of the variants taken in turn (each round one step of each), so that they meet the
    same load from other processes; per variant the median and minimum, and per round each
    variant's time over the first's."""
    for _ in range(warmup):
        for algo, threads in variants.values():
            step_seconds(algo, threads)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(steps):
        for name, (algo, threads) in variants.items():
            times[name].append(step_seconds(algo, threads))
    first = next(iter(variants))
    return {
        name: {
            "s_per_step_median": round(statistics.median(t), 4),
            "s_per_step_min": round(min(t), 4),
            "median_ratio_to_" + first: round(
                statistics.median(a / b for a, b in zip(t, times[first], strict=True)), 3
            ),
        }
        for name, t in times.items()
    }


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
    payload = ray.get(algo.inner_workers[0].collective_bytes.remote())
    return {
        "all_reduce_payload_per_replica": payload["all_reduce"],
        "ring_all_reduce_sent_per_replica": round(
            2 * (workers - 1) / workers * payload["all_reduce"]
        ),
        "factor_all_gather_payload_per_replica": payload["all_gather"],
        "ring_all_gather_sent_per_replica": (workers - 1) * payload["all_gather"],
        "step_arguments_through_ray": sum(len(cloudpickle.dumps((s, 35.0, False))) for s in shares),
        "step_answers_through_ray": sum(len(cloudpickle.dumps(r)) for r in results),
        "weights_sent": 0,
        "before_issue_16_total": workers * (weights + gradient),
        **before,
    }


def all_reduce_seconds(algo: Any, repeats: int = 5) -> float:
    """Median time of the step's collectives between the replicas: one all-reduce of the dense
    buffer and one all-gather of the last step's factor payload (`factor_gather.py`)."""
    import ray

    def once(replica: Any) -> float:
        import torch
        import torch.distributed as dist

        buffer = replica.reducer.flat.clone()
        factors = torch.zeros(replica.gatherer.sent_bytes // 4)
        received = [torch.empty_like(factors) for _ in range(dist.get_world_size())]
        start = time.perf_counter()
        dist.all_reduce(buffer)
        dist.all_gather(received, factors)
        return time.perf_counter() - start

    times = [
        max(ray.get([w.__ray_call__.remote(once) for w in algo.inner_workers]))
        for _ in range(repeats)
    ]
    return statistics.median(times)


def compute_seconds(algo: Any, repeats: int = 3) -> dict[str, float]:
    """One torch thread: the meta-gradient of 1 and of 5 tasks, and the Adam steps."""
    import torch

    from ray_macaw.algorithms.replica.workers import add_adam_step
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
    parser.add_argument("--worker-niceness", type=int, default=0)
    args = parser.parse_args()
    os.environ["RAY_worker_niceness"] = str(args.worker_niceness)  # read when Ray starts
    from ray_macaw.tasks import get_task_family

    split = get_task_family("cheetah-vel").split(None)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    results: dict[str, Any] = {}
    start_load = [round(x, 2) for x in os.getloadavg()]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as root:
        rows = {**dict.fromkeys(split.train[: args.tasks], args.rows), split.test[0]: 2000}
        write_root(root, "cheetah", rows)
        driver, two = build(root, args.tasks, 0), build(root, args.tasks, 2)
        timed = interleaved(
            {"0_workers": (driver, cores), "2_workers": (two, None),
             "0_workers_1_thread": (driver, 1)}, args.steps, args.warmup,
        )  # fmt: skip
        results["0_workers"] = {**timed["0_workers"], "bytes_per_step": bytes_per_step(driver, 0),
                                "compute_one_thread": compute_seconds(driver)}  # fmt: skip
        results["0_workers_1_thread"] = timed["0_workers_1_thread"]
        results["2_workers"] = {**timed["2_workers"], "bytes_per_step": bytes_per_step(two, 2),
                                "all_reduce_s": round(all_reduce_seconds(two), 4)}  # fmt: skip
        driver.stop()
        two.stop()  # its CPUs are the 1-worker run's
        one = build(root, args.tasks, 1)
        results["1_workers"] = {**interleaved({"1_workers": (one, None)}, args.steps,
                                              args.warmup)["1_workers"],
                                "bytes_per_step": bytes_per_step(one, 1)}  # fmt: skip
        one.stop()
        log(json.dumps(results))
    ray.shutdown()
    zero = results["0_workers"]["s_per_step_median"]
    ratios = {k: round(v["s_per_step_median"] / zero, 3) for k, v in results.items()}
    paired = results["2_workers"]["median_ratio_to_0_workers"]  # same rounds, same load
    two = results["2_workers"]["bytes_per_step"]
    print(json.dumps({
        "benchmark": "workers",
        "config": f"cheetah shape, standard MACAW networks, task batch 5, batches 256, "
                  f"{args.tasks} training tasks x {args.rows} rows (stride 7), "
                  f"{args.steps} timed steps after {args.warmup}; replicas of cores / N CPUs",
        "machine": {**machine(("torch", "ray")), "load_average_at_start": start_load,
                    "ray_worker_niceness": args.worker_niceness},
        "results": results,
        "ratio_to_0_workers": ratios,
        "acceptance": {
            "2_workers_at_most_1.3x_0_workers": paired <= MAX_RATIO_2_WORKERS,
            # at most what one all-reduce of the whole gradient would send, and no weights
            "bytes_at_most_one_all_reduce_and_no_weights": two["weights_sent"] == 0
            and two["ring_all_reduce_sent_per_replica"] + two["ring_all_gather_sent_per_replica"]
            <= two["gradient_from_each_worker"],
        },
    }))  # fmt: skip


if __name__ == "__main__":
    main()
