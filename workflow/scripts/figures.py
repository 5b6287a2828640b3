from kdtransfer.runlog import log_to

log = log_to(snakemake.log[0])

import pandas as pd

from kdtransfer import figures
from kdtransfer.plan import setup_info_frame

metrics = pd.read_parquet(snakemake.input.metrics)
tests = pd.read_parquet(snakemake.input.tests)
setup_info = setup_info_frame(snakemake.params.setups)
for name, path in snakemake.output.items():
    log.info("figure %s -> %s", name, path)
    if name == "tests_overview":
        figures.plot_tests_overview(tests, setup_info, path)
    else:
        getattr(figures, f"plot_{name}")(metrics, setup_info, path)
