from kdtransfer.runlog import log_to

log = log_to(snakemake.log[0])

import pandas as pd

from kdtransfer import tables
from kdtransfer.plan import setup_info_frame

metrics = pd.read_parquet(snakemake.input.metrics)
setup_info = setup_info_frame(snakemake.params.setups)
CAPTIONS = {
    "summary": "Per setup and condition: mean and standard deviation over seeds of accuracy and functional similarity to the teacher (test split).",
    "tests": "Paired one-sided (transfer, asymmetry) and two-sided (accuracy) Wilcoxon signed-rank tests over seeds, with rank-biserial effect size, median paired difference (bootstrap 95\\% CI) and Benjamini--Yekutieli adjusted p-values.",
    "verdicts": "Per setup: is there significant functional transfer (agreement with the teacher, one-sided Wilcoxon, BY-adjusted), does random control distillation match KD's accuracy gain (yes when KD's gain is significant and positive and the random control's is significant and at least half of it), and is the payoff asymmetric and negative (gain on the teacher's errors greater than on its correct samples). Gains are mean paired differences over seeds against the no-KD control, in percentage points.",
}
frames = {
    "summary": tables.summary_table(metrics, setup_info),
    "tests": tables.tests_table(pd.read_parquet(snakemake.input.tests), setup_info, alpha=snakemake.params.alpha),
    "verdicts": tables.verdicts_table(pd.read_parquet(snakemake.input.verdicts), setup_info),
}
for name, df in frames.items():
    log.info("table %s: %d rows", name, len(df))
    tables.write_table(df, snakemake.output[name], snakemake.output[f"{name}_tex"],
                       caption=CAPTIONS[name], label=f"tab:{name}")
