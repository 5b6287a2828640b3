"""The per-sample view: McNemar and Cochran–Mantel–Haenszel tests on discordant samples.

Secondary to the seed-level tests (kdtransfer.analysis.stats), which stay the primary evidence: seeds are
the unit of replication. This view answers a narrower question, *given these trained models*,
on which samples does `kd` agree with the teacher where the control (`nokd`, `rcd`) does not?
Its tests are conditional on the trained models: the samples of one seed are not independent
training replicates, so a small p here says "these models differ", not "KD transfers in general".

Per seed, subset ("all" test samples, "teacher_incorrect": the teacher's errors) and comparison
(kd vs nokd, kd vs rcd), each sample is a matched pair: does condition a agree with the teacher,
does condition b? Only the discordant pairs carry information about a difference:

    b = only_a_agrees: a agrees with the teacher and b does not;  c = only_b_agrees: the reverse.

(A marginal 2x2 of "a agrees x b agrees" would test association between the two, not a
difference between them; it is not used.)

Choices (documented here once):

- Per seed: McNemar's exact test, one-sided "a > b": p = P(X >= b), X ~ Binomial(b + c, 1/2).
  One-sided like the seed-level transfer tests ("agreement: kd > nokd"), because the question
  is directional. statsmodels' `mcnemar(exact=True)` is two-sided; when b > c it is exactly
  twice this p. `statistic` = b.
- Pooled over seeds: each (sample, seed) pair is a stratum, a 2x2 table condition (a, b) x
  (agrees, does not). Concordant pairs have a zero column margin and contribute nothing to the
  Mantel–Haenszel estimate, its variance or the CMH statistic, so the StratifiedTable is built
  from the discordant strata only (tests/test_persample.py proves equality with the full
  construction). Then the MH odds ratio is Σb/Σc, its Robins–Breslow–Greenland 95% CI is
  exp(log(Σb/Σc) ± 1.96 √(1/Σb + 1/Σc)), and the CMH statistic equals McNemar's chi-square on
  the pooled discordant counts.
- The CMH test uses the continuity correction: with these 1:1 strata the exact conditional
  test is the binomial test on the pooled counts, and the corrected chi-square is its usual
  normal approximation, (|Σb − Σc| − 1)² / (Σb + Σc); uncorrected it is anti-conservative when
  few samples are discordant (a digits-sized test split has a few dozen). The reported p is
  one-sided: half the two-sided chi-square p when Σb > Σc, one minus that half otherwise
  (computed from the statistic: statsmodels' own p-value underflows to 0 below ~1e-16).
  `statistic` = the corrected CMH chi-square.
- Effect size: the matched-pairs (MH) odds ratio, per seed b/c, pooled Σb/Σc, with its 95% CI
  in ci_low/ci_high (statsmodels `StratifiedTable.oddsratio_pooled_confint`). Undefined when
  b = c = 0 (no discordant sample: p = 1, OR NaN, noted); 0 or inf when one of b, c is 0, with
  no CI (the Wald interval needs both), noted. `median_diff` is NaN: these rows have no paired
  seed differences.
- FDR: Benjamini–Yekutieli over the per-sample rows of one family, "per-sample: <setup>" (or
  "per-sample: all" when analysis.fdr_family is "all"): every per-seed and pooled row of both
  comparisons and both subsets. BY holds under the arbitrary dependence these rows have (the
  pooled rows reuse the per-seed samples; the teacher's errors are part of all samples), and a
  family of their own keeps the seed-level families, and so their adjusted p-values, as they
  were. Per-sample rows never enter verdicts.verdicts.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
import scipy.stats
from statsmodels.stats.contingency_tables import StratifiedTable

from kdtransfer.analysis.stats import TEST_COLUMNS, adjust_by_family

# (condition a, condition b): a is the treatment, b the control it is compared with.
COMPARISONS = (("kd", "nokd"), ("kd", "rcd"))
# subset -> the metric it restricts agreement to (the names of kdtransfer.analysis.metrics.METRIC_KEYS)
SUBSETS = {"all": "agreement", "teacher_incorrect": "agreement_incorrect"}

DISCORDANCE_COLUMNS = [
    "setup",
    "seed",
    "condition_a",
    "condition_b",
    "subset",
    "n",
    "both_agree",
    "only_a_agrees",
    "only_b_agrees",
    "neither_agrees",
]
# Appended to the tests table, null on the seed-level rows: the seed of a per-seed row (null on a
# pooled one) and the discordant counts b and c.
PER_SAMPLE_COLUMNS = ["seed", "only_a_agrees", "only_b_agrees"]
KIND = "per-sample"
CONDITIONAL_NOTE = (
    "per-sample: conditional on the trained models (samples are not independent training replicates; "
    "the seed-level tests are the primary evidence)"
)
CONFIDENCE = 0.95


# --------------------------------------------------------------------------------------------
# Counts (computed where predictions are read: kdtransfer.analysis.metrics.setup_tables)
# --------------------------------------------------------------------------------------------


def paired_counts(agrees_a, agrees_b) -> dict:
    """The matched-pairs 2x2 of two boolean per-sample "agrees with the teacher" vectors."""
    agrees_a = np.asarray(agrees_a, dtype=bool)
    agrees_b = np.asarray(agrees_b, dtype=bool)
    if agrees_a.shape != agrees_b.shape:
        raise ValueError(f"agreement vectors differ in shape: {agrees_a.shape} vs {agrees_b.shape}")
    both = int(np.count_nonzero(agrees_a & agrees_b))
    only_a = int(np.count_nonzero(agrees_a)) - both
    only_b = int(np.count_nonzero(agrees_b)) - both
    return {
        "n": int(agrees_a.size),
        "both_agree": both,
        "only_a_agrees": only_a,
        "only_b_agrees": only_b,
        "neither_agrees": int(agrees_a.size) - both - only_a - only_b,
    }


def discordance_table(
    setup: str, agrees: Mapping[tuple[str, int], np.ndarray], teacher_correct: Mapping[int, np.ndarray]
) -> pd.DataFrame:
    """One setup's per-seed matched-pairs counts: one row per (seed, comparison, subset).

    `agrees`: (condition, seed) -> boolean per-sample vector, student prediction == teacher
    prediction (the teacher of that seed; samples aligned, as setup_tables checks).
    `teacher_correct`: seed -> boolean per-sample vector, the teacher's prediction is the label.
    Comparisons (COMPARISONS) whose conditions are both present, for every seed that has both.
    Columns DISCORDANCE_COLUMNS: n samples in the subset; both_agree / only_a_agrees (b) /
    only_b_agrees (c) / neither_agrees partition them.
    """
    rows = []
    conditions = {cond for cond, _ in agrees}
    for cond_a, cond_b in COMPARISONS:
        if not {cond_a, cond_b} <= conditions:
            continue
        seeds = sorted({s for c, s in agrees if c == cond_a} & {s for c, s in agrees if c == cond_b})
        for seed in seeds:
            wrong = ~np.asarray(teacher_correct[seed], dtype=bool)
            a, b = agrees[(cond_a, seed)], agrees[(cond_b, seed)]
            for subset, (sub_a, sub_b) in (("all", (a, b)), ("teacher_incorrect", (a[wrong], b[wrong]))):
                rows.append(
                    {
                        "setup": setup,
                        "seed": int(seed),
                        "condition_a": cond_a,
                        "condition_b": cond_b,
                        "subset": subset,
                        **paired_counts(sub_a, sub_b),
                    }
                )
    df = pd.DataFrame(rows, columns=DISCORDANCE_COLUMNS)
    for col in DISCORDANCE_COLUMNS[5:] + ["seed"]:
        df[col] = df[col].astype("int64")
    return df


# --------------------------------------------------------------------------------------------
# Tests on the counts
# --------------------------------------------------------------------------------------------

# A matched pair as a 2x2 stratum: rows condition a, b; columns agrees, does not.
_ONLY_A = np.array([[1.0, 0.0], [0.0, 1.0]])
_ONLY_B = np.array([[0.0, 1.0], [1.0, 0.0]])
_BOTH = np.array([[1.0, 0.0], [1.0, 0.0]])
_NEITHER = np.array([[0.0, 1.0], [0.0, 1.0]])


def pair_strata(only_a: int, only_b: int, both: int = 0, neither: int = 0) -> np.ndarray:
    """The per-pair 2x2 tables as a [2, 2, K] array (StratifiedTable's layout), one stratum per
    matched pair: `only_a` pairs where only condition a agrees, `only_b` where only b does, and
    (they change nothing; see the module docstring) `both` and `neither` concordant pairs."""
    parts = [
        np.repeat(t[:, :, None], k, axis=2)
        for t, k in ((_ONLY_A, only_a), (_ONLY_B, only_b), (_BOTH, both), (_NEITHER, neither))
    ]
    return np.concatenate(parts, axis=2)


def mcnemar_exact_greater(only_a: int, only_b: int) -> float:
    """One-sided exact McNemar p for "a agrees more": P(X >= b), X ~ Binomial(b + c, 1/2); 1 if b + c = 0."""
    n = int(only_a) + int(only_b)
    return 1.0 if n == 0 else float(scipy.stats.binom.sf(int(only_a) - 1, n, 0.5))


def matched_odds_ratio(only_a: int, only_b: int, confidence: float = CONFIDENCE) -> tuple[float, float, float, str]:
    """(MH odds ratio, CI low, CI high, note) of matched pairs with b = only_a, c = only_b
    discordant pairs, from statsmodels' StratifiedTable over the discordant per-pair strata."""
    if only_a == 0 and only_b == 0:
        return math.nan, math.nan, math.nan, "no discordant samples: the odds ratio is undefined"
    if only_a == 0 or only_b == 0:
        which = "only_a_agrees" if only_a == 0 else "only_b_agrees"
        return (
            (0.0 if only_a == 0 else math.inf),
            math.nan,
            math.nan,
            f"{which} = 0: odds ratio {0 if only_a == 0 else 'infinite'}, no CI",
        )
    table = StratifiedTable(pair_strata(only_a, only_b))
    low, high = table.oddsratio_pooled_confint(alpha=1 - confidence)
    return float(table.oddsratio_pooled), float(low), float(high), ""


def cmh_greater(only_a: int, only_b: int) -> tuple[float, float]:
    """(continuity-corrected CMH chi-square, one-sided p for "a agrees more") over the pooled
    discordant per-pair strata; (0, 1) when there is none."""
    if only_a + only_b == 0:
        return 0.0, 1.0
    statistic = float(StratifiedTable(pair_strata(only_a, only_b)).test_null_odds(correction=True).statistic)
    # Half the two-sided chi-square p (1 df: the square of a normal z) in the observed direction,
    # one minus that half against it. From the statistic, not test_null_odds' p-value: that is
    # 1 - chi2.cdf, which rounds every p below about 1e-16 to exactly 0.
    z = math.sqrt(statistic)
    return statistic, float(scipy.stats.norm.sf(z) if only_a > only_b else scipy.stats.norm.cdf(z))


_NO_SAMPLES = "no samples in this subset (the teacher makes no error)"


def _row(setup, family, cond_a, cond_b, subset, seed, test, n, only_a, only_b, statistic, p, method):
    """One per-sample test row; a subset without samples has no statistic, p or odds ratio."""
    if n == 0:
        statistic = p = odds = low = high = math.nan
        or_note = _NO_SAMPLES
    else:
        odds, low, high, or_note = matched_odds_ratio(only_a, only_b)
    note = "; ".join(x for x in (or_note, CONDITIONAL_NOTE) if x)
    return {
        "setup": setup,
        "family": family,
        "kind": KIND,
        "test": test,
        "metric": SUBSETS[subset],
        "condition_a": cond_a,
        "condition_b": cond_b,
        "alternative": "greater",
        "n": int(n),
        "n_nonzero": int(only_a + only_b),
        "statistic": statistic,
        "p_value": p,
        "method": method,
        "effect_size": odds,
        "median_diff": math.nan,
        "ci_low": low,
        "ci_high": high,
        "primary": True,
        "note": note,
        "seed": seed,
        "only_a_agrees": int(only_a),
        "only_b_agrees": int(only_b),
    }


def per_sample_tests(discordance: pd.DataFrame, *, alpha: float, fdr_family: str) -> pd.DataFrame:
    """The per-sample tests of the discordance tables (discordance_table, concatenated).

    Per setup, comparison and subset: one exact McNemar row per seed, then one pooled
    Mantel–Haenszel / CMH row; tests "per-sample <metric>: kd > nokd (seed 3)" and "... (pooled,
    CMH)". Columns TEST_COLUMNS + PER_SAMPLE_COLUMNS; kind "per-sample"; BY within the per-sample
    family (module docstring). A subset without samples (the teacher makes no error) is a row
    with NaN p, outside the adjustment.
    """
    rows = []
    for setup in pd.unique(discordance["setup"]):
        family = f"{KIND}: {setup}" if fdr_family == "setup" else f"{KIND}: all"
        d = discordance[discordance["setup"] == setup]
        for (cond_a, cond_b), subset in ((c, s) for c in COMPARISONS for s in SUBSETS):
            part = d[(d["condition_a"] == cond_a) & (d["condition_b"] == cond_b) & (d["subset"] == subset)].sort_values(
                "seed"
            )
            if part.empty:
                continue
            name = f"per-sample {SUBSETS[subset]}: {cond_a} > {cond_b}"
            for r in part.itertuples(index=False):
                b, c = int(r.only_a_agrees), int(r.only_b_agrees)
                rows.append(
                    _row(
                        setup,
                        family,
                        cond_a,
                        cond_b,
                        subset,
                        int(r.seed),
                        f"{name} (seed {r.seed})",
                        int(r.n),
                        b,
                        c,
                        float(b),
                        mcnemar_exact_greater(b, c),
                        "McNemar exact, one-sided (binomial on the discordant samples)",
                    )
                )
            n, b, c = (int(part[k].sum()) for k in ("n", "only_a_agrees", "only_b_agrees"))
            rows.append(
                _row(
                    setup,
                    family,
                    cond_a,
                    cond_b,
                    subset,
                    pd.NA,
                    f"{name} (pooled, CMH)",
                    n,
                    b,
                    c,
                    *cmh_greater(b, c),
                    f"Cochran–Mantel–Haenszel over the (sample, seed) strata of {len(part)} seeds, "
                    "continuity-corrected, one-sided",
                )
            )
    df = pd.DataFrame(
        rows,
        columns=[
            c for c in TEST_COLUMNS if c not in ("p_adjusted", "significant", "min_p_adjusted_possible", "seeds_needed")
        ]
        + PER_SAMPLE_COLUMNS,
    )
    # The seed-count power floor of the seed-level tests has no meaning for these rows.
    df["min_p_adjusted_possible"] = math.nan
    df["seeds_needed"] = math.nan
    adjust_by_family(df, df["p_value"].notna(), alpha)
    return _typed(df[TEST_COLUMNS + PER_SAMPLE_COLUMNS])


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for col in ("n", "n_nonzero"):
        df[col] = df[col].astype("int64")
    for col in (
        "statistic",
        "p_value",
        "p_adjusted",
        "effect_size",
        "median_diff",
        "ci_low",
        "ci_high",
        "min_p_adjusted_possible",
        "seeds_needed",
    ):
        df[col] = df[col].astype("float64")
    df["significant"] = df["significant"].astype(bool)
    df["primary"] = df["primary"].astype(bool)
    for col in PER_SAMPLE_COLUMNS:
        df[col] = df[col].astype("Int64")
    return df.reset_index(drop=True)


def with_per_sample_tests(
    tests: pd.DataFrame, discordance: pd.DataFrame, *, alpha: float, fdr_family: str
) -> pd.DataFrame:
    """The seed-level tests (stats.setup_tests), unchanged, followed by the per-sample rows in
    their own family; PER_SAMPLE_COLUMNS are null on the seed-level rows."""
    extra = per_sample_tests(discordance, alpha=alpha, fdr_family=fdr_family)
    seed_level = tests.copy()
    for col in PER_SAMPLE_COLUMNS:
        seed_level[col] = pd.array([pd.NA] * len(seed_level), dtype="Int64")
    if extra.empty:
        return seed_level.reset_index(drop=True)
    return pd.concat([seed_level, extra], ignore_index=True)
