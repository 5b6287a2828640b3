"""The paper's figures, regenerated from the metrics / tests tables (docs/protocol.md, "Figures and tables"),
plus the robustness of the verdicts along every sweep.

Every public `plot_*` function takes `path` ending in ".png", writes the PNG there and a PDF of
the same figure beside it (same name, ".pdf"), atomically, and returns a `FigureResult`: the two
paths, the matplotlib Figure (closed, its artists still readable) and `data`, one row per point
drawn with the numbers it was drawn from. Figures are legible at 1400 px (at most ~10 in wide at
150 dpi, text >= 9 pt) and greyscale-readable: conditions differ by marker shape and fill, not
colour alone; axes carry units; setups are shown by their display label
(`display.setup_labels`: a sweep's base setup with its value on each axis), never by their key.

Confidence intervals are percentile bootstraps with the configured number of resamples
(`analysis.bootstrap`), seeded per setup from its name (`stats.stable_seed`), so adding a setup
never changes another setup's interval; the intervals of tested quantities are the tests
table's own.

`setup_info`: kdtransfer.plan.runs.Plan.setup_table() as a DataFrame (setup, label, dataset, teacher,
student, recipe, variant, alpha, temperature, sweep, sweep_params).
"""

from __future__ import annotations

import functools
import math
import textwrap
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from kdtransfer.analysis.display import (  # noqa: E402
    CONDITION_NAMES,
    axis_name,
    axis_value_text,
    config_labels,
    setup_labels,
    setup_order,
)
from kdtransfer.analysis.stats import asymmetry_gains, bootstrap_median_ci, paired_values, significant, stable_seed  # noqa: E402
from kdtransfer.analysis.verdicts import student_sizes, sweep_points  # noqa: E402
from kdtransfer.catalog import SIZE_SWEEPS, STUDENT_CONDITIONS  # noqa: E402
from kdtransfer.io.atomic import atomic_path  # noqa: E402

# condition -> (marker, face colour, edge colour); greyscale-safe by shape + fill
CONDITION_STYLE = {
    "nokd": ("o", "white", "black"),
    "rcd": ("s", "0.6", "black"),
    "kd": ("^", "black", "black"),
    "independent": ("D", "white", "0.4"),
    "teacher": ("*", "0.3", "black"),
}
# Okabe-Ito, colour-blind safe; setups also differ by marker, so greyscale still separates them
SETUP_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
SETUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")
LINESTYLES = ("-", "--", ":", "-.")
# Seed-level Wilcoxon tests (rank-biserial effect sizes); other kinds (per-sample tests) are in
# the tests table only.
WILCOXON_KINDS = ("transfer", "regulariser", "asymmetry")
STYLE = {
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 11,
}
DPI = 150
MAX_WIDTH_IN = 9.5  # 1425 px at DPI


@dataclass
class FigureResult:
    """What a plot function drew: files, the (closed) Figure, and one row per drawn point."""

    png: Path
    pdf: Path
    figure: matplotlib.figure.Figure
    data: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __iter__(self):  # `png, pdf = plot_x(...)` keeps working
        return iter((self.png, self.pdf))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _pdf_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png (a .pdf is written beside it), got {path}")
    return path.with_suffix(".pdf")


def _styled(plot):
    """Draw and save under STYLE (rc parameters apply to artists as they are created)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def _save(fig, path, data: pd.DataFrame | None = None) -> FigureResult:
    png = Path(path)
    pdf = _pdf_path(png)
    for target, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return FigureResult(png, pdf, fig, data if data is not None else pd.DataFrame())


def _grid(n: int, ncols_max: int = 3, w: float = 3.1, h: float = 2.9):
    """n panels in rows of at most ncols_max; returns (fig, panels, spare): spare is the first
    unused grid cell (for the legend) or None."""
    ncols = max(1, min(ncols_max, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n], (flat[n] if len(flat) > n else None)


def _placeholder(path, message: str) -> FigureResult:
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return _save(fig, path)


def _jitter(n: int, key: str, width: float = 0.12) -> np.ndarray:
    """Deterministic horizontal jitter (same figure bytes-for-layout on every run)."""
    rng = np.random.default_rng([zlib.crc32(key.encode()), n])
    return rng.uniform(-width, width, size=n)


def _ci(values: np.ndarray, setup: str, what: str, n_bootstrap: int, random_seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap CI of the median, seeded by (setup, what); a constant sample
    or a single value gives the value itself."""
    lo, hi = bootstrap_median_ci(values, n_bootstrap=n_bootstrap, seed=stable_seed(random_seed, str(setup), what))
    med = float(np.median(values)) if values.size else math.nan
    return (med if math.isnan(lo) else lo), (med if math.isnan(hi) else hi)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


