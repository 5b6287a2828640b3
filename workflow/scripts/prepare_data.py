from kdtransfer.runlog import log_to

log = log_to(snakemake.log[0])

from kdtransfer.data import load_dataset, save_arrays

ds = load_dataset(snakemake.params.loader, **snakemake.params.options)
log.info("dataset %s: train %s, test %s, %d classes", snakemake.params.loader, ds.x_train.shape, ds.x_test.shape, ds.num_classes)
save_arrays(ds, snakemake.output[0])
