"""`ray-macaw collect`: train behaviour policies per task and record their lifetime buffers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ray_macaw.cli.common import parse_overrides
from ray_macaw.tasks import FAMILIES


def cmd_collect(args: argparse.Namespace) -> None:
    """`ray-macaw collect --family F --out ROOT [...]`."""
    from ray_macaw.collect.config import CollectConfig
    from ray_macaw.collect.run import collect

    config = CollectConfig(
        family=args.family,
        root=args.out,
        tasks=args.tasks,
        split=args.split,
        steps=args.steps,
        algo=args.algo,
        hyperparameters=parse_overrides(args.set),
        seed=args.seed,
        family_seed=args.family_seed,
        rows_per_part=args.rows_per_part,
        num_cpus_per_task=args.num_cpus_per_task,
        num_gpus_per_task=args.num_gpus_per_task,
        max_concurrent=args.max_concurrent,
        max_retries=args.max_retries,
        shared_agents=args.shared_agents,
        bootstrap_after_termination=not args.no_bootstrap_after_termination,
    )
    args.interrupt_hint = (
        "every complete part is kept; re-run the same command to resume each task from its "
        "last complete part"
    )
    summary = collect(
        config,
        address=args.address,
        show_progress=not args.no_progress,
        recollect=args.recollect,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        done, skipped = sorted(summary["collected"]), summary["skipped"]
        print(
            f"collected {len(done)} task(s) into {summary['root']} in "
            f"{summary['seconds']:.1f} s; skipped {len(skipped)} finished task(s)"
        )
        print(
            f"learning curves: {summary['root']}/_curves/; "
            f"inspect with: ray-macaw dataset inspect {args.out}"
        )


def add_parsers(sub: Any) -> None:
    """Register `collect` on the top-level subparsers."""
    from ray_macaw.collect.behaviour import ALGOS
    from ray_macaw.collect.config import DEFAULT_STEPS

    collect = sub.add_parser(
        "collect",
        help="train behaviour policies per task and record their lifetime buffers",
        description="One Ray actor per task trains a behaviour policy and streams every stored "
        "transition to Parquet. Re-running the same command resumes unfinished tasks.",
    )
    collect.add_argument("--family", required=True, help=f"one of: {', '.join(FAMILIES)}")
    collect.add_argument("--out", required=True, help="data root (written to ROOT/<family>/)")
    collect.add_argument("--tasks", default="all", help="all, train, test, or ids like 0-4,7")
    collect.add_argument("--split", default=None, help="split for train/test (family default)")
    collect.add_argument(
        "--recollect",
        default=None,
        metavar="TASKS",
        help="discard these tasks' data (finished or not, e.g. 3 or 0-2,7) and collect them "
        "again from scratch; added to --tasks",
    )
    collect.add_argument(
        "--steps",
        type=int,
        default=None,
        help="transitions per task; default "
        + ", ".join(f"{k} {v:,}" for k, v in DEFAULT_STEPS.items()),
    )
    collect.add_argument(
        "--algo",
        choices=ALGOS,
        default=None,
        help="behaviour policy (default: td3 for cheetah-vel, else sac)",
    )
    collect.add_argument(
        "--shared-agents",
        type=int,
        default=0,
        metavar="N",
        help="N task-conditioned behaviour agents, each shared by every N-th selected task "
        "(it sees the task's parameters; stored rows do not); 0: one agent per task",
    )
    collect.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a behaviour hyperparameter, e.g. --set learning_starts=1000",
    )
    collect.add_argument("--seed", type=int, default=0, help="base seed of the behaviour policies")
    collect.add_argument("--family-seed", type=int, default=0, help="seed of the task parameters")
    collect.add_argument(
        "--rows-per-part",
        type=int,
        default=100_000,
        help="transitions per Parquet part (and checkpoint cadence)",
    )
    collect.add_argument(
        "--no-bootstrap-after-termination",
        action="store_true",
        help="store terminal_discount 0 after true terminations (the authors "
        "kept gamma^(L-t), spec §4.1)",
    )
    collect.add_argument("--num-cpus-per-task", type=float, default=1.0)
    collect.add_argument("--num-gpus-per-task", type=float, default=0.0)
    collect.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="at most this many tasks at once (default: as resources allow)",
    )
    collect.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="restarts of a task whose actor died (it resumes from its last part)",
    )
    collect.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)",
    )
    collect.add_argument("--no-progress", action="store_true", help="no progress bars")
    collect.add_argument("--json", action="store_true", help="print the summary as JSON")
    collect.set_defaults(func=cmd_collect)