# --------------------------------------------------------------------------------------------
# per-setup condition strips (figures 1 and 3)
# --------------------------------------------------------------------------------------------


def _condition_strip(
    ax, m: pd.DataFrame, column: str, scale: float = 100.0, reference: str | None = None
) -> list[dict]:
    rows = []
    conds = [c for c in STUDENT_CONDITIONS if c in set(m["condition"])]
    for i, cond in enumerate(conds):
        marker, face, edge = CONDITION_STYLE[cond]
        g = m.loc[m["condition"] == cond, ["seed", column]].dropna()
        vals = g[column].to_numpy() * scale
        if vals.size == 0:
            continue
        ax.scatter(
            i + _jitter(vals.size, cond),
            vals,
            marker=marker,
            facecolor=face,
            edgecolor=edge,
            s=30,
            linewidths=0.8,
            zorder=3,
        )
        ax.hlines(np.median(vals), i - 0.3, i + 0.3, colors="black", linewidth=2, zorder=4)
        rows += [{"condition": cond, "seed": int(s), "value": v} for s, v in zip(g["seed"], vals)]
    if reference is not None:
        ref = m.loc[m["condition"] == reference, column].dropna().to_numpy() * scale
        if ref.size:
            ax.axhline(np.median(ref), color="0.35", linestyle="--", linewidth=1, zorder=1)
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels([_wrap(CONDITION_NAMES[c], 10) for c in conds], fontsize=9)
    ax.set_xlim(-0.6, len(conds) - 0.4)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    return rows


def _legend_handles(present: set, with_reference: str | None = None):
    handles = [
        Line2D(
            [],
            [],
            marker=CONDITION_STYLE[c][0],
            markerfacecolor=CONDITION_STYLE[c][1],
            markeredgecolor=CONDITION_STYLE[c][2],
            linestyle="",
            label=CONDITION_NAMES[c],
        )
        for c in STUDENT_CONDITIONS
        if c in present
    ]
    handles.append(Line2D([], [], color="black", linewidth=2, label="median over seeds"))
    if with_reference:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label=with_reference))
    return handles


def _condition_panels(
    m_all: pd.DataFrame,
    setup_info,
    path,
    column: str,
    ylabel: str,
    reference: str,
    reference_label: str,
    empty_message: str,
) -> FigureResult:
    """One panel per setup: `column` by condition, seeds as points, a dashed reference level."""
    setups = setup_order(m_all, setup_info)
    if not setups:
        return _placeholder(path, empty_message)
    labels = setup_labels(setup_info)
    fig, axes, spare = _grid(len(setups))
    rows = []
    for ax, setup in zip(axes, setups):
        drawn = _condition_strip(ax, m_all[m_all["setup"] == setup], column, reference=reference)
        rows += [{"setup": setup, **r} for r in drawn]
        ax.set_title(_wrap(labels.get(setup, setup), 34))
        ax.set_ylabel(ylabel)
    handles = _legend_handles(set(m_all["condition"]), with_reference=reference_label)
    if spare is not None:  # the legend in the grid's first empty cell
        spare.legend(handles=handles, loc="center", frameon=False)
        fig.tight_layout()
    else:
        ncol = min(len(handles), 3)
        height = fig.get_size_inches()[1]
        fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0, min(0.3, 0.3 * math.ceil(len(handles) / ncol) / height), 1, 1))
    return _save(fig, path, pd.DataFrame(rows, columns=["setup", "condition", "seed", "value"]))


@_styled
def plot_agreement_by_condition(metrics: pd.DataFrame, setup_info: pd.DataFrame, path) -> FigureResult:
    """Figure 1: per setup (one panel each), top-1 agreement with the same-seed teacher by
    condition; each seed a jittered point, the median a bar; the dashed line is the median
    agreement of two independently trained teachers (teacher_other_seed) when present.
    data: setup, condition, seed, value (%)."""
    m_all = metrics[metrics["condition"].isin(STUDENT_CONDITIONS + ("teacher_other_seed",))]
    return _condition_panels(
        m_all,
        setup_info,
        path,
        "agreement",
        "agreement with teacher (%)",
        "teacher_other_seed",
        "two teachers of different seeds (median)",
        "no student runs in the metrics table",
    )


