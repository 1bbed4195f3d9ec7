"""Running a config: run files and the `train` loop (checkpoints, metrics log, resume)."""
