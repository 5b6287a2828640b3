"""Paper tables as CSV, LaTeX (booktabs) and HTML (the Snakemake report), written atomically.

Tables only render: every decision (which claims hold, what "RCD matches KD" means) is made by
`verdicts.verdicts` and read from its columns; names and number formats come from `display`.

The LaTeX is written by hand here (no jinja2 / pandas Styler dependency): a `table` float
holding a `tabular` with \\toprule / \\midrule / \\bottomrule (needs `\\usepackage{booktabs}`).
Cell text is escaped for LaTeX (& % $ # _ { } ~ ^ \\), and "±" becomes $\\pm$. The HTML is one
self-contained page per table (inline CSS, no scripts), with verdict cells coloured by answer.
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd

from kdtransfer.analysis import report_items
from kdtransfer.analysis.display import (
    CLAIM_NAMES,
    CONDITION_NAMES,
    axis_name,
    axis_value_text,
    config_labels,
    fmt_num,
    fmt_p,
    fmt_pp,
    is_missing,
    setup_labels,
    setup_order,
)
from kdtransfer.analysis.stats import significant
from kdtransfer.analysis.verdicts import CLAIMS, RCD_MATCH_FRACTION, robustness, robustness_counts, student_sizes
from kdtransfer.io.atomic import atomic_path
from kdtransfer.paths import STATISTICS_RULE, VERDICTS

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
    align = "".join(
        "r" if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) else "l"
        for c in df.columns
    )
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


HTML_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 14px; margin: 0.8em; color: #111; }
h1 { font-size: 18px; margin: 0 0 0.3em 0; }
p.caption { max-width: 70em; color: #333; margin: 1em 0; line-height: 1.4; font-size: 13px; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; border-bottom: 2px solid #444; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.yes { background: #d7ecd9; }
td.no { background: #f6dcd6; }
td.na { color: #666; }
tr.summary td { font-weight: 600; border-top: 2px solid #444; background: #fafafa; }
"""  # noqa: E501 (one CSS rule per line, as the report shows it)


def _html_class(column: str, value, numeric: bool) -> str:
    text = "" if is_missing(value) else str(value)
    if numeric:
        return "num"
    if column in CLAIM_NAMES.values():
        for answer, css in (("yes", "yes"), ("no", "no"), ("n/a", "na"), ("not tested", "na")):
            if text.startswith(answer):
                return css
    return ""


def to_html(df: pd.DataFrame, *, title: str = "", caption: str = "", summary_rows: pd.Series | None = None) -> str:
    """A self-contained HTML page showing df (index dropped): title, the table, caption. Cells
    of claim columns are coloured by their answer (yes / no / undecided); rows flagged in
    `summary_rows` (a boolean Series aligned with df) are set off as summaries."""
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    flags = summary_rows.tolist() if summary_rows is not None else [False] * len(df)
    for flag, row in zip(flags, df.itertuples(index=False)):
        cells = []
        for column, value in zip(df.columns, row):
            css = _html_class(column, value, numeric[column])
            text = "--" if is_missing(value) else ("yes" if value is True else "no" if value is False else str(value))
            shown = html.escape(text)
            if css in ("yes", "no"):  # the answer in bold, its evidence after it
                shown = re.sub(r"^(yes|no)\b", r"<b>\1</b>", shown)
            cells.append(f'<td class="{css}">{shown}</td>' if css else f"<td>{shown}</td>")
        body.append(('<tr class="summary">' if flag else "<tr>") + "".join(cells) + "</tr>")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{HTML_STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>" if title else "",
            f"<table><thead><tr>{head}</tr></thead><tbody>",
            *body,
            "</tbody></table>",
            f'<p class="caption">{html.escape(caption)}</p>' if caption else "",
            "</body></html>",
            "",
        ]
    )