@_styled
def plot_accuracy_by_condition(metrics: pd.DataFrame, setup_info: pd.DataFrame, path) -> FigureResult:
    """Figure 3: per setup, test accuracy by condition (KD vs random control vs control: the
    regulariser view); each seed a point, the dashed line the teachers' median accuracy.
    data: setup, condition, seed, value (%)."""
    m_all = metrics[metrics["condition"].isin(STUDENT_CONDITIONS + ("teacher",))]
    return _condition_panels(
        m_all,
        setup_info,
        path,
        "accuracy",
        "test accuracy (%)",
        "teacher",
        "teacher (median)",
        "no runs in the metrics table",
    )


# --------------------------------------------------------------------------------------------
# the asymmetric payoff (figure 2)
# --------------------------------------------------------------------------------------------


def _label_offsets(n: int, radius: float = 24.0) -> list[tuple[float, float]]:
    """Offsets (points) spreading n point numbers around their points, so numbers of points
    that overlap do not."""
    return [(radius * math.cos(0.6 + 2.39996 * i), radius * math.sin(0.6 + 2.39996 * i)) for i in range(n)]


@_styled
def plot_asymmetric_payoff(
    metrics: pd.DataFrame,
    setup_info: pd.DataFrame,
    path,
    *,
    asymmetry_primary: str,
    n_bootstrap: int,
    random_seed: int = 0,
) -> FigureResult:
    """Figure 2: per setup, median gain_correct (x) vs median gain_incorrect (y) of KD over the
    control, with 95% percentile-bootstrap CIs over seeds, in the primary asymmetry measure
    (`asymmetry_primary`: "raw" agreement gains in percentage points, or "normalised" gains as
    a % of the control's headroom). Points above the dashed diagonal copy the teacher's errors
    more than its correct answers (negative payoff). Each point is numbered; its legend entry
    gives the median number of teacher-incorrect samples per seed that gain_incorrect rests on.
    data: number, setup, label, x, x_low, x_high, y, y_low, y_high, n_teacher_incorrect, n_seeds."""
    normalised = asymmetry_primary == "normalised"
    setups = [
        s
        for s in setup_order(metrics, setup_info)
        if {"kd", "nokd"} <= set(metrics.loc[metrics["setup"] == s, "condition"])
    ]
    if not setups:
        return _placeholder(path, "no setup has both kd and nokd runs")
    labels = setup_labels(setup_info)
    fig, ax = plt.subplots(figsize=(8.0, 6.0))
    rows = []
    unit = "% of headroom" if normalised else "pp"
    offsets = _label_offsets(len(setups))
    for i, setup in enumerate(setups):
        g = asymmetry_gains(metrics, setup, normalised=normalised)
        if g.empty:
            continue
        row = {"number": len(rows) + 1, "setup": setup, "label": labels.get(setup, setup), "n_seeds": len(g)}
        for which, axis in (("correct", "x"), ("incorrect", "y")):
            v = g[f"gain_{which}"].to_numpy() * 100
            lo, hi = _ci(v, setup, f"asymmetric payoff: gain_{which} ({asymmetry_primary})", n_bootstrap, random_seed)
            row.update({axis: float(np.median(v)), f"{axis}_low": lo, f"{axis}_high": hi})
        kd = metrics[(metrics["setup"] == setup) & (metrics["condition"] == "kd") & metrics["seed"].isin(g["seed"])]
        row["n_teacher_incorrect"] = (
            float(kd["n_teacher_incorrect"].median()) if "n_teacher_incorrect" in kd and len(kd) else math.nan
        )
        k = len(rows)
        colour, marker = SETUP_COLOURS[k % len(SETUP_COLOURS)], SETUP_MARKERS[k % len(SETUP_MARKERS)]
        n_err = "?" if math.isnan(row["n_teacher_incorrect"]) else f"{row['n_teacher_incorrect']:.0f}"
        ax.errorbar(
            row["x"],
            row["y"],
            xerr=[[row["x"] - row["x_low"]], [row["x_high"] - row["x"]]],
            yerr=[[row["y"] - row["y_low"]], [row["y_high"] - row["y"]]],
            marker=marker,
            markersize=8,
            color=colour,
            markerfacecolor=colour,
            markeredgecolor="black",
            capsize=3,
            linewidth=1.2,
            linestyle="",
            alpha=0.8,
            label=f"{row['number']}. {row['label']} (n_err = {n_err})",
        )
        ax.annotate(
            str(row["number"]),
            (row["x"], row["y"]),
            xytext=offsets[k],
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=9.5,
            fontweight="bold",
            color=colour,
            zorder=6,
            bbox={"boxstyle": "circle,pad=0.15", "facecolor": "white", "edgecolor": colour, "linewidth": 0.8},
            arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.8, "shrinkA": 0, "shrinkB": 5},
        )
        rows.append(row)
    data = pd.DataFrame(
        rows,
        columns=[
            "number",
            "setup",
            "label",
            "x",
            "x_low",
            "x_high",
            "y",
            "y_low",
            "y_high",
            "n_teacher_incorrect",
            "n_seeds",
        ],
    )
    if len(data):
        lo = min(data[["x_low", "y_low"]].min().min(), 0.0)
        hi = max(data[["x_high", "y_high"]].max().max(), 0.0)
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot(
            [lo - pad, hi + pad],
            [lo - pad, hi + pad],
            linestyle="--",
            color="0.4",
            linewidth=1,
            label="gain_incorrect = gain_correct",
        )
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.axvline(0, color="0.8", linewidth=0.8)
    what = "gain / headroom" if normalised else "gain"
    ax.set_xlabel(f"agreement {what} on teacher-correct samples, KD − control ({unit})")
    ax.set_ylabel(f"agreement {what} on teacher-incorrect samples,\nKD − control ({unit})")
    ax.set_title(f"Asymmetric payoff ({asymmetry_primary}; median over seeds, 95% bootstrap CI)")
    ax.grid(color="0.93", linewidth=0.6)
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=1 if len(data) > 6 else 2 if len(data) > 1 else 1,
        frameon=False,
        fontsize=9,
        title="n_err: teacher-incorrect test samples per seed (median), what gain_incorrect rests on",
        title_fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path, data)


