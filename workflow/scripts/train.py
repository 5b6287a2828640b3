import sys

from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0], job=f"{snakemake.params.spec['run_key']} seed {snakemake.params.spec['seed']}")

from kdtransfer.training.loop import RunSpec, TrainingInterrupted, train_and_save

# checkpoint_every comes from the config, not from params: it never changes a result (resuming
# is bit-identical), so changing it must not re-run finished jobs.
spec = RunSpec.from_params({**snakemake.params.spec, "checkpoint_every": snakemake.config["training"]["checkpoint_every"]})
log.info("training %s seed %d (%s)", spec.run_key, spec.seed, spec.condition)
teacher = snakemake.input.get("teacher", None)
if not isinstance(teacher, str):  # an input function that returned [] (rcd) gives an empty list
    teacher = teacher[0] if teacher else None
try:
    train_and_save(
        spec,
        snakemake.input.data,
        weights_out=snakemake.output.weights,
        predictions_out=dict(zip(snakemake.params.splits, snakemake.output.predictions)),
        history_out=snakemake.output.history,
        teacher_weights=teacher,
        teacher_model=snakemake.params.get("teacher_model"),
        threads=snakemake.threads,
    )
except TrainingInterrupted as exc:
    log.warning("%s", exc)
    sys.exit(143)
