"""The private RLlib names of `algorithms/common/rllib_internals.py` still mean what they meant
when they were checked: each test names what moved when an RLlib upgrade changes one."""

from __future__ import annotations

import ast
import inspect
import textwrap

import ray
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.tune import Trainable

from ray_macaw.algorithms.common import rllib_internals as R


def assigned_on_self(function: object) -> set[str]:
    """Attributes `function` assigns on `self` (read from its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return names


def test_checked_against_the_installed_ray() -> None:
    assert ray.__version__ == R.CHECKED_AGAINST_RAY, (
        f"Ray is {ray.__version__}, rllib_internals.py was checked against "
        f"{R.CHECKED_AGAINST_RAY}: re-check every name in it, then update CHECKED_AGAINST_RAY"
    )


def test_the_stand_in_sets_what_algorithm_setup_sets() -> None:
    theirs = assigned_on_self(Algorithm.setup)
    ours = set(R.SETUP_ATTRIBUTES) | set(R.SET_FROM_CONFIG)
    assert theirs == ours, (
        f"Algorithm.setup() now also sets {sorted(theirs - ours)} and no longer sets "
        f"{sorted(ours - theirs)}: update rllib_internals.SETUP_ATTRIBUTES"
    )


def test_the_private_methods_and_attributes_exist() -> None:
    setup_source = inspect.getsource(Algorithm.setup)
    for name in (R.SET_UP_METRICS, R.SHOULD_CREATE_EVALUATION_ENV_RUNNERS):
        assert callable(getattr(Algorithm, name, None)), f"Algorithm.{name} is gone"
        assert f"self.{name}(" in setup_source, f"Algorithm.setup() no longer calls {name}"
    assert R.ITERATION in assigned_on_self(Trainable.__init__), f"Trainable.{R.ITERATION} is gone"
    assert R.IS_ONLINE in assigned_on_self(AlgorithmConfig.__init__), (
        f"AlgorithmConfig.{R.IS_ONLINE} is gone"
    )


def test_the_helpers_write_through_those_names() -> None:
    """The stand-in sets every attribute and creates the metrics; the iteration and the offline
    flag land where RLlib and Tune read them (training through them: test_algorithm.py)."""
    from ray_macaw import MACAWConfig

    config = MACAWConfig()
    assert getattr(config, R.IS_ONLINE) is False
    algo = type("Probe", (), {"_set_up_metrics": lambda self: setattr(self, "metrics", 1)})()
    R.stand_in_for_setup(algo)
    assert algo.metrics == 1 and algo.learner_group is None and algo.reward_estimators == {}
    R.set_iteration(algo, 7)
    assert getattr(algo, R.ITERATION) == 7
