"""The `ray-macaw` command line: parses arguments, calls library functions, prints results."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray_macaw.cli import supervised as cli_supervised
from ray_macaw.cli import train as cli_train
from ray_macaw.cli import tune as cli_tune
from ray_macaw.cli.common import parse_overrides, quiet_library_noise
from ray_macaw.errors import RayMacawError, UnknownNameError
from ray_macaw.tasks import FAMILIES, get_task_family


def _print(doc: dict[str, Any], as_json: bool, render: Any) -> None:
    print(json.dumps(doc, indent=2) if as_json else render(doc))


def _render_tasks(doc: dict[str, Any]) -> str:
    lines = [
        f"family {doc['family']} (seed {doc['seed']}), split '{doc['split']}'",
        f"  train ({len(doc['train'])}): {doc['train']}",
        f"  test  ({len(doc['test'])}): {doc['test']}",
    ]
    for task in doc["tasks"]:
        params = json.dumps(task["params"])
        lines.append(
            f"  task {task['id']:>3}: {params[:100] + ('...' if len(params) > 100 else '')}"
        )
    return "\n".join(lines)


def cmd_tasks(args: argparse.Namespace) -> None:
    """`ray-macaw tasks FAMILY [--split NAME] [--seed S] [--json]`."""
    family = get_task_family(args.family, seed=args.seed)
    _print(family.describe(args.split), args.json, _render_tasks)


def _render_inspect(doc: dict[str, Any]) -> str:
    lines = [f"root {doc['root']}"]
    for fam in doc["families"]:
        lines.append(
            f"family {fam['family']} ({fam['path']}), obs {fam['obs_dim']}, "
            f"act {fam['act_dim']}, format v{fam['schema_version']}"
        )
        lines.append(
            f"  {'task':>4} {'rows':>10} {'episodes':>8} {'mean ret':>10} {'max ret':>10}  checksum"
        )
        for t in fam["tasks"]:
            mean = "-" if t["mean_return"] is None else f"{t['mean_return']:.2f}"
            best = "-" if t["max_return"] is None else f"{t['max_return']:.2f}"
            lines.append(
                f"  {t['task_id']:>4} {t['rows']:>10} {t['episodes']:>8} {mean:>10} "
                f"{best:>10}  {t['checksum']}"
            )
    return "\n".join(lines)


def cmd_dataset_inspect(args: argparse.Namespace) -> None:
    """`ray-macaw dataset inspect ROOT [--family F] [--json]`."""
    from ray_macaw.data.datasets import TaskDatasets, find_families
    from ray_macaw.data.storage import root_path
    from ray_macaw.errors import DataError, MissingDataError

    root = root_path(args.root)  # a local path or a URI (s3://bucket/prefix)
    names = [args.family] if args.family else find_families(root)
    if not names:
        raise MissingDataError(
            "no family directory with a manifest.json in this root",
            "point at a root written by `ray-macaw collect --out ROOT`",
            root,
        )
    doc: dict[str, Any] = {
        "root": str(root),
        "families": [TaskDatasets(root, name, verify=False).inspect() for name in names],
    }
    _print(doc, args.json, _render_inspect)  # the whole report first, then the verdict
    bad = [
        f"{fam['family']} task {t['task_id']} ({t['checksum']})"
        for fam in doc["families"]
        for t in fam["tasks"]
        if t["checksum"] != "ok"
    ]
    if bad:
        raise DataError(
            f"{len(bad)} task(s) have missing or damaged parts: {', '.join(bad)}",
            "restore the parts from a backup, or re-run the collect command that wrote the "
            "root adding --recollect with those task ids",
            root,
        )


def _pairs_or_names(items: Sequence[str]) -> dict[int, str] | list[str]:
    """'ID=VALUE' items as {id: value}; plain items as a list (ids read from names/metadata)."""
    if all("=" in item for item in items):
        return {int(k): v for k, v in (item.split("=", 1) for item in items)}
    if any("=" in item for item in items):
        raise UnknownNameError("mixed ID=VALUE and plain items", "use one form for all items")
    return list(items)


def cmd_dataset_import(args: argparse.Namespace) -> None:
    """`ray-macaw dataset import --format macaw-hdf5|minari --out ROOT ITEMS...`."""
    from ray_macaw.data.interchange import macaw_hdf5, minari_io

    items = _pairs_or_names(args.items)
    if args.format == "macaw-hdf5":
        if not args.family:
            raise UnknownNameError(
                "--family is required for macaw-hdf5 imports",
                f"add --family with one of: {', '.join(FAMILIES)}",
            )
        specs = None
        if args.task_specs:
            specs = {
                int(m.group(1)): p
                for p in Path(args.task_specs).glob("*.pkl")
                if (m := re.search(r"task(\d+)\.pkl$", p.name))
            }
        rows = macaw_hdf5.import_hdf5(
            macaw_hdf5.task_files(items),
            get_task_family(args.family),
            args.out,
            specs,
            args.rows_per_part,
        )
    else:
        rows = minari_io.import_minari(
            args.out, items, args.family, args.minari_root, args.gamma, args.rows_per_part
        )
    print(
        json.dumps({"root": args.out, "rows": rows})
        if args.json
        else f"imported {len(rows)} task(s), {sum(rows.values())} rows, into {args.out}"
    )


def cmd_dataset_export(args: argparse.Namespace) -> None:
    """`ray-macaw dataset export ROOT --to minari`."""
    from ray_macaw.data.interchange.minari_io import export_minari

    tasks = None
    if args.tasks != "all":
        from ray_macaw.collect.config import parse_tasks
        from ray_macaw.data.datasets import TaskDatasets

        family = get_task_family(TaskDatasets(args.root, args.family).family)
        tasks = parse_tasks(args.tasks, family)
    ids = export_minari(args.root, args.family, tasks, args.namespace, args.minari_root)
    print(json.dumps({"datasets": ids}) if args.json else "\n".join(ids))


def _add_interchange_parsers(dataset_sub: Any) -> None:
    imp = dataset_sub.add_parser("import", help="import the authors' HDF5 buffers or Minari data")
    imp.add_argument("--format", required=True, choices=("macaw-hdf5", "minari"))
    imp.add_argument("--out", required=True, help="data root to write")
    imp.add_argument("--family", default=None, help="task family (minari: read from metadata)")
    imp.add_argument(
        "items",
        nargs="+",
        metavar="ITEM",
        help="macaw-hdf5: files (task id from ..._train_<id>_...) or ID=PATH; "
        "minari: dataset ids or ID=DATASET_ID",
    )
    imp.add_argument(
        "--task-specs",
        default=None,
        help="directory of the authors' env_*_task<i>.pkl files (read safely)",
    )
    imp.add_argument("--minari-root", default=None, help="Minari datasets directory")
    imp.add_argument(
        "--gamma",
        type=float,
        default=0.99,
        help="discount of the MC returns computed for minari imports",
    )
    imp.add_argument("--rows-per-part", type=int, default=100_000)
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(func=cmd_dataset_import)

    exp = dataset_sub.add_parser("export", help="export tasks as Minari datasets")
    exp.add_argument("root")
    exp.add_argument("--to", required=True, choices=("minari",))
    exp.add_argument("--family", default=None)
    exp.add_argument("--tasks", default="all", help="all or ids like 0-4,7")
    exp.add_argument("--namespace", default="ray-macaw", help="Minari namespace of the ids")
    exp.add_argument("--minari-root", default=None, help="Minari datasets directory")
    exp.add_argument("--json", action="store_true")
    exp.set_defaults(func=cmd_dataset_export)


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


def _add_collect_parser(sub: Any) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ray-macaw",
        description="Ray-native MACAW: offline meta-RL with advantage weighting.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    tasks = sub.add_parser("tasks", help="list a task family's tasks and train/test split")
    tasks.add_argument("family", help=f"one of: {', '.join(FAMILIES)}")
    tasks.add_argument("--split", default=None, help="split name (the family's default if omitted)")
    tasks.add_argument("--seed", type=int, default=0, help="family seed (task parameters)")
    tasks.add_argument("--json", action="store_true", help="print JSON")
    tasks.set_defaults(func=cmd_tasks)

    _add_collect_parser(sub)
    cli_train.add_parsers(sub)
    cli_tune.add_parsers(sub)
    cli_supervised.add_parsers(sub)

    dataset = sub.add_parser("dataset", help="work with offline data roots")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True)
    inspect = dataset_sub.add_parser("inspect", help="rows, episodes, returns, checksums per task")
    inspect.add_argument("root", help="data root (holds <family>/manifest.json)")
    inspect.add_argument("--family", default=None, help="only this family")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=cmd_dataset_inspect)
    _add_interchange_parsers(dataset_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ray-macaw` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    quiet_library_noise()
    try:
        args.func(args)
    except RayMacawError as e:
        # From a Ray worker, the error arrives as RayTaskError(TheError): print its cause.
        cause = getattr(e, "cause", None)
        print(
            f"ray-macaw: error: {cause if isinstance(cause, RayMacawError) else e}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "files already written are complete")
        print(f"\nray-macaw: interrupted; {hint}", file=sys.stderr)
        return 130  # 128 + SIGINT, as shells report it
    return 0


if __name__ == "__main__":
    sys.exit(main())
