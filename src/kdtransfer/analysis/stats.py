"""Paired, per-setup hypothesis tests (docs/protocol.md, "Tests"). Seeds are the unit of replication.

Choices (documented here once):

- Wilcoxon signed-rank, exact wherever it can be: zero differences are dropped
  (`zero_method="wilcox"`) and the p-value comes from the exact sign-flip distribution of the
  signed-rank statistic over the non-zero differences. Three paths, named in the `method`
  column: without tied magnitudes (and n_nonzero <= 50) scipy's `method="exact"`, which is that
  distribution; with ties (agreement is a multiple of 1/n_test, so ties happen with 10 seeds),
  where scipy's "exact" is not exact, the exhaustive permutation over all 2^n sign assignments
  with mid-ranks (`PermutationMethod(n_resamples=inf)`), cheap for n_nonzero <= 16; beyond that,
  scipy's `method="auto"` (asymptotic with tie correction).
- Zero differences are dropped (Wilcoxon's convention, `zero_method="wilcox"`); `n` is the
  number of paired seeds, `n_nonzero` the number used by the rank test. If every difference is
  zero, p = 1 (no evidence in either direction).
- Differences are rounded to 12 decimals before ranking so that float noise (e.g. 0.9512-0.95 vs
  0.9012-0.90) does not split true ties.
- `statistic` is scipy's: R+ (sum of ranks of positive differences) for one-sided tests,
  min(R+, R-) for two-sided ones. Differences are always condition_a - condition_b.
- Effect size: matched-pairs rank-biserial correlation r = (R+ - R-) / (R+ + R-) over the
  non-zero differences (sign: positive when condition_a > condition_b).
- median_diff: median of the paired differences; ci_low/ci_high: 95% percentile bootstrap CI
  (`scipy.stats.bootstrap`, method="percentile", seeded per test from `random_seed` and the
  test's identity, so a row's CI does not depend on which other setups are in the table).
- FDR: Benjamini-Yekutieli (`multipletests(method="fdr_by")`) over the family; secondary tests
  (the non-primary asymmetry variant) are reported but not in the family (p_adjusted NaN).
- Power: `min_p_adjusted_possible` = the smallest BY-adjusted p of the family if every test
  reached its smallest exact p with its n (1/2^n one-sided, 2/2^n two-sided);
  `seeds_needed` = the smallest common n for which that is <= alpha.
"""

from __future__ import annotations

import logging
import math
import zlib

import numpy as np
import pandas as pd
import scipy.stats
from statsmodels.stats.multitest import multipletests

log = logging.getLogger(__name__)

EXACT_MAX_N = 16

TRANSFER_METRICS = (
    ("agreement", "greater", ">"),
    ("js", "less", "<"),
    ("activation_distance", "less", "<"),
    ("kl", "less", "<"),
)

TEST_COLUMNS = [
    "setup",
    "family",
    "kind",
    "test",
    "metric",
    "condition_a",
    "condition_b",
    "alternative",
    "n",
    "n_nonzero",
    "statistic",
    "p_value",
    "p_adjusted",
    "significant",
    "method",
    "effect_size",
    "median_diff",
    "ci_low",
    "ci_high",
    "primary",
    "min_p_adjusted_possible",
    "seeds_needed",
    "note",
]


# --------------------------------------------------------------------------------------------
# Single paired test
# --------------------------------------------------------------------------------------------


