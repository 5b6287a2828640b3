"""kdtransfer: what does knowledge distillation really transfer?

Two halves that meet only at the predictions contract (kdtransfer.io.predictions):

- `plan/` turns a config into runs, each described by a `spec.RunSpec`; `training/` trains a
  run and writes its per-sample predictions (the only half that imports torch);
- `analysis/` reads predictions alone: metrics, tests, verdicts, figures and tables.

`catalog` (names), `options` (option types) and `spec` (what a run is) are the vocabulary both
halves share; `data/` holds the datasets; `io/` the files between the halves and the jobs.
Importing the package, the plan, io, data or the analysis never imports torch, so the
Snakefile parses fast and analysis jobs stay light (tests/test_layout.py).
"""

__version__ = "0.1.0"

# Bump when a change to the package alters trained models (training revision) or analysis
# outputs (analysis revision). The rules pass these as params, so a bump re-runs exactly the
# affected jobs; refactors that change no result do not cost GPU hours.
# 2: image batches and models channels_last on CPU too (2-D convolutions round differently).
# 3: augmentation and dropout seeded by (seed, data-order role), no longer by the condition, so
#    kd, rcd and nokd see the same crops; channels_last on CUDA only (oneDNN 3.12's strided 1x1
#    convolution backward corrupts memory on CPU at one thread with < 8 input channels).
TRAINING_REVISION = 3
# 2: metrics gain num_parameters; verdicts give RCD's share of KD's gain only for a positive gain.
# 3: per-sample McNemar/CMH rows (their own FDR family) and seed/only_a_agrees/only_b_agrees
#    columns in tests.parquet.
# 4: verdicts carry tri-state claim flags with notes (kd_accuracy_gain, rcd_matches_kd added).
ANALYSIS_REVISION = 4
