"""The `ray-macaw` command line: parses arguments, calls library functions, prints results."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray_macaw.errors import RayMacawError
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

    root = Path(args.root)
    names = [args.family] if args.family else find_families(root)
    doc = {
        "root": str(root),
        "families": [TaskDatasets(root, name, verify=False).inspect() for name in names],
    }
    _print(doc, args.json, _render_inspect)


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

    dataset = sub.add_parser("dataset", help="work with offline data roots")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True)
    inspect = dataset_sub.add_parser("inspect", help="rows, episodes, returns, checksums per task")
    inspect.add_argument("root", help="data root (holds <family>/manifest.json)")
    inspect.add_argument("--family", default=None, help="only this family")
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(func=cmd_dataset_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ray-macaw` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RayMacawError as e:
        print(f"ray-macaw: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