def rank_biserial(d) -> float:
    """Matched-pairs rank-biserial correlation of paired differences d (zeros dropped).

    r = (R+ - R-) / (R+ + R-), ranks of |d| with mid-ranks for ties; NaN if no non-zero d.
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]
    if d.size == 0:
        return math.nan
    ranks = scipy.stats.rankdata(np.abs(d))
    r_plus = ranks[d > 0].sum()
    r_minus = ranks[d < 0].sum()
    return float((r_plus - r_minus) / (r_plus + r_minus))


def wilcoxon_test(d, alternative: str) -> tuple[float, float, str]:
    """Signed-rank test of paired differences d: (statistic, p_value, method name)."""
    d = np.round(np.asarray(d, dtype=np.float64), 12)
    nz = int((d != 0).sum())
    if nz == 0:
        return 0.0, 1.0, "none: all differences zero"
    magnitudes = np.abs(d[d != 0])
    if np.unique(magnitudes).size == nz and nz <= 50:
        # No ties and no zeros: scipy's exact null distribution is the same sign-flip distribution
        # as the exhaustive permutation below, computed ~250x faster.
        method = "exact"
        name = "wilcoxon signed-rank, exact"
    elif nz <= EXACT_MAX_N:
        method = scipy.stats.PermutationMethod(n_resamples=np.inf)
        name = "wilcoxon signed-rank, exact permutation"
    else:
        method = "auto"
        name = "wilcoxon signed-rank, asymptotic (tie-corrected)"
    res = scipy.stats.wilcoxon(d, zero_method="wilcox", alternative=alternative, method=method)
    return float(res.statistic), float(res.pvalue), name


def bootstrap_median_ci(d, *, n_bootstrap: int, seed, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the median of d (scipy.stats.bootstrap); (d, d) if constant."""
    d = np.asarray(d, dtype=np.float64)
    if d.size < 2:
        return math.nan, math.nan
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    res = scipy.stats.bootstrap(
        (d,),
        np.median,
        n_resamples=n_bootstrap,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        axis=-1,
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def min_exact_p(n: int, alternative: str) -> float:
    """Smallest p-value an exact signed-rank test can give with n non-zero paired differences."""
    if n < 1:
        return 1.0
    p = 0.5**n
    return min(1.0, 2 * p) if alternative == "two-sided" else p


def stable_seed(random_seed: int, *parts: str) -> list[int]:
    """A bootstrap seed from the analysis seed and names (setup, test): the same for a setup
    whatever other setups the config has, so adding one never moves another's CI."""
    return [int(random_seed), zlib.crc32("|".join(parts).encode())]


def paired_test(d, alternative: str, *, n_bootstrap: int, seed) -> dict:
    """Everything a test row reports about paired differences d (NaNs already removed)."""
    d = np.asarray(d, dtype=np.float64)
    n = int(d.size)
    out = {
        "n": n,
        "n_nonzero": int((np.round(d, 12) != 0).sum()),
        "statistic": math.nan,
        "p_value": math.nan,
        "method": "",
        "effect_size": math.nan,
        "median_diff": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "note": "",
    }
    if n < 2:
        out["note"] = f"only {n} paired seed(s); no test"
        out["median_diff"] = float(np.median(d)) if n else math.nan
        return out
    stat, p, method = wilcoxon_test(d, alternative)
    lo, hi = bootstrap_median_ci(d, n_bootstrap=n_bootstrap, seed=seed)
    out.update(
        statistic=stat,
        p_value=p,
        method=method,
        effect_size=rank_biserial(np.round(d, 12)),
        median_diff=float(np.median(d)),
        ci_low=lo,
        ci_high=hi,
    )
    if out["n_nonzero"] == 0:
        out["note"] = "all differences zero"
    return out


# --------------------------------------------------------------------------------------------
# Paired values from the metrics table
# --------------------------------------------------------------------------------------------


def paired_values(metrics: pd.DataFrame, setup: str, metric: str, cond_a: str, cond_b: str) -> pd.DataFrame:
    """Per-seed values of `metric` for two conditions of one setup, seeds present in both (and
    non-NaN in both). Columns: seed, a, b, diff (a - b)."""
    m = metrics[metrics["setup"] == setup]
    a = m[m["condition"] == cond_a].set_index("seed")[metric]
    b = m[m["condition"] == cond_b].set_index("seed")[metric]
    df = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna().sort_index()
    df["diff"] = df["a"] - df["b"]
    return df.reset_index()


def asymmetry_gains(
    metrics: pd.DataFrame, setup: str, *, normalised: bool = False, treated: str = "kd", control: str = "nokd"
) -> pd.DataFrame:
    """Per-seed gain_incorrect and gain_correct of `treated` over `control` for one setup.

    gain_X = agreement_X(treated) - agreement_X(control); normalised: divided by the headroom
    1 - agreement_X(control) (NaN where the headroom is 0). Columns: seed, gain_incorrect,
    gain_correct, diff (= gain_incorrect - gain_correct); seeds with a NaN are dropped.
    """
    parts = {}
    for which in ("incorrect", "correct"):
        pv = paired_values(metrics, setup, f"agreement_{which}", treated, control)
        gain = pv["diff"].to_numpy()
        if normalised:
            headroom = 1.0 - pv["b"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                gain = np.where(headroom > 0, gain / np.where(headroom > 0, headroom, 1.0), np.nan)
        parts[f"gain_{which}"] = pd.Series(gain, index=pv["seed"].to_numpy())
    df = pd.concat(parts, axis=1, join="inner").dropna().sort_index()
    df["diff"] = df["gain_incorrect"] - df["gain_correct"]
    df.index.name = "seed"
    return df.reset_index()


# --------------------------------------------------------------------------------------------
# All tests
# --------------------------------------------------------------------------------------------


def _test_specs(conditions: set[str]):
    """(kind, metric, cond_a, cond_b, alternative, test id, variant) for the available conditions."""
    specs = []
    for other in ("nokd", "rcd"):
        if {"kd", other} <= conditions:
            for metric, alt, sym in TRANSFER_METRICS:
                specs.append(("transfer", metric, "kd", other, alt, f"{metric}: kd {sym} {other}", None))
    for cond in ("kd", "rcd"):
        if {cond, "nokd"} <= conditions:
            specs.append(("regulariser", "accuracy", cond, "nokd", "two-sided", f"accuracy: {cond} vs nokd", None))
    if {"kd", "nokd"} <= conditions:
        specs.append(
            (
                "asymmetry",
                "gain_incorrect - gain_correct",
                "kd",
                "nokd",
                "greater",
                "asymmetry (raw): gain_incorrect > gain_correct",
                "raw",
            )
        )
        specs.append(
            (
                "asymmetry",
                "gain_incorrect - gain_correct (normalised)",
                "kd",
                "nokd",
                "greater",
                "asymmetry (normalised): gain_incorrect > gain_correct",
                "normalised",
            )
        )
    return specs


def significant(p_adjusted, alpha: float):
    """The study's one significance decision: a BY-adjusted p-value at most alpha (NaN: not
    significant). Elementwise on arrays; everything else reads the `significant` column."""
    return np.asarray(p_adjusted, dtype=np.float64) <= alpha


def adjust_by_family(tests: pd.DataFrame, tested: pd.Series, alpha: float) -> None:
    """Benjamini-Yekutieli within each `family` over the `tested` rows (in place): their
    p_adjusted, and `significant` for every row (False outside the adjustment)."""
    tests["p_adjusted"] = math.nan
    tests["significant"] = False
    for _, idx in tests.groupby("family", sort=False).groups.items():
        members = tests.loc[idx][tested.loc[idx]]
        if len(members):
            adjusted = multipletests(members["p_value"].to_numpy(dtype=np.float64), method="fdr_by")[1]
            tests.loc[members.index, "p_adjusted"] = adjusted
            tests.loc[members.index, "significant"] = significant(adjusted, alpha)
    tests["significant"] = tests["significant"].astype(bool)


def _min_adjusted(min_ps: list[float]) -> float:
    if not min_ps:
        return math.nan
    return float(multipletests(np.asarray(min_ps), method="fdr_by")[1].min())


def _seeds_needed(alternatives: list[str], alpha: float, max_n: int = 64) -> float:
    if not alternatives:
        return math.nan
    for n in range(1, max_n + 1):
        if significant(_min_adjusted([min_exact_p(n, a) for a in alternatives]), alpha):
            return n
    return math.nan


def setup_tests(
    metrics: pd.DataFrame,
    *,
    alpha: float,
    fdr_family: str,
    asymmetry_primary: str,
    n_bootstrap: int,
    random_seed: int = 0,
) -> pd.DataFrame:
    """All tests of docs/protocol.md ("Tests") for every setup in `metrics` (the setup_metrics tables, concatenated).

    One row per test (columns TEST_COLUMNS). Tests needing a missing condition are omitted;
    a test with < 2 paired seeds is a row with NaN p and a note. See the module docstring for
    the methods. `fdr_family`: "setup" (BY within each setup) or "all" (BY over every primary
    test of every setup). `asymmetry_primary`: "raw" or "normalised" (the other is secondary).
    The analysis settings are the config's `analysis` keys (the schema holds their defaults and
    allowed values).
    """
    rows = []
    for setup in pd.unique(metrics["setup"]):
        conditions = set(metrics.loc[metrics["setup"] == setup, "condition"])
        for kind, metric, ca, cb, alt, test_id, variant in _test_specs(conditions):
            if kind == "asymmetry":
                d = asymmetry_gains(metrics, setup, normalised=(variant == "normalised"), treated=ca, control=cb)[
                    "diff"
                ].to_numpy()
                primary = variant == asymmetry_primary
            else:
                d = paired_values(metrics, setup, metric, ca, cb)["diff"].to_numpy()
                primary = True
            res = paired_test(d, alt, n_bootstrap=n_bootstrap, seed=stable_seed(random_seed, str(setup), test_id))
            if not primary:
                res["note"] = "; ".join(x for x in (res["note"], "secondary: not in the FDR family") if x)
            rows.append(
                {
                    "setup": setup,
                    "family": str(setup) if fdr_family == "setup" else "all",
                    "kind": kind,
                    "test": test_id,
                    "metric": metric,
                    "condition_a": ca,
                    "condition_b": cb,
                    "alternative": alt,
                    "primary": primary,
                    **res,
                }
            )
    df = pd.DataFrame(
        rows,
        columns=[
            c for c in TEST_COLUMNS if c not in ("p_adjusted", "significant", "min_p_adjusted_possible", "seeds_needed")
        ],
    )
    df["min_p_adjusted_possible"] = math.nan
    df["seeds_needed"] = math.nan
    if df.empty:
        return df.assign(p_adjusted=math.nan, significant=False)[TEST_COLUMNS]

    adjust_by_family(df, df["primary"] & df["p_value"].notna(), alpha)
    for family, idx in df.groupby("family", sort=False).groups.items():
        fam = df.loc[idx]
        members = fam[fam["primary"]]
        min_ps = [min_exact_p(int(n), a) for n, a in zip(members["n"], members["alternative"])]
        min_adj = _min_adjusted(min_ps)
        needed = _seeds_needed(list(members["alternative"]), alpha)
        df.loc[idx, "min_p_adjusted_possible"] = min_adj
        df.loc[idx, "seeds_needed"] = needed
        if not significant(min_adj, alpha):
            setups = ", ".join(str(s) for s in pd.unique(fam["setup"]))
            log.warning(
                "FDR family %s (setup %s): with n = %s paired seeds the smallest reachable BY-adjusted p is %.3g > "
                "alpha = %s; no test can be significant. Seeds needed: %s",
                family,
                setups,
                sorted(set(int(n) for n in members["n"])),
                min_adj,
                alpha,
                "more than 64" if math.isnan(needed) else int(needed),
            )
    return df[TEST_COLUMNS].reset_index(drop=True)
