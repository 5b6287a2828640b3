# Helpers only: config validation, the plan and the functions the rules call (no science:
# kdtransfer.plan does it). Every path comes from kdtransfer.paths, whose templates the
# rules' outputs use too, and every figure, table and download the config calls for is named here.
import sys

import kdtransfer
from kdtransfer.analysis import report_items
from kdtransfer.catalog import DISTILLED_CONDITIONS, REFERENCE_CONDITIONS
from kdtransfer.data import DOWNLOAD_NAMES, downloads_for
from kdtransfer import paths
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
    setup=r"[A-Za-z][A-Za-z0-9_]*",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    recipe=r"[A-Za-z0-9_]+",
    digest=r"[0-9a-f]{%d}" % paths.DIGEST_LENGTH,
    split="|".join(SPLITS),


# ---- training packs: one rule per kind (reference, distilled) and seed block ------------------
# A pack rule trains the runs of one run key over one block of seeds (kdtransfer.plan.packs);
# its outputs are each run's files at the run's own path, so it is one rule per block, named
# train_<kind>_<block label> (train_reference_seeds0to9).
# Per run, unless the profile or --set-resources says otherwise for the kind (pack_resources).
RUNTIME_PER_RUN = 60  # minutes
PACK_MEM_MB = 2000


def pack_rule_name(kind, block):
    return paths.pack_rule_name(kind, block.label)


def pack_outputs(key_template, block, name):
    """Output patterns of a pack rule: file `name` of each run of the block, in seed order."""
    return [paths.run_file(key_template, seed, name) for seed in block.seeds]


def pack_prediction_outputs(key_template, block):
    """Each run's predictions files, in seed order, then split order."""
    return [paths.predictions_file(key_template, seed, split) for seed in block.seeds for split in SPLITS]


def pack_file(template, key_template, block):
    """A pack's log or benchmark path (paths.TRAIN_LOG, paths.TRAIN_BENCHMARK)."""
    return template.format(key=key_template, pack=block.label)


def pack_runs(block):
    """The `runs` param of a pack rule: per seed, its output paths (and kd's teacher). It only
    restates the outputs and inputs (a function of them, so Snakemake does not track it as a
    param): which seeds a block holds never re-runs a finished run, and each run's identity is
    its spec (the tracked `spec` param and the run key in every path)."""

    def runs(wildcards, input, output):
        teachers = input.get("teachers", [None] * len(block.seeds))
        n = len(SPLITS)
        return [{"seed": seed, "weights": output.weights[i], "history": output.history[i],
                 "predictions": dict(zip(SPLITS, output.predictions[i * n:(i + 1) * n])), "teacher": teachers[i]}
                for i, seed in enumerate(block.seeds)]

    return runs


def pack_workers(block):
    """How many runs of the pack train at once (training.pack_concurrency, at most its runs): the
    job's threads, one core per worker process."""
    return min(config["training"]["pack_concurrency"], len(block.seeds))


def _site_value(resource):
    """A --set-resources value as a rule's resource: the value, or a function evaluating it."""
    if not resource.is_evaluable():
        return resource.value
    return lambda *args, **kwargs: resource.evaluate(*args, **kwargs).value


def pack_resources(kind, block):
    """The resources of a pack rule of `kind` (train_reference or train_distilled).

    The profile's `set-resources` under the kind's name (or `--set-resources kind:res=value`)
    applies to each of its pack rules: gpu, cpus_per_gpu, mem_mb, partition and so on as given,
    and `runtime_per_run` (minutes one run may take) makes the pack's `runtime`: the sum over its
    runs, times the attempt (a retried pack asks for more time), at most `runtime_max` (the
    partition's time limit). A rule's own name (train_reference_seeds0to9) still overrides any
    resource for that block alone.
    """
    site = dict(workflow.resource_settings.overwrite_resources.get(kind, {}).items())
    if "runtime" in site:
        raise WorkflowError(f"set-resources {kind}: runtime would give every pack of {kind} one time limit whatever its "
                            f"number of runs; set {kind}: runtime_per_run (minutes per run) instead, and runtime_max "
                            "(the partition's limit): a pack asks for the sum over its runs")
    per_run, most = (_minutes(kind, name, site.pop(name, None)) for name in ("runtime_per_run", "runtime_max"))
    runs, per_run = len(block.seeds), per_run or RUNTIME_PER_RUN
    return {"mem_mb": PACK_MEM_MB * pack_workers(block), **{name: _site_value(r) for name, r in site.items()},
            "runtime": lambda wildcards, attempt: min(int(attempt * runs * per_run), most or float("inf"))}


def _minutes(kind, name, resource):
    if resource is None:
        return None
    if resource.is_evaluable() or not isinstance(resource.value, (int, float)) or resource.value <= 0:
        raise WorkflowError(f"set-resources {kind}: {name} must be a positive number of minutes")
    return resource.value


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
    return PLAN.pack_spec(wildcards.condition, reference_key(wildcards))


def distilled_spec(wildcards):
    return PLAN.pack_spec(wildcards.condition, distilled_key(wildcards))


def distilled_inputs(block):
    """The input function of a distilled pack rule: the arrays and, for kd, the teachers of the
    block's seeds (rcd never sees a teacher)."""

    def inputs(wildcards):
        out = {"data": PLAN.data_file(SETUPS[wildcards.setup]["dataset"])}
        teacher = PLAN.teacher_run_key(wildcards.condition, distilled_key(wildcards))
        if teacher is not None:
            out["teachers"] = [paths.run_file(teacher, seed, paths.WEIGHTS) for seed in block.seeds]
        return out

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
