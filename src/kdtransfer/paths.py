"""Where the workflow's files live and what its rules are called, spelled once: the plan fills
these templates in (run keys, data files, run directories) and the rules use them as they are
for their outputs and input functions (workflow/rules/*.smk), so a rule's output and the path
an input function asks for can never drift apart.

Templates are `str.format` patterns whose fields are the rules' wildcards: filled in with a
run's key and seed they name its files; filled in with a key template and "{seed}" they are a
training rule's output pattern. Messages that tell a user what to run name rules through the
constants here (tests/test_dag.py holds them to the workflow's rules). Imports nothing above
kdtransfer.catalog, so the data, io and analysis layers use it as the plan does.
"""

from __future__ import annotations

from pathlib import Path

from kdtransfer.catalog import DISTILLED_CONDITIONS, REFERENCE_CONDITIONS

# The workflow's directories, relative to its working directory. Downloads go to DATA_DIR;
# each loader's default root lies below it.
RESULTS_DIR = "results"
DATA_DIR = "resources/data"

# Rules a message may tell a user to run. Training has one rule per block of seeds, named
# <kind>_<block label> (train_reference_seeds0to9): see pack_rule_name.
DOWNLOAD_RULE = "download_dataset"
DOWNLOAD_TARGET = "download_data"  # every download of a config
PREPARE_RULE = "prepare_data"
TRAIN_REFERENCE_RULE = "train_reference"  # teachers and controls
TRAIN_DISTILLED_RULE = "train_distilled"  # kd and rcd students
STATISTICS_RULE = "statistics"  # tests.parquet and verdicts.parquet

# Hex digits of the digest that ends every data and run key (kdtransfer.plan.runs.digest).
DIGEST_LENGTH = 8

# Prepared arrays of a dataset, named by the digest of its loader and options.
DATA_KEY = "{dataset}-{digest}"
DATA_FILE = f"{RESULTS_DIR}/data/{DATA_KEY}.npz"

# Data the loaders read from disk: rule download_dataset fetches it by hand, leaving a marker.
DOWNLOAD_MARKER = f"{DATA_DIR}/{{name}}.done"

# Run keys, the directories below results/runs: teachers and controls by what they depend on,
# kd and rcd students by their setup; each ends in the digest of everything the run depends on.
REFERENCE_KEY = "{condition}/{dataset}/{model}/{recipe}-{digest}"
DISTILLED_KEY = "{condition}/{setup}-{digest}"
RUNS_DIR = f"{RESULTS_DIR}/runs"
RUN_DIR = f"{RUNS_DIR}/{{key}}/seed{{seed}}"
# What a training job writes into its run directory.
WEIGHTS = "model.pt"
HISTORY = "history.parquet"
PREDICTIONS = "predictions_{split}.parquet"
# One training job per pack (a run key's runs over one block of seeds: kdtransfer.plan.packs),
# its log and benchmark named by the run key and the block's label (`seeds0to9`).
TRAIN_LOG = "logs/train/{key}/{pack}.log"
TRAIN_BENCHMARK = "benchmarks/train/{key}/{pack}.tsv"

# The analysis: per setup, then over all setups.
SETUP_METRICS = f"{RESULTS_DIR}/analysis/metrics/{{setup}}.parquet"
SETUP_DISCORDANCE = f"{RESULTS_DIR}/analysis/discordance/{{setup}}.parquet"
METRICS = f"{RESULTS_DIR}/analysis/metrics.parquet"
TESTS = f"{RESULTS_DIR}/analysis/tests.parquet"
VERDICTS = f"{RESULTS_DIR}/analysis/verdicts.parquet"
FIGURE = f"{RESULTS_DIR}/figures/{{name}}.{{ext}}"
TABLE = f"{RESULTS_DIR}/tables/{{name}}.{{ext}}"
REPORT = f"{RESULTS_DIR}/report.html"


def pack_rule_name(kind: str, block_label: str) -> str:
    """The training rule of one block of seeds: pack_rule_name(TRAIN_REFERENCE_RULE, "seeds0to9")."""
    return f"{kind}_{block_label}"


def in_results(template: str, results: str | Path) -> Path:
    """A results path moved below another results directory (`results` instead of RESULTS_DIR)."""
    return Path(results) / Path(template).relative_to(RESULTS_DIR)


def training_rule_of(path: str | Path) -> str:
    """The training rules that make a file of a run (below RUNS_DIR/<condition>/), as a user
    reads them; "the training rule" for a path outside RUNS_DIR."""
    parts = Path(path).parts
    runs = Path(RUNS_DIR).parts[-1]
    condition = parts[parts.index(runs) + 1] if runs in parts[:-1] else None
    for kind, conditions in (
        (TRAIN_REFERENCE_RULE, REFERENCE_CONDITIONS),
        (TRAIN_DISTILLED_RULE, DISTILLED_CONDITIONS),
    ):
        if condition in conditions:
            return f"its training pack (rule {pack_rule_name(kind, 'seeds...')})"
    return "the training rule"


def run_dir(key: str, seed: int | str) -> str:
    return RUN_DIR.format(key=key, seed=seed)


def run_file(key: str, seed: int | str, name: str) -> str:
    """A file of one run: run_file(key, 3, WEIGHTS) = results/runs/<key>/seed3/model.pt."""
    return f"{run_dir(key, seed)}/{name}"


def predictions_file(key: str, seed: int | str, split: str) -> str:
    return run_file(key, seed, PREDICTIONS.format(split=split))
