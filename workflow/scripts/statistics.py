from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

import pandas as pd

from kdtransfer.analysis.study import tests_and_verdicts
from kdtransfer.io.atomic import write_parquet

metrics = pd.concat([pd.read_parquet(p) for p in snakemake.input.metrics], ignore_index=True)
discordance = pd.concat([pd.read_parquet(p) for p in snakemake.input.discordance], ignore_index=True)
tests, summary = tests_and_verdicts(metrics, discordance, snakemake.params.analysis)
log.info(
    "%d tests (%d seed-level, %d per-sample) over %d setups; verdicts in %s",
    len(tests),
    int((tests["kind"] != "per-sample").sum()),
    int((tests["kind"] == "per-sample").sum()),
    len(summary),
    snakemake.output.verdicts,
)
write_parquet(metrics, snakemake.output.metrics)
write_parquet(tests, snakemake.output.tests)
write_parquet(summary, snakemake.output.verdicts)
