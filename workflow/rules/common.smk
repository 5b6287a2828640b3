# Helpers only: config validation, run enumeration (science-free; kdtransfer.plan does it).
import kdtransfer
from kdtransfer.config import ConfigError, validate_config
from kdtransfer import plan

try:
    _validated = validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None
config.clear()
config.update(_validated)

SETUPS = plan.expand_setups(config)
RUNS = plan.all_runs(config)
SPLITS = config["training"]["predict_splits"]
REFERENCE_CONDITIONS = ("teacher", "nokd", "independent")
DISTILLED_CONDITIONS = ("kd", "rcd")

if not RUNS:
    raise WorkflowError("the config produces no runs: check `seeds` and `setups`")


wildcard_constraints:
    seed=r"\d+",
    setup=r"[A-Za-z][A-Za-z0-9_]*",
    dataset=r"[A-Za-z0-9_]+",
    model=r"[A-Za-z0-9_]+",
    recipe=r"[A-Za-z0-9_]+",
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
    return f"{wildcards.condition}/{wildcards.dataset}/{wildcards.model}/{wildcards.recipe}"


def distilled_key(wildcards):
    return f"{wildcards.condition}/{wildcards.setup}"


def reference_spec(wildcards):
    return plan.run_spec(config, wildcards.condition, reference_key(wildcards), int(wildcards.seed))


def distilled_spec(wildcards):
    return plan.run_spec(config, wildcards.condition, distilled_key(wildcards), int(wildcards.seed))


def distilled_data(wildcards):
    return f"results/data/{SETUPS[wildcards.setup]['dataset']}.npz"


def distilled_teacher_weights(wildcards):
    if wildcards.condition != "kd":
        return []
    teacher_run_key, _ = plan.teacher_of(config, distilled_key(wildcards))
    return f"results/runs/{teacher_run_key}/seed{wildcards.seed}/model.pt"


def distilled_teacher_model(wildcards):
    if wildcards.condition != "kd":
        return None
    return plan.teacher_of(config, distilled_key(wildcards))[1]


def setup_prediction_paths(wildcards):
    """{condition: {seed: test predictions path}} of one setup (params and input of `metrics`)."""
    runs = plan.setup_runs(config, wildcards.setup, SETUPS[wildcards.setup])
    return {c: {r.seed: f"{r.directory}/predictions_test.parquet" for r in rs} for c, rs in runs.items()}


def setup_prediction_files(wildcards):
    return [p for by_seed in setup_prediction_paths(wildcards).values() for p in by_seed.values()]


def dataset_loader(wildcards):
    return config["datasets"][wildcards.dataset]["loader"]


def dataset_options(wildcards):
    return plan.canonical(config["datasets"][wildcards.dataset]["options"])


def analysis_params(wildcards):
    return plan.canonical(config["analysis"])


def setup_info_rows(wildcards):
    return plan.setup_table(config)
