"""`ray-macaw supervised tune` and `ray-macaw supervised report`: the supervised weight-transform
experiment of appendix C.1 (Figure 6) with Ray Tune, and its table and plot."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import replace
from typing import Any

from ray_macaw.cli.common import add_experiment_options, parse_overrides


def cmd_tune(args: argparse.Namespace) -> None:
    """`ray-macaw supervised tune FILE [--set KEY=VALUE] [--storage-path DIR] [--name N]`."""
    from ray_macaw.supervised.experiment import load_experiment, storage_location
    from ray_macaw.supervised.tune_run import run_experiment

    spec = load_experiment(args.file, parse_overrides(args.set))
    if args.name:
        spec = replace(spec, name=args.name)
    spec = replace(spec, storage_path=storage_location(args.storage_path or spec.storage_path))
    if args.json:
        # Tune's progress goes to stderr so that stdout is the JSON summary alone.
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_experiment(spec, resume=args.resume, address=args.address)
        print(json.dumps(summary, indent=2, default=str))
    else:
        summary = run_experiment(spec, resume=args.resume, address=args.address)
        print(f"report: ray-macaw supervised report {summary['experiment']}")


def _render(doc: dict[str, Any]) -> str:
    from ray_macaw.supervised.report import format_table

    return f"{format_table(doc['rows'])}\n\nplot: {doc['plot']}\ntable as JSON: {doc['table']}"


def cmd_report(args: argparse.Namespace) -> None:
    """`ray-macaw supervised report RUN_DIR [--out DIR] [--json]`."""
    from ray_macaw.supervised.report import write_report

    doc = write_report(args.run_dir, args.out)
    print(json.dumps(doc, indent=2) if args.json else _render(doc))


def add_parsers(sub: Any) -> None:
    """Register `supervised tune` and `supervised report` on the top-level subparsers."""
    supervised = sub.add_parser(
        "supervised",
        help="few-shot supervised weight-transform experiment (appendix C.1, Figure 6)",
    )
    commands = supervised.add_subparsers(dest="supervised_command", required=True)
    tune = commands.add_parser(
        "tune",
        help="MAML with the three MLPs of Figure 6, one Ray Tune trial per model and seed",
        description="Run every trial of a file from tune_configs/supervised/; --resume "
        "continues an interrupted experiment.",
    )
    add_experiment_options(
        tune,
        file_help="experiment YAML (tune_configs/supervised/, tune_configs/smoke/)",
        set_example="data_dir=/data/omniglot",
        storage_help="where results go (default: the file's)",
    )
    tune.set_defaults(func=cmd_tune)

    report = commands.add_parser(
        "report", help="table per model and the Figure-6-like plot of a supervised experiment"
    )
    report.add_argument("run_dir", help="<storage_path>/<name> that `supervised tune` printed")
    report.add_argument("--out", default=None, help="where to write the PNG and JSON (RUN_DIR)")
    report.add_argument("--json", action="store_true", help="print the table as JSON")
    report.set_defaults(func=cmd_report)