# --------------------------------------------------------------------------------------------
# the tests overview (figure 4)
# --------------------------------------------------------------------------------------------


@_styled
def plot_tests_overview(tests: pd.DataFrame, setup_info: pd.DataFrame, path, *, alpha: float) -> FigureResult:
    """Figure 4: seed-level Wilcoxon tests (rows, grouped by kind) x setups (columns); cell value
    and colour = matched-pairs rank-biserial r oriented so that positive (blue) supports the
    test's hypothesis and negative (red) goes against it, on a colour map diverging around 0:
    r of condition_a − condition_b for "greater" and two-sided tests, its negative for "less"
    tests (e.g. "js: kd < nokd"). "*" marks a significant test (the tests' `significant`:
    BY-adjusted p <= alpha), "**" one that is significant at alpha / 5 too;
    "(secondary)" in a row label (or "(s)" in a cell) a secondary test, not in the FDR
    family; a hatched cell was not tested (condition missing), "n/a" had too few seeds. Tests of
    other kinds (per-sample) are in the tests table only.
    data: setup, test, kind, effect (oriented r), text."""
    if tests is None or tests.empty or not tests["kind"].isin(WILCOXON_KINDS).any():
        return _placeholder(path, "no tests to show")
    tests = tests[tests["kind"].isin(WILCOXON_KINDS)]
    setups = setup_order(tests, setup_info)
    labels = setup_labels(setup_info)
    kind_rank = {k: i for i, k in enumerate(WILCOXON_KINDS)}
    test_kind = tests.drop_duplicates("test").set_index("test")["kind"]
    test_ids = sorted(
        pd.unique(tests["test"]), key=lambda t: kind_rank[test_kind[t]]
    )  # stable: table order within a kind
    # A test that is secondary in every setup says so once, in its row label.
    secondary = {test for test, primary in tests.groupby("test")["primary"] if not primary.astype(bool).any()}
    grid = np.full((len(setups), len(test_ids)), np.nan)
    text = [["" for _ in test_ids] for _ in setups]
    rows = []
    for _, r in tests.iterrows():
        i, j = setups.index(r["setup"]), test_ids.index(r["test"])
        eff = -r["effect_size"] if r["alternative"] == "less" else r["effect_size"]
        grid[i, j] = eff
        if pd.isna(eff):
            text[i][j] = "n/a"
        else:
            stars = ("**" if significant(r["p_adjusted"], alpha / 5) else "*") if r["significant"] else ""
            text[i][j] = f"{eff:.2f}{stars}" + ("" if r["primary"] or r["test"] in secondary else " (s)")
        rows.append({"setup": r["setup"], "test": r["test"], "kind": r["kind"], "effect": eff, "text": text[i][j]})
    # Tests are rows (their names read horizontally), setups columns; grid is setups x tests.
    grid, text = grid.T, [list(col) for col in zip(*text)]
    width = min(MAX_WIDTH_IN, 4.6 + 0.85 * len(setups))
    fig, ax = plt.subplots(figsize=(width, 2.6 + 0.36 * len(test_ids)))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    tested = {(test_ids.index(b), setups.index(a)) for a, b in zip(tests["setup"], tests["test"])}
    cell_font = 8.5 if len(setups) <= 10 else 7.5
    for i in range(len(test_ids)):
        for j in range(len(setups)):
            v = grid[i, j]
            if (i, j) not in tested:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.7", linewidth=0))
            ax.text(
                j,
                i,
                text[i][j],
                ha="center",
                va="center",
                fontsize=cell_font,
                color="white" if (not np.isnan(v) and abs(v) > 0.6) else "black",
            )
    # a line between kinds (transfer | regulariser | asymmetry)
    for i in range(1, len(test_ids)):
        if test_kind[test_ids[i]] != test_kind[test_ids[i - 1]]:
            ax.axhline(i - 0.5, color="black", linewidth=1.5)
    ax.set_yticks(range(len(test_ids)))
    ax.set_yticklabels([f"{t} (secondary)" if t in secondary else t for t in test_ids], fontsize=9)
    ax.set_xticks(range(len(setups)))
    ax.set_xticklabels([labels.get(s, s) for s in setups], rotation=35, ha="right", rotation_mode="anchor", fontsize=9)
    cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    cb.set_label("rank-biserial r: + as hypothesised, − against")
    ax.set_title(
        f"Paired tests over seeds: effect size r\n* p_adj ≤ {alpha:g}, ** p_adj ≤ {alpha / 5:g} (Benjamini–Yekutieli)"
    )
    fig.tight_layout()
    return _save(fig, path, pd.DataFrame(rows, columns=["setup", "test", "kind", "effect", "text"]))


