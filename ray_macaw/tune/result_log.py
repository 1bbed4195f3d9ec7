"""Keep a retried trial's result log whole.

Tune writes each trial's `result.json` (and `progress.csv`) in a driver staging folder and
copies that folder to the storage path only now and then (every few seconds to minutes, and
every `keep_checkpoints` trial checkpoints). When a trial fails and is retried from its
checkpoint, Tune first copies the storage path's logs back over the staging ones, so every line
logged since the last copy is lost: reports, which read `result.json`, then show a gap in the
curve (tests/test_faults.py; seen on CI). This callback uploads the staging logs when the trial
fails, before the retry reads them back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow.fs
from ray.air.constants import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE
from ray.tune import Callback

logger = logging.getLogger(__name__)

LOGS = (EXPR_RESULT_FILE, EXPR_PROGRESS_FILE)  # what Tune's loggers restore from storage


class KeepResultLogOnRetry(Callback):
    """Uploads a failed trial's result logs to its storage folder before Tune retries it."""

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        for name in LOGS:
            _upload(Path(trial.local_path, name), trial)


def _upload(local: Path, trial: Any) -> None:
    remote = Path(trial.storage.trial_fs_path, local.name).as_posix()
    if not local.is_file() or remote == local.as_posix():  # nothing to keep
        return
    try:
        pyarrow.fs.copy_files(
            local.as_posix(), remote, destination_filesystem=trial.storage.storage_filesystem
        )
    except OSError as err:  # the retry still runs; only the log's tail is at stake
        logger.warning("could not keep %s's %s before its retry: %s", trial, local.name, err)
