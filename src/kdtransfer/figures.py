"""The paper's figures, regenerated from the metrics / tests tables (docs/protocol.md, "Figures and tables").

Every public function takes `path` ending in ".png" and writes the PNG there and a PDF of the
same figure beside it (same name, ".pdf"); it returns the two paths. Files are written
atomically (temp file + rename). Figures are greyscale-readable: conditions differ by marker
shape and fill, not colour alone; axes carry units; setups are shown by their display label
(`setup_info.label`), never by their config key.

`setup_info` columns: setup, label, dataset, temperature, alpha, sweep (the base setup
of the sweep a setup belongs to, or ""), sweep_params (comma-separated sweep axes it is a point
of). The scaling figure takes model size from the metrics' `num_parameters`.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from kdtransfer.atomic import atomic_path  # noqa: E402
from kdtransfer.catalog import STUDENT_CONDITIONS  # noqa: E402
from kdtransfer.plan import SIZE_SWEEPS  # noqa: E402
from kdtransfer.stats import asymmetry_gains, bootstrap_median_ci, paired_values  # noqa: E402

# condition -> (display name, marker, face colour, edge colour); greyscale-safe by shape + fill
CONDITION_STYLE = {
    "nokd": ("control (no KD)", "o", "white", "black"),
    "rcd": ("random control", "s", "0.6", "black"),
    "kd": ("KD", "^", "black", "black"),
    "independent": ("independent", "D", "white", "0.4"),
    "teacher": ("teacher", "*", "0.3", "black"),
}
SETUP_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*")
LINESTYLES = ("-", "--", ":", "-.")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _pdf_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png (a .pdf is written beside it), got {path}")
    return path.with_suffix(".pdf")


def _save(fig, path) -> tuple[Path, Path]:
    png = Path(path)
    pdf = _pdf_path(png)
    for target, fmt in ((png, "png"), (pdf, "pdf")):
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return png, pdf


def _labels(setup_info: pd.DataFrame | None) -> dict:
    if setup_info is None or setup_info.empty:
        return {}
    return {r["setup"]: (r["label"] if isinstance(r.get("label"), str) and r.get("label") else r["setup"]) for _, r in setup_info.iterrows()}


def _setups(frame: pd.DataFrame, setup_info: pd.DataFrame | None) -> list:
    """Setups present in `frame`, in setup_info order first, then the rest."""
    present = list(pd.unique(frame["setup"])) if len(frame) else []
    order = [s for s in (setup_info["setup"] if setup_info is not None and len(setup_info) else []) if s in present]
    return order + [s for s in present if s not in order]


def _grid(n: int, ncols_max: int = 4, w: float = 3.2, h: float = 2.8):
    ncols = max(1, min(ncols_max, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _placeholder(path, message: str):
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, wrap=True)
    return _save(fig, path)


def _jitter(n: int, key: str, width: float = 0.12) -> np.ndarray:
    """Deterministic horizontal jitter (same figure bytes-for-layout on every run)."""
    rng = np.random.default_rng([zlib.crc32(key.encode()), n])
    return rng.uniform(-width, width, size=n)


def _condition_strip(ax, m: pd.DataFrame, column: str, scale: float = 100.0, reference: str | None = None):
    conds = [c for c in STUDENT_CONDITIONS if c in set(m["condition"])]
    for i, cond in enumerate(conds):
        name, marker, face, edge = CONDITION_STYLE[cond]
        vals = m.loc[m["condition"] == cond, column].dropna().to_numpy() * scale
        if vals.size == 0:
            continue
        ax.scatter(i + _jitter(vals.size, cond), vals, marker=marker, facecolor=face, edgecolor=edge, s=28, linewidths=0.8, zorder=3)
        ax.hlines(np.median(vals), i - 0.3, i + 0.3, colors="black", linewidth=2, zorder=4)
    if reference is not None:
        ref = m.loc[m["condition"] == reference, column].dropna().to_numpy() * scale
        if ref.size:
            ax.axhline(np.median(ref), color="0.35", linestyle="--", linewidth=1, zorder=1)
    ax.set_xticks(range(len(conds)))
    ax.set_xticklabels([CONDITION_STYLE[c][0] for c in conds], rotation=20, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(conds) - 0.4)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    return conds


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


def _condition_panels(m_all: pd.DataFrame, setup_info, path, column: str, ylabel: str, reference: str,
                      reference_label: str, empty_message: str):
    """One panel per setup: `column` by condition, seeds as points, a dashed reference level."""
    setups = _setups(m_all, setup_info)
    if not setups:
        return _placeholder(path, empty_message)
    labels = _labels(setup_info)
    fig, axes = _grid(len(setups))
    for ax, setup in zip(axes, setups):
        _condition_strip(ax, m_all[m_all["setup"] == setup], column, reference=reference)
        ax.set_title(labels.get(setup, setup), fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
    handles = _legend_handles(set(m_all["condition"]), with_reference=reference_label)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, path)


def plot_agreement_by_condition(metrics: pd.DataFrame, setup_info: pd.DataFrame, path):
    """Figure 1: per setup (one panel each), top-1 agreement with the same-seed teacher by
    condition; each seed a jittered point, the median a bar; the dashed line is the median
    agreement of two independently trained teachers (teacher_other_seed) when present."""
    m_all = metrics[metrics["condition"].isin(STUDENT_CONDITIONS + ("teacher_other_seed",))]
    return _condition_panels(m_all, setup_info, path, "agreement", "agreement with teacher (%)", "teacher_other_seed",
                             "teacher vs teacher of another seed (median)", "no student runs in the metrics table")


def _legend_handles(present: set, with_reference: str | None = None):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=CONDITION_STYLE[c][1], markerfacecolor=CONDITION_STYLE[c][2], markeredgecolor=CONDITION_STYLE[c][3],
                      linestyle="", label=CONDITION_STYLE[c][0]) for c in STUDENT_CONDITIONS if c in present]
    handles.append(Line2D([], [], color="black", linewidth=2, label="median over seeds"))
    if with_reference:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label=with_reference))
    return handles


def plot_accuracy_by_condition(metrics: pd.DataFrame, setup_info: pd.DataFrame, path):
    """Figure 3: per setup, test accuracy by condition (KD vs random control vs control: the
    regulariser view); each seed a point, the dashed line the teachers' median accuracy."""
    m_all = metrics[metrics["condition"].isin(STUDENT_CONDITIONS + ("teacher",))]
    return _condition_panels(m_all, setup_info, path, "accuracy", "test accuracy (%)", "teacher", "teacher (median)",
                             "no runs in the metrics table")


