"""Offline data: the Parquet format, per-episode returns, writer, TaskDatasets and samplers."""

from ray_macaw.data.datasets import TaskDatasets
from ray_macaw.data.manifest import Manifest
from ray_macaw.data.shards import DatasetWriter, TaskWriter
from ray_macaw.data.task_data import TaskData

__all__ = ["DatasetWriter", "Manifest", "TaskData", "TaskDatasets", "TaskWriter"]
