"""Supervised weight-transform experiment (paper appendix C.1, Figure 6).

MAML (exact second order) on few-shot supervised problems, comparing three 4-hidden-layer MLPs:
weight-transform layers, plain layers of the same width, and plain layers wide enough to match the
weight-transform model's parameter count. See docs/supervised.md.

- `config`: the validated run settings (`SupervisedConfig`).
- `models`: the three MLPs and their parameter counts.
- `maml`: the functional inner loop and the outer Adam step.
- `tasks`, `omniglot`: the few-shot task families (sinusoid regression; Omniglot from a local copy).
- `train`: the meta-training loop with train / validation evaluations.
- `experiment`, `tune_run`: the YAML experiment files and their Ray Tune runs.
- `report`: tables and the Figure-6-like plot.
"""
