"""kdtransfer: what does knowledge distillation really transfer?

Two halves that meet only at the predictions contract (kdtransfer.io.predictions):

- `plan/` turns a config into runs, each described by a `spec.RunSpec`; `training/` trains a
  run and writes its per-sample predictions (the only half that imports torch);
- `analysis/` reads predictions alone: metrics, tests, verdicts, figures and tables.

`catalog` (names), `options` (option types), `spec` (what a run is) and `paths` (rule names and
result paths) are the vocabulary both halves share; `data/` holds the datasets; `io/` the files
between the halves and the jobs.
Importing the package, the plan, io, data or the analysis never imports torch, so the
Snakefile parses fast and analysis jobs stay light (tests/test_layout.py).
"""

__version__ = "0.1.0"

# Bump when a change alters trained models: the training rules take it as a param (CHANGELOG.md).
TRAINING_REVISION = 3
# Bump when a change alters analysis outputs: the analysis rules take it as a param (CHANGELOG.md).
ANALYSIS_REVISION = 4
