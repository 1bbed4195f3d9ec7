"""Names of what runs write: files in output directories and keys of training results.

Below every package that writes or reads them, so that a reader (reports, resume checks) never
imports the code that writes (the training loop, the Tune runner).
"""

# A `ray-macaw train` output directory (training/train.py).
LATEST = "latest"  # the newest checkpoint (`latest.previous`: the one before)
METRICS_FILE = "metrics.jsonl"  # one line of scalar results per meta-step
OWNER_FILE = ".owner.lock"  # the process that owns the directory (runtime/ownership.py)

# A `ray-macaw tune` experiment directory (tune/run.py).
SPEC_FILE = "ray_macaw_tune.yaml"  # the experiment's spec, saved for reports
FINETUNE_FILE = "finetune.json"  # per trial: the online fine-tuning summary (spec.finetune)
# A trial's config key of the seed grid (its `seed` is read from it). Tune steps grid keys in
# sorted order, the first fastest; "~" sorts after every setting name, so seeds vary slowest:
# an interrupted experiment has every variant and searched value at its first seed before any
# trial runs a second one.
SEED_GRID = "~seed"

# Keys of a training result (algorithms/common/metrics.py), beside RLlib's standard ones.
META_STEPS = "num_meta_steps_lifetime"
LOSSES = "macaw"  # inner/outer losses and AWR weight statistics, by name
GRAD_NORMS = "grad_norm"
INNER_LRS = "inner_lr"
ADV_COEF = "adv_coef"
TIMINGS = "timing"
SKIPPED_STEPS = "num_non_finite_steps_skipped"  # updates skipped for a non-finite loss/gradient
# The latest held-out evaluation, repeated in every result so that Tune schedulers and reports
# always find it (NaN before the first evaluation); "meta_step" says when it was measured.
HELD_OUT = "held_out"
PRE_ADAPTATION, POST_ADAPTATION = "pre_adaptation_return_mean", "post_adaptation_return_mean"
HELD_OUT_KEYS = (PRE_ADAPTATION, POST_ADAPTATION)
# In every result: `TaskDatasets.fingerprint` of the parts the run reads (trials on other bytes,
# e.g. data collected again on another machine, never join one record: report/record.py).
DATA_FINGERPRINT = "data_fingerprint"
# The held-out evaluation of the untrained model (meta-step 0), in the first result only, so that
# learning curves start where training starts (the authors evaluate at step 0, spec §7.1).
EVALUATION_AT_START = "evaluation_at_start"
