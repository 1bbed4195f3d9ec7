"""The RLlib names outside its public API that the offline algorithms rely on, all in one place.

`Algorithm.setup()` always builds EnvRunners and a LearnerGroup; offline meta-RL has no use for
either, so `OfflineMetaAlgorithm.setup()` replaces it and sets only what the rest of `Algorithm`
reads (stack-notes, pattern A). That takes a few private names; each is listed here, checked
against the Ray version below, and `tests/test_rllib_internals.py` fails, naming what moved, when
an RLlib upgrade changes any of them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

CHECKED_AGAINST_RAY = "2.60.0"

# Every attribute `Algorithm.setup()` assigns, and the value it takes without EnvRunners,
# learners or offline-RL data readers.
SETUP_ATTRIBUTES: dict[str, Callable[[], Any]] = {
    "local_replay_buffer": lambda: None,
    "remote_requests_in_flight": lambda: defaultdict(set),
    "env_runner_group": lambda: None,
    "eval_env_runner_group": lambda: None,
    "offline_eval_runner_group": lambda: None,
    "offline_data": lambda: None,
    "spaces": lambda: None,
    "env_to_module_connector": lambda: None,
    "module_to_env_connector": lambda: None,
    "learner_group": lambda: None,
    "_aggregator_actor_manager": lambda: None,
    "_aggregator_actor_to_learner": lambda: None,
    "evaluation_dataset": lambda: None,
    "reward_estimators": dict,
}
# Assigned by `Algorithm.setup()` too, from the config: `OfflineMetaAlgorithm.setup()` sets them.
SET_FROM_CONFIG = ("config", "callbacks", "evaluation_config")
# `Algorithm.setup()` calls it to create `self.metrics`.
SET_UP_METRICS = "_set_up_metrics"
# `Algorithm` asks it whether to build evaluation EnvRunners (a classmethod overridden to say no).
SHOULD_CREATE_EVALUATION_ENV_RUNNERS = "_should_create_evaluation_env_runners"
# Tune's `Trainable` count of `train()` calls, which a restored checkpoint carries on.
ITERATION = "_iteration"
# `AlgorithmConfig`: False means no EnvRunners sample an environment.
IS_ONLINE = "_is_online"


def stand_in_for_setup(algo: Any) -> None:
    """What `Algorithm.setup()` leaves behind, for an algorithm with no EnvRunners or learners;
    the caller sets `SET_FROM_CONFIG`."""
    for name, make in SETUP_ATTRIBUTES.items():
        setattr(algo, name, make())
    getattr(algo, SET_UP_METRICS)()


def set_iteration(algo: Any, iteration: int) -> None:
    setattr(algo, ITERATION, iteration)


def mark_offline(config: Any) -> None:
    setattr(config, IS_ONLINE, False)
