"""Per-task figures of an experiment, and the behaviour policies' level to read them against.

A claim such as "MACAW runs the right way on *each* Cheetah-Dir direction" needs the final
evaluation per held-out task, not only the mean over tasks: per variant and task, the mean and
standard error over seeds of the last evaluation's pre- and post-adaptation returns. The
behaviour level is the JSON that `ray-macaw dataset behaviour ROOT --json` prints (each task's
final behaviour agent, deterministic, from the evaluation start states).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.report.runs import Run
from ray_macaw.report.summary import by_label, mean_and_stderr, plus_minus

BEHAVIOUR_KEYS = ("behaviour_return_mean", "behaviour_return_stderr", "per_task")


def per_task_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (variant, task): seeds, and final pre/post return mean +- s.e. over seeds."""
    rows = []
    for label, group in by_label(runs).items():
        tasks: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for run in group:
            for task, figures in run.per_task.items():
                tasks[task].append(figures)
        for task in sorted(tasks, key=int):
            pre, post = zip(*tasks[task], strict=True)
            rows.append(
                {
                    "variant": label,
                    "task": int(task),
                    "seeds": len(pre),
                    "pre": mean_and_stderr(list(pre)),
                    "post": mean_and_stderr(list(post)),
                }
            )
    return rows


def load_behaviour(path: str | Path) -> dict[str, Any]:
    """The behaviour level `ray-macaw dataset behaviour ROOT --json` wrote to `path`."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(
            "no behaviour-level file",
            "write one with `ray-macaw dataset behaviour ROOT --tasks test --json > FILE`",
            path,
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"the behaviour-level file is not JSON ({exc})",
            "write it again with `ray-macaw dataset behaviour ROOT --json > FILE`",
            path,
        ) from exc
    missing = [k for k in BEHAVIOUR_KEYS if k not in doc]
    if missing:
        raise DataError(
            f"the behaviour-level file lacks {', '.join(missing)}",
            "give the JSON that `ray-macaw dataset behaviour ROOT --json` prints",
            path,
        )
    return doc


def format_per_task(rows: list[dict[str, Any]], behaviour: dict[str, Any] | None) -> str:
    """The rows as an aligned text table, with the behaviour level of each task when given."""
    tasks = (behaviour or {}).get("per_task", {})
    width = max([len("variant"), *(len(r["variant"]) for r in rows)])
    header = f"{'variant':<{width}} {'task':>4} {'seeds':>5} {'pre-adaptation':>18} "
    header += f"{'post-adaptation':>18}" + (f" {'behaviour':>18}" if tasks else "")
    lines = [header]
    for row in rows:
        line = f"{row['variant']:<{width}} {row['task']:>4} {row['seeds']:>5} "
        line += f"{plus_minus(*row['pre']):>18} {plus_minus(*row['post']):>18}"
        level = tasks.get(str(row["task"]))
        if tasks:
            line += f" {plus_minus(level['return'], level['return_stderr']) if level else '-':>18}"
        lines.append(line)
    return "\n".join(lines)