def plot_asymmetric_payoff(metrics: pd.DataFrame, setup_info: pd.DataFrame, path, *, normalised: bool = False, n_bootstrap: int = 2000, random_seed: int = 0):
    """Figure 2: per setup, median gain_correct (x) vs median gain_incorrect (y) of KD over the
    control, in percentage points, with 95% percentile-bootstrap CIs over seeds; points above the
    dashed diagonal copy the teacher's errors more than its correct answers (negative payoff)."""
    setups = [s for s in _setups(metrics, setup_info) if {"kd", "nokd"} <= set(metrics.loc[metrics["setup"] == s, "condition"])]
    if not setups:
        return _placeholder(path, "no setup has both kd and nokd runs")
    labels = _labels(setup_info)
    fig, ax = plt.subplots(figsize=(8.0, 5.5))
    lo_all, hi_all = [], []
    unit = "" if normalised else " (pp)"
    for i, setup in enumerate(setups):
        g = asymmetry_gains(metrics, setup, normalised=normalised)
        if g.empty:
            continue
        pts = {}
        for which in ("correct", "incorrect"):
            v = g[f"gain_{which}"].to_numpy() * (1 if normalised else 100)
            lo, hi = bootstrap_median_ci(v, n_bootstrap=n_bootstrap, seed=[random_seed, i])
            med = float(np.median(v))
            lo = med if math.isnan(lo) else lo
            hi = med if math.isnan(hi) else hi
            pts[which] = (med, med - lo, hi - med)
            lo_all.append(lo)
            hi_all.append(hi)
        marker = SETUP_MARKERS[i % len(SETUP_MARKERS)]
        ax.errorbar(pts["correct"][0], pts["incorrect"][0], xerr=[[pts["correct"][1]], [pts["correct"][2]]],
                    yerr=[[pts["incorrect"][1]], [pts["incorrect"][2]]], marker=marker, markersize=7, color="black",
                    markerfacecolor="white" if i % 2 else "0.4", capsize=3, linewidth=1, linestyle="", label=labels.get(setup, setup))
    if lo_all:
        lo, hi = min(lo_all + [0.0]), max(hi_all + [0.0])
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], linestyle="--", color="0.4", linewidth=1, label="gain_incorrect = gain_correct")
    ax.axhline(0, color="0.8", linewidth=0.8)
    ax.axvline(0, color="0.8", linewidth=0.8)
    what = "gain / headroom" if normalised else "gain"
    ax.set_xlabel(f"agreement {what} on teacher-correct samples, KD − control{unit}")
    ax.set_ylabel(f"agreement {what} on teacher-incorrect samples, KD − control{unit}")
    ax.set_title("Asymmetric payoff (median over seeds, 95% bootstrap CI)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_tests_overview(tests: pd.DataFrame, setup_info: pd.DataFrame, path, *, alpha: float = 0.05):
    """Figure 4: setups (rows) x tests (columns); cell value and shade = matched-pairs
    rank-biserial r oriented so that positive (dark) supports the test's hypothesis: r of
    condition_a − condition_b for "greater" and two-sided tests, its negative for "less" tests
    (e.g. "js: kd < nokd"). The number is printed in each cell; "*" marks BY-adjusted
    p <= alpha, "**" p_adj <= alpha / 5; "(secondary)" in a column label (or "(s)" in a cell) a
    secondary test, not in the FDR family; a
    hatched cell was not tested (condition missing) and "n/a" had too few seeds."""
    if tests is None or tests.empty:
        return _placeholder(path, "no tests to show")
    setups = _setups(tests, setup_info)
    labels = _labels(setup_info)
    test_ids = list(pd.unique(tests["test"]))
    # A test that is secondary in every setup says so once, in its column label.
    secondary = {test for test, primary in tests.groupby("test")["primary"] if not primary.astype(bool).any()}
    grid = np.full((len(setups), len(test_ids)), np.nan)
    text = [["" for _ in test_ids] for _ in setups]
    for _, r in tests.iterrows():
        i, j = setups.index(r["setup"]), test_ids.index(r["test"])
        eff = -r["effect_size"] if r["alternative"] == "less" else r["effect_size"]
        grid[i, j] = eff
        if pd.isna(eff):
            text[i][j] = "n/a"
            continue
        stars = ""
        if pd.notna(r["p_adjusted"]):
            stars = "**" if r["p_adjusted"] <= alpha / 5 else ("*" if r["p_adjusted"] <= alpha else "")
        text[i][j] = f"{eff:.2f}{stars}" + ("" if r["primary"] or r["test"] in secondary else " (s)")
    # the rotated test names need ~2.6 in below the cells, whatever the number of setups
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(test_ids), 3.4 + 0.4 * len(setups)))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="Greys", vmin=-1, vmax=1, aspect="auto")
    tested = {(setups.index(a), test_ids.index(b)) for a, b in zip(tests["setup"], tests["test"])}
    for i in range(len(setups)):
        for j in range(len(test_ids)):
            v = grid[i, j]
            if (i, j) not in tested:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.7", linewidth=0))
            ax.text(j, i, text[i][j], ha="center", va="center", fontsize=7, color="white" if (not np.isnan(v) and v > 0.3) else "black")
    ax.set_xticks(range(len(test_ids)))
    ax.set_xticklabels([f"{test} (secondary)" if test in secondary else test for test in test_ids], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(setups)))
    ax.set_yticklabels([labels.get(s, s) for s in setups], fontsize=8)
    cb = fig.colorbar(im, ax=ax, fraction=0.03)
    cb.set_label("rank-biserial r, + = as hypothesised", fontsize=8)
    ax.set_title(f"Paired tests: effect size; * p_adj ≤ {alpha:g}, ** p_adj ≤ {alpha / 5:g} (Benjamini–Yekutieli)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _sweep_groups(setup_info: pd.DataFrame, axes: tuple[str, ...], present: set, value_column: str) -> dict:
    """sweep name -> setup_info rows (present setups only) that are points of one of the sweep
    `axes` (setup_info.sweep_params) of that sweep, sorted by `value_column`; kept only when
    they span >= 2 distinct values of it."""
    needed = {"sweep", "sweep_params", value_column}
    if setup_info is None or setup_info.empty or not needed <= set(setup_info.columns):
        return {}
    info = setup_info[setup_info["setup"].isin(present) & (setup_info["sweep"].fillna("").astype(str) != "")]
    on_axis = info["sweep_params"].fillna("").astype(str).str.split(",").map(lambda params: bool(set(params) & set(axes)))
    info = info[on_axis.astype(bool)]
    groups = {}
    for name, g in info.groupby("sweep", sort=True):
        g = g.assign(**{value_column: pd.to_numeric(g[value_column], errors="coerce")}).dropna(subset=[value_column])
        if g[value_column].nunique() >= 2:
            groups[name] = g.sort_values(value_column)
    return groups


def _median_iqr(values: np.ndarray):
    if values.size == 0:
        return math.nan, math.nan, math.nan
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return med, med - q1, q3 - med


def plot_temperature(metrics: pd.DataFrame, setup_info: pd.DataFrame, path):
    """Figure 6: for each temperature sweep (setups sharing a `sweep` name with >= 2 distinct
    temperatures), agreement with the teacher and accuracy vs T (log2 axis), per condition:
    median over seeds, bars = interquartile range. A placeholder figure when there is none."""
    groups = _sweep_groups(setup_info, ("temperature",), set(metrics["setup"]), "temperature")
    if not groups:
        return _placeholder(path, "no temperature sweep in this config")
    labels = _labels(setup_info)
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 3.2 * len(groups)), squeeze=False)
    for row, (name, g) in enumerate(groups.items()):
        for col, (column, ylabel) in enumerate((("agreement", "agreement with teacher (%)"), ("accuracy", "test accuracy (%)"))):
            ax = axes[row, col]
            for k, cond in enumerate(STUDENT_CONDITIONS):
                xs, ys, lo, hi = [], [], [], []
                for _, info in g.iterrows():
                    v = metrics.loc[(metrics["setup"] == info["setup"]) & (metrics["condition"] == cond), column].dropna().to_numpy() * 100
                    if v.size:
                        med, dl, dh = _median_iqr(v)
                        xs.append(info["temperature"]); ys.append(med); lo.append(dl); hi.append(dh)
                if xs:
                    label, marker, face, edge = CONDITION_STYLE[cond]
                    ax.errorbar(xs, ys, yerr=[lo, hi], marker=marker, markerfacecolor=face, markeredgecolor=edge, color="black",
                                linestyle=LINESTYLES[k % len(LINESTYLES)], capsize=3, linewidth=1, label=label)
            temps = sorted(g["temperature"].unique())
            if min(temps) > 0:
                ax.set_xscale("log", base=2)
            ax.set_xticks(temps)
            ax.set_xticklabels([f"{t:g}" for t in temps])
            ax.minorticks_off()
            ax.set_xlabel("distillation temperature T")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{labels.get(name, name)}: temperature sweep", fontsize=9)
            ax.grid(color="0.9", linewidth=0.6)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.text(0.99, 0.01, "median over seeds; bars: interquartile range", ha="right", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, path)


