"""The statistics stage, in the order the science needs: the seed-level tests
(kdtransfer.analysis.stats), the verdicts decided from them alone (kdtransfer.analysis.verdicts),
then the per-sample tests (kdtransfer.analysis.persample) appended in a family of their own, so
they never move a seed-level adjusted p-value or a verdict."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from kdtransfer.analysis.persample import with_per_sample_tests
from kdtransfer.analysis.stats import setup_tests
from kdtransfer.analysis.verdicts import verdicts


def tests_and_verdicts(
    metrics: pd.DataFrame, discordance: pd.DataFrame, analysis: Mapping
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tests, verdicts) of the concatenated setup metrics and discordance tables, under the
    config's `analysis` section (alpha, fdr_family, asymmetry_primary, bootstrap)."""
    seed_level = setup_tests(
        metrics,
        alpha=analysis["alpha"],
        fdr_family=analysis["fdr_family"],
        asymmetry_primary=analysis["asymmetry_primary"],
        n_bootstrap=analysis["bootstrap"],
    )
    decided = verdicts(seed_level, metrics)
    tests = with_per_sample_tests(seed_level, discordance, alpha=analysis["alpha"], fdr_family=analysis["fdr_family"])
    return tests, decided
