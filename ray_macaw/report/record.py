"""A record of an experiment's finished trials, small enough to commit: one run may span machines.

A results run (`tune_configs/results/`) can take longer than one machine lives. Each part runs
some of its variants and seeds (`ray-macaw tune FILE --variants ... --seeds ...`); `ray-macaw
archive RUN_DIR --into RECORD` then copies every finished trial's `params.json`, the rows of its
`result.json` that a report reads (the held-out evaluations and the last row) and its
fine-tuning table into RECORD, a directory `ray-macaw report` reads like an experiment.
Checkpoints stay behind. Trials join a record only when their experiment's settings equal the
record's (the same data root, the same evaluation) and every trial read the same bytes as the
record's (`DATA_FINGERPRINT`), and each trial (variant, seed, searched values) once.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.outputs import DATA_FINGERPRINT, EVALUATION_AT_START, FINETUNE_FILE, SPEC_FILE
from ray_macaw.report.runs import json_lines

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
# What a part of a run may choose for itself; every other setting must equal the record's.
PART_KEYS = {"name", "storage_path", "variants", "seeds", "max_concurrent_trials"}
# time_total_s: a record says what each trial cost (its wall seconds at every kept step).
KEPT_ROW_KEYS = (
    "training_iteration",
    "done",
    "evaluation",
    EVALUATION_AT_START,
    DATA_FINGERPRINT,
    "time_total_s",
)


@dataclass
class ArchiveSummary:
    """What `archive` did, trial by trial."""

    added: list[str] = field(default_factory=list)
    already_recorded: list[str] = field(default_factory=list)  # its variant and seed were there
    unfinished: list[str] = field(default_factory=list)  # short of stop_meta_steps, or failed


def archive(run_dir: str | Path, record: str | Path) -> ArchiveSummary:
    """Copy the finished trials of the experiment `run_dir` into `record` (made if absent)."""
    run_dir, record = Path(run_dir), Path(record)
    spec = _spec(run_dir)
    recorded = _check_same_experiment(spec, record)
    summary = ArchiveSummary()
    new: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]] = []
    for trial in sorted(p for p in run_dir.iterdir() if (p / PARAMS_FILE).is_file()):
        params = json.loads((trial / PARAMS_FILE).read_text())
        key = _trial_key(params, spec)
        rows = _kept_rows(trial / RESULT_FILE)
        last = rows[-1] if rows else {}
        if int(last.get("training_iteration") or 0) < spec["stop_meta_steps"]:
            summary.unfinished.append(trial.name)
        elif key in recorded:
            summary.already_recorded.append(trial.name)
        else:
            new.append((trial, params, rows))
            recorded[key] = trial.name
            summary.added.append(trial.name)
    _check_same_data({t.name: rows[-1] for t, _, rows in new}, record)  # before writing any
    record.mkdir(parents=True, exist_ok=True)
    for trial, params, rows in new:
        out = record / trial.name
        out.mkdir()
        (out / PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True))
        (out / RESULT_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
        if (trial / FINETUNE_FILE).is_file():  # the fine-tuning table, when it ran
            shutil.copyfile(trial / FINETUNE_FILE, out / FINETUNE_FILE)
    (record / SPEC_FILE).write_text(yaml.safe_dump(_merged(spec, record), sort_keys=False))
    return summary


def _spec(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise MissingDataError(
            f"no {SPEC_FILE}: not a `ray-macaw tune` experiment",
            "give <storage_path>/<name> of a `ray-macaw tune` run",
            run_dir,
        )
    return dict(yaml.safe_load(path.read_text()))


def _check_same_experiment(spec: dict[str, Any], record: Path) -> dict[tuple, str]:
    """The record's trials by `_trial_key`, after checking `spec` may join it."""
    if not (record / SPEC_FILE).is_file():
        if record.exists() and any(record.iterdir()):
            raise DataError(
                f"{record} is not empty and holds no {SPEC_FILE}: not a record",
                "give a new directory or an existing record",
                record,
            )
        return {}
    mine = yaml.safe_load((record / SPEC_FILE).read_text())
    differ = sorted(
        k for k in set(spec) | set(mine) if k not in PART_KEYS and spec.get(k) != mine.get(k)
    )
    shared = set(spec.get("variants") or {}) & set(mine.get("variants") or {})
    differ += [
        f"variants.{v}" for v in sorted(shared) if spec["variants"][v] != mine["variants"][v]
    ]
    if differ:
        raise DataError(
            f"the experiment's settings differ from the record's in {differ}",
            "archive it into a record of its own (its trials are another experiment)",
            record,
        )
    return {_trial_key(p, spec): trial.name for trial, p in _recorded_params(record)}


