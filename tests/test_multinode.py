"""Multi-node collection on loopback: a head and a second raylet on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import yaml
from ray.cluster_utils import Cluster

from ray_macaw.collect.config import CollectConfig
from ray_macaw.collect.run import collect
from ray_macaw.data.datasets import TaskDatasets


def loopback_address(cluster: Cluster) -> str:
    """The head's GCS address on 127.0.0.1 (`Cluster.address` names the host's network IP)."""
    return f"127.0.0.1:{cluster.address.rsplit(':', 1)[1]}"


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """A real two-raylet Ray cluster on this machine, one CPU per node."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"},
    )
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    ray.init(address=loopback_address(cluster))
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_collectors_spread_over_both_nodes(tmp_path: Path, two_nodes: Cluster) -> None:
    node_ids = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert len(node_ids) == 2
    config = CollectConfig(
        family="point-robot",
        root=str(tmp_path),
        tasks="0-3",
        steps=200,
        algo="random",
        rows_per_part=100,
    )
    summary = collect(config, address=loopback_address(two_nodes), show_progress=False)
    used = {result["node_id"] for result in summary["collected"].values()}
    assert used == node_ids  # actors landed on both nodes
    data = TaskDatasets(tmp_path)
    assert data.task_ids == (0, 1, 2, 3)  # every shard arrived under ROOT
    assert all(data.load(t).n_rows == 200 for t in data.task_ids)


def test_train_places_inner_loop_workers_on_both_nodes(
    tmp_path: Path, two_nodes: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from ray_macaw.cli.main import main

    collect(
        CollectConfig(family="point-robot", root=str(tmp_path), tasks="0-5", steps=400,
                      algo="random", rows_per_part=200),
        address=loopback_address(two_nodes),
        show_progress=False,
    )  # fmt: skip
    run_file = tmp_path / "run.yaml"
    run_file.write_text(
        yaml.safe_dump(
            {
                "family": "point-robot",
                "data_root": str(tmp_path),
                "train_tasks": [0, 1, 2, 4, 5],
                "test_tasks": [3],
                "hidden": [32, 32],
                "latent_dim": 8,
                "task_batch_size": 4,
                "inner_batch_size": 32,
                "outer_batch_size": 32,
                "eval_adaptation_batch_size": 32,
                "num_inner_loop_workers": 2,
                "num_cpus_per_inner_worker": 0.5,  # leaves room for the evaluation tasks
                "eval_num_cpus_per_task": 0.5,
                "evaluation_interval": 2,
                "stop_meta_steps": 4,
                "checkpoint_every": 2,
                "out": str(tmp_path / "run"),
            }
        )
    )
    address = loopback_address(two_nodes)
    assert main(["train", str(run_file), "--address", address, "--json"]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    node_ids = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert sorted(summary["inner_worker_nodes"]) == sorted(node_ids)  # one worker per node
    assert summary["meta_step"] == 4 and "post_adaptation_return_mean" in summary


def test_shared_storage_check_sees_every_node(tmp_path: Path, two_nodes: Cluster) -> None:
    from ray_macaw.runtime.shared_storage import check_shared

    check_shared(tmp_path / "root")  # both raylets share this machine's disk
    assert not list((tmp_path / "root").iterdir())  # the marker is removed again
    (tmp_path / "root" / "manifest.json").write_text("{}")
    check_shared(tmp_path / "root", probe="manifest.json")  # read-only: compares its content


def test_replicas_on_both_nodes_hold_identical_weights(tmp_path: Path, two_nodes: Cluster) -> None:
    """Issue 16: the replicas' gloo group spans the two raylets; after 3 all-reduced steps every
    replica holds rank 0's weights, bit for bit."""
    import torch
    from helpers import write_root

    from ray_macaw import MACAWConfig

    write_root(tmp_path, "point-robot", task_ids=(0, 1, 2, 3, 4), episodes=10)
    algo = (
        MACAWConfig()
        .environment(family="point-robot", train_tasks=[0, 1, 2, 4], test_tasks=[3])
        .offline_data(root=str(tmp_path), buffer_stride=1)
        .training(hidden=(16, 16), latent_dim=4, task_batch_size=3, inner_batch_size=32,
                  outer_batch_size=32)
        .inner_loop_workers(num_workers=2, num_cpus_per_worker=0.5)
        .evaluation(evaluation_interval=0, at_start=False, adaptation_batch_size=32)
        .build_algo()
    )  # fmt: skip
    try:
        for _ in range(3):
            algo.train()
        node_ids = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert sorted(algo.inner_worker_nodes()) == sorted(node_ids)  # one replica per node
        rank0, rank1 = (
            s["model"] for s in ray.get([w.get_state.remote() for w in algo.inner_workers])
        )
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
        assert algo.num_meta_steps == 3
    finally:
        algo.stop()
