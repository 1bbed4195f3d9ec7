"""`ray-macaw tasks`: a task family's tasks, parameters and train/test split."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ray_macaw.cli.common import print_doc
from ray_macaw.tasks import FAMILIES, get_task_family


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
    print_doc(family.describe(args.split), args.json, _render_tasks)


def add_parsers(sub: Any) -> None:
    """Register `tasks` on the top-level subparsers."""
    tasks = sub.add_parser("tasks", help="list a task family's tasks and train/test split")
    tasks.add_argument("family", help=f"one of: {', '.join(FAMILIES)}")
    tasks.add_argument("--split", default=None, help="split name (the family's default if omitted)")
    tasks.add_argument("--seed", type=int, default=0, help="family seed (task parameters)")
    tasks.add_argument("--json", action="store_true", help="print JSON")
    tasks.set_defaults(func=cmd_tasks)