# --------------------------------------------------------------------------------------------
# sweeps: temperature (figure 6), scaling (figure 5), robustness of the verdicts
# --------------------------------------------------------------------------------------------


def _median_iqr(values: np.ndarray):
    if values.size == 0:
        return math.nan, math.nan, math.nan
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return med, q1, q3


@_styled
def plot_temperature(metrics: pd.DataFrame, setup_info: pd.DataFrame, path) -> FigureResult:
    """Figure 6: for each temperature sweep (>= 2 temperatures, the base setup included),
    agreement with the teacher and accuracy vs T (log2 axis), per condition: median over seeds,
    bars = interquartile range. A placeholder figure when there is none.
    data: sweep, setup, condition, metric, temperature, median, q1, q3 (%)."""
    points = sweep_points(setup_info)
    points = points[(points["axis"] == "temperature") & points["setup"].isin(set(metrics["setup"]))]
    groups = {name: g for name, g in points.groupby("sweep", sort=False) if len(g) >= 2}
    if not groups:
        return _placeholder(path, "no temperature sweep in this config")
    titles = config_labels(setup_info)
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 3.4 * len(groups) + 0.5), squeeze=False)
    rows = []
    for row, (name, g) in enumerate(groups.items()):
        temps = [float(t) for t in g["value"]]
        for col, (column, ylabel) in enumerate(
            (("agreement", "agreement with teacher (%)"), ("accuracy", "test accuracy (%)"))
        ):
            ax = axes[row, col]
            for k, cond in enumerate(STUDENT_CONDITIONS):
                xs, ys, lo, hi = [], [], [], []
                for setup, t in zip(g["setup"], temps):
                    v = (
                        metrics.loc[(metrics["setup"] == setup) & (metrics["condition"] == cond), column]
                        .dropna()
                        .to_numpy()
                        * 100
                    )
                    if v.size:
                        med, q1, q3 = _median_iqr(v)
                        xs.append(t)
                        ys.append(med)
                        lo.append(med - q1)
                        hi.append(q3 - med)
                        rows.append(
                            {
                                "sweep": name,
                                "setup": setup,
                                "condition": cond,
                                "metric": column,
                                "temperature": t,
                                "median": med,
                                "q1": q1,
                                "q3": q3,
                            }
                        )
                if xs:
                    marker, face, edge = CONDITION_STYLE[cond]
                    ax.errorbar(
                        xs,
                        ys,
                        yerr=[lo, hi],
                        marker=marker,
                        markerfacecolor=face,
                        markeredgecolor=edge,
                        color="black",
                        linestyle=LINESTYLES[k % len(LINESTYLES)],
                        capsize=3,
                        linewidth=1,
                        label=CONDITION_NAMES[cond],
                    )
            if min(temps) > 0:
                ax.set_xscale("log", base=2)
            ax.set_xticks(temps)
            ax.set_xticklabels([f"{t:g}" + ("\n(base)" if b else "") for t, b in zip(temps, g["is_base"])])
            ax.minorticks_off()
            ax.set_xlabel("distillation temperature T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{titles.get(name, name)}: temperature sweep")
            ax.grid(color="0.9", linewidth=0.6)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="lower center",
        ncol=max(1, len(names)),
        frameon=False,
        title="median over seeds; bars: interquartile range",
        title_fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.65 / fig.get_size_inches()[1], 1, 1))
    return _save(
        fig,
        path,
        pd.DataFrame(rows, columns=["sweep", "setup", "condition", "metric", "temperature", "median", "q1", "q3"]),
    )


