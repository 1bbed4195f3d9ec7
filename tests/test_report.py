"""Tune runs' outputs: checkpoints, fine-tuning and result rows; `ray-macaw report`'s tables and
plots; `ray-macaw archive`'s records of finished trials (one run spanning machines)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from ray_macaw.algorithms.common.checkpoints import open_checkpoint
from ray_macaw.algorithms.macaw.algorithm import MACAW
from ray_macaw.algorithms.pearl.algorithm import PEARL
from ray_macaw.cli.main import main
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.errors import DataError, MissingDataError
from ray_macaw.outputs import DATA_FINGERPRINT, FINETUNE_FILE, SPEC_FILE
from ray_macaw.report.per_task import format_per_task, load_behaviour, per_task_rows
from ray_macaw.report.record import archive
from ray_macaw.report.runs import Run
from ray_macaw.report.summary import format_table, summary_rows
from ray_macaw.training.run_file import RunConfigError
from ray_macaw.tune.run import run_tune
from ray_macaw.tune.spec import load_tune_spec

CONFIGS = Path(__file__).parent.parent / "tune_configs"


@pytest.fixture(scope="module")
def finetune_experiment(
    smoke_root: str, tmp_path_factory: pytest.TempPathFactory, ray_local: None
) -> Iterator[tuple[Path, dict]]:
    storage = tmp_path_factory.mktemp("tune")
    spec = load_tune_spec(CONFIGS / "smoke/ood_finetune.yaml", {"data_root": smoke_root})
    spec = replace(spec, storage_path=str(storage))
    yield Path(storage / spec.name), run_tune(spec, log=lambda *_: None)


def test_trials_checkpoint_restore_and_fine_tune(finetune_experiment: tuple[Path, dict]) -> None:
    _, summary = finetune_experiment
    assert len(summary["trials"]) == 3  # MACAW, MT+FT and Offline PEARL + FT
    for trial in summary["trials"]:
        assert trial["error"] is None and trial["meta_steps"] == 4
        restored = open_checkpoint(trial["checkpoint"])
        try:
            pearl = Path(trial["trial_dir"]).name.startswith("pearl_ft")
            assert isinstance(restored, PEARL if pearl else MACAW)
            assert restored.num_meta_steps == 4
        finally:
            restored.stop()
        finetuned = json.loads((Path(trial["trial_dir"]) / FINETUNE_FILE).read_text())
        assert [row["budget"] for row in finetuned["table"]] == [0, 40, 80]
        assert finetuned["per_task"].keys() == {"3"}  # the smoke split's held-out task


def test_every_result_carries_the_latest_held_out_figures(
    finetune_experiment: tuple[Path, dict],
) -> None:
    _, summary = finetune_experiment
    results = (Path(summary["trials"][0]["trial_dir"]) / "result.json").read_text().splitlines()
    held_out = [json.loads(line)["held_out"] for line in results]
    # evaluation at meta-step 0 (the untrained model), then every 2 steps
    start = json.loads(results[0])["evaluation_at_start"]["post_adaptation_return_mean"]
    assert held_out[0]["meta_step"] == 0 and held_out[0]["post_adaptation_return_mean"] == start
    assert all("evaluation_at_start" not in json.loads(line) for line in results[1:])
    evaluated = json.loads(results[1])["evaluation"]["post_adaptation_return_mean"]
    assert (
        held_out[1]["post_adaptation_return_mean"]
        == evaluated
        == held_out[2]["post_adaptation_return_mean"]
    )
    assert held_out[2]["meta_step"] == 2 and held_out[3]["meta_step"] == 4


def test_every_result_names_the_bytes_it_was_trained_on(
    finetune_experiment: tuple[Path, dict], smoke_root: str, tmp_path: Path
) -> None:
    _, summary = finetune_experiment
    data = TaskDatasets(smoke_root, "point-robot")
    read = data.fingerprint([0, 1, 2, 3, 4])  # the smoke split: train 0-2 and 4, held out 3
    for trial in summary["trials"]:  # MACAW and PEARL alike
        rows = (Path(trial["trial_dir"]) / "result.json").read_text().splitlines()
        assert {json.loads(row)[DATA_FINGERPRINT] for row in rows} == {read}
    assert data.fingerprint([4, 3, 2, 1, 0, 0]) == read  # a set of tasks, in any order
    assert data.fingerprint([0, 1, 2, 4]) != read
    # one part collected again with other bytes: another fingerprint
    copy = Path(shutil.copytree(smoke_root, tmp_path / "copy"))
    manifest = copy / "point-robot" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["tasks"]["3"]["parts"][1]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(doc))
    assert TaskDatasets(copy, "point-robot").fingerprint([0, 1, 2, 3, 4]) != read


def test_report_shows_variants_and_fine_tuning_budgets(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = finetune_experiment
    assert main(["report", str(path), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["variant", "seeds", "meta-steps"]
    assert "FT 80 steps" in out
    for variant in ("mt_ft", "pearl_ft"):
        assert any(line.startswith(f"{variant} ") for line in out.splitlines())
    with Image.open(tmp_path / "learning_curves.png") as image:
        assert image.size == (700, 450)


def test_report_per_task_table_and_behaviour_level(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, summary = finetune_experiment
    level = {"task_id": 3, "return": -4.5, "return_stderr": 0.25, "returns": [-4.25, -4.75]}
    doc = {"behaviour_return_mean": -4.5, "behaviour_return_stderr": 0.25, "per_task": {"3": level}}
    behaviour = tmp_path / "behaviour.json"
    behaviour.write_text(json.dumps(doc))
    assert main(["report", str(path), "--out", str(tmp_path), "--behaviour", str(behaviour)]) == 0
    out = capsys.readouterr().out
    assert "behaviour policies: -4.50 +- 0.25" in out
    table = out.split("per task, final evaluation:\n")[1].splitlines()
    assert table[0].split()[-1] == "behaviour"
    # one row per variant on the smoke split's one held-out task, its level beside it
    assert [line.split()[1:3] for line in table[1:4]] == [["3", "1"]] * 3
    assert all(line.endswith("-4.50 +- 0.25") for line in table[1:4])
    report = json.loads((tmp_path / "report.json").read_text())
    trial = Path(summary["trials"][0]["trial_dir"])
    final = json.loads((trial / "result.json").read_text().splitlines()[-1])["evaluation"]
    row = next(r for r in report["per_task"] if r["variant"] == trial.name.split("_seed")[0])
    assert row["post"][0] == pytest.approx(final["per_task"]["3"]["post_adaptation_return"])
    assert report["behaviour"] == doc


def test_report_joins_experiments_and_keeps_shared_variant_names_apart(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = finetune_experiment
    other = tmp_path / "again"  # the same trials under another experiment name
    shutil.copytree(path, other, ignore=shutil.ignore_patterns("checkpoint_*"))
    assert main(["report", str(path), "--with", str(other), "--out", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    labels = [row["variant"] for row in rows]
    assert len(labels) == 6 and len(set(labels)) == 6  # 3 variants x 2 experiments, 1 seed each
    assert {label.split(": ")[0] for label in labels} == {path.name, "again"}
    assert all(row["seeds"] == 1 for row in rows)


def test_behaviour_file_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="dataset behaviour"):
        load_behaviour(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(DataError, match="not JSON"):
        load_behaviour(broken)
    broken.write_text(json.dumps({"behaviour_return_mean": 1.0}))
    with pytest.raises(DataError, match="lacks behaviour_return_stderr, per_task"):
        load_behaviour(broken)


def test_summary_is_mean_and_standard_error_over_seeds() -> None:
    runs = [
        Run("a0", "a", 0, steps=[10, 20], pre=[-5.0, -4.0], post=[-3.0, -1.0]),
        Run("a1", "a", 1, steps=[10, 20], pre=[-6.0, -6.0], post=[-2.0, -3.0]),
        Run("a2", "a", 2, steps=[10, 20], pre=[-7.0, -8.0], post=[-1.0, -5.0]),
        Run("b0", "b", 0, steps=[10], pre=[-9.0], post=[-8.0]),
    ]
    rows = {row["variant"]: row for row in summary_rows(runs)}
    # a's final post returns: -1, -3, -5 -> mean -3, sample std 2, s.e. 2 / sqrt(3)
    assert rows["a"]["post_mean"] == -3.0
    assert rows["a"]["post_stderr"] == pytest.approx(2 / np.sqrt(3))
    assert rows["a"]["pre_mean"] == -6.0 and rows["a"]["seeds"] == 3
    assert rows["b"]["post_stderr"] == 0.0 and rows["b"]["meta_steps"] == 10
    assert "-3.00 +- 1.15" in format_table(list(rows.values()))


def test_per_task_rows_are_each_tasks_final_figures_over_seeds() -> None:
    tasks = [{"1": (1.0, 10.0), "0": (-1.0, 4.0)}, {"0": (-3.0, 8.0), "1": (3.0, 20.0)}]
    runs = [
        Run(f"a{seed}", "a", seed, steps=[10], pre=[0.0], post=[0.0], per_task=figures)
        for seed, figures in enumerate(tasks)
    ]
    rows = per_task_rows(runs)
    assert [(r["variant"], r["task"], r["seeds"]) for r in rows] == [("a", 0, 2), ("a", 1, 2)]
    # task 0: pre -1, -3 -> -2 +- 1; post 4, 8 -> 6 +- 2
    assert rows[0]["pre"] == pytest.approx((-2.0, 1.0)) and rows[0]["post"] == pytest.approx(
        (6.0, 2.0)
    )
    assert rows[1]["post"] == pytest.approx((15.0, 5.0))
    lines = format_per_task(rows, None).splitlines()
    assert lines[0].split()[-1] == "post-adaptation" and lines[2].endswith("15.00 +- 5.00")


def report_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["report", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_record_reports_as_its_experiment_and_holds_no_checkpoints(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, summary = finetune_experiment
    record = tmp_path / "record"
    done = archive(path, record)
    assert len(done.added) == 3 and not done.unfinished and not done.already_recorded
    assert not list(record.rglob("checkpoint_*"))
    whole = report_json(capsys, str(path), "--out", str(tmp_path / "a"))
    recorded = report_json(capsys, str(record), "--out", str(tmp_path / "b"))
    assert recorded["rows"] == whole["rows"] and recorded["per_task"] == whole["per_task"]
    # kept: the rows with an evaluation (the untrained model's at step 1, then steps 2 and 4)
    trial = Path(summary["trials"][0]["trial_dir"])
    kept = (record / trial.name / "result.json").read_text().splitlines()
    assert [json.loads(r)["training_iteration"] for r in kept] == [1, 2, 4]
    # and each kept row's wall time, so the record says what the trial cost
    assert all(json.loads(r)["time_total_s"] > 0 for r in kept)
    # archiving again adds nothing: each variant's seed is recorded once
    again = archive(path, record)
    assert not again.added and len(again.already_recorded) == 3


def test_parts_of_a_run_join_one_record(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = finetune_experiment
    parts = []
    for variants in (["macaw"], ["mt_ft", "pearl_ft"]):  # two machines' parts, one seed each
        part = tmp_path / "-".join(variants)
        part.mkdir()
        spec = yaml.safe_load((path / SPEC_FILE).read_text())
        spec["variants"] = {k: v for k, v in spec["variants"].items() if k in variants}
        spec["name"] = part.name
        (part / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
        for trial in path.iterdir():
            if trial.name.split("_seed")[0] in variants:
                shutil.copytree(trial, part / trial.name, ignore=shutil.ignore_patterns("checkp*"))
        parts.append(part)
    record = tmp_path / "record"
    assert main(["archive", str(parts[0]), "--into", str(record)]) == 0
    assert main(["archive", str(parts[1]), "--into", str(record)]) == 0
    assert "added to" in capsys.readouterr().out
    merged = yaml.safe_load((record / SPEC_FILE).read_text())
    assert list(merged["variants"]) == ["macaw", "mt_ft", "pearl_ft"] and merged["seeds"] == [0]
    whole = report_json(capsys, str(path), "--out", str(tmp_path / "a"))
    assert report_json(capsys, str(record), "--out", str(tmp_path / "b"))["rows"] == whole["rows"]


def test_a_record_refuses_another_experiment_and_leaves_out_unfinished_trials(
    finetune_experiment: tuple[Path, dict], tmp_path: Path
) -> None:
    path, summary = finetune_experiment
    other = tmp_path / "other"
    shutil.copytree(path, other, ignore=shutil.ignore_patterns("checkpoint_*"))
    record = tmp_path / "record"
    archive(path, record)
    spec = yaml.safe_load((other / SPEC_FILE).read_text())
    spec["config"]["inner_batch_size"] = 7
    (other / SPEC_FILE).write_text(yaml.safe_dump(spec))
    with pytest.raises(DataError, match=r"differ from the record's in \['config'\]"):
        archive(other, record)
    # a trial stopped at step 2 of 4 is not finished
    trial = other / Path(summary["trials"][0]["trial_dir"]).name
    rows = (trial / "result.json").read_text().splitlines()
    (trial / "result.json").write_text("\n".join(rows[:2]) + "\n")
    done = archive(other, tmp_path / "record-2")
    assert done.unfinished == [trial.name] and len(done.added) == 2
    with pytest.raises(DataError, match="not a record"):
        archive(path, trial)
    with pytest.raises(MissingDataError, match="not a `ray-macaw tune` experiment"):
        archive(trial, tmp_path / "record-3")


def test_a_record_refuses_trials_trained_on_other_data(
    finetune_experiment: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = finetune_experiment
    other = Path(shutil.copytree(path, tmp_path / "other", ignore=shutil.ignore_patterns("ch*")))
    mt_ft = next(other.glob("mt_ft*"))  # as if this trial had read data collected again
    rows = [json.loads(r) for r in (mt_ft / "result.json").read_text().splitlines()]
    read = rows[-1][DATA_FINGERPRINT]
    (mt_ft / "result.json").write_text(
        "".join(json.dumps({**r, DATA_FINGERPRINT: "elsewhere"}) + "\n" for r in rows)
    )
    with pytest.raises(DataError, match=rf"trials \['{mt_ft.name}'\] read other data"):
        archive(other, tmp_path / "new")
    assert not (tmp_path / "new").exists()  # nothing written
    # a report of trials on different data says so
    assert main(["report", str(other), "--out", str(tmp_path / "report"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["data_fingerprints"].keys() == {"elsewhere", read}
    assert "these trials read different data" in err and "elsewhere: 1 trial(s)" in err
    # a record's trials against a later part's: the part is refused, the record kept as it was
    record = tmp_path / "record"
    for trial in other.iterdir():
        if trial.name.startswith("mt_ft"):
            shutil.move(trial, tmp_path / trial.name)
    archive(other, record)
    for trial in other.iterdir():
        if trial.is_dir():
            shutil.rmtree(trial)
    shutil.move(tmp_path / mt_ft.name, mt_ft)
    before = sorted(p.name for p in record.iterdir())
    with pytest.raises(DataError, match=r"read other data than macaw.*against [0-9a-f]{16}"):
        archive(other, record)
    assert sorted(p.name for p in record.iterdir()) == before


def test_a_part_of_a_run_names_unknown_variants_and_seeds(smoke_root: str) -> None:
    spec = load_tune_spec(CONFIGS / "smoke/ood_finetune.yaml", {"data_root": smoke_root})
    part = spec.part(["pearl_ft", "mt_ft"], None)
    assert list(part.variants) == ["pearl_ft", "mt_ft"] and part.seeds == spec.seeds
    assert [t["variant"] for t in part.trial_settings()] == ["pearl_ft", "mt_ft"]
    with pytest.raises(RunConfigError, match=r"no variant \['nope'\].*choose from"):
        spec.part(["nope"], None)
    with pytest.raises(RunConfigError, match=r"seeds \[5\] are not in"):
        spec.part([], [5])


def test_tune_takes_a_part_of_the_experiment_from_the_command_line(
    smoke_root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = str(CONFIGS / "smoke/ood_finetune.yaml")
    args = ["tune", file, "--set", f"data_root={smoke_root}", "--variants", "macaw,nope"]
    assert main(args) == 2
    assert "no variant ['nope'] in this experiment" in capsys.readouterr().err
    assert main([*args[:4], "--seeds", "0,3"]) == 2
    assert "seeds [3] are not in" in capsys.readouterr().err
    assert main([*args[:4], "--seeds", "0,x"]) == 2
    assert "--seeds '0,x' is not a list of integers" in capsys.readouterr().err


def test_trials_that_differ_only_in_a_searched_setting_are_both_recorded(tmp_path: Path) -> None:
    run = tmp_path / "search"
    run.mkdir()
    spec = {"name": "search", "config": {}, "variants": {}, "search": {"outer_policy_lr": [1, 2]},
            "seeds": [0], "stop_meta_steps": 2}  # fmt: skip
    (run / SPEC_FILE).write_text(yaml.safe_dump(spec))
    for lr in (1, 2):
        trial = run / f"trial_lr{lr}"
        trial.mkdir()
        (trial / "params.json").write_text(json.dumps({"seed": 0, "outer_policy_lr": lr}))
        (trial / "result.json").write_text(json.dumps({"training_iteration": 2}) + "\n")
    done = archive(run, tmp_path / "record")
    assert done.added == ["trial_lr1", "trial_lr2"] and not done.already_recorded