def _check_same_data(last_rows: dict[str, dict[str, Any]], record: Path) -> None:
    """Refuse trials (by name: their last kept row) trained on other bytes than the record's
    trials, or than each other: the same settings on data collected again elsewhere (another
    machine's floating point, another library version) are another experiment."""
    seen = {
        name: row.get(DATA_FINGERPRINT)
        for name, row in [*_recorded_last_rows(record), *last_rows.items()]
    }
    if len(set(seen.values())) > 1:
        first = next(iter(seen))
        differ = {name: fp for name, fp in seen.items() if fp != seen[first]}
        raise DataError(
            f"trials {sorted(differ)} read other data than {first} (data fingerprints "
            f"{sorted(set(differ.values()), key=str)} against {seen[first]})",
            "archive them into a record of their own, or train them again on the record's data "
            "(the same parts byte for byte: `TaskDatasets.fingerprint`)",
            record,
        )


def _recorded_last_rows(record: Path) -> list[tuple[str, dict[str, Any]]]:
    if not record.is_dir():
        return []
    return [
        (trial.name, _kept_rows(trial / RESULT_FILE)[-1]) for trial, _ in _recorded_params(record)
    ]


def _trial_key(params: dict[str, Any], spec: dict[str, Any]) -> tuple:
    """What tells a trial apart from the others of its experiment: variant, seed and the values
    of the searched settings."""
    searched = tuple(json.dumps(params.get(k), sort_keys=True) for k in spec.get("search") or {})
    return (params.get("variant"), params.get("seed"), *searched)


def _recorded_params(record: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for trial in sorted(p for p in record.iterdir() if (p / PARAMS_FILE).is_file()):
        yield trial, json.loads((trial / PARAMS_FILE).read_text())


def _merged(spec: dict[str, Any], record: Path) -> dict[str, Any]:
    """The record's spec: the experiment's, with every recorded variant and seed."""
    recorded = list(_recorded_params(record))
    old = yaml.safe_load((record / SPEC_FILE).read_text()) if (record / SPEC_FILE).is_file() else {}
    variants = {**(old.get("variants") or {}), **(spec.get("variants") or {})}
    seeds = sorted({int(p["seed"]) for _, p in recorded if p.get("seed") is not None})
    return {**spec, "name": record.name, "variants": variants, "seeds": seeds or spec["seeds"]}


def _kept_rows(path: Path) -> list[dict[str, Any]]:
    """The rows a report reads, in order: every one with an evaluation, and the last row; a
    step reported twice (a trial retried from a checkpoint) keeps its last report."""
    by_step: dict[int, dict[str, Any]] = {}
    last: dict[str, Any] = {}
    for row in json_lines(path):  # a torn last line (a run killed mid-write) is skipped
        if row.get("training_iteration") is None:
            continue
        kept = {k: row[k] for k in KEPT_ROW_KEYS if k in row}
        last = kept
        if "evaluation" in row or EVALUATION_AT_START in row:
            by_step[int(row["training_iteration"])] = kept
    if last:
        by_step[int(last["training_iteration"])] = last
    return [by_step[k] for k in sorted(by_step)]
