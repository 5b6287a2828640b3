"""Every statistic, p-value, effect size and adjusted p against direct scipy/statsmodels calls."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import setup_test_settings
from statsmodels.stats.multitest import multipletests

from kdtransfer.analysis import stats as S
from kdtransfer.analysis import verdicts as V

EXACT = scipy.stats.PermutationMethod(n_resamples=np.inf)
METRIC_COLS = (
    "accuracy",
    "agreement",
    "agreement_correct",
    "agreement_incorrect",
    "js",
    "activation_distance",
    "kl",
    "ece",
)


def make_metrics(
    setups=("a", "b"),
    seeds=range(10),
    conditions=("teacher", "kd", "nokd", "rcd", "teacher_other_seed"),
    n_test=1000,
    seed=0,
):
    """Synthetic metrics: agreement etc. are multiples of 1/n_test (so ties occur), kd > nokd."""
    rng = np.random.default_rng(seed)
    rows = []
    shift = {"kd": 0.02, "rcd": 0.01, "nokd": 0.0, "teacher_other_seed": -0.01, "teacher": 0.0, "independent": -0.02}
    for si, setup in enumerate(setups):
        for s in seeds:
            for cond in conditions:
                q = lambda x: np.round(np.clip(x, 0, 1) * n_test) / n_test  # noqa: E731
                base = 0.85 + 0.02 * si
                row = {
                    "setup": setup,
                    "condition": cond,
                    "seed": s,
                    "run_key": f"{setup}-{cond}-{s}",
                    "path": f"/x/{setup}/{cond}/{s}.parquet",
                    "teacher_path": "",
                    "n": n_test,
                    "n_teacher_correct": 900,
                    "n_teacher_incorrect": 100,
                    "teacher_accuracy": 0.9,
                    "accuracy": q(0.88 + shift[cond] * 0.5 + rng.integers(-3, 4) / n_test),
                    "agreement": q(base + shift[cond] + rng.integers(-5, 6) / n_test),
                    "agreement_correct": q(0.93 + shift[cond] * 0.5 + rng.integers(-3, 4) / n_test),
                    "agreement_incorrect": q(0.40 + shift[cond] * 3 + rng.integers(-10, 11) / 100),
                    "js": 0.05 - shift[cond] + rng.normal(0, 0.002),
                    "activation_distance": 0.2 - shift[cond] + rng.normal(0, 0.01),
                    "kl": 0.1 - shift[cond] + rng.normal(0, 0.005),
                    "ece": 0.03 + rng.normal(0, 0.002),
                }
                if cond == "teacher":
                    for k in (
                        "agreement",
                        "agreement_correct",
                        "agreement_incorrect",
                        "js",
                        "activation_distance",
                        "kl",
                    ):
                        row[k] = math.nan
                rows.append(row)
    return pd.DataFrame(rows)


def _diff(metrics, setup, metric, a, b):
    m = metrics[metrics["setup"] == setup]
    x = m[m["condition"] == a].set_index("seed")[metric]
    y = m[m["condition"] == b].set_index("seed")[metric]
    common = x.index.intersection(y.index)
    return (x[common] - y[common]).to_numpy()


def _rank_biserial_direct(d):
    d = d[d != 0]
    r = scipy.stats.rankdata(np.abs(d))
    return (r[d > 0].sum() - r[d < 0].sum()) / r.sum()


@pytest.fixture(scope="module")
def metrics():
    return make_metrics()


@pytest.fixture(scope="module")
def tests_df(metrics):
    return S.setup_tests(metrics, **setup_test_settings(n_bootstrap=500))


def test_columns_and_test_set(tests_df):
    for col in [
        "setup",
        "family",
        "kind",
        "test",
        "metric",
        "condition_a",
        "condition_b",
        "alternative",
        "n",
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
    ]:
        assert col in tests_df.columns, col
    a = tests_df[tests_df["setup"] == "a"]
    assert len(a) == 8 + 2 + 2
    assert set(a["kind"]) == {"transfer", "regulariser", "asymmetry"}
    assert "agreement: kd > nokd" in set(a["test"]) and "kl: kd < rcd" in set(a["test"])
    assert (a["n"] == 10).all()
    assert a["method"].str.startswith("wilcoxon signed-rank, exact").all()
    assert a["method"].str.contains("exact permutation").any()  # ties in agreement differences


def test_wilcoxon_p_statistic_effect_against_scipy(metrics, tests_df):
    checked = 0
    for _, r in tests_df[tests_df["kind"] != "asymmetry"].iterrows():
        d = np.round(_diff(metrics, r["setup"], r["metric"], r["condition_a"], r["condition_b"]), 12)
        ref = scipy.stats.wilcoxon(d, zero_method="wilcox", alternative=r["alternative"], method=EXACT)
        assert r["statistic"] == pytest.approx(ref.statistic)
        assert r["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
        assert r["effect_size"] == pytest.approx(_rank_biserial_direct(d))
        assert r["median_diff"] == pytest.approx(np.median(d))
        checked += 1
    assert checked == 20
    # ties are really present in the agreement differences, so 'exact' != permutation matters
    d = np.round(_diff(metrics, "a", "agreement", "kd", "nokd"), 12)
    assert len(np.unique(np.abs(d))) < len(d)


def test_exact_permutation_by_hand():
    stat, p, method = S.wilcoxon_test(np.arange(1, 11) / 100, "greater")
    assert p == pytest.approx(1 / 1024) and stat == 55
    stat, p, _ = S.wilcoxon_test(np.arange(1, 11) / 100, "two-sided")
    assert p == pytest.approx(2 / 1024)
    assert S.wilcoxon_test(np.zeros(5), "greater")[1] == 1.0
    # float noise does not split a true tie: 0.9512-0.95 and 0.9012-0.90 tie after rounding
    d = np.array([0.9512 - 0.95, 0.9012 - 0.90, 0.003, -0.001])
    ref = scipy.stats.wilcoxon(np.array([0.0012, 0.0012, 0.003, -0.001]), alternative="greater", method=EXACT)
    assert S.wilcoxon_test(d, "greater")[1] == pytest.approx(ref.pvalue)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_tie_free_fast_path_equals_the_exhaustive_permutation(alternative):
    rng = np.random.default_rng(3)
    for n in (3, 7, 10, 13):
        d = rng.normal(0.2, 1.0, size=n)
        stat, p, method = S.wilcoxon_test(d, alternative)
        assert method == "wilcoxon signed-rank, exact"
        ref = scipy.stats.wilcoxon(d, zero_method="wilcox", alternative=alternative, method=EXACT)
        assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=1e-12)
    # a zero difference is dropped; the rest is tie-free, so the fast path still applies
    d = np.array([0.0, 0.3, -0.1, 0.5, 0.7])
    stat, p, method = S.wilcoxon_test(d, alternative)
    ref = scipy.stats.wilcoxon(d, zero_method="wilcox", alternative=alternative, method=EXACT)
    assert p == pytest.approx(ref.pvalue, rel=1e-12) and stat == pytest.approx(ref.statistic)


def test_rank_biserial_by_hand():
    # |d| ranks: 1 -> 1, 2 -> 2.5, 2 -> 2.5, 3 -> 4; R+ = 1 + 2.5 + 4 = 7.5, R- = 2.5
    assert S.rank_biserial(np.array([1.0, 2.0, -2.0, 3.0, 0.0])) == pytest.approx((7.5 - 2.5) / 10)
    assert S.rank_biserial(np.array([1.0, 2.0])) == 1.0


def test_bootstrap_ci_against_scipy(metrics, tests_df):
    d = _diff(metrics, "a", "agreement", "kd", "nokd")
    ref = scipy.stats.bootstrap(
        (d,),
        np.median,
        n_resamples=500,
        method="percentile",
        vectorized=True,
        axis=-1,
        rng=np.random.default_rng([0, 7]),
    )
    lo, hi = S.bootstrap_median_ci(d, n_bootstrap=500, seed=[0, 7])
    assert (lo, hi) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    r = tests_df[(tests_df["setup"] == "a") & (tests_df["test"] == "agreement: kd > nokd")].iloc[0]
    lo, hi = S.bootstrap_median_ci(d, n_bootstrap=500, seed=S.stable_seed(0, "a", "agreement: kd > nokd"))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
    assert r["ci_low"] <= r["median_diff"] <= r["ci_high"]


def test_asymmetry_against_scipy(metrics, tests_df):
    for setup in ("a", "b"):
        gi = _diff(metrics, setup, "agreement_incorrect", "kd", "nokd")
        gc = _diff(metrics, setup, "agreement_correct", "kd", "nokd")
        m = metrics[metrics["setup"] == setup]
        nokd = m[m["condition"] == "nokd"].set_index("seed").sort_index()
        raw = np.round(gi - gc, 12)
        norm = np.round(
            gi / (1 - nokd["agreement_incorrect"].to_numpy()) - gc / (1 - nokd["agreement_correct"].to_numpy()), 12
        )
        for variant, d, primary in (("raw", raw, True), ("normalised", norm, False)):
            r = tests_df[
                (tests_df["setup"] == setup)
                & (tests_df["test"] == f"asymmetry ({variant}): gain_incorrect > gain_correct")
            ].iloc[0]
            ref = scipy.stats.wilcoxon(d, alternative="greater", method=EXACT)
            assert r["p_value"] == pytest.approx(ref.pvalue) and r["statistic"] == pytest.approx(ref.statistic)
            assert r["effect_size"] == pytest.approx(_rank_biserial_direct(d))
            assert bool(r["primary"]) is primary
            if not primary:
                assert math.isnan(r["p_adjusted"]) and "secondary" in r["note"]


@pytest.mark.parametrize("alpha", [0.01, 0.2, 0.5])
def test_significant_is_decided_at_the_configured_alpha(metrics, alpha):
    """The one significance decision (stats.significant) follows analysis.alpha: at each alpha a
    family's `significant` equals statsmodels' BY rejection at that alpha."""
    tests = S.setup_tests(metrics, **setup_test_settings(alpha=alpha, n_bootstrap=50))
    for setup in ("a", "b"):
        fam = tests[(tests["setup"] == setup) & tests["primary"]]
        rej, _, _, _ = multipletests(fam["p_value"].to_numpy(), alpha=alpha, method="fdr_by")
        assert (fam["significant"].to_numpy() == rej).all()
    assert not tests.loc[~tests["primary"], "significant"].any()


def test_by_adjustment_per_setup_and_all(metrics, tests_df):
    for setup in ("a", "b"):
        fam = tests_df[(tests_df["setup"] == setup) & tests_df["primary"]]
        assert len(fam) == 11
        rej, adj, _, _ = multipletests(fam["p_value"].to_numpy(), alpha=0.05, method="fdr_by")
        np.testing.assert_allclose(fam["p_adjusted"].to_numpy(), adj)
        assert (fam["significant"].to_numpy() == rej).all()
    all_df = S.setup_tests(metrics, **setup_test_settings(fdr_family="all", n_bootstrap=200))
    fam = all_df[all_df["primary"]]
    np.testing.assert_allclose(
        fam["p_adjusted"].to_numpy(), multipletests(fam["p_value"].to_numpy(), method="fdr_by")[1]
    )
    assert (all_df["family"] == "all").all()
    # the "all" family is larger, so adjusted p-values are no smaller
    assert (fam["p_adjusted"].to_numpy() >= tests_df.loc[tests_df["primary"], "p_adjusted"].to_numpy() - 1e-15).all()


def test_asymmetry_primary_normalised(metrics):
    df = S.setup_tests(
        metrics[metrics["setup"] == "a"], **setup_test_settings(asymmetry_primary="normalised", n_bootstrap=200)
    )
    prim = df[df["kind"] == "asymmetry"].set_index("test")["primary"]
    assert (
        prim["asymmetry (normalised): gain_incorrect > gain_correct"]
        and not prim["asymmetry (raw): gain_incorrect > gain_correct"]
    )


def test_power_columns(tests_df):
    fam = tests_df[tests_df["setup"] == "a"]
    # 9 one-sided + 2 two-sided primary tests, n = 10
    min_ps = [1 / 1024] * 9 + [2 / 1024] * 2
    expect = multipletests(np.array(min_ps), method="fdr_by")[1].min()
    np.testing.assert_allclose(fam["min_p_adjusted_possible"].to_numpy(), expect)
    needed = next(
        n
        for n in range(1, 64)
        if multipletests(np.array([0.5**n] * 9 + [2 * 0.5**n] * 2), method="fdr_by")[1].min() <= 0.05
    )
    assert (fam["seeds_needed"] == needed).all()


def test_power_warning_and_few_seeds(caplog):
    m = make_metrics(setups=("tiny",), seeds=range(3))
    with caplog.at_level(logging.WARNING, logger="kdtransfer.analysis.stats"):
        df = S.setup_tests(m, **setup_test_settings(n_bootstrap=100))
    assert any("tiny" in rec.getMessage() and "Seeds needed" in rec.getMessage() for rec in caplog.records)
    assert (df["min_p_adjusted_possible"] > 0.05).all()
    one = make_metrics(setups=("one",), seeds=[0])
    df = S.setup_tests(one, **setup_test_settings(n_bootstrap=100))
    assert df["p_value"].isna().all() and df["note"].str.contains("paired seed").all()
    assert not df["significant"].any()


def test_missing_conditions_and_unpaired_seeds():
    m = make_metrics(setups=("x",), conditions=("teacher", "kd", "nokd"))
    # drop two kd seeds: only 8 paired seeds remain
    m = m[~((m["condition"] == "kd") & m["seed"].isin([0, 1]))]
    df = S.setup_tests(m, **setup_test_settings(n_bootstrap=100))
    assert not df["test"].str.contains("rcd").any()
    assert len(df) == 4 + 1 + 2
    assert (df["n"] == 8).all()
    only_teacher = make_metrics(setups=("y",), conditions=("teacher",))
    assert S.setup_tests(only_teacher, **setup_test_settings()).empty


def test_verdicts(metrics, tests_df):
    v = V.verdicts(tests_df, metrics)
    assert list(v["setup"]) == ["a", "b"]
    for col in (
        "transfer_kd_vs_nokd",
        "transfer_kd_vs_rcd",
        "rcd_fraction_of_kd_gain",
        "asymmetric_negative",
        "transfer",
        "regulariser",
        "asymmetry",
    ):
        assert col in v.columns
    r = tests_df[(tests_df["setup"] == "a") & (tests_df["test"] == "agreement: kd > nokd")].iloc[0]
    assert bool(v.iloc[0]["transfer_kd_vs_nokd"]) == bool(r["p_adjusted"] <= 0.05)
    gk = _diff(metrics, "a", "accuracy", "kd", "nokd").mean() * 100
    gr = _diff(metrics, "a", "accuracy", "rcd", "nokd").mean() * 100
    assert v.iloc[0]["rcd_fraction_of_kd_gain"] == pytest.approx(gr / gk)
    assert isinstance(v.iloc[0]["transfer"], str) and v.iloc[0]["transfer"]