def write_table(
    df: pd.DataFrame,
    csv_path,
    tex_path,
    caption: str = "",
    label: str = "",
    *,
    html_path=None,
    title: str = "",
    summary_rows: pd.Series | None = None,
) -> None:
    """Write df as CSV (no index), as a booktabs LaTeX table and, given `html_path`, as an HTML
    page (`to_html`); each atomically."""
    _atomic_write_text(csv_path, df.to_csv(index=False))
    _atomic_write_text(tex_path, to_booktabs(df, caption=caption, label=label))
    if html_path is not None:
        _atomic_write_text(html_path, to_html(df, title=title, caption=caption, summary_rows=summary_rows))


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


def summary_table(metrics: pd.DataFrame, setup_info: pd.DataFrame, *, formatted: bool = True) -> pd.DataFrame:
    """Per setup x condition: mean ± std over seeds (sample std, ddof=1; "--" for one seed) of
    accuracy, agreement, agreement_correct, agreement_incorrect, js, kl, ece, and n seeds.

    formatted=True: display strings "mean ± std" in the units of the headers (% or nats), setup
    display labels and condition names (the paper table). formatted=False: numeric columns
    <metric>_mean / <metric>_std in raw units, setup keys.
    """
    labels = setup_labels(setup_info)
    rows = []
    for setup in setup_order(metrics, setup_info):
        m = metrics[metrics["setup"] == setup]
        conds = [c for c in CONDITION_NAMES if c in set(m["condition"])] + [
            c for c in pd.unique(m["condition"]) if c not in CONDITION_NAMES
        ]
        for cond in conds:
            g = m[m["condition"] == cond]
            if formatted:
                row = {
                    "setup": labels.get(setup, setup),
                    "condition": CONDITION_NAMES.get(cond, cond),
                    "seeds": int(g["seed"].nunique()),
                }
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


def _power_note(r, alpha: float) -> str:
    """Can this many seeds reach alpha at all? An exact test with n seeds has a p-value floor."""
    floor, needed = r.get("min_p_adjusted_possible"), r.get("seeds_needed")
    if is_missing(floor) or not bool(r.get("primary", True)):
        return "--"
    if significant(floor, alpha):
        return "ok"
    return (
        f"cannot reach alpha={alpha:g}; needs {int(needed)} seeds"
        if not is_missing(needed)
        else f"cannot reach alpha={alpha:g}"
    )


# Seed-level Wilcoxon kinds first, in this order; other kinds (per-sample tests) after them.
KIND_ORDER = ("transfer", "regulariser", "asymmetry")
TESTS_COLUMNS = [
    "setup",
    "kind",
    "test",
    "n",
    "statistic",
    "p",
    "p_adj (BY)",
    "effect size",
    "median diff [95% CI]",
    "min p_adj reachable",
    "power",
    "note",
]


def _median_diff_cell(r) -> str:
    if is_missing(r.get("median_diff")):
        return "--"
    pct = str(r["metric"]).startswith(("agreement", "accuracy")) or (
        r["kind"] == "asymmetry" and "normalised" not in str(r["metric"])
    )
    scale, unit = (100.0, " pp") if pct else (1.0, "")
    if is_missing(r.get("ci_low")):
        return f"{r['median_diff'] * scale:.3g}{unit}"
    return f"{r['median_diff'] * scale:.3g} [{r['ci_low'] * scale:.3g}, {r['ci_high'] * scale:.3g}]{unit}"


