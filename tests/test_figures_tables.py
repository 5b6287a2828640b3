"""Figures write non-empty PNG + PDF on small synthetic metrics; tables write CSV + booktabs LaTeX."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kdtransfer import figures as F
from kdtransfer import stats as S
from kdtransfer import tables as TB


def make_metrics(setups, seeds=range(4), conditions=("teacher", "kd", "nokd", "rcd", "teacher_other_seed"), seed=0):
    rng = np.random.default_rng(seed)
    shift = {"kd": 0.02, "rcd": 0.01, "nokd": 0.0, "teacher_other_seed": -0.01, "teacher": 0.0}
    rows = []
    for setup in setups:
        for s in seeds:
            for cond in conditions:
                row = {"setup": setup, "condition": cond, "seed": s, "run_key": f"{setup}-{cond}-{s}", "path": "", "teacher_path": "", "n": 1000,
                       "n_teacher_correct": 900, "n_teacher_incorrect": 100, "teacher_accuracy": 0.9,
                       "accuracy": 0.88 + shift[cond] / 2 + rng.normal(0, 0.003), "agreement": 0.85 + shift[cond] + rng.normal(0, 0.004),
                       "agreement_correct": 0.93 + shift[cond] / 2 + rng.normal(0, 0.003), "agreement_incorrect": 0.4 + 3 * shift[cond] + rng.normal(0, 0.02),
                       "js": 0.05 - shift[cond] + rng.normal(0, 0.002), "activation_distance": 0.2 - shift[cond] + rng.normal(0, 0.01),
                       "kl": 0.1 - shift[cond] + rng.normal(0, 0.005), "ece": 0.03 + rng.normal(0, 0.002),
                       "num_parameters": {"w1": 1.1e6, "w2": 4.4e6, "w4": 1.7e7}.get(setup, 2e6)}
                if cond == "teacher":
                    for k in ("agreement", "agreement_correct", "agreement_incorrect", "js", "activation_distance", "kl"):
                        row[k] = math.nan
                rows.append(row)
    return pd.DataFrame(rows)


SETUPS = ["c10_r18_T1", "c10_r18_T4", "c10_r18_T16", "w1", "w2", "w4", "vit_no_rcd"]


def make_info(with_sweeps=True):
    rows = []
    for s in SETUPS:
        t = {"c10_r18_T1": 1, "c10_r18_T4": 4, "c10_r18_T16": 16}.get(s, 4)
        sweep = ("c10_r18_T4" if s.startswith("c10") else "w1" if s.startswith("w") else "") if with_sweeps else ""
        params = ("temperature" if s.startswith("c10") else "model" if s.startswith("w") else "") if with_sweeps else ""
        rows.append({"setup": s, "label": f"CIFAR-10 {s} 50% & more", "dataset": "cifar10", "temperature": t, "alpha": 0.9,
                     "sweep": sweep, "sweep_params": params})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data():
    m = make_metrics(SETUPS[:-1])
    m = pd.concat([m, make_metrics(["vit_no_rcd"], conditions=("teacher", "kd", "nokd"), seed=1)], ignore_index=True)
    tests = S.setup_tests(m, n_bootstrap=200)
    return m, tests


def _check(paths, png):
    png_path, pdf_path = paths
    assert str(png_path) == str(png)
    assert png_path.exists() and png_path.stat().st_size > 1000
    assert pdf_path.suffix == ".pdf" and pdf_path.exists() and pdf_path.stat().st_size > 1000
    assert png_path.read_bytes()[:4] == b"\x89PNG" and pdf_path.read_bytes()[:4] == b"%PDF"
    assert not [p for p in png_path.parent.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("with_sweeps", [True, False])
def test_all_figures_write_png_and_pdf(tmp_path, data, with_sweeps):
    m, tests = data
    info = make_info(with_sweeps)
    for name, fn, arg in [
        ("agreement", F.plot_agreement_by_condition, m),
        ("asymmetry", F.plot_asymmetric_payoff, m),
        ("accuracy", F.plot_accuracy_by_condition, m),
        ("tests", F.plot_tests_overview, tests),
        ("temperature", F.plot_temperature, m),
        ("scaling", F.plot_scaling, m),
    ]:
        png = tmp_path / name / f"{name}.png"
        _check(fn(arg, info, png), png)


def test_sweep_detection(data):
    m, _ = data
    info = make_info(True)
    present = set(m["setup"])
    groups = F._sweep_groups(info, ("temperature",), present, "temperature")
    assert list(groups) == ["c10_r18_T4"] and groups["c10_r18_T4"]["temperature"].tolist() == [1, 4, 16]
    info["num_parameters"] = info["setup"].map({"w1": 1.1e6, "w2": 4.4e6, "w4": 1.7e7})
    assert list(F._sweep_groups(info, ("model", "student"), present, "num_parameters")) == ["w1"]
    # A setup on two axes of one sweep (the base) belongs to both groups.
    info.loc[info["setup"] == "c10_r18_T4", "sweep_params"] = "temperature,model"
    assert "c10_r18_T4" in set(F._sweep_groups(info, ("temperature",), present, "temperature")["c10_r18_T4"]["setup"])
    assert F._sweep_groups(make_info(False), ("temperature",), present, "temperature") == {}


def test_figure_rejects_non_png(tmp_path, data):
    with pytest.raises(ValueError):
        F.plot_accuracy_by_condition(data[0], make_info(), tmp_path / "x.pdf")


def test_empty_inputs_draw_placeholders(tmp_path):
    empty = make_metrics(["x"]).iloc[0:0]
    info = make_info()
    for fn in (F.plot_agreement_by_condition, F.plot_asymmetric_payoff, F.plot_accuracy_by_condition, F.plot_temperature, F.plot_scaling):
        png = tmp_path / f"{fn.__name__}.png"
        _check(fn(empty, info, png), png)
    png = tmp_path / "tests.png"
    _check(F.plot_tests_overview(pd.DataFrame(columns=S.TEST_COLUMNS), info, png), png)


def test_write_table_csv_and_booktabs(tmp_path):
    df = pd.DataFrame({"setup_name": ["a_b", "c&d"], "acc (%)": ["93.1 ± 0.2", "50%"], "p": [0.01234, math.nan], "n": [10, 3]})
    TB.write_table(df, tmp_path / "t.csv", tmp_path / "t.tex", caption="Accuracy_%", label="tab:acc")
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.columns) == list(df.columns) and back["n"].tolist() == [10, 3]
    tex = (tmp_path / "t.tex").read_text()
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{llrr}", r"setup\_name", r"acc (\%)", r"a\_b", r"c\&d",
                  r"93.1 $\pm$ 0.2", r"50\%", r"\caption{Accuracy\_\%}", r"\label{tab:acc}", "0.01234", "--"):
        assert token in tex, token
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_summary_table(data):
    m, _ = data
    info = make_info()
    raw = TB.summary_table(m, info, formatted=False)
    r = raw[(raw["setup"] == "w1") & (raw["condition"] == "kd")].iloc[0]
    kd = m[(m["setup"] == "w1") & (m["condition"] == "kd")]
    assert r["n_seeds"] == 4
    assert r["accuracy_mean"] == pytest.approx(kd["accuracy"].mean())
    assert r["kl_std"] == pytest.approx(kd["kl"].std(ddof=1))
    fmt = TB.summary_table(m, info)
    row = fmt[(fmt["setup"] == "CIFAR-10 w1 50% & more") & (fmt["condition"] == "KD")].iloc[0]
    assert row["accuracy (%)"] == f"{kd['accuracy'].mean() * 100:.2f} ± {kd['accuracy'].std(ddof=1) * 100:.2f}"
    assert row["seeds"] == 4
    teacher = fmt[(fmt["setup"] == "CIFAR-10 w1 50% & more") & (fmt["condition"] == "teacher")].iloc[0]
    assert teacher["agreement (%)"] == "--"
    # setups appear in setup_info order
    assert list(pd.unique(raw["setup"])) == SETUPS


def test_tests_table(tmp_path, data):
    _, tests = data
    t = TB.tests_table(tests, make_info())
    assert len(t) == len(tests)
    assert {"setup", "test", "n", "p", "p_adj (BY)", "r_rb", "median diff [95% CI]"} <= set(t.columns)
    assert (t["p_adj (BY)"] == "secondary").sum() == (~tests["primary"]).sum()
    TB.write_table(t, tmp_path / "tests.csv", tmp_path / "tests.tex", caption="Paired tests", label="tab:tests")
    assert r"\toprule" in (tmp_path / "tests.tex").read_text()


def test_tests_table_says_when_seeds_cannot_reach_alpha():
    from kdtransfer.tables import tests_table

    tests = pd.DataFrame([
        {"setup": "s", "kind": "transfer", "test": "agreement: kd > nokd", "metric": "agreement", "n": 3,
         "statistic": 6.0, "p_value": 0.125, "p_adjusted": 0.25, "significant": False, "effect_size": 1.0,
         "median_diff": 0.01, "ci_low": 0.0, "ci_high": 0.02, "primary": True,
         "min_p_adjusted_possible": 0.25, "seeds_needed": 7.0},
        {"setup": "s", "kind": "transfer", "test": "agreement: kd > rcd", "metric": "agreement", "n": 10,
         "statistic": 55.0, "p_value": 0.001, "p_adjusted": 0.003, "significant": True, "effect_size": 1.0,
         "median_diff": 0.01, "ci_low": 0.0, "ci_high": 0.02, "primary": True,
         "min_p_adjusted_possible": 0.0036, "seeds_needed": 7.0},
    ])
    out = tests_table(tests, pd.DataFrame({"setup": ["s"], "label": ["S"]}), alpha=0.05)
    assert out["power"].tolist() == ["cannot reach alpha=0.05; needs 7 seeds", "ok"]


def _verdict_row(**overrides):
    row = {"setup": "s", "n_seeds": 10, "transfer_kd_vs_nokd": True, "p_adj_transfer_kd_vs_nokd": 0.004,
           "transfer_kd_vs_rcd": False, "p_adj_transfer_kd_vs_rcd": 0.3, "acc_gain_kd": 1.0, "acc_gain_rcd": 0.6,
           "rcd_fraction_of_kd_gain": 0.6, "acc_kd_significant": True, "p_adj_acc_kd": 0.01, "acc_rcd_significant": True,
           "p_adj_acc_rcd": 0.02, "asymmetric_negative": True, "p_adj_asymmetry": 0.03, "gain_incorrect": 4.0, "gain_correct": 0.5}
    return {**row, **overrides}


@pytest.mark.parametrize("overrides,expected", [
    ({}, "yes: 60% of KD's gain"),
    ({"acc_gain_rcd": 0.3, "rcd_fraction_of_kd_gain": 0.3}, "no: 30% of KD's gain"),
    ({"acc_rcd_significant": False}, "no: 60% of KD's gain"),
    ({"acc_gain_kd": -0.2, "rcd_fraction_of_kd_gain": math.nan}, "n/a: KD has no significant accuracy gain"),
    ({"acc_kd_significant": False}, "n/a: KD has no significant accuracy gain"),
])
def test_verdicts_table_answers_each_question(overrides, expected):
    v = pd.DataFrame([_verdict_row(**overrides)])
    info = pd.DataFrame([{"setup": "s", "label": "CIFAR-10 / ResNet-18"}])
    row = TB.verdicts_table(v, info).iloc[0]
    assert row["setup"] == "CIFAR-10 / ResNet-18"
    assert row["RCD matches KD accuracy"] == expected
    assert row["transfer: kd > nokd"] == "yes (p_adj 0.004)" and row["transfer: kd > rcd"] == "no (p_adj 0.300)"
    assert row["asymmetric, negative payoff"] == "yes (p_adj 0.030)"


def test_rcd_fraction_only_when_kd_gains_accuracy():
    m = make_metrics(["a"], seeds=range(6))
    m.loc[m["condition"] == "kd", "accuracy"] -= 0.05  # KD now loses accuracy against the control
    v = S.verdicts(S.setup_tests(m, n_bootstrap=100), m).iloc[0]
    assert v["acc_gain_kd"] < 0 and math.isnan(v["rcd_fraction_of_kd_gain"])
    assert "no accuracy gain for the random control to match" in v["regulariser"]
