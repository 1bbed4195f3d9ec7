"""Meta-step time and driver memory as the training data grows, with inner-loop workers.

With inner-loop workers the driver holds no rows, so its memory should not grow with the data;
since issue 16 the held rows are only those the buffers can sample (stride 7: one in seven), in
the object store, mapped by every replica on a node (RssShmem, not RssAnon). This writes
synthetic roots (random episodes through the real `DatasetWriter`), then runs the MACAW
Algorithm (standard networks: weight-transform 3 x 100, latent 100, task batch 5, batches of
256) on a grid of (training tasks, rows per task):
the task counts at the smallest row count, and the row counts at the smallest task count.
Each configuration runs in a fresh driver process (connected to one local Ray started here), so
its RSS is its own. Per configuration: s / meta-step after warm-up; the driver's resident memory
before building the Algorithm and after the timed steps (/proc/self/status: VmRSS, and its private
part RssAnon, where loaded data would live, apart from RssShmem, the object-store pages that
shipping weights each step touches); its peak RSS; the bytes of the buffer row positions the
driver keeps (`BufferLayout`); and each worker's memory, read inside the actor.
With `--contrast`, the same with 0 workers (the driver then holds the data) at the smallest and
largest data. The default tasks stop at 35, all the training tasks of point-robot's split (its
other 5 tasks are held out, one of them, task 3, is the held-out task every root carries).
Prints one JSON line; logs go to stderr.

Usage: python benchmarks/scale.py [--shape point-robot|cheetah] [--tasks 5 20 35]
    [--rows 10000 100000 1000000] [--workers 2] [--steps 10] [--warmup 2] [--no-contrast]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Keep Ray on 127.0.0.1 (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from _common import SHAPES, log, machine, write_root

from ray_macaw.data import columns as C
from ray_macaw.data.batches import BATCH_COLUMNS
from ray_macaw.tasks import get_task_family

HELD_OUT_ROWS = 2000  # enough for the held-out task's stride-7 test buffer of 256 rows


def memory_mb(_actor: Any = None) -> dict[str, float]:
    """This process's resident memory now, in MiB (/proc/self/status): all of it (VmRSS), its
    private part (RssAnon: the heap, where loaded data lives) and its shared part (RssShmem:
    pages of Ray's object store it has touched). Also run inside worker actors."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssShmem:": "shmem"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, *value = line.split()
        if name in fields:
            out[fields[name]] = round(int(value[0]) / 1024, 1)
    return out


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def batch_bytes_per_row(obs_dim: int, act_dim: int) -> int:
    """Bytes of one row of the columns the meta-step reads (float32)."""
    widths = {C.OBS: obs_dim, C.TERMINAL_OBS: obs_dim, C.ACTIONS: act_dim}
    return 4 * sum(widths.get(c, 1) for c in BATCH_COLUMNS)


# ---- parent: data and the grid ----------------------------------------------------------------


def grid(tasks: list[int], rows: list[int], workers: int, contrast: bool) -> list[dict]:
    """Task counts at the smallest row count, row counts at the smallest task count; with
    `contrast`, 0 workers at the smallest and largest data."""
    few, small, large = min(tasks), min(rows), max(rows)
    configs = [{"tasks": t, "rows": small} for t in sorted(tasks)]
    configs += [{"tasks": few, "rows": r} for r in sorted(rows) if r != small]
    configs = [{**c, "workers": workers} for c in configs]
    if contrast and workers:
        configs += [{"tasks": few, "rows": r, "workers": 0} for r in sorted({small, large})]
    return configs


def write_roots(base: str, shape: str, configs: list[dict]) -> dict[int, str]:
    """One root per row count, holding as many training tasks as the grid asks at that count."""
    split = get_task_family(SHAPES[shape][0]).split(None)
    roots = {}
    for rows in sorted({c["rows"] for c in configs}):
        count = max(c["tasks"] for c in configs if c["rows"] == rows)
        roots[rows] = str(Path(base) / f"rows-{rows}")
        start = time.perf_counter()
        task_rows = {**dict.fromkeys(split.train[:count], rows), split.test[0]: HELD_OUT_ROWS}
        write_root(roots[rows], shape, task_rows)
        log(f"wrote {count} tasks x {rows} rows in {time.perf_counter() - start:.1f} s")
    return roots


def run_child(config: dict, root: str, args: argparse.Namespace, address: str) -> dict:
    """One configuration in a fresh Python process (its own driver RSS), on the shared Ray."""
    command = [
        sys.executable,
        __file__,
        "--child",
        json.dumps({**config, "root": root, "address": address}),
        "--shape",
        args.shape,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(large: dict, small: dict, kind: str) -> float:
    """Driver memory (`kind` of `memory_mb`) after the steps, largest over smallest data."""
    return round(large["driver_after_steps_mb"][kind] / small["driver_after_steps_mb"][kind], 3)


def rows(result: dict) -> int:
    """Training rows of one configuration (all tasks)."""
    return result["tasks"] * result["rows_per_task"]


def summary(results: list[dict], workers: int) -> dict:
    """Driver memory of the largest-data run over the smallest (with `workers` workers),
    against their data ratio."""
    with_workers = [r for r in results if r["workers"] == workers]
    small, large = min(with_workers, key=rows), max(with_workers, key=rows)
    return {
        "smallest": f"{small['tasks']} tasks x {small['rows_per_task']} rows",
        "largest": f"{large['tasks']} tasks x {large['rows_per_task']} rows",
        "data_ratio_largest_over_smallest": round(rows(large) / rows(small), 1),
        "driver_rss_ratio_largest_over_smallest": ratio(large, small, "rss"),
        "driver_private_ratio_largest_over_smallest": ratio(large, small, "anon"),
        "driver_private_growth_mb_smallest": small["driver_private_growth_mb"],
        "driver_private_growth_mb_largest": large["driver_private_growth_mb"],
    }


def parent(args: argparse.Namespace) -> None:
    import ray

    configs = grid(args.tasks, args.rows, args.workers, args.contrast)
    cores = os.cpu_count() or 1
    # One local Ray for all configurations (starting one costs ~10 s on a busy 2-core machine);
    # each configuration's driver is still its own process, with its own worker actors.
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    results = []
    with tempfile.TemporaryDirectory() as base:
        roots = write_roots(base, args.shape, configs)
        for config in configs:
            results.append(run_child(config, roots[config["rows"]], args, address))
            log(json.dumps(results[-1]))
    ray.shutdown()
    _, obs_dim, act_dim = SHAPES[args.shape]
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "config": f"{args.shape} shape (obs {obs_dim}, act {act_dim}), standard MACAW "
                f"networks, task batch 5, batches 256, {args.workers} inner-loop workers of "
                f"{cores / max(args.workers, 1):g} CPU, {args.steps} timed steps after "
                f"{args.warmup}",
                "grid": [
                    f"{c['tasks']} tasks x {c['rows']} rows, {c['workers']} workers"
                    for c in configs
                ],
                "machine": machine(("numpy", "pyarrow", "torch", "ray")),
                "results": results,
                # Driver memory, largest over smallest data, per worker count run.
                "driver_memory": {
                    f"{w}_workers": summary(results, w)
                    for w in sorted({r["workers"] for r in results}, reverse=True)
                },
            }
        )
    )


