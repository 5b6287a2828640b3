from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

import pandas as pd

from kdtransfer.analysis import tables
from kdtransfer.analysis.display import setup_info_frame

frames = tables.write_tables(
    dict(snakemake.output.items()),
    pd.read_parquet(snakemake.input.metrics),
    pd.read_parquet(snakemake.input.tests),
    pd.read_parquet(snakemake.input.verdicts),
    setup_info_frame(snakemake.params.setups),
    alpha=snakemake.params.analysis["alpha"],
)
for name, df in frames.items():
    log.info("table %s: %d rows", name, len(df))