def _count_label(count: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.0f}"


@_styled
def plot_scaling(
    metrics: pd.DataFrame, setup_info: pd.DataFrame, path, *, n_bootstrap: int, random_seed: int = 0
) -> FigureResult:
    """Figure 5: for each model-size sweep axis (`sweep: {model: [...]}` or `{student: [...]}`),
    the agreement gain of KD over the control (kd − nokd, paired by seed, percentage points) vs
    the student's parameter count (log axis; `num_parameters` of the kd runs): median over
    seeds with a 95% bootstrap CI, the same interval as the tests table's "agreement: kd > nokd"
    row (same resamples, same per-setup seed). A placeholder figure when there is none.
    data: sweep, axis, setup, num_parameters, median, ci_low, ci_high (pp)."""
    sizes = student_sizes(metrics)
    points = sweep_points(setup_info, sizes)
    points = points[points["axis"].isin(SIZE_SWEEPS) & points["setup"].isin(set(sizes))]
    groups = [(key, g) for key, g in points.groupby(["sweep", "axis"], sort=False) if len(g) >= 2]
    if not groups:
        return _placeholder(path, "no model-size scaling sweep in this config")
    titles = config_labels(setup_info)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    rows = []
    for k, ((name, axis), g) in enumerate(groups):
        xs, ys, lo, hi = [], [], [], []
        for setup, value, is_base in zip(g["setup"], g["value"], g["is_base"]):
            if not {"kd", "nokd"} <= set(metrics.loc[metrics["setup"] == setup, "condition"]):
                continue
            d = paired_values(metrics, setup, "agreement", "kd", "nokd")["diff"].to_numpy() * 100
            if d.size == 0:
                continue
            med = float(np.median(d))
            low, high = _ci(d, setup, "agreement: kd > nokd", n_bootstrap, random_seed)
            xs.append(sizes[setup])
            ys.append(med)
            lo.append(med - low)
            hi.append(high - med)
            ax.annotate(
                f"{value}" + (" (base)" if is_base else ""),
                (sizes[setup], med),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=8.5,
            )
            rows.append(
                {
                    "sweep": name,
                    "axis": axis,
                    "setup": setup,
                    "num_parameters": sizes[setup],
                    "median": med,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        if xs:
            colour = SETUP_COLOURS[k % len(SETUP_COLOURS)]
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                marker=SETUP_MARKERS[k % len(SETUP_MARKERS)],
                color=colour,
                markeredgecolor="black",
                linestyle=LINESTYLES[k % len(LINESTYLES)],
                capsize=3,
                linewidth=1.2,
                label=f"{titles.get(name, name)}: {axis_name(axis)}",
            )
    data = pd.DataFrame(rows, columns=["sweep", "axis", "setup", "num_parameters", "median", "ci_low", "ci_high"])
    ax.axhline(0, color="0.6", linewidth=0.8)
    if len(data) and (data["num_parameters"] > 0).all():
        ax.set_xscale("log")
    # ticks at the sizes trained, labelled 610, 2.5k, 11.2M rather than 6x10^2
    sizes_drawn = sorted(set(data["num_parameters"].astype(float)))
    ax.set_xticks(sizes_drawn)
    ax.set_xticklabels([_count_label(s) for s in sizes_drawn])
    ax.minorticks_off()
    ax.set_xlabel("student parameters (count)")
    ax.set_ylabel("agreement gain, KD − control (pp)")
    ax.set_title("Functional transfer vs model size\n(median over seeds, 95% bootstrap CI)")
    ax.legend(frameon=False)
    ax.grid(color="0.9", linewidth=0.6)
    fig.tight_layout()
    return _save(fig, path, data)


# effect panel -> (title, [(test id, condition drawn, legend name)], unit note)
ROBUSTNESS_EFFECTS = (
    ("agreement: KD − control", [("agreement: kd > nokd", "kd", None)], "pp"),
    ("agreement: KD − random control", [("agreement: kd > rcd", "kd", None)], "pp"),
    (
        "accuracy gain over control",
        [("accuracy: kd vs nokd", "kd", "KD − control"), ("accuracy: rcd vs nokd", "rcd", "random control − control")],
        "pp",
    ),
    ("asymmetry: gain on errors − on correct", [(None, "kd", None)], None),  # the primary asymmetry test
)


def _robustness_row(tests: pd.DataFrame, setup: str, test_id: str | None):
    t = tests[tests["setup"] == setup]
    if test_id is None:
        t = t[(t["kind"] == "asymmetry") & t["primary"].astype(bool)]
    else:
        t = t[t["test"] == test_id]
    return None if t.empty else t.iloc[0]


@_styled
def plot_robustness(
    tests: pd.DataFrame, setup_info: pd.DataFrame, path, *, alpha: float, sizes: dict | None = None
) -> FigureResult:
    """The key effect sizes along every sweep axis (one row of panels per sweep and axis, the
    base setup a point of each of its axes): agreement gain of KD over the control and over
    the random control, the accuracy gains of KD and of the random control over the control,
    and the primary asymmetry (gain_incorrect − gain_correct). Each point is the tests table's
    median paired difference over seeds with its 95% bootstrap CI; a filled marker means the
    test is significant (the tests' `significant`: BY-adjusted p <= alpha; `alpha` labels the
    legend), an open one that it is not.
    data: sweep, axis, value, setup, effect, test, condition, median, ci_low, ci_high,
    p_adjusted, significant (percentage points; normalised asymmetry in % of headroom)."""
    points = sweep_points(setup_info, sizes)
    points = points[points["setup"].isin(set(tests["setup"]) if tests is not None and len(tests) else set())]
    groups = [(key, g) for key, g in points.groupby(["sweep", "axis"], sort=False) if len(g) >= 2]
    if not groups:
        return _placeholder(path, "no sweep in this config: nothing to check the verdicts' robustness against")
    titles = config_labels(setup_info)
    ncols = len(ROBUSTNESS_EFFECTS)
    fig = plt.figure(figsize=(MAX_WIDTH_IN, 2.9 * len(groups) + 0.6), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(groups), 1))
    rows = []
    for subfig, ((sweep, axis), g) in zip(subfigs, groups):
        subfig.suptitle(f"{titles.get(sweep, sweep)}: {axis_name(axis)}", fontsize=10.5, fontweight="bold")
        axes = subfig.subplots(1, ncols)
        xs = np.arange(len(g))
        ticklabels = [axis_value_text(axis, v) + ("\n(base)" if b else "") for v, b in zip(g["value"], g["is_base"])]
        for ax, (title, series, unit) in zip(axes, ROBUSTNESS_EFFECTS):
            normalised = False
            for s_index, (test_id, cond, name) in enumerate(series):
                marker, _, _ = CONDITION_STYLE[cond]
                offset = (s_index - (len(series) - 1) / 2) * 0.15
                line_x, line_y = [], []
                for x, setup, value in zip(xs, g["setup"], g["value"]):
                    r = _robustness_row(tests, setup, test_id)
                    if r is None or pd.isna(r["median_diff"]):
                        continue
                    normalised = normalised or "normalised" in str(r["metric"])
                    med, low, high = (float(r[c]) * 100 for c in ("median_diff", "ci_low", "ci_high"))
                    low, high = (med if math.isnan(low) else low), (med if math.isnan(high) else high)
                    filled = bool(r["significant"])
                    ax.errorbar(
                        x + offset,
                        med,
                        yerr=[[med - low], [high - med]],
                        marker=marker,
                        markersize=7,
                        color="black",
                        markerfacecolor="black" if filled else "white",
                        markeredgecolor="black",
                        capsize=3,
                        linewidth=1,
                        linestyle="",
                    )
                    rows.append(
                        {
                            "sweep": sweep,
                            "axis": axis,
                            "value": value,
                            "setup": setup,
                            "effect": title,
                            "test": r["test"],
                            "condition": cond,
                            "median": med,
                            "ci_low": low,
                            "ci_high": high,
                            "p_adjusted": r["p_adjusted"],
                            "significant": filled,
                        }
                    )
                    line_x.append(x + offset)
                    line_y.append(med)
                ax.plot(line_x, line_y, color="0.55", linewidth=0.8, zorder=1)  # a guide along the axis, not a fit
            ax.axhline(0, color="0.5", linewidth=0.8)
            ax.set_xticks(xs)
            ax.set_xticklabels(ticklabels, fontsize=8.5)
            ax.set_xlim(-0.5, len(g) - 0.5)
            ax.set_title(_wrap(title, 26), fontsize=9.5)
            ax.grid(axis="y", color="0.9", linewidth=0.6)
            ax.set_ylabel("% of headroom" if (unit is None and normalised) else "pp", fontsize=9)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            color="black",
            markerfacecolor="black",
            linestyle="",
            label=f"significant (p_adj ≤ {alpha:g})",
        ),
        Line2D([], [], marker="o", color="black", markerfacecolor="white", linestyle="", label="not significant"),
        Line2D(
            [],
            [],
            marker=CONDITION_STYLE["kd"][0],
            color="black",
            markerfacecolor="0.5",
            linestyle="",
            label=CONDITION_NAMES["kd"],
        ),
        Line2D(
            [],
            [],
            marker=CONDITION_STYLE["rcd"][0],
            color="black",
            markerfacecolor="0.5",
            linestyle="",
            label=CONDITION_NAMES["rcd"],
        ),
        Line2D([], [], color="black", linewidth=1, label="95% bootstrap CI of the median over seeds"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=8.5)
    columns = [
        "sweep",
        "axis",
        "value",
        "setup",
        "effect",
        "test",
        "condition",
        "median",
        "ci_low",
        "ci_high",
        "p_adjusted",
        "significant",
    ]
    return _save(fig, path, pd.DataFrame(rows, columns=columns))


