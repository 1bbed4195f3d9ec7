"""`ray-macaw dataset inspect|behaviour|import|export`: read, check, measure and convert
offline data roots."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray_macaw.cli.common import print_doc
from ray_macaw.errors import ArgumentError, UnknownNameError
from ray_macaw.tasks import FAMILIES, get_task_family


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
    print_doc(doc, args.json, _render_inspect)  # the whole report first, then the verdict
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


def _render_behaviour(doc: dict[str, Any]) -> str:
    lines = [
        f"behaviour agents, {doc['episodes']} deterministic episode(s) per task from the "
        f"start states of runs with seed {doc['seed']}",
        f"  {'task':>4} {'return':>10} {'s.e.':>8}",
    ]
    for t in doc["per_task"].values():
        lines.append(f"  {t['task_id']:>4} {t['return']:>10.2f} {t['return_stderr']:>8.2f}")
    mean, error = doc["behaviour_return_mean"], doc["behaviour_return_stderr"]
    lines.append(f"  {'mean':>4} {mean:>10.2f} {error:>8.2f}")
    return "\n".join(lines)


def cmd_dataset_behaviour(args: argparse.Namespace) -> None:
    """`ray-macaw dataset behaviour ROOT --family F [--tasks test] [--seed S] [--episodes N]`."""
    from ray_macaw.collect.config import parse_tasks
    from ray_macaw.data.datasets import TaskDatasets
    from ray_macaw.evaluation.behaviour_level import behaviour_level

    if args.episodes < 1:
        raise ArgumentError("--episodes must be at least 1", "e.g. --episodes 5")
    data = TaskDatasets(args.root, args.family, verify=False)
    family = get_task_family(data.family, seed=data.manifest.family_seed)
    tasks = parse_tasks(args.tasks, family, args.split)
    doc = behaviour_level(args.root, data.family, tasks, args.seed, args.episodes)
    print_doc(doc, args.json, _render_behaviour)


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


def add_parsers(sub: Any) -> None:
    """Register `dataset inspect|behaviour|import|export` on the top-level subparsers."""
    dataset = sub.add_parser("dataset", help="work with offline data roots")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True)
    inspect = dataset_sub.add_parser("inspect", help="rows, episodes, returns, checksums per task")
    inspect.add_argument("root", help="data root (holds <family>/manifest.json)")
    inspect.add_argument("--family", default=None, help="only this family")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=cmd_dataset_inspect)
    behaviour = dataset_sub.add_parser(
        "behaviour",
        help="the behaviour agents' deterministic returns, from held-out evaluation's start states",
    )
    behaviour.add_argument("root", help="data root written by `ray-macaw collect` (SAC or TD3)")
    behaviour.add_argument("--family", default=None, help="the family (default: the root's one)")
    behaviour.add_argument("--tasks", default="test", help="test (default), train, all or ids")
    behaviour.add_argument("--split", default=None, help="split for train/test (family default)")
    behaviour.add_argument(
        "--seed", type=int, default=0, help="the training run's seed (its start states)"
    )
    behaviour.add_argument("--episodes", type=int, default=5, help="episodes per task")
    behaviour.add_argument("--json", action="store_true", help="print JSON")
    behaviour.set_defaults(func=cmd_dataset_behaviour)
    _add_interchange_parsers(dataset_sub)
