"""Files between the halves and the jobs: the predictions contract (the only thing the analysis
reads of a run), Arrow arrays without pandas, atomic writes, and the rule scripts' job logs.
Never imports torch."""