# ---- child: one configuration ------------------------------------------------------------------


def build_config(root: str, shape: str, tasks: int, workers: int) -> Any:
    """The standard MACAW configuration on the first `tasks` training tasks of the split."""
    from ray_macaw import MACAWConfig

    family = SHAPES[shape][0]
    split = get_task_family(family).split(None)
    cpus = (os.cpu_count() or 1) / max(workers, 1)
    return (
        MACAWConfig()
        .environment(
            family=family, train_tasks=list(split.train[:tasks]), test_tasks=[split.test[0]]
        )
        .offline_data(root=root)
        .inner_loop_workers(num_workers=workers, num_cpus_per_worker=cpus)
        .debugging(seed=0)
    )


def seconds_per_step(algo: Any, steps: int, warmup: int) -> float:
    """Mean meta-step time after `warmup` untimed steps (first steps pay one-off set-up)."""
    for _ in range(warmup):
        algo.training_step()
    start = time.perf_counter()
    for _ in range(steps):
        algo.training_step()
    return (time.perf_counter() - start) / steps


def child(spec: dict, args: argparse.Namespace) -> dict:
    """Time the meta-step and read the driver's (and workers') RSS for one configuration."""
    import ray

    ray.init(address=spec["address"], log_to_driver=False)
    config = build_config(spec["root"], args.shape, spec["tasks"], spec["workers"])
    before = memory_mb()
    algo = config.build_algo()
    seconds = seconds_per_step(algo, args.steps, args.warmup)
    after = memory_mb()
    workers = ray.get([w.__ray_call__.remote(memory_mb) for w in algo.inner_workers])
    positions = [*algo.layout.inner.values(), *algo.layout.outer.values()]
    # Before issue 16 the layout held int64 arrays; now ranges, which hold nothing per row.
    positions_bytes = sum(getattr(p, "nbytes", 0) for p in positions)
    held = getattr(algo, "held_bytes", None)  # the buffers' rows held (issue 16)
    algo.stop()
    _, obs_dim, act_dim = SHAPES[args.shape]
    return {
        "tasks": spec["tasks"],
        "rows_per_task": spec["rows"],
        "workers": spec["workers"],
        "batch_data_mb": round(
            spec["tasks"] * spec["rows"] * batch_bytes_per_row(obs_dim, act_dim) / 2**20, 1
        ),
        "seconds_per_step": round(seconds, 4),
        "driver_before_build_mb": before,
        "driver_after_steps_mb": after,
        "driver_private_growth_mb": round(after["anon"] - before["anon"], 1),
        "driver_peak_rss_mb": round(peak_rss_mb(), 1),
        "driver_buffer_positions_mb": round(positions_bytes / 2**20, 2),
        "held_buffers_mb": None if held is None else round(held / 2**20, 1),
        "workers_mb": workers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="point-robot")
    parser.add_argument("--tasks", type=int, nargs="+", default=[5, 20, 35])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-contrast", dest="contrast", action="store_false")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args)))
    else:
        parent(args)


if __name__ == "__main__":
    main()