def draw_figures(
    outputs, metrics: pd.DataFrame, tests: pd.DataFrame, setup_info: pd.DataFrame, analysis: dict
) -> dict[str, FigureResult]:
    """Every figure named in `outputs` (figure name -> PNG path; `<name>_pdf` keys are the PDFs
    drawn beside them), under the analysis config (alpha, bootstrap, asymmetry_primary)."""
    alpha, n_bootstrap = float(analysis["alpha"]), int(analysis["bootstrap"])
    draw = {
        "agreement_by_condition": lambda path: plot_agreement_by_condition(metrics, setup_info, path),
        "accuracy_by_condition": lambda path: plot_accuracy_by_condition(metrics, setup_info, path),
        "asymmetric_payoff": lambda path: plot_asymmetric_payoff(
            metrics, setup_info, path, asymmetry_primary=analysis["asymmetry_primary"], n_bootstrap=n_bootstrap
        ),
        "tests_overview": lambda path: plot_tests_overview(tests, setup_info, path, alpha=alpha),
        "temperature": lambda path: plot_temperature(metrics, setup_info, path),
        "scaling": lambda path: plot_scaling(metrics, setup_info, path, n_bootstrap=n_bootstrap),
        "robustness": lambda path: plot_robustness(tests, setup_info, path, alpha=alpha, sizes=student_sizes(metrics)),
    }
    results = {}
    for name in outputs.keys():
        if name.endswith("_pdf"):
            continue
        if name not in draw:
            raise ValueError(f"unknown figure {name!r}; known: {', '.join(draw)}")
        results[name] = draw[name](outputs[name])
    return results
