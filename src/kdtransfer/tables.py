"""Paper tables as CSV and LaTeX (booktabs), written atomically.

The LaTeX is written by hand here (no jinja2 / pandas Styler dependency): a `table` float
holding a `tabular` with \\toprule / \\midrule / \\bottomrule (needs `\\usepackage{booktabs}`).
Cell text is escaped for LaTeX (& % $ # _ { } ~ ^ \\), and "±" becomes $\\pm$.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kdtransfer.atomic import atomic_path

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_UNICODE = {"±": r"$\pm$", "−": "-", "≤": r"$\leq$", "≥": r"$\geq$", "–": "--", "—": "---", "α": r"$\alpha$"}


def latex_escape(text) -> str:
    """Escape one cell for LaTeX text mode."""
    s = "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
    for k, v in _UNICODE.items():
        s = s.replace(k, v)
    return s


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "--"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return latex_escape(value)


def to_booktabs(df: pd.DataFrame, *, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table of df (columns as header, index dropped)."""
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) else "l" for c in df.columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + str(label) + "}")
    lines.append(r"\begin{tabular}{" + align + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(latex_escape(c) for c in df.columns) + r" \\")
    lines.append(r"\midrule")
    for row in df.itertuples(index=False):
        lines.append(" & ".join(_cell(v) for v in row) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(df: pd.DataFrame, csv_path, tex_path, caption: str = "", label: str = "") -> None:
    """Write df as CSV (no index) and as a booktabs LaTeX table; both atomically."""
    _atomic_write_text(csv_path, df.to_csv(index=False))
    _atomic_write_text(tex_path, to_booktabs(df, caption=caption, label=label))


def _labels(setup_info: pd.DataFrame | None) -> dict:
    if setup_info is None or len(setup_info) == 0:
        return {}
    return {r["setup"]: (r["label"] if isinstance(r["label"], str) and r["label"] else r["setup"]) for _, r in setup_info.iterrows()}


def _setup_order(frame: pd.DataFrame, setup_info: pd.DataFrame | None) -> list:
    present = list(pd.unique(frame["setup"]))
    order = [s for s in (setup_info["setup"] if setup_info is not None and len(setup_info) else []) if s in present]
    return order + [s for s in present if s not in order]


# metric -> (column header, scale, decimals)
SUMMARY_METRICS = {
    "accuracy": ("accuracy (%)", 100, 2),
    "agreement": ("agreement (%)", 100, 2),
    "agreement_correct": ("agreement, teacher correct (%)", 100, 2),
    "agreement_incorrect": ("agreement, teacher incorrect (%)", 100, 2),
    "js": ("JS (nats)", 1, 4),
    "kl": ("KL(teacher || student) (nats)", 1, 4),
    "ece": ("ECE (%)", 100, 2),
}
CONDITION_NAMES = {
    "teacher": "teacher",
    "teacher_other_seed": "teacher, other seed",
    "nokd": "control (no KD)",
    "rcd": "random control",
    "kd": "KD",
    "independent": "independent",
}


def summary_table(metrics: pd.DataFrame, setup_info: pd.DataFrame, *, formatted: bool = True) -> pd.DataFrame:
    """Per setup x condition: mean ± std over seeds (sample std, ddof=1; "--" for one seed) of
    accuracy, agreement, agreement_correct, agreement_incorrect, js, kl, ece, and n seeds.

    formatted=True: display strings "mean ± std" in the units of the headers (% or nats), setup
    display labels and condition names (the paper table). formatted=False: numeric columns
    <metric>_mean / <metric>_std in raw units, setup keys.
    """
    labels = _labels(setup_info)
    rows = []
    for setup in _setup_order(metrics, setup_info):
        m = metrics[metrics["setup"] == setup]
        conds = [c for c in CONDITION_NAMES if c in set(m["condition"])] + [c for c in pd.unique(m["condition"]) if c not in CONDITION_NAMES]
        for cond in conds:
            g = m[m["condition"] == cond]
            if formatted:
                row = {"setup": labels.get(setup, setup), "condition": CONDITION_NAMES.get(cond, cond), "seeds": int(g["seed"].nunique())}
            else:
                row = {"setup": setup, "condition": cond, "n_seeds": int(g["seed"].nunique())}
            for metric, (header, scale, dec) in SUMMARY_METRICS.items():
                v = g[metric].dropna().to_numpy(dtype=float) if metric in g else np.array([])
                mean = float(v.mean()) if v.size else math.nan
                std = float(v.std(ddof=1)) if v.size > 1 else math.nan
                if formatted:
                    if not v.size:
                        row[header] = "--"
                    elif math.isnan(std):
                        row[header] = f"{mean * scale:.{dec}f}"
                    else:
                        row[header] = f"{mean * scale:.{dec}f} ± {std * scale:.{dec}f}"
                else:
                    row[f"{metric}_mean"] = mean
                    row[f"{metric}_std"] = std
            rows.append(row)
    return pd.DataFrame(rows)


def _fmt_p(p) -> str:
    if p is None or pd.isna(p):
        return "--"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def _fmt_num(x, dec=3) -> str:
    return "--" if x is None or pd.isna(x) else f"{x:.{dec}f}"


def _power_note(r, alpha: float) -> str:
    """Can this many seeds reach alpha at all? An exact test with n seeds has a p-value floor."""
    floor, needed = r.get("min_p_adjusted_possible"), r.get("seeds_needed")
    if floor is None or pd.isna(floor) or not bool(r.get("primary", True)):
        return "--"
    if floor <= alpha:
        return "ok"
    return f"cannot reach alpha={alpha:g}; needs {int(needed)} seeds" if not pd.isna(needed) else f"cannot reach alpha={alpha:g}"


def tests_table(tests: pd.DataFrame, setup_info: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """The tests formatted for a paper: setup (display label), test, n, W (statistic), raw p,
    BY-adjusted p (with * when significant; "secondary" when not in the FDR family), rank-biserial
    r, median paired difference [95% bootstrap CI] (percentage points for agreement / accuracy /
    asymmetry gains, nats or raw units otherwise)."""
    labels = _labels(setup_info)
    rows = []
    if tests is None or tests.empty:
        return pd.DataFrame(columns=["setup", "test", "n", "W", "p", "p_adj (BY)", "r_rb", "median diff [95% CI]",
                                     "min p_adj reachable", "power"])
    for setup in _setup_order(tests, setup_info):
        for _, r in tests[tests["setup"] == setup].iterrows():
            pct = str(r["metric"]).startswith(("agreement", "accuracy")) or (r["kind"] == "asymmetry" and "normalised" not in str(r["metric"]))
            scale, unit = (100.0, " pp") if pct else (1.0, "")
            if pd.isna(r["median_diff"]):
                md = "--"
            elif pd.isna(r["ci_low"]):
                md = f"{r['median_diff'] * scale:.3g}{unit}"
            else:
                md = f"{r['median_diff'] * scale:.3g} [{r['ci_low'] * scale:.3g}, {r['ci_high'] * scale:.3g}]{unit}"
            if not r["primary"]:
                padj = "secondary"
            else:
                padj = _fmt_p(r["p_adjusted"]) + ("*" if bool(r["significant"]) else "")
            rows.append({
                "setup": labels.get(setup, setup),
                "test": r["test"],
                "n": int(r["n"]),
                "W": _fmt_num(r["statistic"], 1),
                "p": _fmt_p(r["p_value"]),
                "p_adj (BY)": padj,
                "r_rb": _fmt_num(r["effect_size"], 2),
                "median diff [95% CI]": md,
                # Power of the design: with n seeds an exact test cannot go below a floor.
                "min p_adj reachable": _fmt_p(r.get("min_p_adjusted_possible")),
                "power": _power_note(r, alpha),
            })
    return pd.DataFrame(rows)


RCD_MATCH_FRACTION = 0.5  # docs/protocol.md, "Claims" (2) and "Verdicts": noise gives "much of" KD's accuracy gain


def _yes_no(flag, p) -> str:
    if p is None or pd.isna(p):
        return "not tested"
    return f"{'yes' if bool(flag) else 'no'} (p_adj {_fmt_p(p)})"


def _rcd_matches(r) -> str:
    if pd.isna(r["acc_gain_kd"]) or pd.isna(r["acc_gain_rcd"]):
        return "not tested"
    if not (r["acc_kd_significant"] and r["acc_gain_kd"] > 0):
        return "n/a: KD has no significant accuracy gain"
    share = f"{100 * r['rcd_fraction_of_kd_gain']:.0f}% of KD's gain"
    matches = bool(r["acc_rcd_significant"]) and r["rcd_fraction_of_kd_gain"] >= RCD_MATCH_FRACTION
    return f"{'yes' if matches else 'no'}: {share}"


def verdicts_table(verdicts: pd.DataFrame, setup_info: pd.DataFrame) -> pd.DataFrame:
    """The verdicts (stats.verdicts) as a table a reader can scan: one row per setup (display
    label), yes/no answers with their BY-adjusted p-values, accuracy gains over the control in
    percentage points. "RCD matches KD" is yes when KD's accuracy gain is significant and
    positive and the random control's gain is significant and at least half of it."""
    labels = _labels(setup_info)
    columns = ["setup", "seeds", "transfer: kd > nokd", "transfer: kd > rcd", "KD accuracy gain (pp)",
               "RCD accuracy gain (pp)", "RCD matches KD accuracy", "asymmetric, negative payoff", "errors vs correct gain (pp)"]
    rows = []
    for setup in _setup_order(verdicts, setup_info):
        r = verdicts[verdicts["setup"] == setup].iloc[0]
        rows.append({
            "setup": labels.get(setup, setup),
            "seeds": int(r["n_seeds"]),
            "transfer: kd > nokd": _yes_no(r["transfer_kd_vs_nokd"], r["p_adj_transfer_kd_vs_nokd"]),
            "transfer: kd > rcd": _yes_no(r["transfer_kd_vs_rcd"], r["p_adj_transfer_kd_vs_rcd"]),
            "KD accuracy gain (pp)": "--" if pd.isna(r["acc_gain_kd"]) else f"{r['acc_gain_kd']:+.2f} (p_adj {_fmt_p(r['p_adj_acc_kd'])})",
            "RCD accuracy gain (pp)": "--" if pd.isna(r["acc_gain_rcd"]) else f"{r['acc_gain_rcd']:+.2f} (p_adj {_fmt_p(r['p_adj_acc_rcd'])})",
            "RCD matches KD accuracy": _rcd_matches(r),
            "asymmetric, negative payoff": _yes_no(r["asymmetric_negative"], r["p_adj_asymmetry"]),
            "errors vs correct gain (pp)": "--" if pd.isna(r["gain_incorrect"]) else f"{r['gain_incorrect']:+.2f} vs {r['gain_correct']:+.2f}",
        })
    return pd.DataFrame(rows, columns=columns)
