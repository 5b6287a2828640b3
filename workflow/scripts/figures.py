from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

import pandas as pd

from kdtransfer.analysis import figures
from kdtransfer.analysis.display import setup_info_frame

outputs = dict(snakemake.output.items())
results = figures.draw_figures(
    outputs,
    pd.read_parquet(snakemake.input.metrics),
    pd.read_parquet(snakemake.input.tests),
    setup_info_frame(snakemake.params.setups),
    snakemake.params.analysis,
)
for name, result in results.items():
    log.info("figure %s -> %s (%d points)", name, result.png, len(result.data))
