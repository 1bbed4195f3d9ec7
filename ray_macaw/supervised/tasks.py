"""Few-shot task families: the common interface and sinusoid regression (Finn et al. 2017, §5.1).

A sinusoid task is y = A sin(x - phi) with amplitude A ~ U[0.1, 5], phase phi ~ U[0, pi] and
inputs x ~ U[-5, 5]; a task gives K support points to adapt on and Q query points to score the
adapted model with mean squared error.

Appendix C.1 plots post-adaptation performance on meta-training and on held-out (validation)
tasks. Omniglot's meta-training set is a fixed set of characters; to mirror that, the sinusoid
family draws two fixed, disjoint pools of functions (train and val) from `task_seed`, and every
meta-batch samples functions from a pool and fresh x points. A finite train pool is what lets a
model overfit the meta-training tasks, the effect the paper discusses.

The pools are randomly shifted Halton points (bases 2 and 3) over the (A, phi) rectangle rather
than i.i.d. draws: still uniform, but evenly spread, so that the train and val pools, and any
prefix of them, have the same amplitude distribution up to O(log n / n). MSE scales with A^2, so
with i.i.d. pools of 100 functions the train and val curves differed by tens of percent from the
draw alone (see docs/supervised.md). Evaluations use the first `eval_tasks` functions of a pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ray_macaw.errors import unknown_name
from ray_macaw.supervised.maml import X_QUERY, X_SUPPORT, Y_QUERY, Y_SUPPORT, LossKind

SPLITS = ("train", "val")
AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)
# Stream ids for numpy's SeedSequence, so the pools never share random numbers.
_POOL_STREAM = {"train": 1, "val": 2}


class TaskFamily(Protocol):
    """What the meta-training loop needs from a family of few-shot tasks."""

    @property
    def in_dim(self) -> int:
        """Input size of the network."""
        ...

    @property
    def out_dim(self) -> int:
        """Output size of the network."""
        ...

    @property
    def loss_kind(self) -> LossKind:
        """'mse' or 'cross_entropy'."""
        ...

    def sample(self, split: str, n_tasks: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """`n_tasks` tasks of `split`, stacked: x_support (n, K, in), y_support, x_query, ..."""
        ...

    def evaluation_tasks(
        self, split: str, start: int, n_tasks: int, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Tasks `start` to `start + n_tasks` of the split's fixed evaluation sequence."""
        ...


def check_split(split: str) -> None:
    """Refuse a split other than 'train' or 'val'."""
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)


@dataclass
class SinusoidTasks:
    """Sinusoid regression with fixed train and val pools of functions.

    Args:
        shots: K, support points per task.
        query: Q, query points per task.
        train_functions: Size of the meta-training pool of (A, phi).
        val_functions: Size of the held-out pool.
        task_seed: Seed of the pools (the same for every model and run seed).
    """

    shots: int = 10
    query: int = 10
    train_functions: int = 1000
    val_functions: int = 100
    task_seed: int = 0
    in_dim: int = field(default=1, init=False)
    out_dim: int = field(default=1, init=False)
    loss_kind: LossKind = field(default="mse", init=False)
    pools: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sizes = {"train": self.train_functions, "val": self.val_functions}
        self.pools = {
            split: self._pool(np.random.default_rng([self.task_seed, _POOL_STREAM[split]]), size)
            for split, size in sizes.items()
        }

    @staticmethod
    def _pool(rng: np.random.Generator, size: int) -> np.ndarray:
        """(size, 2) rows of amplitude, phase: Halton points shifted by a random offset (mod 1)."""
        unit = (halton(size) + rng.uniform(size=2)) % 1.0
        low = np.array([AMPLITUDE[0], PHASE[0]])
        high = np.array([AMPLITUDE[1], PHASE[1]])
        return low + unit * (high - low)

    def sample(self, split: str, n_tasks: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """`n_tasks` functions drawn (with replacement) from the split's pool, fresh x points."""
        check_split(split)
        pool = self.pools[split]
        return self._tasks(pool[rng.integers(0, len(pool), n_tasks)], rng)

    def evaluation_tasks(
        self, split: str, start: int, n_tasks: int, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Functions `start` to `start + n_tasks` of the pool (cycling), x points from `rng`."""
        check_split(split)
        pool = self.pools[split]
        return self._tasks(pool[np.arange(start, start + n_tasks) % len(pool)], rng)

    def _tasks(self, functions: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One task per (A, phi) row, with fresh x points."""
        n_tasks = len(functions)
        x = rng.uniform(*X_RANGE, (n_tasks, self.shots + self.query, 1))
        y = (functions[:, None, :1] * np.sin(x - functions[:, None, 1:])).astype(np.float32)
        return split_support_query(x, y, self.shots)


def halton(size: int) -> np.ndarray:
    """(size, 2) Halton points in [0, 1)^2 (bases 2 and 3, indices 1 to size)."""
    out = np.zeros((size, 2))
    for column, base in enumerate((2, 3)):
        index = np.arange(1, size + 1)
        scale = 1.0
        while index.any():
            scale /= base
            out[:, column] += (index % base) * scale
            index //= base
    return out


def split_support_query(x: np.ndarray, y: np.ndarray, shots: int) -> dict[str, torch.Tensor]:
    """(tasks, points, ...) arrays -> the first `shots` points as support, the rest as query."""
    return {
        X_SUPPORT: torch.as_tensor(x[:, :shots], dtype=torch.float32),
        Y_SUPPORT: torch.as_tensor(y[:, :shots]),
        X_QUERY: torch.as_tensor(x[:, shots:], dtype=torch.float32),
        Y_QUERY: torch.as_tensor(y[:, shots:]),
    }
