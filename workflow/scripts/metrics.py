from kdtransfer.runlog import log_to

log = log_to(snakemake.log[0])

from kdtransfer.metrics import setup_tables
from kdtransfer.atomic import write_parquet

paths = {c: {int(s): p for s, p in by_seed.items()} for c, by_seed in snakemake.params.paths.items()}
teachers = paths.pop("teacher")
tables = setup_tables(snakemake.wildcards.setup, teachers, paths)
log.info("metrics of %s: %d rows\n%s", snakemake.wildcards.setup, len(tables.metrics),
         tables.metrics.groupby("condition").mean(numeric_only=True).to_string())
log.info("discordant samples of %s:\n%s", snakemake.wildcards.setup, tables.discordance.to_string())
write_parquet(tables.metrics, snakemake.output.metrics)
write_parquet(tables.discordance, snakemake.output.discordance)
