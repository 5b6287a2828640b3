import sys

from kdtransfer.io.runlog import log_to
from kdtransfer.spec import pack_name

runs = snakemake.params.runs
log = log_to(snakemake.log[0], job=pack_name(snakemake.params.spec["run_key"], [run["seed"] for run in runs]))

from kdtransfer.training.pack import PackRun, train_pack
from kdtransfer.training.state import TrainingInterrupted

try:
    train_pack(
        [PackRun.from_params(snakemake.params.spec, run) for run in runs],
        snakemake.input.data,
        # From the config, not from params: it never changes a result (resuming is
        # bit-identical), so changing it must not re-run finished jobs.
        checkpoint_every=snakemake.config["training"]["checkpoint_every"],
        teacher_model=snakemake.params.get("teacher_model"),
        # From the config too: a run trains alike in a worker of a concurrent pack and in turn.
        concurrency=snakemake.config["training"]["pack_concurrency"],
        threads=snakemake.threads,
        log_path=snakemake.log[0],
    )
except TrainingInterrupted as exc:
    log.warning("%s", exc)
    sys.exit(143)
