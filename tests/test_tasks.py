"""Task families: exact ids, splits and parameters of all six, through the API and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from ray_macaw.cli.main import main
from ray_macaw.errors import UnknownNameError
from ray_macaw.tasks import FAMILIES, get_task_family


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["tasks", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_all_six_families_are_registered() -> None:
    assert set(FAMILIES) == {
        "point-robot",
        "cheetah-dir",
        "cheetah-vel",
        "ant-dir",
        "walker-params",
        "ml45",
        "ml45-goal",  # ML45's goal-observability and stick-goal options (issue 19, item 21)
        "ml45-fixed-stick",
        "ml45-authors",
    }


def test_cheetah_dir(capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli_json(capsys, "cheetah-dir")
    assert doc["train"] == [0, 1] and doc["test"] == [0, 1]
    assert [t["params"]["direction"] for t in doc["tasks"]] == [1.0, -1.0]


def test_cheetah_vel_default_split_and_velocities(capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli_json(capsys, "cheetah-vel")
    assert doc["split"] == "default"
    assert doc["test"] == [2, 7, 15, 23, 26]
    assert doc["train"] == [i for i in range(40) if i not in (2, 7, 15, 23, 26)]
    velocities = [t["params"]["velocity"] for t in doc["tasks"]]
    assert velocities == pytest.approx([0.075 * (i + 1) for i in range(40)], abs=1e-12)
    assert velocities[0] == 0.075 and velocities[39] == 3.0
    assert [velocities[i] for i in doc["test"]] == pytest.approx([0.225, 0.6, 1.2, 1.8, 2.025])


@pytest.mark.parametrize(
    ("split", "train"),
    [
        ("half", list(range(0, 40, 2))),
        ("quarter", [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]),
        ("eighth", [0, 8, 16, 24, 32]),
        ("sixteenth", [0, 16, 32]),
        ("ood", list(range(26))),
    ],
)
def test_cheetah_vel_named_splits(
    capsys: pytest.CaptureFixture[str], split: str, train: list[int]
) -> None:
    doc = cli_json(capsys, "cheetah-vel", "--split", split)
    assert doc["split"] == split
    assert doc["train"] == train
    assert doc["test"] == [i for i in range(40) if i not in train]


def test_cheetah_vel_ood_split_is_by_velocity() -> None:
    family = get_task_family("cheetah-vel")
    split = family.split("ood")
    assert all(family.task(i).params["velocity"] <= 2.0 for i in split.train)
    assert all(2.0 < family.task(i).params["velocity"] <= 3.0 for i in split.test)
    assert family.task(25).params["velocity"] == pytest.approx(1.95)


def test_ant_dir(capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli_json(capsys, "ant-dir")
    assert doc["test"] == [6, 17, 23, 30, 41]
    assert len(doc["train"]) == 45 and not set(doc["train"]) & set(doc["test"])
    angles = [t["params"]["goal_angle"] for t in doc["tasks"]]
    assert len(angles) == 50 and all(0 <= a < 2 * math.pi for a in angles)
    assert len(set(angles)) == 50


def test_walker_params(capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli_json(capsys, "walker-params")
    assert doc["test"] == [2, 12, 15, 39, 43]
    assert len(doc["train"]) == 45
    params = doc["tasks"][0]["params"]
    assert set(params) == {"body_mass", "body_inertia", "dof_damping", "geom_friction"}
    for key, base in [
        ("body_mass", 1.5),
        ("body_inertia", 1.5),
        ("dof_damping", 1.3),
        ("geom_friction", 1.5),
    ]:
        values = np.concatenate([np.ravel(t["params"][key]) for t in doc["tasks"]])
        assert values.min() >= base**-3 and values.max() <= base**3
        # log-uniform: log_base(multiplier) spreads over most of [-3, 3]
        logs = np.log(values) / np.log(base)
        assert logs.min() < -2.5 and logs.max() > 2.5


def test_ml45(capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli_json(capsys, "ml45")
    assert doc["train"] == list(range(45)) and doc["test"] == list(range(45, 50))
    names = [t["params"]["env_name"] for t in doc["tasks"]]
    assert {names[i] for i in doc["test"]} == {
        "bin-picking-v3",
        "box-close-v3",
        "hand-insert-v3",
        "door-lock-v3",
        "door-unlock-v3",
    }
    assert "reach-v3" in names[:45] and len(set(names)) == 50


def test_point_robot(capsys: pytest.CaptureFixture[str]) -> None:
    doc = cli_json(capsys, "point-robot")
    assert doc["test"] == [3, 11, 19, 27, 35] and len(doc["train"]) == 35
    goals = np.array([t["params"]["goal"] for t in doc["tasks"]])
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0, atol=1e-12)
    assert (goals[:, 1] >= -1e-12).all()


@pytest.mark.parametrize("name", ["ant-dir", "walker-params", "ml45"])
def test_families_are_deterministic_given_seed(name: str) -> None:
    assert get_task_family(name, seed=3).tasks == get_task_family(name, seed=3).tasks
    assert get_task_family(name, seed=3).tasks != get_task_family(name, seed=4).tasks


def test_console_script_prints_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ray_macaw.cli.main",
            "tasks",
            "cheetah-vel",
            "--split",
            "eighth",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert json.loads(out)["train"] == [0, 8, 16, 24, 32]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: get_task_family("cheetah-velocity"), "did you mean 'cheetah-vel'"),
        (lambda: get_task_family("cheetah-vel").split("halves"), "did you mean 'half'"),
        (lambda: get_task_family("ant-dir").task(50), "unknown task id '50'"),
        (lambda: get_task_family("ant-dir").make_env(-1), "unknown task id '-1'"),
    ],
)
def test_unknown_names_are_clear_errors(call, needle: str) -> None:
    with pytest.raises(UnknownNameError, match=needle):
        call()


def test_cli_reports_unknown_family_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "no-such-family"]) == 2
    err = capsys.readouterr().err
    assert "unknown task family 'no-such-family'" in err and "Traceback" not in err
