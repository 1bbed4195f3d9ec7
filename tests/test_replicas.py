"""Data-parallel replicas (issue 16): balanced shares, held buffers, 0/1/2/3 workers agreeing,
identical replicas, no weights per step, a non-finite step skipped everywhere, restore."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from helpers import write_root

from ray_macaw import MACAW, MACAWConfig
from ray_macaw.algorithms.common.factor_gather import FactorGather, transform_matrices
from ray_macaw.algorithms.common.replicas import split_balanced
from ray_macaw.data.batches import BATCH_COLUMNS, BufferLayout, sample_requests
from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.held import BufferSources, load_task
from ray_macaw.data.samplers import contiguous_batch, select_rows, uniform_batch

TRAIN, TEST = [0, 1, 2, 4], [3]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("replica-data")
    write_root(path, "point-robot", task_ids=(0, 1, 2, 3, 4), episodes=20, rows_per_part=200)
    return str(path)


def config(root: str, workers: int = 0) -> MACAWConfig:
    return (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=TRAIN, test_tasks=TEST)
        .offline_data(root=root, buffer_stride=7)
        .training(hidden=(32, 32), latent_dim=8, task_batch_size=3, inner_batch_size=32,
                  outer_batch_size=32)
        .inner_loop_workers(num_workers=workers, num_cpus_per_worker=0.5)
        .evaluation(evaluation_interval=10**6, adaptation_batch_size=32, num_cpus_per_task=0.5,
                    at_start=False)
        .debugging(seed=5)
    )  # fmt: skip


@pytest.mark.parametrize("items", [0, 1, 3, 5, 7, 32])
@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_shares_are_balanced_whatever_the_tasks(items: int, parts: int) -> None:
    shares = split_balanced(list(range(items)), parts)
    assert len(shares) == parts and [i for share in shares for i in share] == list(
        range(items)
    )  # order kept
    assert max(map(len, shares)) <= math.ceil(items / parts)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_only_the_buffers_rows_are_held(root: str) -> None:
    full = TaskDatasets(root, "point-robot").load(0)
    outer_cut = {"size": -1, "stride": 7}
    same_rows = {"size": -1, "stride": 7, "position": "end", "middle_centre": "half"}
    shared = load_task(BufferSources(root, "point-robot", same_rows, outer_cut), 0)
    assert shared.inner is None  # the same rows: one held buffer serves both
    rows = select_rows(full.n_rows, **outer_cut)
    for column in BATCH_COLUMNS:
        np.testing.assert_array_equal(shared.outer.columns[column], full.columns[column][rows])
    whole = sum(full.columns[c].nbytes for c in BATCH_COLUMNS)
    assert shared.nbytes <= whole / 6.9
    inner_cut = {"size": 100, "stride": 1, "position": "start", "middle_centre": "half"}
    cut_apart = load_task(BufferSources(root, "point-robot", inner_cut, outer_cut), 0)
    assert cut_apart.inner is not None and cut_apart.inner.n_rows == 100
    np.testing.assert_array_equal(cut_apart.inner.columns["obs"], full.columns["obs"][:100])


def test_requests_name_the_rows_the_old_row_positions_named() -> None:
    """Positions in the buffers, drawn with the same random numbers as row numbers were: the
    same seed gives the same batches as before the buffers were cut at load."""
    layout = BufferLayout.build({0: 1000, 1: 700}, {"stride": 7}, {"stride": 7})
    assert isinstance(layout.inner[0], range) and len(layout.outer[1]) == 100
    (request, *_) = sample_requests(layout, [0, 1], 1, 32, 16, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    rng.choice([0, 1], size=1, replace=False)
    positions = select_rows(1000 if request.task_id == 0 else 700, stride=7)
    np.testing.assert_array_equal(
        positions[request.inner_rows], contiguous_batch(positions, 32, rng)
    )
    np.testing.assert_array_equal(positions[request.outer_rows], uniform_batch(positions, 16, rng))


def replica_weights(algo: MACAW) -> list[dict[str, torch.Tensor]]:
    return [s["model"] for s in ray.get([w.get_state.remote() for w in algo.inner_workers])]


@dataclass
class Run:
    """What a run with some workers leaves after 3 meta-steps (then one more, logged)."""

    weights: dict[str, torch.Tensor]  # the driver's, rank 0's when read
    replicas: list[dict[str, torch.Tensor]]
    held_bytes: int
    collective_bytes: list[dict[str, int]]  # each replica's, in the 4th step
    parameters: int  # floats, not counting the transform matrices (their gradients are factored)
    tensors: int  # likewise
    matrix_shapes: list[tuple[int, int]]
    shares: list[int]  # tasks per replica in the 4th step


def run(root: str, workers: int) -> Run:
    algo = config(root, workers).build_algo()
    try:
        for _ in range(3):
            algo.train()
        replicas = replica_weights(algo)
        weights = {k: v.clone() for k, v in algo.model.state_dict().items()}
        shares = []
        if workers:
            assert algo.pool.log == []  # reading the model fetched rank 0's state
            algo.train()
            (logged,) = algo.pool.log  # the steps since, to replay after a loss
            shares = [len(share) for share in logged.shares]
        matrices = {id(m) for m in transform_matrices(algo.model)}
        others = [p for p in algo.model.parameters() if id(p) not in matrices]
        return Run(
            weights,
            replicas,
            algo.held_bytes,
            ray.get([w.collective_bytes.remote() for w in algo.inner_workers]),
            sum(p.numel() for p in others),
            len(others),
            [tuple(m.shape) for m in transform_matrices(algo.model)],
            shares,
        )
    finally:
        algo.stop()  # its CPUs are the next run's


@pytest.fixture(scope="module")
def runs(root: str, ray_local: None) -> dict[int, Run]:
    """0, 1, 2 and 3 workers."""
    return {workers: run(root, workers) for workers in (0, 1, 2, 3)}


def test_zero_to_three_workers_give_the_same_weights(runs: dict[int, Run]) -> None:
    for workers in (1, 2, 3):
        for name, value in runs[0].weights.items():
            torch.testing.assert_close(
                runs[workers].weights[name], value, atol=1e-5, rtol=0, msg=name
            )


def test_every_replica_holds_rank_0s_weights(runs: dict[int, Run]) -> None:
    for workers in (1, 2, 3):
        rank0, *others = runs[workers].replicas
        assert len(others) == workers - 1
        for weights in [*others, runs[workers].weights]:  # the driver's is rank 0's too
            assert all(torch.equal(rank0[k], weights[k]) for k in rank0)


def test_no_replica_computes_more_than_its_share(runs: dict[int, Run]) -> None:
    for workers in (1, 2, 3):
        assert runs[workers].shares == [len(s) for s in split_balanced([0] * 3, workers)]
        assert max(runs[workers].shares) <= math.ceil(3 / workers)


def test_a_step_moves_less_than_one_gradient_and_no_weights(runs: dict[int, Run]) -> None:
    for workers in (1, 2, 3):
        r = runs[workers]
        # All-reduced: the gradients but the transform matrices', one has-a-gradient flag per
        # tensor, the non-finite count and every rank's factor rows per matrix.
        flags = 1 + workers * len(r.matrix_shapes)
        assert [b["all_reduce"] for b in r.collective_bytes] == [
            4 * (r.parameters + r.tensors + flags)
        ] * workers
        # The transform matrices: each one's factors, at most 1 + 2 x (the largest share) rows
        # of (rows + columns of M), or the dense matrix where that is smaller.
        rows = 1 + 2 * max(r.shares)
        bound = 4 * sum(min(rows * (a + b), a * b) for a, b in r.matrix_shapes)
        sent = [b["all_gather"] for b in r.collective_bytes]
        assert len(set(sent)) == 1 and 0 < sent[0] <= bound


def test_each_rank_puts_its_factor_rows_in_its_own_slots() -> None:
    matrices = [torch.zeros(6, 2), torch.zeros(3, 2), torch.zeros(4, 2)]
    own = [(torch.ones(3, 6), torch.ones(3, 2)), None, (torch.ones(1, 4), torch.ones(1, 2))]
    # Rank 1 of 3: zeros but slots 3-5 (its row counts per matrix; none for the second).
    assert FactorGather(matrices).row_slots(own, rank=1, world=3) == [0, 0, 0, 3, 0, 1, 0, 0, 0]


def test_a_replica_process_does_not_import_rllib() -> None:
    """Its module and settings are RLlib-free: importing RLlib would cost each replica seconds."""
    probe = (
        "import sys, ray_macaw.algorithms.replica.workers as w; "
        "print(sorted(m for m in sys.modules if m.startswith('ray.rllib')), w.InnerLoopWorker)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("[] ")  # and the replica actor class was defined


def test_held_buffers_are_a_seventh_of_the_rows(root: str, runs: dict[int, Run]) -> None:
    data = TaskDatasets(root, "point-robot")
    whole = sum(data.task_record(t).rows for t in TRAIN) * 4 * (2 + 2 + 1 + 2 + 1)
    for workers in (0, 2):
        assert runs[workers].held_bytes <= whole / 6.9


def test_a_non_finite_gradient_is_skipped_on_every_replica(root: str, ray_local: None) -> None:
    algo = config(root, 2).build_algo()
    try:
        algo.train()
        before = replica_weights(algo)
        steps = [s["optimizers"]["value"]["state"][0]["step"].item() for s in
                 ray.get([w.get_state.remote() for w in algo.inner_workers])]  # fmt: skip

        def poison(replica: object) -> None:  # rank 1 only: its gradient is NaN
            first = next(replica.computer.model.policy.parameters())  # type: ignore[attr-defined]
            with torch.no_grad():
                first.view(-1)[0] = float("nan")

        ray.get(algo.inner_workers[1].__ray_call__.remote(poison))
        result = algo.train()
        assert result["learners"]["num_non_finite_steps_skipped"] == 1
        after = replica_weights(algo)
        assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])  # rank 0 unmoved
        states = ray.get([w.get_state.remote() for w in algo.inner_workers])
        assert [s["optimizers"]["value"]["state"][0]["step"].item() for s in states] == steps
    finally:
        algo.stop()


def test_restoring_a_checkpoint_loads_every_replica(
    root: str, ray_local: None, tmp_path: Path
) -> None:
    algo = config(root, 2).build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))  # rank 0's state
        algo.train()
        expected = {k: v.clone() for k, v in algo.model.state_dict().items()}
        algo.restore_from_path(str(tmp_path / "ckpt"))  # pushed to both replicas
        algo.train()
        for weights in replica_weights(algo):
            assert all(torch.equal(expected[k], weights[k]) for k in expected)
    finally:
        algo.stop()


def test_gloo_is_pointed_at_the_interface_of_the_ray_node_address() -> None:
    """Across hosts (or network namespaces) gloo must use the address peers reach: the Ray node
    address's interface (tests/test_multihost.py trains 2 replicas across namespaces)."""
    from ray_macaw.algorithms.common.replicas import interface_of

    assert interface_of("127.0.0.1") == "lo"
    assert interface_of("203.0.113.7") is None  # TEST-NET-3: on no interface here
