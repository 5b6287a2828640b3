import sys

from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0], job=f"{snakemake.params.spec['run_key']} seed {snakemake.params.spec['seed']}")

from kdtransfer.spec import RunSpec
from kdtransfer.training.job import train_and_save
from kdtransfer.training.state import TrainingInterrupted

spec = RunSpec.from_params(snakemake.params.spec)
log.info("training %s seed %d (%s)", spec.run_key, spec.seed, spec.condition)
try:
    train_and_save(
        spec,
        snakemake.input.data,
        weights_out=snakemake.output.weights,
        predictions_out=dict(zip(snakemake.params.splits, snakemake.output.predictions)),
        history_out=snakemake.output.history,
        # From the config, not from params: it never changes a result (resuming is
        # bit-identical), so changing it must not re-run finished jobs.
        checkpoint_every=snakemake.config["training"]["checkpoint_every"],
        teacher_weights=snakemake.input.get("teacher"),
        teacher_model=snakemake.params.get("teacher_model"),
        threads=snakemake.threads,
    )
except TrainingInterrupted as exc:
    log.warning("%s", exc)
    sys.exit(143)
