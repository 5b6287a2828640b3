from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

from kdtransfer.data import load_dataset, save_arrays

ds = load_dataset(snakemake.params.loader, **snakemake.params.options)
log.info(
    "dataset %s (%s): train %s %s, test %s, %d classes, %.1f MB",
    snakemake.params.loader, ds.modality, ds.x_train.shape, ds.x_train.dtype, ds.x_test.shape, ds.num_classes,
    (ds.x_train.nbytes + ds.x_test.nbytes) / 1e6,
)
save_arrays(ds, snakemake.output[0])
