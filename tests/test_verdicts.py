"""The verdicts decide every claim (tables and figures only render them), and their robustness
along each sweep is tallied from them: specifications of verdicts.verdicts, verdicts.sweep_points,
verdicts.robustness and verdicts.robustness_counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import setup_test_settings

from kdtransfer.analysis import stats as S
from kdtransfer.analysis import verdicts as V

SEEDS = range(8)


def metrics_with(
    accuracy_gain_kd=0.02, accuracy_gain_rcd=0.012, setups=("s",), conditions=("teacher", "kd", "rcd", "nokd"), seed=0
):
    """Metrics whose accuracy gains over nokd are exactly the given ones on every seed, with
    noisy agreement values (the transfer tests' p-values come from these)."""
    rng = np.random.default_rng(seed)
    rows = []
    for setup in setups:
        for s in SEEDS:
            base = 0.8 + rng.normal(0, 0.01)
            for cond in conditions:
                acc = base + {"kd": accuracy_gain_kd, "rcd": accuracy_gain_rcd}.get(cond, 0.0)
                agree = 0.9 + {"kd": 0.03, "rcd": -0.1}.get(cond, 0.0) + rng.normal(0, 0.005)
                rows.append(
                    {
                        "setup": setup,
                        "condition": cond,
                        "seed": s,
                        "accuracy": acc,
                        "n_teacher_incorrect": 50,
                        "agreement": math.nan if cond == "teacher" else agree,
                        "agreement_correct": math.nan if cond == "teacher" else agree + 0.02,
                        "agreement_incorrect": math.nan if cond == "teacher" else agree - 0.3 + rng.normal(0, 0.02),
                        "js": 0.1,
                        "activation_distance": 0.1,
                        "kl": 0.1,
                        "ece": 0.03,
                        "num_parameters": 1000,
                    }
                )
    return pd.DataFrame(rows)


def with_p(tests: pd.DataFrame, alpha: float = 0.05, **p_by_test) -> pd.DataFrame:
    """tests with the adjusted p of the named tests replaced (keys: test ids with ':' and ' '
    spelled '_') and decided at `alpha` as the statistics decide them."""
    tests = tests.copy()
    names = {t.replace(":", "_").replace(" ", "_").replace(">", "gt"): t for t in tests["test"]}
    for key, p in p_by_test.items():
        chosen = tests["test"] == names[key]
        tests.loc[chosen, "p_adjusted"] = p
        tests.loc[chosen, "significant"] = bool(S.significant(p, alpha))
    return tests


ACC_KD = "accuracy__kd_vs_nokd"
ACC_RCD = "accuracy__rcd_vs_nokd"


@pytest.mark.parametrize(
    "gain_kd, gain_rcd, p_kd, p_rcd, kd_gain, matches, note",
    [
        (0.02, 0.012, 0.01, 0.01, True, True, ""),  # 60% of KD's gain, both significant
        (0.02, 0.012, 0.01, 0.20, True, False, ""),  # RCD's gain not significant
        (0.02, 0.006, 0.01, 0.01, True, False, ""),  # only 30% of KD's gain
        (0.02, 0.010, 0.01, 0.01, True, True, ""),  # exactly RCD_MATCH_FRACTION
        (0.02, 0.012, 0.30, 0.01, False, None, "n/a: KD has no significant accuracy gain"),
        (-0.02, -0.012, 0.01, 0.01, False, None, "n/a: KD has no significant accuracy gain"),  # KD significantly worse
    ],
)
def test_rcd_matches_kd_is_decided_by_the_statistics(gain_kd, gain_rcd, p_kd, p_rcd, kd_gain, matches, note):
    m = metrics_with(gain_kd, gain_rcd)
    tests = with_p(S.setup_tests(m, **setup_test_settings(n_bootstrap=50)), **{ACC_KD: p_kd, ACC_RCD: p_rcd})
    v = V.verdicts(tests, m).iloc[0]
    assert v["acc_gain_kd"] == pytest.approx(100 * gain_kd) and v["acc_gain_rcd"] == pytest.approx(100 * gain_rcd)
    assert bool(v["kd_accuracy_gain"]) is kd_gain
    if matches is None:
        assert v["rcd_matches_kd"] is pd.NA and v["rcd_matches_kd_note"] == note
    else:
        assert bool(v["rcd_matches_kd"]) is matches and v["rcd_matches_kd_note"] == ""
    assert v["p_adj_acc_rcd"] == pytest.approx(p_rcd)


def test_flags_follow_the_significance_the_tests_decided():
    """Verdicts decide nothing about significance: each flag reads its test's `significant`
    (here drawn at random, apart from the p-values) and never compares p_adjusted itself."""
    m = metrics_with(setups=("a", "b", "c"), seed=3)
    tests = S.setup_tests(m, **setup_test_settings(n_bootstrap=50))
    rng = np.random.default_rng(1)
    for draw in range(3):
        tests["p_adjusted"] = np.where(tests["primary"], rng.uniform(0, 0.2, len(tests)), np.nan)
        tests["significant"] = tests["primary"] & (rng.uniform(size=len(tests)) < 0.5)
        v = V.verdicts(tests, m).set_index("setup")
        for setup in ("a", "b", "c"):
            flag = tests[tests["setup"] == setup].set_index("test")["significant"]
            asym = tests[(tests["setup"] == setup) & (tests["kind"] == "asymmetry") & tests["primary"]][
                "significant"
            ].iloc[0]
            assert bool(v.loc[setup, "transfer_kd_vs_nokd"]) is bool(flag["agreement: kd > nokd"])
            assert bool(v.loc[setup, "transfer_kd_vs_rcd"]) is bool(flag["agreement: kd > rcd"])
            assert bool(v.loc[setup, "kd_accuracy_gain"]) is bool(flag["accuracy: kd vs nokd"])  # the gain is +2 pp
            assert bool(v.loc[setup, "asymmetric_negative"]) is bool(asym)
            for claim, p_column in V.CLAIMS.items():
                assert claim in v.columns and p_column in v.columns


def test_a_missing_condition_leaves_its_claims_undecided_with_the_reason():
    m = metrics_with(conditions=("teacher", "kd", "nokd"))
    v = V.verdicts(with_p(S.setup_tests(m, **setup_test_settings(n_bootstrap=50)), **{ACC_KD: 0.01}), m).iloc[0]
    assert v["transfer_kd_vs_rcd"] is pd.NA and v["transfer_kd_vs_rcd_note"] == "not tested: no rcd runs"
    assert v["transfer_kd_vs_nokd"] is not pd.NA and v["transfer_kd_vs_nokd_note"] == ""
    assert bool(v["kd_accuracy_gain"]) is True  # KD gains: whether noise matches it is what is untested
    assert v["rcd_matches_kd"] is pd.NA and v["rcd_matches_kd_note"] == "not tested: no rcd runs"


def test_too_few_seeds_is_not_a_no():
    m = metrics_with()
    m = m[m["seed"] == 0]
    v = V.verdicts(S.setup_tests(m, **setup_test_settings(n_bootstrap=50)), m).iloc[0]
    for claim in V.CLAIMS:
        assert v[claim] is pd.NA, claim
    assert "only 1 paired seed" in v["transfer_kd_vs_nokd_note"]


def test_flags_survive_parquet_as_three_valued(tmp_path):
    m = metrics_with(conditions=("teacher", "kd", "nokd"))
    v = V.verdicts(S.setup_tests(m, **setup_test_settings(n_bootstrap=50)), m)
    v.to_parquet(tmp_path / "v.parquet")
    back = pd.read_parquet(tmp_path / "v.parquet")
    for claim in V.CLAIMS:
        assert str(back[claim].dtype) == "boolean"
    assert back.loc[0, "transfer_kd_vs_rcd"] is pd.NA


# --------------------------------------------------------------------------------------------
# robustness along the sweeps
# --------------------------------------------------------------------------------------------


def sweep_info() -> pd.DataFrame:
    """A base setup swept over temperature (1, 4 = base, 16) and recipe (cosine = base,
    constant), a model-size sweep listed largest first, and an unswept setup."""

    def row(setup, sweep, params, temperature=4.0, recipe="cosine", teacher="r18", label=None):
        return {
            "setup": setup,
            "label": label or setup,
            "dataset": "cifar10",
            "teacher": teacher,
            "student": teacher,
            "recipe": recipe,
            "variant": "logit",
            "alpha": 0.9,
            "temperature": temperature,
            "sweep": sweep,
            "sweep_params": params,
        }

    return pd.DataFrame(
        [
            row("c10", "c10", "temperature,recipe", label="CIFAR-10 / ResNet-18"),
            row("c10_T16", "c10", "temperature", temperature=16.0),
            row("c10_T1", "c10", "temperature", temperature=1.0),
            row("c10_constant", "c10", "recipe", recipe="constant"),
            row("w", "w", "model", teacher="w4"),
            row("w_w1", "w", "model", teacher="w1"),
            row("w_w2", "w", "model", teacher="w2"),
            row("alone", "", ""),
        ]
    )


def test_sweep_points_put_the_base_on_every_axis_in_axis_order():
    pts = V.sweep_points(sweep_info(), sizes={"w": 4e6, "w_w1": 1e6, "w_w2": 2e6})
    temperature = pts[(pts["sweep"] == "c10") & (pts["axis"] == "temperature")]
    assert temperature["setup"].tolist() == ["c10_T1", "c10", "c10_T16"] and temperature["value"].tolist() == [
        1.0,
        4.0,
        16.0,
    ]
    assert temperature["is_base"].tolist() == [False, True, False] and temperature["position"].tolist() == [0, 1, 2]
    recipe = pts[(pts["sweep"] == "c10") & (pts["axis"] == "recipe")]
    assert recipe["setup"].tolist() == ["c10", "c10_constant"] and recipe["value"].tolist() == ["cosine", "constant"]
    model = pts[pts["sweep"] == "w"]
    assert model["axis"].unique().tolist() == ["model"]
    assert model["setup"].tolist() == ["w_w1", "w_w2", "w"] and model["value"].tolist() == ["w1", "w2", "w4"]  # by size
    assert "alone" not in set(pts["setup"])
    # without sizes, the model axis keeps the config's order (base first)
    assert V.sweep_points(sweep_info())[lambda d: d["sweep"] == "w"]["setup"].tolist() == ["w", "w_w1", "w_w2"]


def test_robustness_tallies_each_claim_along_each_axis():
    setups = tuple(sweep_info()["setup"])
    m = metrics_with(setups=setups)
    tests = S.setup_tests(m, **setup_test_settings(n_bootstrap=50))
    # transfer vs nokd significant at T=1 and T=4 only; accuracy tests undecided at T=16
    tests["p_adjusted"] = np.where(tests["primary"], 0.5, np.nan)
    tests.loc[tests["setup"].isin(["c10_T1", "c10"]) & (tests["test"] == "agreement: kd > nokd"), "p_adjusted"] = 0.001
    tests.loc[(tests["setup"] == "c10_T16") & (tests["kind"] == "regulariser"), "p_adjusted"] = np.nan
    tests["significant"] = S.significant(tests["p_adjusted"], 0.05)  # as the statistics decide
    v = V.verdicts(tests, m)
    robust = V.robustness(v, sweep_info())
    assert robust[robust["axis"] == "temperature"]["setup"].tolist() == ["c10_T1", "c10", "c10_T16"]
    assert robust[robust["axis"] == "temperature"]["transfer_kd_vs_nokd"].tolist() == [True, True, False]
    counts = V.robustness_counts(robust).set_index(["sweep", "axis", "claim"])
    assert counts.loc[
        ("c10", "temperature", "transfer_kd_vs_nokd"), ["n_values", "n_yes", "n_no", "n_undecided"]
    ].tolist() == [3, 2, 1, 0]
    assert counts.loc[("c10", "temperature", "kd_accuracy_gain"), ["n_yes", "n_no", "n_undecided"]].tolist() == [
        0,
        2,
        1,
    ]
    assert counts.loc[("c10", "recipe", "transfer_kd_vs_nokd"), ["n_values", "n_yes"]].tolist() == [2, 1]
    assert set(counts.index.get_level_values("claim")) == set(V.CLAIMS)


def test_no_sweep_no_robustness():
    info = sweep_info()
    info = info[info["setup"] == "alone"]
    m = metrics_with(setups=("alone",))
    assert V.robustness(V.verdicts(S.setup_tests(m, **setup_test_settings(n_bootstrap=50)), m), info).empty
