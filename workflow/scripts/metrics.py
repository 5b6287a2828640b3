from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

from kdtransfer.analysis.metrics import setup_tables
from kdtransfer.io.atomic import write_parquet

paths = {c: {int(s): p for s, p in by_seed.items()} for c, by_seed in snakemake.params.paths.items()}
teachers = paths.pop("teacher")
tables = setup_tables(snakemake.wildcards.setup, teachers, paths)
means = tables.metrics.groupby("condition")[["accuracy", "agreement"]].mean()
log.info(
    "metrics of %s (%d rows), mean over seeds: %s",
    snakemake.wildcards.setup,
    len(tables.metrics),
    "; ".join(f"{c} accuracy {r.accuracy:.4f} agreement {r.agreement:.4f}" for c, r in means.iterrows()),
)
write_parquet(tables.metrics, snakemake.output.metrics)
write_parquet(tables.discordance, snakemake.output.discordance)
