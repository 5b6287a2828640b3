# kdtransfer: what does knowledge distillation really transfer? See README.md.
import os

from snakemake.utils import min_version

from kdtransfer.plan.config import ConfigError, check_config_files

min_version("9.0")

# envs/*.post-deploy.sh (--sdm conda) install the package from this checkout, wherever the
# workflow is run from. Set, never read here: written as update(), which Snakemake's linter does
# not mistake for a variable the workflow needs from the user (envvars).
os.environ.update(KDTRANSFER_ROOT=workflow.basedir)

# YAML syntax errors with file, line and column, and keys written twice. Snakemake reads
# --configfile files itself before this file runs, and stops on a syntax error there with a
# message that names neither line nor column; the embedded config.yaml is read below.
try:
    check_config_files(workflow.overwrite_configfiles or ["config.yaml"])
except ConfigError as exc:
    raise WorkflowError(f"invalid config: {exc}") from None


# The embedded default, unless the user names an experiment with --configfile: an experiment
# file replaces the default rather than merging into it (setups would otherwise accumulate).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"


# Every predictions file and every per-setup metrics file, not only the figures and tables they
# feed: Snakemake does not rerun a job whose outputs exist because an input went missing, so a
# run whose outputs a failed job deleted is re-planned only if the target asks for it itself.
rule all:
    default_target: True
    input:
        rules.figures.output,
        rules.tables.output,
        prediction_outputs,
        setup_metrics_files,


onerror:
    print(stale_analysis_warning(), file=sys.stderr)


rule teachers:
    input:
        teacher_outputs,


rule students:
    input:
        student_outputs,


rule predictions:
    input:
        prediction_outputs,


rule analysis:
    input:
        rules.statistics.output,
