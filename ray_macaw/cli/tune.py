"""`ray-macaw tune` and `ray-macaw report`: Ray Tune experiments and their tables and plots."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ray_macaw.cli.common import add_experiment_options, parse_overrides


def cmd_tune(args: argparse.Namespace) -> None:
    """`ray-macaw tune FILE [--set KEY=VALUE] [--name N] [--storage-path P] [--resume]`."""
    from ray_macaw.tune.run import run_tune
    from ray_macaw.tune.spec import load_tune_spec, storage_location

    spec = load_tune_spec(args.file, parse_overrides(args.set))
    if args.variants or args.seeds:
        spec = spec.part(_names(args.variants), _seeds(args.seeds) or None)
    if args.name:
        spec = replace(spec, name=args.name)
    if args.storage_path:
        spec = replace(spec, storage_path=storage_location(args.storage_path))
    summary = run_tune(spec, resume=args.resume, address=args.address)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"report: ray-macaw report {summary['experiment']}")


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _seeds(value: str | None) -> list[int]:
    from ray_macaw.training.run_file import RunConfigError

    try:
        return [int(s) for s in _names(value)]
    except ValueError:
        raise RunConfigError(
            f"--seeds {value!r} is not a list of integers", "write e.g. --seeds 0,1"
        ) from None


def cmd_archive(args: argparse.Namespace) -> None:
    """`ray-macaw archive RUN_DIR --into RECORD`: the finished trials, small enough to commit."""
    from ray_macaw.report.record import archive

    summary = archive(args.run_dir, args.into)
    if args.json:
        print(json.dumps(vars(summary), indent=2))
        return
    print(f"added to {args.into}: {', '.join(summary.added) or 'none'}")
    if summary.already_recorded:
        print(f"already recorded (same variant and seed): {', '.join(summary.already_recorded)}")
    if summary.unfinished:
        print(f"not finished, left out: {', '.join(summary.unfinished)}")
    print(f"report: ray-macaw report {args.into}")


def cmd_report(args: argparse.Namespace) -> None:
    """`ray-macaw report RUN_DIR [--with RUN_DIR ...] [--out DIR] [--behaviour FILE] [--json]`;
    each RUN_DIR may be a URI (s3://...)."""
    import contextlib

    from ray_macaw.report.remote import readable_run_dir

    with contextlib.ExitStack() as stack:
        dirs = [args.run_dir, *(args.with_ or [])]
        _report(args, [stack.enter_context(readable_run_dir(d)) for d in dirs])


def _report(args: argparse.Namespace, run_dirs: list[Path]) -> None:
    """The report of the experiments in `run_dirs` (local copies), written beside the first."""
    import sys

    from ray_macaw.report.per_task import format_per_task, load_behaviour, per_task_rows
    from ray_macaw.report.remote import publish
    from ray_macaw.report.runs import data_fingerprints, load_experiments, unfinished_runs
    from ray_macaw.report.summary import format_table, plot_curves, plus_minus, summary_rows

    behaviour = load_behaviour(args.behaviour) if args.behaviour else None
    runs = load_experiments(run_dirs)
    left = unfinished_runs(runs)
    if left:  # their last evaluation is in the table, but they are not done
        print(
            f"warning: {len(left)} trial(s) did not reach stop_meta_steps (interrupted, or "
            f"stopped early by ASHA): {', '.join(left)}; finish them with `ray-macaw tune "
            "FILE --resume`",
            file=sys.stderr,
        )
    data = data_fingerprints(runs)
    if len(data) > 1:
        print(
            "warning: these trials read different data (data fingerprints "
            + "; ".join(f"{fp}: {len(names)} trial(s)" for fp, names in data.items())
            + "): their figures do not pair; compare trials on one collection",
            file=sys.stderr,
        )
    rows, tasks = summary_rows(runs), per_task_rows(runs)
    out = Path(args.out or run_dirs[0])
    level = behaviour["behaviour_return_mean"] if behaviour else None
    title = " + ".join(d.name for d in run_dirs)
    png = plot_curves(runs, out / "learning_curves.png", title=title, behaviour=level)
    doc = {"rows": rows, "per_task": tasks, "behaviour": behaviour, "data_fingerprints": data}
    (out / "report.json").write_text(json.dumps(doc, indent=2, default=str))
    written = [png, out / "report.json"]
    # Uploaded beside an experiment on object storage unless --out names a local directory.
    png_at, json_at = [str(p) for p in written] if args.out else publish(written, args.run_dir)
    if args.json:
        print(json.dumps({**doc, "plot": png_at}, indent=2, default=str))
        return
    print(format_table(rows))
    if behaviour:
        level_stderr = behaviour["behaviour_return_stderr"]
        print(f"behaviour policies: {plus_minus(behaviour['behaviour_return_mean'], level_stderr)}")
    if tasks:
        print(f"\nper task, final evaluation:\n{format_per_task(tasks, behaviour)}")
    print(f"\nlearning curves: {png_at}\ntable as JSON: {json_at}")


def add_parsers(sub: Any) -> None:
    """Register `tune` and `report` on the top-level subparsers."""
    tune = sub.add_parser(
        "tune",
        help="run a Ray Tune experiment from tune_configs/",
        description="Run every trial of an experiment file; --resume continues an interrupted one.",
    )
    add_experiment_options(
        tune,
        file_help="experiment YAML (see tune_configs/)",
        set_example="data_root=/shared/data",
        storage_help="where results go (local path or s3://, gs://)",
    )
    tune.add_argument(
        "--variants",
        default=None,
        metavar="A,B",
        help="run only these variants (a part of a run that spans machines; see `archive`)",
    )
    tune.add_argument("--seeds", default=None, metavar="0,1", help="run only these seeds")
    tune.set_defaults(func=cmd_tune)

    archive = sub.add_parser(
        "archive",
        help="copy an experiment's finished trials (figures, no checkpoints) into a record",
        description="Copy every finished trial's params.json and the result rows a report "
        "reads into RECORD, which `ray-macaw report` reads like an experiment; parts of one run "
        "(tune --variants/--seeds) join the same record.",
    )
    archive.add_argument("run_dir", help="<storage_path>/<name> of a `ray-macaw tune` run")
    archive.add_argument("--into", required=True, metavar="RECORD", help="the record directory")
    archive.add_argument("--json", action="store_true")
    archive.set_defaults(func=cmd_archive)

    report = sub.add_parser(
        "report", help="table and learning curves of a Tune experiment or a train run"
    )
    report.add_argument("run_dir", help="<storage_path>/<name> of a tune run, or a train --out")
    report.add_argument(
        "--with",
        dest="with_",
        action="append",
        metavar="RUN_DIR",
        help="another experiment whose variants join the table and plot (e.g. a baseline run "
        "on the same data); repeatable",
    )
    report.add_argument("--out", default=None, help="where to write the PNG (default: RUN_DIR)")
    report.add_argument(
        "--behaviour",
        default=None,
        metavar="FILE",
        help="the behaviour policies' level (`ray-macaw dataset behaviour ROOT --json > FILE`): "
        "a line on the plot and a column of the per-task table",
    )
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_report)
