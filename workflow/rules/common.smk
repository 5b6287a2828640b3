# Helpers only: config validation, the plan and the functions the rules call (no science:
# kdtransfer.plan does it). Every path comes from kdtransfer.plan.paths, whose templates the
# rules' outputs use too, and every figure, table and download the config calls for is named here.
import sys

import kdtransfer
from kdtransfer.analysis import report_items
from kdtransfer.catalog import DISTILLED_CONDITIONS, REFERENCE_CONDITIONS
from kdtransfer.data import DOWNLOAD_NAMES, downloads_for
from kdtransfer.plan import paths
from kdtransfer.plan.config import ConfigError, validate_config
from kdtransfer.plan.runs import Plan, canonical

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
# The figures and tables this config's sweeps call for, with their report categories and labels.
FIGURES = report_items.figures(PLAN.swept_keys())
TABLES = report_items.tables(PLAN.swept_keys())
# The downloads (download_dataset's {name}) the config's datasets need.
CONFIG_DOWNLOADS = downloads_for(config["datasets"])

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


def run_outputs(key_template, name):
    """A training rule's output pattern: file `name` of the run whose key `key_template` spells."""
    return paths.run_file(key_template, "{seed}", name)


def run_prediction_outputs(key_template):
    return [run_outputs(key_template, paths.PREDICTIONS.format(split=split)) for split in SPLITS]


def teacher_outputs(wildcards):
    return [paths.run_file(r.key, r.seed, paths.WEIGHTS) for r in RUNS if r.condition == "teacher"]


def student_outputs(wildcards):
    return [paths.run_file(r.key, r.seed, paths.WEIGHTS) for r in RUNS if r.condition != "teacher"]


def prediction_outputs(wildcards):
    return [paths.predictions_file(r.key, r.seed, split) for r in RUNS for split in SPLITS]


def reference_key(wildcards):
    return paths.REFERENCE_KEY.format(**wildcards)


def distilled_key(wildcards):
    return paths.DISTILLED_KEY.format(**wildcards)


def reference_data(wildcards):
    return PLAN.data_file(wildcards.dataset)


def reference_spec(wildcards):
    return PLAN.run_spec(wildcards.condition, reference_key(wildcards), int(wildcards.seed))


def distilled_spec(wildcards):
    return PLAN.run_spec(wildcards.condition, distilled_key(wildcards), int(wildcards.seed))


def distilled_inputs(wildcards):
    """The arrays and, for kd, the teacher's weights (rcd never sees a teacher)."""
    inputs = {"data": PLAN.data_file(SETUPS[wildcards.setup]["dataset"])}
    teacher = PLAN.teacher_run_key(wildcards.condition, distilled_key(wildcards))
    if teacher is not None:
        inputs["teacher"] = paths.run_file(teacher, wildcards.seed, paths.WEIGHTS)
    return inputs


def distilled_teacher_model(wildcards):
    return PLAN.teacher_model(wildcards.condition, distilled_key(wildcards))


def setup_prediction_paths(wildcards):
    """{condition: {seed: test predictions path}} of one setup (params and input of `metrics`)."""
    runs = PLAN.setup_runs(wildcards.setup)
    return {c: {r.seed: paths.predictions_file(r.key, r.seed, "test") for r in rs} for c, rs in runs.items()}


def setup_prediction_files(wildcards):
    return [p for by_seed in setup_prediction_paths(wildcards).values() for p in by_seed.values()]


def setup_metrics_files(wildcards):
    return expand(paths.SETUP_METRICS, setup=SETUPS)


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
