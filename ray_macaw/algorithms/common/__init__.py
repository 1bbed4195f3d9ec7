"""What MACAW and Offline PEARL share: the offline meta-algorithm base and its config, checkpoints,
metrics and devices."""
