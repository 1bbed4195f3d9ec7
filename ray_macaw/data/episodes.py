"""Assemble transitions into whole episodes for the shard writer, one environment at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ray_macaw.data.shards import TaskWriter


@dataclass
class EpisodeRecorder:
    """Collects one environment's steps; at each episode end hands the episode to the writer.

    Attributes:
        writer: Where finished episodes go (it computes R, s^T and g and writes parts).
        curve: (lifetime step at the episode's end, undiscounted return) per finished episode.
    """

    writer: TaskWriter
    curve: list[tuple[int, float]] = field(default_factory=list)
    _steps: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def pending_steps(self) -> int:
        """Steps of the episode in progress."""
        return len(self._steps.get("rewards", ()))

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        *,
        terminated: bool,
        truncated: bool,
    ) -> float | None:
        """Record one step; returns the episode's return when this step ended it."""
        values = {"obs": obs, "actions": action, "rewards": reward, "next_obs": next_obs}
        for key, value in values.items():
            self._steps.setdefault(key, []).append(np.asarray(value, dtype=np.float32))
        if terminated or truncated:
            return self._finish(terminated)
        return None

    def close(self) -> None:
        """Write the episode in progress (cut by the end of collection, so truncated)."""
        if self.pending_steps:
            self._finish(terminated=False)

    def _finish(self, terminated: bool) -> float:
        arrays = {k: np.stack(v) for k, v in self._steps.items()}
        self._steps = {}
        self.writer.add_episode(
            arrays["obs"],
            arrays["actions"],
            arrays["rewards"],
            arrays["next_obs"],
            terminated=terminated,
        )
        episode_return = float(arrays["rewards"].astype(np.float64).sum())
        self.curve.append((self.writer.rows_written, episode_return))
        return episode_return