def tests_table(tests: pd.DataFrame, setup_info: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The tests formatted for a paper, per setup grouped by kind (transfer, regulariser,
    asymmetry, then any other kind such as per-sample tests, each in its own FDR family): setup
    (display label), kind, test, n, statistic (W for the Wilcoxon tests), raw p, BY-adjusted p
    (with * when significant; "secondary" when not in the FDR family), effect size (rank-biserial
    r for the Wilcoxon tests), median paired difference [95% bootstrap CI] (percentage points for
    agreement / accuracy / raw asymmetry gains, nats or raw units otherwise), the power of the
    design, and the test's note."""
    if tests is None or tests.empty:
        return pd.DataFrame(columns=TESTS_COLUMNS)
    labels = setup_labels(setup_info)
    kinds = list(KIND_ORDER) + [k for k in pd.unique(tests["kind"]) if k not in KIND_ORDER]
    rows = []
    for setup in setup_order(tests, setup_info):
        mine = tests[tests["setup"] == setup]
        for kind in kinds:
            for _, r in mine[mine["kind"] == kind].iterrows():
                if not bool(r["primary"]):
                    padj = "secondary"
                else:
                    padj = fmt_p(r["p_adjusted"]) + ("*" if bool(r["significant"]) else "")
                effect = fmt_num(r["effect_size"], 2)
                rows.append(
                    {
                        "setup": labels.get(setup, setup),
                        "kind": kind,
                        "test": r["test"],
                        "n": int(r["n"]),
                        "statistic": fmt_num(r["statistic"], 1),
                        "p": fmt_p(r["p_value"]),
                        "p_adj (BY)": padj,
                        "effect size": f"r = {effect}" if kind in KIND_ORDER and effect != "--" else effect,
                        "median diff [95% CI]": _median_diff_cell(r),
                        # Power of the design: with n seeds an exact test cannot go below a floor.
                        "min p_adj reachable": fmt_p(r.get("min_p_adjusted_possible")),
                        "power": _power_note(r, alpha),
                        "note": "" if is_missing(r.get("note")) else str(r.get("note")),
                    }
                )
    return pd.DataFrame(rows, columns=TESTS_COLUMNS)


# --------------------------------------------------------------------------------------------
# verdicts and their robustness: cells rendered from verdicts.verdicts' columns
# --------------------------------------------------------------------------------------------


def claim_cell(v, claim: str, p_label: str = "p_adj ") -> str:
    """One claim of one verdicts row (verdicts.verdicts) as a cell: "yes (p_adj 0.004)"; for
    the claims on two-sided accuracy tests with the direction and size that the yes or no rests
    on ("no: -3.84 pp (p_adj 0.029)" is a significant loss, not a contradiction); undecided, the
    verdict's own note ("not tested: no rcd runs", "n/a: ...")."""
    flag = v[claim]
    if is_missing(flag):
        return str(v.get(f"{claim}_note") or "not tested")
    answer = "yes" if bool(flag) else "no"
    p = f"{p_label}{fmt_p(v[CLAIMS[claim]])}"
    if claim == "kd_accuracy_gain":
        return f"{answer}: {fmt_pp(v['acc_gain_kd'])} pp ({p})"
    if claim == "rcd_matches_kd":
        share = v["rcd_fraction_of_kd_gain"]
        share_text = "--" if is_missing(share) else f"{100 * share:.0f}%"
        return f"{answer}: {share_text} of KD's gain ({p})"
    return f"{answer} ({p})"


VERDICT_COLUMNS = [
    "setup",
    "seeds",
    CLAIM_NAMES["transfer_kd_vs_nokd"],
    CLAIM_NAMES["transfer_kd_vs_rcd"],
    CLAIM_NAMES["kd_accuracy_gain"],
    "RCD accuracy gain",
    CLAIM_NAMES["rcd_matches_kd"],
    CLAIM_NAMES["asymmetric_negative"],
    "errors vs correct gain (pp)",
]


def verdicts_table(verdicts: pd.DataFrame, setup_info: pd.DataFrame) -> pd.DataFrame:
    """The verdicts (verdicts.verdicts) as a table a reader can scan: one row per setup (display
    label), each claim as yes / no with its BY-adjusted p-value (or why it is undecided), the
    accuracy gains over the control in percentage points, and the median agreement gains on the
    teacher's incorrect vs correct samples."""
    labels = setup_labels(setup_info)
    rows = []
    for setup in setup_order(verdicts, setup_info):
        v = verdicts[verdicts["setup"] == setup].iloc[0]
        rows.append(
            {
                "setup": labels.get(setup, setup),
                "seeds": int(v["n_seeds"]),
                CLAIM_NAMES["transfer_kd_vs_nokd"]: claim_cell(v, "transfer_kd_vs_nokd"),
                CLAIM_NAMES["transfer_kd_vs_rcd"]: claim_cell(v, "transfer_kd_vs_rcd"),
                CLAIM_NAMES["kd_accuracy_gain"]: claim_cell(v, "kd_accuracy_gain"),
                "RCD accuracy gain": "--"
                if is_missing(v["acc_gain_rcd"])
                else f"{fmt_pp(v['acc_gain_rcd'])} pp (p_adj {fmt_p(v['p_adj_acc_rcd'])})",
                CLAIM_NAMES["rcd_matches_kd"]: claim_cell(v, "rcd_matches_kd"),
                CLAIM_NAMES["asymmetric_negative"]: claim_cell(v, "asymmetric_negative"),
                "errors vs correct gain (pp)": "--"
                if is_missing(v["gain_incorrect"])
                else f"{fmt_pp(v['gain_incorrect'])} vs {fmt_pp(v['gain_correct'])}",
            }
        )
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


ROBUSTNESS_COLUMNS = ["sweep", "axis", "value", *CLAIM_NAMES.values()]
SUMMARY_VALUE = "summary"  # the `value` of the tally row closing each axis ("summary (3 values)")


def count_text(n_yes: int, n_values: int, n_undecided: int) -> str:
    """A claim's tally along one axis: "yes at 2 of 3 values" (undecided values named apart)."""
    if n_undecided == n_values:
        return f"undecided at all {n_values} values"
    text = f"yes at {n_yes} of {n_values - n_undecided} values"
    return text + (f" ({n_undecided} more undecided)" if n_undecided else "")


def robustness_table(robust: pd.DataFrame, setup_info: pd.DataFrame) -> pd.DataFrame:
    """The robustness of the verdicts (verdicts.robustness): per sweep (its base setup's label)
    and axis, one row per value in axis order, the base marked "(base)", each claim as in the
    verdicts table; then a row per axis whose value is "summary (3 values)", tallying each
    claim ("yes at 2 of 3 values").
    The `summary` column (bool) marks those rows (write_tables passes it to the HTML only)."""
    if robust is None or robust.empty:
        return pd.DataFrame(columns=ROBUSTNESS_COLUMNS + ["summary"])
    titles = config_labels(setup_info)
    counts = robustness_counts(robust)
    rows = []
    for (sweep, axis), g in robust.groupby(["sweep", "axis"], sort=False):
        sweep_name, axis_title = titles.get(sweep, sweep), axis_name(axis)
        for _, v in g.sort_values("position").iterrows():
            rows.append(
                {
                    "sweep": sweep_name,
                    "axis": axis_title,
                    "value": axis_value_text(axis, v["value"]) + (" (base)" if v["is_base"] else ""),
                    **{CLAIM_NAMES[c]: claim_cell(v, c) for c in CLAIMS},
                    "summary": False,
                }
            )
        c = counts[(counts["sweep"] == sweep) & (counts["axis"] == axis)].set_index("claim")
        rows.append(
            {
                "sweep": sweep_name,
                "axis": axis_title,
                "value": f"{SUMMARY_VALUE} ({len(g)} values)",
                **{
                    CLAIM_NAMES[k]: count_text(c.loc[k, "n_yes"], c.loc[k, "n_values"], c.loc[k, "n_undecided"])
                    for k in CLAIMS
                },
                "summary": True,
            }
        )
    return pd.DataFrame(rows, columns=ROBUSTNESS_COLUMNS + ["summary"])


def captions(alpha: float) -> dict[str, str]:
    """table name -> caption (CSV readers get it from the LaTeX / HTML)."""
    return {
        "verdicts": (
            f"Per setup, the paper's claims as decided by the statistics ({VERDICTS} holds every number): "
            "functional transfer is agreement with the teacher significantly higher for KD than for the no-KD "
            "control (and than "
            "for the random control; one-sided paired Wilcoxon over seeds, Benjamini-Yekutieli-adjusted p <= "
            f"{alpha:g}); KD "
            "accuracy gain is a significant two-sided accuracy difference with a positive mean gain; RCD matches KD "
            "accuracy "
            f"(decided only when KD gains accuracy) when the random control's gain is significant and at least "
            f"{100 * RCD_MATCH_FRACTION:.0f}% of KD's; asymmetric, negative payoff is gain on the teacher's incorrect "
            "samples "
            "significantly greater than on its correct ones (the primary measure, analysis.asymmetry_primary). Gains "
            "are mean "
            "paired differences over seeds against the control in percentage points; errors vs correct gains are "
            "medians."
        ),
        "robustness": (
            "Robustness of the verdicts: for every setup with a sweep, each claim's verdict (as in the verdicts "
            "table) at every "
            "value of every swept axis, in axis order; the base setup appears on each of its axes with its value. "
            "The last row "
            "of each axis counts the values at which the claim holds; undecided values (not tested, or not "
            "applicable) are "
            "counted apart."
        ),
        "tests": (
            "Every test per setup, grouped by kind. Seed-level tests: paired Wilcoxon signed-rank over seeds, "
            "one-sided for "
            "transfer and asymmetry, two-sided for accuracy, with rank-biserial effect size r and the median paired "
            "difference "
            "(bootstrap 95% CI); Benjamini-Yekutieli adjusted p within each FDR family (* significant); the smallest "
            "adjusted "
            "p the number of seeds can reach. Tests of other kinds (such as per-sample tests) are their own "
            "families; their "
            "note says what they condition on."
        ),
        "summary": (
            "Per setup and condition: mean and standard deviation over seeds of accuracy and functional similarity "
            "to the "
            "teacher (test split)."
        ),
    }


def write_tables(
    outputs, metrics: pd.DataFrame, tests: pd.DataFrame, verdicts: pd.DataFrame, setup_info: pd.DataFrame, alpha: float
) -> dict[str, pd.DataFrame]:
    """Every table named in `outputs` (a mapping with, per table, keys `<name>` (CSV),
    `<name>_tex` and `<name>_html`; the rule's output), from the analysis tables. Returns the
    frames written."""
    stale = [c for claim in CLAIMS for c in (claim, f"{claim}_note") if c not in verdicts.columns]
    if stale:
        raise ValueError(
            f"the verdicts table lacks the columns {', '.join(stale)}: it was written by an older kdtransfer. "
            f"Re-run the statistics: snakemake --forcerun {STATISTICS_RULE}"
        )
    keys = set(outputs.keys())
    frames = {}
    if "verdicts" in keys:
        frames["verdicts"] = (verdicts_table(verdicts, setup_info), None)
    if "robustness" in keys:
        robust = robustness_table(robustness(verdicts, setup_info, student_sizes(metrics)), setup_info)
        frames["robustness"] = (robust.drop(columns="summary"), robust["summary"])
    if "tests" in keys:
        frames["tests"] = (tests_table(tests, setup_info, alpha=alpha), None)
    if "summary" in keys:
        frames["summary"] = (summary_table(metrics, setup_info), None)
    text = captions(alpha)
    for name, (df, summary_rows) in frames.items():
        write_table(
            df,
            outputs[name],
            outputs[f"{name}_tex"],
            caption=text[name],
            label=f"tab:{name}",
            html_path=outputs[f"{name}_html"] if f"{name}_html" in keys else None,
            title=report_items.TABLES[name][1],
            summary_rows=summary_rows,
        )
    return {name: df for name, (df, _) in frames.items()}
