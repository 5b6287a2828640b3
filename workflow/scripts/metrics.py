from kdtransfer.runlog import log_to

log = log_to(snakemake.log[0])

from kdtransfer.metrics import setup_metrics
from kdtransfer.atomic import write_parquet

paths = {c: {int(s): p for s, p in by_seed.items()} for c, by_seed in snakemake.params.paths.items()}
teachers = paths.pop("teacher")
df = setup_metrics(snakemake.wildcards.setup, teachers, paths)
log.info("metrics of %s: %d rows\n%s", snakemake.wildcards.setup, len(df), df.groupby("condition").mean(numeric_only=True).to_string())
write_parquet(df, snakemake.output[0])
