from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

import pandas as pd

from kdtransfer.analysis.persample import with_per_sample_tests
from kdtransfer.analysis.stats import setup_tests
from kdtransfer.analysis.verdicts import verdicts
from kdtransfer.io.atomic import write_parquet

a = snakemake.params.analysis
metrics = pd.concat([pd.read_parquet(p) for p in snakemake.input.metrics], ignore_index=True)
discordance = pd.concat([pd.read_parquet(p) for p in snakemake.input.discordance], ignore_index=True)
tests = setup_tests(metrics, alpha=a["alpha"], fdr_family=a["fdr_family"], asymmetry_primary=a["asymmetry_primary"],
                    n_bootstrap=a["bootstrap"])
# Verdicts rest on the seed-level tests alone; the per-sample rows follow them in their own family.
summary = verdicts(tests, metrics, alpha=a["alpha"])
tests = with_per_sample_tests(tests, discordance, alpha=a["alpha"], fdr_family=a["fdr_family"])
log.info("%d tests (%d seed-level, %d per-sample) over %d setups; verdicts in %s",
         len(tests), int((tests["kind"] != "per-sample").sum()), int((tests["kind"] == "per-sample").sum()),
         len(summary), snakemake.output.verdicts)
write_parquet(metrics, snakemake.output.metrics)
write_parquet(tests, snakemake.output.tests)
write_parquet(summary, snakemake.output.verdicts)