def _count_label(count: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:.0f}"


def plot_scaling(metrics: pd.DataFrame, setup_info: pd.DataFrame, path, *, n_bootstrap: int = 2000, random_seed: int = 0):
    """Figure 5: for each model-size sweep (`sweep: {model: [...]}` or `{student: [...]}`), the
    agreement gain of KD over the control (kd − nokd, paired by seed, percentage points) vs the
    student's parameter count (log axis; `num_parameters` of the kd runs, read from their
    predictions files): median over seeds with a 95% bootstrap CI. A placeholder figure when
    there is none."""
    info = setup_info.copy() if setup_info is not None else pd.DataFrame(columns=["setup"])
    if "num_parameters" in metrics:
        params = metrics[metrics["condition"] == "kd"].groupby("setup")["num_parameters"].median()
        info["num_parameters"] = info["setup"].map(params)
    groups = _sweep_groups(info, SIZE_SWEEPS, set(metrics["setup"]), "num_parameters")
    if not groups:
        return _placeholder(path, "no model-size scaling sweep in this config")
    labels = _labels(setup_info)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (name, g) in enumerate(groups.items()):
        xs, ys, lo, hi = [], [], [], []
        for i, (_, info) in enumerate(g.iterrows()):
            d = paired_values(metrics, info["setup"], "agreement", "kd", "nokd")["diff"].to_numpy() * 100 if {"kd", "nokd"} <= set(
                metrics.loc[metrics["setup"] == info["setup"], "condition"]) else np.array([])
            if d.size == 0:
                continue
            med = float(np.median(d))
            l, h = bootstrap_median_ci(d, n_bootstrap=n_bootstrap, seed=[random_seed, k, i])
            xs.append(info["num_parameters"]); ys.append(med)
            lo.append(0.0 if math.isnan(l) else med - l); hi.append(0.0 if math.isnan(h) else h - med)
        if xs:
            ax.errorbar(xs, ys, yerr=[lo, hi], marker=SETUP_MARKERS[k % len(SETUP_MARKERS)], color="black", markerfacecolor="white" if k % 2 else "0.4",
                        linestyle=LINESTYLES[k % len(LINESTYLES)], capsize=3, linewidth=1, label=labels.get(name, name))
    ax.axhline(0, color="0.6", linewidth=0.8)
    scales = pd.concat([g["num_parameters"] for g in groups.values()])
    if (scales > 0).all():
        ax.set_xscale("log")
    # ticks at the sizes trained, labelled 610, 2.5k, 11.2M rather than 6x10^2
    sizes = sorted(set(scales.astype(float)))
    ax.set_xticks(sizes)
    ax.set_xticklabels([_count_label(s) for s in sizes], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("student parameters (count)")
    ax.set_ylabel("agreement gain, KD − control (pp)")
    ax.set_title("Functional transfer vs model size (median over seeds, 95% bootstrap CI)", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    ax.grid(color="0.9", linewidth=0.6)
    fig.tight_layout()
    return _save(fig, path)
