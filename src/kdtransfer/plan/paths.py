"""Where the workflow's files live, spelled once: the plan fills these templates in (run keys,
data files, run directories) and the rules use them as they are for their outputs and input
functions (workflow/rules/*.smk), so a rule's output and the path an input function asks for
can never drift apart.

Templates are `str.format` patterns whose fields are the rules' wildcards: filled in with a
run's key and seed they name its files; filled in with a key template and "{seed}" they are a
training rule's output pattern.
"""

from __future__ import annotations

# Hex digits of the digest that ends every data and run key (kdtransfer.plan.runs.digest).
DIGEST_LENGTH = 8

# Prepared arrays of a dataset, named by the digest of its loader and options.
DATA_KEY = "{dataset}-{digest}"
DATA_FILE = f"results/data/{DATA_KEY}.npz"

# Data the loaders read from disk: rule download_dataset fetches it by hand, leaving a marker.
DOWNLOAD_MARKER = "resources/data/{name}.done"

# Run keys, the directories below results/runs: teachers and controls by what they depend on,
# kd and rcd students by their setup; each ends in the digest of everything the run depends on.
REFERENCE_KEY = "{condition}/{dataset}/{model}/{recipe}-{digest}"
DISTILLED_KEY = "{condition}/{setup}-{digest}"
RUN_DIR = "results/runs/{key}/seed{seed}"
# What a training job writes into its run directory.
WEIGHTS = "model.pt"
HISTORY = "history.parquet"
PREDICTIONS = "predictions_{split}.parquet"
# One training job per pack (a run key's runs over one block of seeds: kdtransfer.plan.packs),
# its log and benchmark named by the run key and the block's label (`seeds0to9`).
TRAIN_LOG = "logs/train/{key}/{pack}.log"
TRAIN_BENCHMARK = "benchmarks/train/{key}/{pack}.tsv"

# The analysis: per setup, then over all setups.
SETUP_METRICS = "results/analysis/metrics/{setup}.parquet"
SETUP_DISCORDANCE = "results/analysis/discordance/{setup}.parquet"
METRICS = "results/analysis/metrics.parquet"
TESTS = "results/analysis/tests.parquet"
VERDICTS = "results/analysis/verdicts.parquet"
FIGURE = "results/figures/{name}.{ext}"
TABLE = "results/tables/{name}.{ext}"


def run_dir(key: str, seed: int | str) -> str:
    return RUN_DIR.format(key=key, seed=seed)


def run_file(key: str, seed: int | str, name: str) -> str:
    """A file of one run: run_file(key, 3, WEIGHTS) = results/runs/<key>/seed3/model.pt."""
    return f"{run_dir(key, seed)}/{name}"


def predictions_file(key: str, seed: int | str, split: str) -> str:
    return run_file(key, seed, PREDICTIONS.format(split=split))

