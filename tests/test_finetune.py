"""Online fine-tuning's schedule (spec §7.3): FIFO, burn-in, the data's discount, presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ray_macaw.data import columns as C
from ray_macaw.errors import UnknownNameError
from ray_macaw.evaluation.finetune import (
    PAPER_SCHEDULE,
    FineTuneConfig,
    ReplayFIFO,
    data_gamma,
    fine_tune_buffer,
    online_rounds,
)
from tests.helpers import write_root


def trajectory(start: int, length: int = 20) -> dict[str, np.ndarray]:
    """Rows tagged with their global index in the mc_return column."""
    return {C.MC_RETURN: np.arange(start, start + length, dtype=np.float32)}


def adaptation_batch(rows: int = 32) -> dict[str, torch.Tensor]:
    return {C.MC_RETURN: torch.full((rows,), -1.0)}  # tag -1: an adaptation row


def test_fifo_keeps_the_newest_rows_and_never_exceeds_its_size() -> None:
    fifo = ReplayFIFO(50)
    rng = np.random.default_rng(0)
    for k in range(10):
        fifo.add(trajectory(20 * k))
        assert fifo.rows == min(20 * (k + 1), 50)
        sampled = fifo.sample(30, rng)[C.MC_RETURN].numpy()
        newest = 20 * (k + 1)
        assert sampled.min() >= newest - 50 and sampled.max() < newest
        assert len(set(sampled.tolist())) == len(sampled)  # without replacement
    np.testing.assert_array_equal(fifo.columns[C.MC_RETURN], np.arange(150, 200))


def test_the_authors_buffer_never_yields_an_adaptation_row() -> None:
    cfg = FineTuneConfig(budgets=(400,), batch_size=16, fifo_size=100)
    buffer = fine_tune_buffer(cfg, adaptation_batch())
    assert buffer.rows == 0
    rng, seen = np.random.default_rng(0), []
    for k in range(20):
        buffer.add(trajectory(20 * k))
        seen.append(buffer.sample(16, rng)[C.MC_RETURN].numpy())
        assert buffer.rows <= 100
    assert np.concatenate(seen).min() >= 0
    paper = fine_tune_buffer(FineTuneConfig.preset("paper", batch_size=16), adaptation_batch())
    assert paper.rows == 32 and paper.capacity is None  # the aggregate buffer keeps them


def test_no_update_before_the_burn_in_nor_before_a_batch_fits() -> None:
    cfg = FineTuneConfig(budgets=(100, 300), burn_in_rounds=3, batch_size=70, fifo_size=None)
    buffer, rounds, updates = ReplayFIFO(None), [0], []

    def explore() -> dict[str, np.ndarray]:
        rounds[0] += 1
        return trajectory(0)

    results = online_rounds(
        cfg, buffer, explore, lambda: updates.append(rounds[0] - 1), measure=lambda: 1.5
    )
    # rounds 0-2 are burn-in; round 3 holds 80 >= 70 rows: the first update is in round 3
    assert updates == list(range(3, 15))
    assert [r["rounds"] for r in results] == [5, 15]
    assert [r["rounds_with_updates"] for r in results] == [2, 12]
    assert [r["online_steps"] for r in results] == [100, 300]
    late = FineTuneConfig(budgets=(100,), burn_in_rounds=0, batch_size=70, fifo_size=None)
    updates.clear()
    rounds[0] = 0
    online_rounds(late, ReplayFIFO(None), explore, lambda: updates.append(rounds[0] - 1), lambda: 0)
    assert updates == [3, 4]  # no burn-in, but 20, 40 and 60 rows cannot fill a batch of 70


def test_gamma_comes_from_the_data_unless_set(tmp_path: Path) -> None:
    write_root(tmp_path, task_ids=(0,), episodes=1, gamma=0.9)
    assert data_gamma(FineTuneConfig(), str(tmp_path), "point-robot") == pytest.approx(0.9)
    assert data_gamma(FineTuneConfig(gamma=0.5), str(tmp_path), "point-robot") == 0.5


def test_presets_and_settings_are_checked() -> None:
    authors = FineTuneConfig()
    assert (authors.value_steps, authors.policy_steps, authors.burn_in_rounds) == (100, 200, 26)
    assert (authors.fifo_size, authors.keep_adaptation_rows, authors.interleave) == (
        50_000,
        False,
        False,
    )
    assert authors.eval_episodes == 3 and authors.value_lr == authors.policy_lr == 1e-5
    paper = FineTuneConfig.preset("paper", budgets=(10,))
    assert {k: getattr(paper, k) for k in PAPER_SCHEDULE} == PAPER_SCHEDULE
    assert paper.budgets == (10,)
    with pytest.raises(UnknownNameError, match="did you mean 'paper'"):
        FineTuneConfig.preset("papr")
    with pytest.raises(ValueError, match="cannot serve batches"):
        FineTuneConfig(fifo_size=100, batch_size=256)
    with pytest.raises(ValueError, match="burn_in_rounds cannot be negative"):
        FineTuneConfig(burn_in_rounds=-1)
