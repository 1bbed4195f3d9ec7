"""Multi-node collection on loopback: a head and a second raylet on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from ray_macaw.data.collect import collect
from ray_macaw.data.collect_config import CollectConfig
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
