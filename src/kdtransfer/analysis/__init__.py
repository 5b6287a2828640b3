"""The analysis half: from per-sample predictions (kdtransfer.io.predictions) to metrics, paired
tests, verdicts, figures and tables. Never imports torch: analysis jobs and their environment
stay light, and they never read a model.

- `metrics` (per run against its teacher) and `persample` (McNemar / CMH counts and tests);
- `stats` (paired Wilcoxon tests, FDR, and the one significance decision) and `verdicts` (the
  paper's claims, decided from the tests' `significant`, and their robustness along each sweep);
  `study` runs them in the order the science needs;
- `display` (names, labels, order, number formats), `figures`, `tables`, `report_items`,
  `verdict_summary` (the console's end of `make run`).
"""
