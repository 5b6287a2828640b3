"""Figures plot what the analysis says (points per condition, sweep values in order, CIs equal to
an independent bootstrap, the configured alpha and asymmetry measure) and stay legible; tables
render the verdicts' own decisions as CSV, booktabs LaTeX and HTML; the console summary reads
them back."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from conftest import setup_test_settings
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from kdtransfer.analysis import display as D
from kdtransfer.analysis import figures as F
from kdtransfer.analysis import report_items
from kdtransfer.analysis import stats as S
from kdtransfer.analysis import tables as TB
from kdtransfer.analysis import verdict_summary as VS
from kdtransfer.analysis import verdicts as V

N_BOOT = 200
SIZES = {"w1": 1.1e6, "w1_w2": 4.4e6, "w1_w4": 1.7e7}


def make_metrics(setups, seeds=range(4), conditions=("teacher", "kd", "nokd", "rcd", "teacher_other_seed"), seed=0):
    rng = np.random.default_rng(seed)
    shift = {"kd": 0.02, "rcd": 0.01, "nokd": 0.0, "teacher_other_seed": -0.01, "teacher": 0.0}
    rows = []
    for setup in setups:
        for s in seeds:
            for cond in conditions:
                row = {
                    "setup": setup,
                    "condition": cond,
                    "seed": s,
                    "run_key": f"{setup}-{cond}-{s}",
                    "path": "",
                    "teacher_path": "",
                    "n": 1000,
                    "n_teacher_correct": 900 - s,
                    "n_teacher_incorrect": 100 + s,
                    "teacher_accuracy": 0.9,
                    "accuracy": 0.88 + shift[cond] / 2 + rng.normal(0, 0.003),
                    "agreement": 0.85 + shift[cond] + rng.normal(0, 0.004),
                    "agreement_correct": 0.93 + shift[cond] / 2 + rng.normal(0, 0.003),
                    "agreement_incorrect": 0.4 + 3 * shift[cond] + rng.normal(0, 0.02),
                    "js": 0.05 - shift[cond] + rng.normal(0, 0.002),
                    "activation_distance": 0.2 - shift[cond] + rng.normal(0, 0.01),
                    "kl": 0.1 - shift[cond] + rng.normal(0, 0.005),
                    "ece": 0.03 + rng.normal(0, 0.002),
                    "num_parameters": SIZES.get(setup, 2e6),
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


def info_row(setup, label, sweep="", params="", temperature=4.0, recipe="cosine", teacher="r18", alpha=0.9):
    return {
        "setup": setup,
        "label": label,
        "dataset": "cifar10",
        "teacher": teacher,
        "student": teacher,
        "recipe": recipe,
        "variant": "logit",
        "alpha": alpha,
        "temperature": temperature,
        "sweep": sweep,
        "sweep_params": params,
    }


def make_info(with_sweeps=True) -> pd.DataFrame:
    """As Plan.setup_table() gives it: a CIFAR-10 setup swept over temperature and recipe (its
    base is T=4, cosine), a model-size sweep, and a setup without rcd and without sweep."""
    base = "CIFAR-10 / ResNet-18 & 50%"
    rows = [
        info_row("c10", base, "c10", "temperature,recipe"),
        info_row("c10_T1", f"{base} (T=1)", "c10", "temperature", temperature=1.0),
        info_row("c10_T16", f"{base} (T=16)", "c10", "temperature", temperature=16.0),
        info_row("c10_constant", f"{base} (recipe constant)", "c10", "recipe", recipe="constant"),
        info_row("w1", "Wide", "w1", "model", teacher="w1"),
        info_row("w1_w2", "Wide (w2)", "w1", "model", teacher="w2"),
        info_row("w1_w4", "Wide (w4)", "w1", "model", teacher="w4"),
        info_row("vit_no_rcd", "ViT"),
    ]
    info = pd.DataFrame(rows)
    if not with_sweeps:
        info["sweep"], info["sweep_params"] = "", ""
    return info


SETUPS = list(make_info()["setup"])


@pytest.fixture(scope="module")
def data():
    m = make_metrics(SETUPS[:-1])
    m = pd.concat([m, make_metrics(["vit_no_rcd"], conditions=("teacher", "kd", "nokd"), seed=1)], ignore_index=True)
    tests = S.setup_tests(m, **setup_test_settings(n_bootstrap=N_BOOT))
    return m, tests, V.verdicts(tests, m)


def _check_files(result, png):
    assert str(result.png) == str(png)
    assert result.png.exists() and result.png.stat().st_size > 1000
    assert result.pdf.suffix == ".pdf" and result.pdf.exists() and result.pdf.stat().st_size > 1000
    assert result.png.read_bytes()[:4] == b"\x89PNG" and result.pdf.read_bytes()[:4] == b"%PDF"
    assert not [p for p in result.png.parent.iterdir() if ".tmp" in p.name]


def _png_width(path) -> int:
    return struct.unpack(">I", path.read_bytes()[16:20])[0]


def _texts(fig):
    return [
        t
        for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
        if t.get_text().strip() and t.get_visible()
    ]


ANALYSIS = {"alpha": 0.05, "bootstrap": N_BOOT, "asymmetry_primary": "raw", "fdr_family": "setup"}


@pytest.mark.parametrize("with_sweeps", [True, False])
def test_every_figure_is_written_and_legible_at_1400_px(tmp_path, data, with_sweeps):
    m, tests, _ = data
    outputs = {name: tmp_path / f"{name}.png" for name in report_items.FIGURES}
    results = F.draw_figures(outputs, m, tests, make_info(with_sweeps), ANALYSIS)
    assert set(results) == set(report_items.FIGURES)
    for name, result in results.items():
        _check_files(result, outputs[name])
        # 1400 px wide in the report: text is at least 8 pt at 150 dpi in a PNG at most ~1500 px wide
        assert _png_width(result.png) <= 1500, name
        assert min(t.get_fontsize() for t in _texts(result.figure)) >= 8, name
    assert len(results["robustness"].data) == (0 if not with_sweeps else len(results["robustness"].data))


def test_draw_figures_honours_the_analysis_config(tmp_path, data):
    """The rule passes `analysis` (alpha, bootstrap, asymmetry_primary): every figure uses it."""
    m, tests, _ = data
    analysis = {"alpha": 0.01, "bootstrap": 57, "asymmetry_primary": "normalised", "fdr_family": "setup"}
    names = ("tests_overview", "asymmetric_payoff", "scaling", "robustness")
    results = F.draw_figures({n: tmp_path / f"{n}.png" for n in names}, m, tests, make_info(), analysis)
    assert "* p_adj ≤ 0.01, ** p_adj ≤ 0.002" in results["tests_overview"].figure.axes[0].get_title()
    cells = results["tests_overview"].data.merge(tests[["setup", "test", "p_adjusted"]], on=["setup", "test"])
    assert cells["text"].str.contains(r"\*").tolist() == (cells["p_adjusted"] <= 0.01).tolist()
    payoff = results["asymmetric_payoff"].data.set_index("setup").loc["c10"]
    g = S.asymmetry_gains(m, "c10", normalised=True)["gain_incorrect"].to_numpy() * 100
    assert (payoff["y_low"], payoff["y_high"]) == pytest.approx(
        _independent_ci(g, "c10", "asymmetric payoff: gain_incorrect (normalised)", 57)
    )
    scaling = results["scaling"].data.set_index("setup").loc["w1"]
    d = S.paired_values(m, "w1", "agreement", "kd", "nokd")["diff"].to_numpy() * 100
    assert (scaling["ci_low"], scaling["ci_high"]) == pytest.approx(
        _independent_ci(d, "w1", "agreement: kd > nokd", 57)
    )
    robust = results["robustness"].data
    assert robust["significant"].tolist() == (robust["p_adjusted"] <= 0.01).tolist()


def test_figure_rejects_non_png(tmp_path, data):
    with pytest.raises(ValueError):
        F.plot_accuracy_by_condition(data[0], make_info(), tmp_path / "x.pdf")


def test_empty_inputs_draw_placeholders(tmp_path):
    """Without data each figure is a placeholder that says why: one axis, no data drawn, the
    reason as its only text, and no data rows."""
    empty = make_metrics(["x"]).iloc[0:0]
    info = make_info()
    no_tests = pd.DataFrame(columns=S.TEST_COLUMNS)
    cases = [
        (F.plot_agreement_by_condition, empty, {}, "no"),
        (
            F.plot_asymmetric_payoff,
            empty,
            {"asymmetry_primary": "raw", "n_bootstrap": N_BOOT},
            "no setup has both kd and nokd runs",
        ),
        (F.plot_accuracy_by_condition, empty, {}, "no"),
        (F.plot_temperature, empty, {}, "no"),
        (F.plot_scaling, empty, {"n_bootstrap": N_BOOT}, "no"),
        (F.plot_tests_overview, no_tests, {"alpha": 0.05}, "no tests to show"),
        (F.plot_robustness, no_tests, {"alpha": 0.05}, "no sweep in this config"),
    ]
    for fn, frame, settings, reason in cases:
        png = tmp_path / f"{fn.__name__}.png"
        result = fn(frame, info, png, **settings)
        _check_files(result, png)
        (ax,) = result.figure.axes
        texts = [t.get_text() for t in ax.texts]
        assert len(texts) == 1 and texts[0].startswith(reason), (fn.__name__, texts)
        assert not ax.axison and not ax.lines and not ax.collections and not ax.images, fn.__name__
        assert result.data.empty, fn.__name__


# --------------------------------------------------------------------------------------------
# what is plotted
# --------------------------------------------------------------------------------------------


def test_base_setup_of_a_sweep_is_labelled_with_its_values():
    labels = D.setup_labels(make_info())
    assert labels["c10"] == "CIFAR-10 / ResNet-18 & 50% (T=4, recipe cosine)"
    assert labels["c10_T1"] == "CIFAR-10 / ResNet-18 & 50% (T=1)"
    assert labels["w1"] == "Wide (w1)" and labels["vit_no_rcd"] == "ViT"
    assert D.setup_labels(make_info(with_sweeps=False))["c10"] == "CIFAR-10 / ResNet-18 & 50%"


def test_condition_panels_plot_every_seed_of_every_condition(tmp_path, data):
    m, _, _ = data
    result = F.plot_agreement_by_condition(m, make_info(), tmp_path / "a.png")
    students = m[m["condition"].isin(("kd", "rcd", "nokd"))].dropna(subset=["agreement"])
    drawn = result.data.set_index(["setup", "condition", "seed"])["value"].sort_index()
    expected = students.set_index(["setup", "condition", "seed"])["agreement"].sort_index() * 100
    pd.testing.assert_series_equal(drawn, expected, check_names=False)
    assert result.data.groupby(["setup", "condition"]).size().eq(4).all()
    assert set(result.data.loc[result.data["setup"] == "vit_no_rcd", "condition"]) == {"kd", "nokd"}
    # the panels themselves: one per setup in config order, titled by display label, a point per seed
    labels = D.setup_labels(make_info())
    panels = [ax for ax in result.figure.axes if ax.get_title()]
    assert [ax.get_title().replace("\n", " ") for ax in panels] == [labels[s] for s in SETUPS]
    c10 = panels[0]
    points = np.sort(np.concatenate([c.get_offsets()[:, 1] for c in c10.collections if isinstance(c, PathCollection)]))
    np.testing.assert_allclose(points, np.sort(expected.loc["c10"].to_numpy()))


def _independent_ci(values, setup, what, n):
    rng = np.random.default_rng([0, zlib.crc32(f"{setup}|{what}".encode())])
    res = scipy.stats.bootstrap(
        (values,),
        np.median,
        n_resamples=n,
        confidence_level=0.95,
        method="percentile",
        vectorized=True,
        axis=-1,
        rng=rng,
    )
    return res.confidence_interval.low, res.confidence_interval.high


def _errorbar_bounds(ax):
    """(x, y, y_low, y_high) of every errorbar drawn on ax, read from its artists."""
    out = []
    for container in ax.containers:
        line, _, barcols = container.lines
        xs, ys = line.get_data()
        vertical = barcols[-1].get_segments()
        for x, y, seg in zip(np.atleast_1d(xs), np.atleast_1d(ys), vertical):
            out.append((float(x), float(y), float(seg[0][1]), float(seg[1][1])))
    return out


@pytest.mark.parametrize("n_bootstrap", [N_BOOT, 57])
def test_asymmetric_payoff_cis_are_an_independent_bootstrap_seeded_by_setup_name(tmp_path, data, n_bootstrap):
    m, _, _ = data
    result = F.plot_asymmetric_payoff(
        m, make_info(), tmp_path / "p.png", asymmetry_primary="raw", n_bootstrap=n_bootstrap
    )
    row = result.data.set_index("setup").loc["w1_w2"]
    gains = S.asymmetry_gains(m, "w1_w2")
    for which, axis in (("correct", "x"), ("incorrect", "y")):
        v = gains[f"gain_{which}"].to_numpy() * 100
        lo, hi = _independent_ci(v, "w1_w2", f"asymmetric payoff: gain_{which} (raw)", n_bootstrap)
        assert row[axis] == pytest.approx(np.median(v))
        assert (row[f"{axis}_low"], row[f"{axis}_high"]) == pytest.approx((lo, hi))
    # what is drawn is what data says: every setup with kd and nokd, its y interval as the error bar
    ax = result.figure.axes[0]
    bars = _errorbar_bounds(ax)
    assert len(bars) == len(result.data) == len(SETUPS)
    for (x, y, lo, hi), (_, r) in zip(bars, result.data.iterrows()):
        assert (x, y, lo, hi) == pytest.approx((r["x"], r["y"], r["y_low"], r["y_high"]))
    # a setup's interval does not depend on which other setups are plotted
    alone = F.plot_asymmetric_payoff(
        m[m["setup"] == "w1_w2"], make_info(), tmp_path / "q.png", asymmetry_primary="raw", n_bootstrap=n_bootstrap
    ).data.iloc[0]
    assert (alone["y_low"], alone["y_high"]) == pytest.approx((row["y_low"], row["y_high"]))


def test_asymmetric_payoff_plots_the_primary_measure_and_the_teacher_errors_it_rests_on(tmp_path, data):
    m, _, _ = data
    raw = F.plot_asymmetric_payoff(m, make_info(), tmp_path / "r.png", asymmetry_primary="raw", n_bootstrap=N_BOOT)
    norm = F.plot_asymmetric_payoff(
        m, make_info(), tmp_path / "n.png", asymmetry_primary="normalised", n_bootstrap=N_BOOT
    )
    g = S.asymmetry_gains(m, "c10", normalised=True)
    assert norm.data.set_index("setup").loc["c10", "y"] == pytest.approx(np.median(g["gain_incorrect"]) * 100)
    assert raw.data.set_index("setup").loc["c10", "y"] != pytest.approx(norm.data.set_index("setup").loc["c10", "y"])
    assert "headroom" in norm.figure.axes[0].get_xlabel() and "(pp)" in raw.figure.axes[0].get_xlabel()
    # n_teacher_incorrect per seed is 100 + seed: median 101.5 over seeds 0..3, shown in the legend
    assert (raw.data["n_teacher_incorrect"] == 101.5).all()
    legend = [t.get_text() for t in raw.figure.axes[0].get_legend().get_texts()]
    assert "1. CIFAR-10 / ResNet-18 & 50% (T=4, recipe cosine) (n_err = 102)" in legend
    # overlapping setups stay apart: every point numbered, colours and markers distinct
    numbers = sorted(t.get_text() for t in raw.figure.axes[0].texts)
    assert numbers == sorted(str(i) for i in range(1, len(SETUPS) + 1))


def per_sample_rows(tests):
    """Rows a per-sample family may add (McNemar / CMH): their own kind and family, an effect
    that is not a rank-biserial r; the figures and tables must not trip on them."""
    extra = tests[tests["test"] == "agreement: kd > nokd"].copy()
    extra["kind"], extra["family"] = "per-sample", "per-sample: " + extra["setup"]
    extra["test"] = "per-sample McNemar: kd agrees, nokd not"
    extra["effect_size"], extra["median_diff"], extra["ci_low"], extra["ci_high"] = 2.5, np.nan, 1.8, 3.4
    extra["note"] = "conditional on the trained models"
    return pd.concat([tests, extra], ignore_index=True)


def test_tests_overview_stars_what_the_tests_decided_and_diverges_around_zero(tmp_path, data):
    _, tests, _ = data
    tests = per_sample_rows(tests)
    results = {}
    for alpha in (1e-9, 0.5):
        decided = tests.assign(significant=S.significant(tests["p_adjusted"], alpha))
        results[alpha] = result = F.plot_tests_overview(decided, make_info(), tmp_path / f"t{alpha}.png", alpha=alpha)
        cells = result.data.merge(decided[["setup", "test", "p_adjusted", "significant"]], on=["setup", "test"])
        assert cells["text"].str.contains(r"\*").tolist() == cells["significant"].tolist()
        assert (
            cells["text"].str.contains(r"\*\*").tolist()
            == (cells["significant"] & (cells["p_adjusted"] <= alpha / 5)).tolist()
        )
        assert f"* p_adj ≤ {alpha:g}, ** p_adj ≤ {alpha / 5:g}" in result.figure.axes[0].get_title()
    strict, loose = results[1e-9], results[0.5]
    assert set(strict.data["kind"]) == {"transfer", "regulariser", "asymmetry"}  # per-sample rows are in the table only
    assert loose.data["text"].str.contains(r"\*").any() and not strict.data["text"].str.contains(r"\*").any()
    # The figure reads `significant`; it does not compare p itself.
    one = tests.index[tests["kind"].eq("transfer") & tests["p_adjusted"].gt(0.5)][0]
    forced = F.plot_tests_overview(
        tests.assign(significant=tests.index == one), make_info(), tmp_path / "f.png", alpha=0.5
    )
    starred = forced.data[forced.data["text"].str.contains(r"\*")]
    assert starred[["setup", "test"]].values.tolist() == [[tests.loc[one, "setup"], tests.loc[one, "test"]]]
    merged = strict.data.merge(tests[["setup", "test", "p_adjusted", "primary"]], on=["setup", "test"])
    # oriented effect: "less" tests flipped
    js = merged[merged["test"] == "js: kd < nokd"].iloc[0]
    raw_r = tests[(tests["setup"] == js["setup"]) & (tests["test"] == "js: kd < nokd")]["effect_size"].iloc[0]
    assert js["effect"] == pytest.approx(-raw_r)
    # diverging colour map: an effect against the hypothesis is coloured, no effect is white
    image = strict.figure.axes[0].images[0]
    cmap, norm = image.get_cmap(), image.norm
    white = np.array(to_rgba("white"))
    assert np.abs(np.array(cmap(norm(0.0))) - white).max() < 0.1
    assert (
        np.abs(np.array(cmap(norm(-1.0))) - white).max() > 0.5 and np.abs(np.array(cmap(norm(1.0))) - white).max() > 0.5
    )


def test_temperature_figure_plots_every_temperature_of_the_sweep_base_included(tmp_path, data):
    m, _, _ = data
    result = F.plot_temperature(m, make_info(), tmp_path / "t.png")
    kd = result.data[(result.data["condition"] == "kd") & (result.data["metric"] == "agreement")]
    assert kd["temperature"].tolist() == [1.0, 4.0, 16.0] and kd["setup"].tolist() == ["c10_T1", "c10", "c10_T16"]
    expected = [np.median(m[(m["setup"] == s) & (m["condition"] == "kd")]["agreement"]) * 100 for s in kd["setup"]]
    assert kd["median"].tolist() == pytest.approx(expected)
    ticks = [t.get_text() for t in result.figure.axes[0].get_xticklabels()]
    assert ticks == ["1", "4\n(base)", "16"]


def test_scaling_figure_shows_the_tests_tables_interval(tmp_path, data):
    m, tests, _ = data
    result = F.plot_scaling(m, make_info(), tmp_path / "s.png", n_bootstrap=N_BOOT)
    assert result.data["setup"].tolist() == ["w1", "w1_w2", "w1_w4"]
    assert result.data["num_parameters"].tolist() == [SIZES[s] for s in ("w1", "w1_w2", "w1_w4")]
    row = tests.set_index(["setup", "test"])
    for _, r in result.data.iterrows():
        t = row.loc[(r["setup"], "agreement: kd > nokd")]
        assert (r["median"], r["ci_low"], r["ci_high"]) == pytest.approx(
            (t["median_diff"] * 100, t["ci_low"] * 100, t["ci_high"] * 100)
        )


def test_robustness_figure_shows_each_effect_along_each_axis(tmp_path, data):
    m, tests, _ = data
    tests = tests.copy()
    tests.loc[(tests["setup"] == "c10_T16") & (tests["test"] == "agreement: kd > nokd"), "p_adjusted"] = 0.001
    tests["significant"] = S.significant(tests["p_adjusted"], 0.05)  # as the statistics decide
    result = F.plot_robustness(
        per_sample_rows(tests), make_info(), tmp_path / "r.png", alpha=0.05, sizes=V.student_sizes(m)
    )
    d = result.data
    assert list(dict.fromkeys(zip(d["sweep"], d["axis"]))) == [
        ("c10", "temperature"),
        ("c10", "recipe"),
        ("w1", "model"),
    ]
    agreement = d[d["test"] == "agreement: kd > nokd"]
    assert agreement[agreement["axis"] == "temperature"]["setup"].tolist() == ["c10_T1", "c10", "c10_T16"]
    assert agreement[agreement["axis"] == "recipe"]["value"].tolist() == ["cosine", "constant"]
    assert agreement[agreement["axis"] == "model"]["value"].tolist() == ["w1", "w2", "w4"]
    assert (
        agreement["significant"].tolist() == (agreement["p_adjusted"] <= 0.05).tolist()
        and agreement["significant"].any()
    )
    t = tests.set_index(["setup", "test"])
    for _, r in d.iterrows():
        row = t.loc[(r["setup"], r["test"])]
        assert (r["median"], r["ci_low"], r["ci_high"]) == pytest.approx(
            (row["median_diff"] * 100, row["ci_low"] * 100, row["ci_high"] * 100)
        )
    # the asymmetry panel shows the primary test; the accuracy panel both KD and the random control
    assert set(d.loc[d["effect"].str.startswith("asymmetry"), "test"]) == {
        "asymmetry (raw): gain_incorrect > gain_correct"
    }
    assert set(d.loc[d["effect"].str.startswith("accuracy"), "condition"]) == {"kd", "rcd"}
    # drawn: the first panel of the temperature row holds three error bars, filled when significant
    first = next(ax for ax in result.figure.axes if ax.get_title().startswith("agreement: KD − control"))
    bars = _errorbar_bounds(first)
    assert [b[1] for b in bars] == pytest.approx(agreement[agreement["axis"] == "temperature"]["median"].tolist())
    faces = [c.lines[0].get_markerfacecolor() for c in first.containers]
    assert faces == ["white", "white", "black"]
    assert [t.get_text() for t in first.get_xticklabels()] == ["1", "4\n(base)", "16"]


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


def test_write_table_csv_booktabs_and_html(tmp_path):
    df = pd.DataFrame(
        {
            "setup_name": ["a_b", "c&d <i>"],
            "acc (%)": ["93.1 ± 0.2", "50%"],
            "p": [0.01234, math.nan],
            "n": [10, 3],
            "transfer: kd > nokd": ["yes (p_adj 0.004)", "n/a: no rcd runs"],
        }
    )
    TB.write_table(
        df,
        tmp_path / "t.csv",
        tmp_path / "t.tex",
        caption="Accuracy_%",
        label="tab:acc",
        html_path=tmp_path / "t.html",
        title="Acc & more",
    )
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back.columns) == list(df.columns) and back["n"].tolist() == [10, 3]
    tex = (tmp_path / "t.tex").read_text()
    for token in (
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\begin{tabular}{llrrl}",
        r"setup\_name",
        r"acc (\%)",
        r"a\_b",
        r"c\&d",
        r"93.1 $\pm$ 0.2",
        r"50\%",
        r"\caption{Accuracy\_\%}",
        r"\label{tab:acc}",
        "0.01234",
        "--",
    ):
        assert token in tex, token
    page = (tmp_path / "t.html").read_text()
    assert "<h1>Acc &amp; more</h1>" in page and "c&amp;d &lt;i&gt;" in page and "<i>" not in page
    assert '<td class="yes"><b>yes</b> (p_adj 0.004)</td>' in page and '<td class="na">n/a: no rcd runs</td>' in page
    assert page.index("<table>") < page.index("Accuracy_%")  # the table first, then the caption
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_summary_table(data):
    m, _, _ = data
    info = make_info()
    raw = TB.summary_table(m, info, formatted=False)
    r = raw[(raw["setup"] == "w1") & (raw["condition"] == "kd")].iloc[0]
    kd = m[(m["setup"] == "w1") & (m["condition"] == "kd")]
    assert r["n_seeds"] == 4
    assert r["accuracy_mean"] == pytest.approx(kd["accuracy"].mean())
    assert r["kl_std"] == pytest.approx(kd["kl"].std(ddof=1))
    fmt = TB.summary_table(m, info)
    row = fmt[(fmt["setup"] == "Wide (w1)") & (fmt["condition"] == "KD")].iloc[0]
    assert row["accuracy (%)"] == f"{kd['accuracy'].mean() * 100:.2f} ± {kd['accuracy'].std(ddof=1) * 100:.2f}"
    teacher = fmt[(fmt["setup"] == "Wide (w1)") & (fmt["condition"] == "teacher")].iloc[0]
    assert teacher["agreement (%)"] == "--"
    assert list(pd.unique(raw["setup"])) == SETUPS  # config order


def test_tests_table_groups_kinds_and_renders_other_families(data):
    _, tests, _ = data
    t = TB.tests_table(per_sample_rows(tests), make_info(), alpha=0.05)
    assert len(t) == len(tests) + tests["test"].eq("agreement: kd > nokd").sum()
    c10 = t[t["setup"] == D.setup_labels(make_info())["c10"]]
    assert list(pd.unique(c10["kind"])) == ["transfer", "regulariser", "asymmetry", "per-sample"]
    per_sample = c10[c10["kind"] == "per-sample"].iloc[0]
    assert per_sample["effect size"] == "2.50" and per_sample["median diff [95% CI]"] == "--"
    assert per_sample["note"] == "conditional on the trained models"
    assert c10[c10["test"] == "agreement: kd > nokd"]["effect size"].iloc[0].startswith("r = ")
    assert (t["p_adj (BY)"] == "secondary").sum() == (~tests["primary"]).sum()


def test_tests_table_says_when_seeds_cannot_reach_alpha():
    tests = pd.DataFrame(
        [
            {
                "setup": "s",
                "kind": "transfer",
                "test": "agreement: kd > nokd",
                "metric": "agreement",
                "n": 3,
                "statistic": 6.0,
                "p_value": 0.125,
                "p_adjusted": 0.25,
                "significant": False,
                "effect_size": 1.0,
                "median_diff": 0.01,
                "ci_low": 0.0,
                "ci_high": 0.02,
                "primary": True,
                "min_p_adjusted_possible": 0.25,
                "seeds_needed": 7.0,
                "note": "",
            },
            {
                "setup": "s",
                "kind": "transfer",
                "test": "agreement: kd > rcd",
                "metric": "agreement",
                "n": 10,
                "statistic": 55.0,
                "p_value": 0.001,
                "p_adjusted": 0.003,
                "significant": True,
                "effect_size": 1.0,
                "median_diff": 0.01,
                "ci_low": 0.0,
                "ci_high": 0.02,
                "primary": True,
                "min_p_adjusted_possible": 0.0036,
                "seeds_needed": 7.0,
                "note": "",
            },
        ]
    )
    out = TB.tests_table(tests, pd.DataFrame({"setup": ["s"], "label": ["S"]}), alpha=0.05)
    assert out["power"].tolist() == ["cannot reach alpha=0.05; needs 7 seeds", "ok"]


def _verdict_row(**overrides):
    row = {
        "setup": "s",
        "n_seeds": 10,
        "transfer_kd_vs_nokd": True,
        "p_adj_transfer_kd_vs_nokd": 0.004,
        "transfer_kd_vs_nokd_note": "",
        "transfer_kd_vs_rcd": False,
        "p_adj_transfer_kd_vs_rcd": 0.3,
        "transfer_kd_vs_rcd_note": "",
        "kd_accuracy_gain": True,
        "kd_accuracy_gain_note": "",
        "rcd_matches_kd": True,
        "rcd_matches_kd_note": "",
        "acc_gain_kd": 1.0,
        "acc_gain_rcd": 0.6,
        "rcd_fraction_of_kd_gain": 0.6,
        "acc_kd_significant": True,
        "p_adj_acc_kd": 0.01,
        "acc_rcd_significant": True,
        "p_adj_acc_rcd": 0.02,
        "asymmetric_negative": True,
        "p_adj_asymmetry": 0.03,
        "asymmetric_negative_note": "",
        "gain_incorrect": 4.0,
        "gain_correct": 0.5,
    }
    return {**row, **overrides}


def _verdicts(*rows):
    v = pd.DataFrame(list(rows))
    for claim in V.CLAIMS:
        v[claim] = v[claim].astype("boolean")
    return v


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ({}, "yes: 60% of KD's gain (p_adj 0.020)"),
        # the table renders the verdict's decision, never its own: a "no" stays a "no" at 60%
        ({"rcd_matches_kd": False}, "no: 60% of KD's gain (p_adj 0.020)"),
        (
            {"rcd_matches_kd": None, "rcd_matches_kd_note": "n/a: KD has no significant accuracy gain"},
            "n/a: KD has no significant accuracy gain",
        ),
        ({"rcd_matches_kd": None, "rcd_matches_kd_note": "not tested: no rcd runs"}, "not tested: no rcd runs"),
    ],
)
def test_verdicts_table_renders_the_verdicts_decisions(overrides, expected):
    v = _verdicts(_verdict_row(**overrides))
    row = TB.verdicts_table(v, pd.DataFrame([info_row("s", "CIFAR-10 / ResNet-18")])).iloc[0]
    assert row["setup"] == "CIFAR-10 / ResNet-18"
    assert row["RCD matches KD accuracy"] == expected
    assert row["transfer: kd > nokd"] == "yes (p_adj 0.004)" and row["transfer: kd > rcd"] == "no (p_adj 0.300)"
    assert row["KD accuracy gain"] == "yes: +1.00 pp (p_adj 0.010)"
    assert row["asymmetric, negative payoff"] == "yes (p_adj 0.030)"
    assert row["errors vs correct gain (pp)"] == "+4.00 vs +0.50"


def test_robustness_table_lists_each_axis_in_order_with_a_tally(data):
    m, tests, _ = data
    tests = tests.copy()
    tests["p_adjusted"] = np.where(tests["primary"], 0.5, np.nan)
    tests.loc[tests["setup"].isin(["c10_T1", "c10"]) & (tests["test"] == "agreement: kd > nokd"), "p_adjusted"] = 0.001
    tests["significant"] = S.significant(tests["p_adjusted"], 0.05)  # as the statistics decide
    v = V.verdicts(tests, m)
    table = TB.robustness_table(V.robustness(v, make_info(), V.student_sizes(m)), make_info())
    temperature = table[table["axis"] == "temperature T"]
    assert temperature["sweep"].unique().tolist() == ["CIFAR-10 / ResNet-18 & 50%"]
    assert temperature["value"].tolist() == ["1", "4 (base)", "16", "summary (3 values)"]
    assert temperature["transfer: kd > nokd"].tolist() == [
        "yes (p_adj 0.001)",
        "yes (p_adj 0.001)",
        "no (p_adj 0.500)",
        "yes at 2 of 3 values",
    ]
    assert temperature["summary"].tolist() == [False, False, False, True]
    assert temperature["RCD matches KD accuracy"].iloc[-1] == "undecided at all 3 values"
    recipe = table[table["axis"] == "recipe"]
    assert recipe["value"].tolist() == ["cosine (base)", "constant", "summary (2 values)"]
    assert recipe["transfer: kd > nokd"].iloc[-1] == "yes at 1 of 2 values"
    assert table[table["axis"] == "model (teacher = student)"]["value"].tolist() == [
        "w1 (base)",
        "w2",
        "w4",
        "summary (3 values)",
    ]
    assert TB.count_text(1, 3, 1) == "yes at 1 of 2 values (1 more undecided)"


def test_write_tables_writes_every_declared_output(tmp_path, data):
    m, tests, v = data
    outputs = {}
    for name in report_items.tables({"temperature"}):
        outputs.update(
            {
                name: tmp_path / f"{name}.csv",
                f"{name}_tex": tmp_path / f"{name}.tex",
                f"{name}_html": tmp_path / f"{name}.html",
            }
        )
    frames = TB.write_tables(outputs, m, tests, v, make_info(), alpha=0.05)
    assert set(frames) == {"verdicts", "robustness", "tests", "summary"}
    for path in outputs.values():
        assert path.stat().st_size > 100, path
    assert "summary" not in pd.read_csv(tmp_path / "robustness.csv").columns
    assert '<tr class="summary">' in (tmp_path / "robustness.html").read_text()
    assert "Verdicts per setup" in (tmp_path / "verdicts.html").read_text()


def test_write_tables_names_stale_verdicts(tmp_path, data):
    m, tests, v = data
    old = v.drop(columns=["kd_accuracy_gain", "kd_accuracy_gain_note"])
    with pytest.raises(ValueError, match="kd_accuracy_gain.*older kdtransfer.*--forcerun statistics$"):
        TB.write_tables(
            {"verdicts": tmp_path / "v.csv", "verdicts_tex": tmp_path / "v.tex"}, m, tests, old, make_info(), alpha=0.05
        )


def test_report_items_show_the_answer_first_and_sweeps_only_when_swept():
    assert list(report_items.tables(set())) == ["verdicts", "tests", "summary"]
    assert list(report_items.tables({"recipe"})) == ["verdicts", "robustness", "tests", "summary"]
    categories = [category for category, _ in report_items.tables({"recipe"}).values()]
    assert categories == sorted(categories) and categories[0] == "1. Verdicts"
    assert "robustness" not in report_items.figures(set()) and "temperature" not in report_items.figures({"model"})
    assert {"robustness", "scaling"} <= set(report_items.figures({"model"}))
    # within a category the report sorts by label: each table before its figure
    for category in {c for c, _ in report_items.TABLES.values()} & {c for c, _ in report_items.FIGURES.values()}:
        table = [label for c, label in report_items.TABLES.values() if c == category]
        figure = [label for c, label in report_items.FIGURES.values() if c == category]
        assert max(table) < min(figure), category


# --------------------------------------------------------------------------------------------
# the console summary at the end of `make run`
# --------------------------------------------------------------------------------------------


def test_verdict_summary_prints_the_answer_and_the_report_path(tmp_path, data, capsys):
    m, tests, v = data
    (tmp_path / "analysis").mkdir()
    (tmp_path / "tables").mkdir()
    v.to_parquet(tmp_path / "analysis" / "verdicts.parquet")
    outputs = {"robustness": tmp_path / "tables/robustness.csv", "robustness_tex": tmp_path / "tables/robustness.tex"}
    TB.write_tables(outputs, m, tests, v, make_info(), alpha=0.05)
    (tmp_path / "report.html").write_text("<html></html>")
    assert VS.main(["--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"Report: {(tmp_path / 'report.html').resolve()}" in lines
    c10 = next(line for line in lines if line.strip().startswith("c10 "))
    r = v.set_index("setup").loc["c10"]
    expected = "yes" if r["transfer_kd_vs_nokd"] else "no"
    assert f"{expected} ({D.fmt_p(r['p_adj_transfer_kd_vs_nokd'])})" in c10
    vit = next(line for line in lines if line.strip().startswith("vit_no_rcd"))
    assert "not tested" in vit
    assert any(line.strip().startswith("CIFAR-10 / ResNet-18 & 50%, temperature T: transfer>nokd ") for line in lines)
    # Short lines, not 300-column DataFrames (paths measured as a user's `results/` would be).
    assert max(len(line.replace(str(tmp_path), "results")) for line in lines if "Report:" not in line) < 160


def test_verdict_summary_without_a_run_says_so(tmp_path, capsys):
    assert VS.main(["--results", str(tmp_path)]) == 1
    assert "run the workflow first" in capsys.readouterr().err


def test_verdict_lines_give_the_direction_of_a_two_sided_claim():
    """A significant accuracy loss is "no: -3.84 pp (0.029)", not a bare "no (0.029)" that reads
    as if the test had found nothing; the console and the tables say it alike."""
    row = {
        "setup": "mnist",
        "n_seeds": 10,
        "transfer_kd_vs_nokd": True,
        "p_adj_transfer_kd_vs_nokd": 0.004,
        "transfer_kd_vs_rcd": True,
        "p_adj_transfer_kd_vs_rcd": 0.004,
        "kd_accuracy_gain": False,
        "p_adj_acc_kd": 0.029,
        "acc_gain_kd": -3.84,
        "rcd_matches_kd": pd.NA,
        "p_adj_acc_rcd": 0.5,
        "rcd_matches_kd_note": "n/a: KD has no significant accuracy gain",
        "rcd_fraction_of_kd_gain": math.nan,
        "asymmetric_negative": False,
        "p_adj_asymmetry": 0.7,
    }
    gain = dict(
        row,
        setup="digits",
        kd_accuracy_gain=True,
        acc_gain_kd=0.61,
        p_adj_acc_kd=0.013,
        rcd_matches_kd=False,
        rcd_fraction_of_kd_gain=0.25,
        p_adj_acc_rcd=0.2,
    )
    lines = VS.verdict_lines(pd.DataFrame([row, gain]))
    mnist = next(line for line in lines if line.startswith("mnist"))
    digits = next(line for line in lines if line.startswith("digits"))
    assert "no: -3.84 pp (0.029)" in mnist and " n/a " in f"{mnist} "
    assert "yes: +0.61 pp (0.013)" in digits and "no: 25% of KD's gain (0.200)" in digits
    assert TB.claim_cell(pd.Series(row), "kd_accuracy_gain") == "no: -3.84 pp (p_adj 0.029)"
