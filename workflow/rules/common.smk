# Helpers only: config validation, run enumeration (science-free; kdtransfer.plan.runs does it).
import sys

import kdtransfer
from kdtransfer.plan.config import ConfigError, validate_config
from kdtransfer.plan import paths
from kdtransfer.plan.runs import Plan, canonical
from kdtransfer.catalog import DISTILLED_CONDITIONS, REFERENCE_CONDITIONS

try:
    _validated = validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_validated)

try:
    PLAN = Plan(config)
except (ConfigError, ValueError) as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
SETUPS = PLAN.setups
RUNS = PLAN.runs
SPLITS = config["training"]["predict_splits"]

if not RUNS:
    raise WorkflowError("the config produces no runs: check `seeds` and `setups`")


wildcard_constraints:
    seed=r"\d+",
    setup=r"[A-Za-z][A-Za-z0-9_]*",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    recipe=r"[A-Za-z0-9_]+",
    digest=r"[0-9a-f]{%d}" % paths.DIGEST_LENGTH,
    split="|".join(SPLITS),


def run_files(runs, name):
    return [f"{run.directory}/{name}" for run in runs]


def teacher_outputs(wildcards):
    return run_files([r for r in RUNS if r.condition == "teacher"], "model.pt")


def student_outputs(wildcards):
    return run_files([r for r in RUNS if r.condition != "teacher"], "model.pt")


def prediction_outputs(wildcards):
    return [f"{r.directory}/predictions_{split}.parquet" for r in RUNS for split in SPLITS]


def reference_key(wildcards):
    return f"{wildcards.condition}/{wildcards.dataset}/{wildcards.model}/{wildcards.recipe}-{wildcards.digest}"


def distilled_key(wildcards):
    return f"{wildcards.condition}/{wildcards.setup}-{wildcards.digest}"


def reference_data(wildcards):
    return PLAN.data_file(wildcards.dataset)


def reference_spec(wildcards):
    return PLAN.run_spec(wildcards.condition, reference_key(wildcards), int(wildcards.seed))


def distilled_spec(wildcards):
    return PLAN.run_spec(wildcards.condition, distilled_key(wildcards), int(wildcards.seed))


def distilled_data(wildcards):
    return PLAN.data_file(SETUPS[wildcards.setup]["dataset"])


def distilled_teacher_weights(wildcards):
    teacher = PLAN.teacher_run_key(wildcards.condition, distilled_key(wildcards))
    return [] if teacher is None else f"results/runs/{teacher}/seed{wildcards.seed}/model.pt"


def distilled_teacher_model(wildcards):
    return PLAN.teacher_model(wildcards.condition, distilled_key(wildcards))


def setup_prediction_paths(wildcards):
    """{condition: {seed: test predictions path}} of one setup (params and input of `metrics`)."""
    runs = PLAN.setup_runs(wildcards.setup)
    return {c: {r.seed: f"{r.directory}/predictions_test.parquet" for r in rs} for c, rs in runs.items()}


def setup_prediction_files(wildcards):
    return [p for by_seed in setup_prediction_paths(wildcards).values() for p in by_seed.values()]


def setup_metrics_files(wildcards):
    return expand("results/analysis/metrics/{setup}.parquet", setup=SETUPS)


def dataset_loader(wildcards):
    return config["datasets"][wildcards.dataset]["loader"]


def dataset_options(wildcards):
    return canonical(config["datasets"][wildcards.dataset]["options"])


def analysis_params(wildcards):
    return canonical(config["analysis"])


def setup_info_rows(wildcards):
    return PLAN.setup_table()


def stale_analysis_warning():
    return (
        "kdtransfer: jobs failed, so results/analysis, results/figures and results/tables may still show an "
        "earlier run's answer. Fix the failures above and run the same command again: it re-plans exactly the "
        "failed jobs and everything downstream of them."
    )
