"""The RLlib Algorithms: `common/` (the offline meta-RL base they share), `macaw/` and `pearl/`."""
