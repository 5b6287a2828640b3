from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

from kdtransfer.data import prepare_dataset

prepare_dataset(
    snakemake.wildcards.dataset, snakemake.params.loader, snakemake.params.options, snakemake.output[0], log
)
