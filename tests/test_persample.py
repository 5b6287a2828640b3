"""The per-sample view: discordant counts from hand-built predictions, McNemar / MH / CMH against
independent recomputations, and the rows' place in the tests table (their own family, the
seed-level tests and verdicts untouched)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import per_sample_settings, setup_test_settings
from statsmodels.stats.contingency_tables import StratifiedTable, mcnemar
from statsmodels.stats.multitest import multipletests
from test_stats import make_metrics

from kdtransfer.analysis import metrics as M
from kdtransfer.analysis import persample as P
from kdtransfer.analysis import stats as S
from kdtransfer.analysis import tables as TB
from kdtransfer.analysis import verdicts as V
from kdtransfer.io.atomic import write_parquet
from kdtransfer.io.predictions import write_predictions

C = 4  # classes
N = 21  # test samples, the same in every seed (teachers of different seeds are compared too)
# Per seed, groups of samples: (teacher correct, kd agrees, nokd agrees, rcd agrees, how many).
PATTERNS = {
    0: [
        (True, True, True, True, 10),
        (True, True, False, True, 4),
        (False, True, False, False, 2),
        (True, False, True, True, 1),
        (False, False, False, False, 3),
        (False, True, True, False, 1),
    ],
    1: [
        (True, True, True, True, 8),
        (True, True, False, False, 3),
        (False, True, False, True, 1),
        (True, False, True, False, 2),
        (False, False, True, True, 2),
        (False, False, False, False, 5),
    ],
    # the teacher makes no error: the teacher-incorrect subset is empty
    2: [(True, True, True, True, 18), (True, True, False, True, 2), (True, False, False, True, 1)],
}
# By hand from PATTERNS: (n, both agree, only the first agrees = b, only the second = c, neither)
EXPECTED = {
    (0, "nokd", "all"): (21, 11, 6, 1, 3),
    (0, "nokd", "teacher_incorrect"): (6, 1, 2, 0, 3),
    (0, "rcd", "all"): (21, 14, 3, 1, 3),
    (0, "rcd", "teacher_incorrect"): (6, 0, 3, 0, 3),
    (1, "nokd", "all"): (21, 8, 4, 4, 5),
    (1, "nokd", "teacher_incorrect"): (8, 0, 1, 2, 5),
    (1, "rcd", "all"): (21, 9, 3, 2, 7),
    (1, "rcd", "teacher_incorrect"): (8, 1, 0, 2, 5),
    (2, "nokd", "all"): (21, 18, 2, 0, 1),
    (2, "nokd", "teacher_incorrect"): (0, 0, 0, 0, 0),
    (2, "rcd", "all"): (21, 20, 0, 1, 0),
    (2, "rcd", "teacher_incorrect"): (0, 0, 0, 0, 0),
}
COUNTS = ["n", "both_agree", "only_a_agrees", "only_b_agrees", "neither_agrees"]


def _one_hot_logits(pred):
    logits = np.zeros((len(pred), C), dtype=np.float32)
    logits[np.arange(len(pred)), pred] = 5.0
    return logits


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory):
    """Prediction files realising PATTERNS (samples shuffled), as setup_tables takes them."""
    root = tmp_path_factory.mktemp("persample")
    rng = np.random.default_rng(0)
    label = rng.integers(0, C, N)
    teachers, students, flags = {}, {c: {} for c in ("kd", "nokd", "rcd")}, {}
    for seed, groups in PATTERNS.items():
        assert sum(g[4] for g in groups) == N
        rows = np.array([g[:4] for g in groups for _ in range(g[4])])[rng.permutation(N)]
        flags[seed] = rows
        teacher_pred = np.where(rows[:, 0], label, (label + 1) % C)

        def write(name, condition, pred):
            path = root / f"{name}_s{seed}.parquet"
            write_predictions(
                path,
                run_key=f"{condition}/hand",
                condition=condition,
                seed=seed,
                split="test",
                sample_idx=np.arange(N),
                label=label,
                logits=_one_hot_logits(pred),
            )
            return str(path)

        teachers[seed] = write("teacher", "teacher", teacher_pred)
        for j, cond in enumerate(("kd", "nokd", "rcd"), start=1):
            students[cond][seed] = write(cond, cond, np.where(rows[:, j], teacher_pred, (teacher_pred + 2) % C))
    return teachers, students, flags


@pytest.fixture(scope="module")
def tables(hand_built):
    teachers, students, _ = hand_built
    return M.setup_tables("hand", teachers, students)


# --------------------------------------------------------------------------------------------
# Counts, where the predictions are read
# --------------------------------------------------------------------------------------------


def test_counts_from_hand_built_predictions(tables):
    d = tables.discordance
    assert list(d.columns) == P.DISCORDANCE_COLUMNS
    assert len(d) == len(EXPECTED) and not d.duplicated(["seed", "condition_a", "condition_b", "subset"]).any()
    assert (d["setup"] == "hand").all() and (d["condition_a"] == "kd").all()
    got = {(r.seed, r.condition_b, r.subset): tuple(int(getattr(r, k)) for k in COUNTS) for r in d.itertuples()}
    assert got == EXPECTED


def test_counts_agree_with_the_metrics_of_the_same_pass(tables):
    """(both + b) / n is kd's agreement on the subset, (both + c) / n the control's: the same
    numbers the metrics table reports."""
    m = tables.metrics.set_index(["condition", "seed"])
    for r in tables.discordance[tables.discordance["n"] > 0].itertuples():
        metric = P.SUBSETS[r.subset]
        assert (r.both_agree + r.only_a_agrees) / r.n == pytest.approx(m.loc[("kd", r.seed), metric], abs=1e-15)
        assert (r.both_agree + r.only_b_agrees) / r.n == pytest.approx(
            m.loc[(r.condition_b, r.seed), metric], abs=1e-15
        )
    # the metrics table is the one setup_metrics builds
    pd.testing.assert_frame_equal(tables.metrics, M.setup_metrics("hand", *_paths(tables)))


def _paths(tables):
    m = tables.metrics
    teachers = dict(zip(m.loc[m["condition"] == "teacher", "seed"], m.loc[m["condition"] == "teacher", "path"]))
    students = {
        c: dict(zip(g["seed"], g["path"]))
        for c, g in m[m["condition"].isin(["kd", "nokd", "rcd"])].groupby("condition")
    }
    return teachers, students


def test_every_file_read_once(hand_built, monkeypatch):
    teachers, students, _ = hand_built
    reads = []
    real = M.read_predictions
    monkeypatch.setattr(M, "read_predictions", lambda p, **kw: reads.append(str(p)) or real(p, **kw))
    M.setup_tables("hand", teachers, students)
    assert sorted(reads) == sorted([*teachers.values(), *(p for d in students.values() for p in d.values())])


def test_only_comparisons_whose_conditions_exist(hand_built):
    teachers, students, _ = hand_built
    d = M.setup_tables("hand", teachers, {"kd": students["kd"], "rcd": students["rcd"]}).discordance
    assert set(d["condition_b"]) == {"rcd"} and len(d) == 3 * 2
    d = M.setup_tables("hand", teachers, {"kd": students["kd"], "nokd": {0: students["nokd"][0]}}).discordance
    assert list(d["seed"]) == [0, 0]  # only seed 0 has both kd and nokd
    assert M.setup_tables("hand", teachers, {"nokd": students["nokd"]}).discordance.empty


def test_paired_counts_partition():
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 1, 0, 0, 0], bool)
    assert P.paired_counts(a, b) == {
        "n": 6,
        "both_agree": 1,
        "only_a_agrees": 2,
        "only_b_agrees": 1,
        "neither_agrees": 2,
    }
    with pytest.raises(ValueError, match="shape"):
        P.paired_counts(a, b[:3])


# --------------------------------------------------------------------------------------------
# The tests against independent recomputations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("b, c", [(6, 1), (4, 4), (1, 2), (3, 0), (0, 2), (17, 5), (40, 61)])
def test_mcnemar_exact_one_sided(b, c):
    p = P.mcnemar_exact_greater(b, c)
    assert p == pytest.approx(scipy.stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue, rel=1e-12)
    two_sided = mcnemar(np.array([[0, b], [c, 0]]), exact=True).pvalue
    if b > c:  # statsmodels' exact McNemar is two-sided: twice the one-sided p in the observed direction
        assert two_sided == pytest.approx(2 * p, rel=1e-12)


def test_pooled_odds_ratio_ci_and_cmh_by_hand():
    b, c = 23, 9
    odds, low, high, note = P.matched_odds_ratio(b, c)
    assert odds == pytest.approx(b / c) and note == ""
    half_width = scipy.stats.norm.ppf(0.975) * math.sqrt(1 / b + 1 / c)
    assert (low, high) == pytest.approx((b / c * math.exp(-half_width), b / c * math.exp(half_width)), rel=1e-12)
    statistic, p = P.cmh_greater(b, c)
    assert statistic == pytest.approx((abs(b - c) - 1) ** 2 / (b + c), rel=1e-12)
    assert p == pytest.approx(scipy.stats.chi2.sf(statistic, 1) / 2, rel=1e-12)
    # = McNemar's continuity-corrected chi-square on the pooled discordant counts
    ref = mcnemar(np.array([[0, b], [c, 0]]), exact=False, correction=True)
    assert statistic == pytest.approx(ref.statistic, rel=1e-12) and 2 * p == pytest.approx(ref.pvalue, rel=1e-12)
    # against the hypothesis: one minus the half
    assert P.cmh_greater(c, b)[1] == pytest.approx(1 - p, rel=1e-12)


def test_cmh_p_does_not_underflow():
    """statsmodels' test_null_odds p-value is 1 - chi2.cdf: 0 for a large statistic. The one-sided
    p is taken from the statistic, so a strong effect keeps its order of magnitude."""
    b, c = 1053, 22
    statistic, p = P.cmh_greater(b, c)
    assert StratifiedTable(P.pair_strata(b, c)).test_null_odds(correction=True).pvalue == 0.0
    assert 0 < p == pytest.approx(scipy.stats.chi2.sf(statistic, 1) / 2, rel=1e-9)
    assert P.cmh_greater(c, b)[1] == 1.0  # against the hypothesis


def test_cmh_approximates_the_exact_conditional_test():
    """With 1:1 strata the exact conditional CMH test is the binomial test on the pooled counts;
    the continuity-corrected chi-square tracks it."""
    for b, c in ((130, 90), (60, 41), (520, 470)):
        exact = scipy.stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue
        assert P.cmh_greater(b, c)[1] == pytest.approx(exact, rel=0.05)


def test_discordant_strata_equal_the_full_per_pair_construction(hand_built, tables):
    """Each (sample, seed) pair a 2x2 condition x agrees table, built straight from the
    predictions: the same MH odds ratio, CI and CMH test as the discordant strata alone."""
    _, _, flags = hand_built
    for j, control in ((2, "nokd"), (3, "rcd")):
        full = StratifiedTable(
            [
                np.array([[kd, 1 - kd], [ctrl, 1 - ctrl]])
                for rows in flags.values()
                for kd, ctrl in zip(rows[:, 1].astype(int), rows[:, j].astype(int))
            ]
        )
        d = tables.discordance.query("condition_b == @control and subset == 'all'")
        b, c = int(d["only_a_agrees"].sum()), int(d["only_b_agrees"].sum())
        assert full.table.shape[2] == sum(len(r) for r in flags.values()) > b + c
        odds, low, high, _ = P.matched_odds_ratio(b, c)
        assert full.oddsratio_pooled == pytest.approx(odds, rel=1e-12) == b / c
        assert full.oddsratio_pooled_confint() == pytest.approx((low, high), rel=1e-12)
        assert full.test_null_odds(correction=True).statistic == pytest.approx(P.cmh_greater(b, c)[0], rel=1e-12)
        short = StratifiedTable(P.pair_strata(b, c))
        for correction in (False, True):
            assert full.test_null_odds(correction).pvalue == pytest.approx(
                short.test_null_odds(correction).pvalue, rel=1e-12
            )
    # pair_strata with the concordant pairs too is the full construction, in another order
    both = StratifiedTable(P.pair_strata(6, 1, both=11, neither=3))
    assert both.oddsratio_pooled == 6 and both.test_null_odds(True).statistic == pytest.approx(16 / 7)


@pytest.fixture(scope="module")
def rows(tables):
    return P.per_sample_tests(tables.discordance, **per_sample_settings())


def test_rows_per_seed_and_pooled(rows, tables):
    assert list(rows.columns) == S.TEST_COLUMNS + P.PER_SAMPLE_COLUMNS
    assert len(rows) == 2 * 2 * (3 + 1)
    assert (rows["kind"] == "per-sample").all() and (rows["family"] == "per-sample: hand").all()
    assert (rows["alternative"] == "greater").all() and rows["primary"].all()
    assert rows["note"].str.contains("conditional on the trained models").all()
    r = rows.set_index("test")
    seed0 = r.loc["per-sample agreement: kd > nokd (seed 0)"]
    assert (seed0["n"], seed0["only_a_agrees"], seed0["only_b_agrees"], seed0["n_nonzero"], seed0["statistic"]) == (
        21,
        6,
        1,
        7,
        6,
    )
    assert seed0["p_value"] == pytest.approx(scipy.stats.binomtest(6, 7, 0.5, alternative="greater").pvalue)
    assert seed0["effect_size"] == 6 and seed0["metric"] == "agreement" and seed0["seed"] == 0
    pooled = r.loc["per-sample agreement: kd > nokd (pooled, CMH)"]
    d = tables.discordance.query("condition_b == 'nokd' and subset == 'all'")
    b, c = int(d["only_a_agrees"].sum()), int(d["only_b_agrees"].sum())
    assert (b, c) == (12, 5) and (pooled["n"], pooled["only_a_agrees"], pooled["only_b_agrees"]) == (63, 12, 5)
    assert pooled["effect_size"] == pytest.approx(12 / 5) and pd.isna(pooled["seed"])
    assert pooled["statistic"] == pytest.approx((12 - 5 - 1) ** 2 / 17)
    assert pooled["p_value"] == pytest.approx(scipy.stats.chi2.sf(36 / 17, 1) / 2)
    assert (pooled["ci_low"], pooled["ci_high"]) == pytest.approx(P.matched_odds_ratio(12, 5)[1:3])
    assert pooled["ci_low"] < pooled["effect_size"] < pooled["ci_high"]
    assert rows["median_diff"].isna().all()


def test_teacher_incorrect_rows_and_empty_subset(rows):
    r = rows.set_index("test")
    # the teacher's errors of seeds 0 and 1 only: seed 2's teacher makes none
    pooled = r.loc["per-sample agreement_incorrect: kd > rcd (pooled, CMH)"]
    assert (pooled["n"], pooled["only_a_agrees"], pooled["only_b_agrees"]) == (14, 3, 2)
    empty = r.loc["per-sample agreement_incorrect: kd > nokd (seed 2)"]
    assert (
        empty["n"] == 0
        and math.isnan(empty["p_value"])
        and math.isnan(empty["p_adjusted"])
        and not empty["significant"]
    )
    assert "no samples in this subset" in empty["note"]
    # no discordant sample, or one side empty: a row, not an exception
    zero = r.loc["per-sample agreement_incorrect: kd > rcd (seed 1)"]  # b = 0, c = 2
    assert zero["effect_size"] == 0 and math.isnan(zero["ci_low"]) and "only_a_agrees = 0" in zero["note"]
    inf = r.loc["per-sample agreement: kd > nokd (seed 2)"]  # b = 2, c = 0
    assert inf["effect_size"] == math.inf and math.isnan(inf["ci_high"]) and inf["p_value"] == pytest.approx(0.25)


def test_zero_discordance_is_a_sensible_row():
    d = pd.DataFrame(
        [
            {
                "setup": "s",
                "seed": 0,
                "condition_a": "kd",
                "condition_b": "nokd",
                "subset": "all",
                "n": 50,
                "both_agree": 45,
                "only_a_agrees": 0,
                "only_b_agrees": 0,
                "neither_agrees": 5,
            }
        ]
    )
    out = P.per_sample_tests(d, **per_sample_settings()).set_index("test")
    for test in ("per-sample agreement: kd > nokd (seed 0)", "per-sample agreement: kd > nokd (pooled, CMH)"):
        r = out.loc[test]
        assert r["p_value"] == 1.0 and r["n_nonzero"] == 0 and math.isnan(r["effect_size"]) and math.isnan(r["ci_low"])
        assert "no discordant samples" in r["note"] and r["p_adjusted"] == 1.0 and not r["significant"]


# --------------------------------------------------------------------------------------------
# In the tests table
# --------------------------------------------------------------------------------------------


def synthetic_discordance(setups=("a", "b"), seeds=range(10), n=1000, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for setup in setups:
        for s in seeds:
            for control in ("nokd", "rcd"):
                for subset, size in (("all", n), ("teacher_incorrect", n // 10)):
                    b, c = int(rng.integers(0, size // 20)), int(rng.integers(0, size // 30))
                    both = int(rng.integers(0, size - b - c))
                    rows.append(
                        {
                            "setup": setup,
                            "seed": s,
                            "condition_a": "kd",
                            "condition_b": control,
                            "subset": subset,
                            "n": size,
                            "both_agree": both,
                            "only_a_agrees": b,
                            "only_b_agrees": c,
                            "neither_agrees": size - both - b - c,
                        }
                    )
    return pd.DataFrame(rows, columns=P.DISCORDANCE_COLUMNS)


@pytest.mark.parametrize("fdr_family", ["setup", "all"])
def test_own_family_leaves_seed_level_tests_and_verdicts_unchanged(fdr_family):
    metrics = make_metrics()
    seed_level = S.setup_tests(metrics, **setup_test_settings(fdr_family=fdr_family, n_bootstrap=200))
    combined = P.with_per_sample_tests(
        seed_level, synthetic_discordance(), **per_sample_settings(fdr_family=fdr_family)
    )
    before = combined[combined["kind"] != "per-sample"]
    pd.testing.assert_frame_equal(before[S.TEST_COLUMNS], seed_level)
    assert before[P.PER_SAMPLE_COLUMNS].isna().all().all()
    pd.testing.assert_frame_equal(V.verdicts(combined, metrics), V.verdicts(seed_level, metrics))

    extra = combined[combined["kind"] == "per-sample"]
    assert len(extra) == 2 * 2 * 2 * (10 + 1)
    families = {"setup": {"per-sample: a", "per-sample: b"}, "all": {"per-sample: all"}}[fdr_family]
    assert set(extra["family"]) == families and not families & set(seed_level["family"])
    for _, fam in extra.groupby("family"):
        expected = multipletests(fam["p_value"].to_numpy(), method="fdr_by")[1]
        np.testing.assert_allclose(fam["p_adjusted"].to_numpy(), expected, rtol=1e-12)
        assert (fam["significant"] == (fam["p_adjusted"] <= 0.05)).all()


def test_parquet_round_trip_and_the_existing_tests_table(tmp_path):
    metrics = make_metrics(setups=("a",))
    combined = P.with_per_sample_tests(
        S.setup_tests(metrics, **setup_test_settings(n_bootstrap=200)),
        synthetic_discordance(setups=("a",)),
        **per_sample_settings(),
    )
    write_parquet(combined, tmp_path / "tests.parquet")
    back = pd.read_parquet(tmp_path / "tests.parquet")
    pd.testing.assert_frame_equal(back, combined)
    table = TB.tests_table(back, pd.DataFrame({"setup": ["a"], "label": ["Setup A"]}), alpha=0.05)
    assert len(table) == len(combined)
    shown = table[table["test"].str.startswith("per-sample")]
    assert len(shown) == 44 and (shown["median diff [95% CI]"] == "--").all() and (shown["p"] != "--").all()


def test_counts_through_the_tests_from_files(tables, tmp_path):
    """The metrics rule's second output, written and read back, gives the same tests."""
    write_parquet(tables.discordance, tmp_path / "hand.parquet")
    pd.testing.assert_frame_equal(
        P.per_sample_tests(pd.read_parquet(tmp_path / "hand.parquet"), **per_sample_settings()),
        P.per_sample_tests(tables.discordance, **per_sample_settings()),
    )
