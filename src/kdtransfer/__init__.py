"""kdtransfer: what does knowledge distillation really transfer?

The package holds the science as plain functions. Importing it (or `kdtransfer.config`,
`kdtransfer.data`, the analysis modules) never imports torch, so the Snakefile parses fast.
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
