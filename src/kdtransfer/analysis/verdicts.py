"""The study's answer, decided: one row per setup with the paper's claims as flags
(verdicts.parquet), from the paired tests (kdtransfer.analysis.stats) and the metrics; and how
each verdict holds along every sweep (robustness). Figures, tables and the console render these
columns and decide nothing themselves.
"""

from __future__ import annotations

import math

import pandas as pd

from kdtransfer.analysis.display import fmt_p_brief, fmt_pp
from kdtransfer.analysis.stats import asymmetry_gains, paired_values
from kdtransfer.catalog import NUMERIC_AXES, SIZE_SWEEPS, SWEEP_VALUE_COLUMNS

# --------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------

# The paper's claims, as verdict flag columns, each with the BY-adjusted p-value it rests on.
# A flag is True, False, or NA (pandas' nullable boolean) when the claim could not be decided:
# `<claim>_note` then says why (a condition not run, too few seeds, nothing to match).
CLAIMS = {
    "transfer_kd_vs_nokd": "p_adj_transfer_kd_vs_nokd",
    "transfer_kd_vs_rcd": "p_adj_transfer_kd_vs_rcd",
    "kd_accuracy_gain": "p_adj_acc_kd",
    "rcd_matches_kd": "p_adj_acc_rcd",
    "asymmetric_negative": "p_adj_asymmetry",
}
# Claim 2 says noise gives "much of" KD's accuracy gain: we read it as at least half of it.
RCD_MATCH_FRACTION = 0.5


def _row(tests: pd.DataFrame, setup, test_id: str):
    r = tests[(tests["setup"] == setup) & (tests["test"] == test_id)]
    return None if r.empty else r.iloc[0]


def _decide(test_row, missing: str) -> tuple:
    """(significant: True/False/None, adjusted p, note) of one test row, as the tests decided it."""
    if test_row is None:
        return None, math.nan, f"not tested: {missing}"
    p = test_row["p_adjusted"]
    if pd.isna(p):
        return None, math.nan, "not tested: " + (str(test_row.get("note") or "") or "no adjusted p-value")
    return bool(test_row["significant"]), float(p), ""


def verdicts(tests: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per setup deciding the paper's claims (CLAIMS), with the numbers behind them.

    Claim flags (nullable boolean; NA = undecided, `<claim>_note` says why):
    - transfer_kd_vs_nokd / transfer_kd_vs_rcd: agreement with the teacher, kd > control,
      one-sided Wilcoxon, significant (the tests' `significant`: BY-adjusted p <= alpha);
    - kd_accuracy_gain: KD's accuracy differs from nokd's (two-sided, significant) and the
      mean paired gain is positive;
    - rcd_matches_kd: only decided when KD has that gain: the random control's accuracy gain
      is significant and at least RCD_MATCH_FRACTION of KD's;
    - asymmetric_negative: the primary asymmetry test (gain_incorrect > gain_correct)
      significant.
    Numbers: n_seeds, p_adj_* (CLAIMS), acc_gain_kd / acc_gain_rcd (mean over paired seeds of
    the accuracy difference to nokd, percentage points), rcd_fraction_of_kd_gain
    (acc_gain_rcd / acc_gain_kd; NaN unless the KD gain is positive), acc_kd_significant /
    acc_rcd_significant (the two-sided accuracy tests alone), gain_incorrect / gain_correct
    (median raw agreement gains over nokd, percentage points), and one sentence per claim
    group in `transfer`, `regulariser`, `asymmetry`.
    """
    out = []
    for setup in pd.unique(metrics["setup"]):
        m = metrics[metrics["setup"] == setup]
        conditions = set(m["condition"])
        n_seeds = int(m.loc[m["condition"] == "kd", "seed"].nunique())

        def decide(test_id, needs):
            missing = f"no {' / '.join(sorted(needs - conditions))} runs" if not needs <= conditions else "test missing"
            return _decide(_row(tests, setup, test_id), missing)

        t_nokd, p_nokd, note_nokd = decide("agreement: kd > nokd", {"kd", "nokd"})
        t_rcd, p_rcd, note_rcd = decide("agreement: kd > rcd", {"kd", "rcd"})
        s_acc_kd, p_acc_kd, note_acc_kd = decide("accuracy: kd vs nokd", {"kd", "nokd"})
        s_acc_rcd, p_acc_rcd, note_acc_rcd = decide("accuracy: rcd vs nokd", {"rcd", "nokd"})
        gain_kd = (
            paired_values(metrics, setup, "accuracy", "kd", "nokd")["diff"].mean() * 100
            if {"kd", "nokd"} <= conditions
            else math.nan
        )
        gain_rcd = (
            paired_values(metrics, setup, "accuracy", "rcd", "nokd")["diff"].mean() * 100
            if {"rcd", "nokd"} <= conditions
            else math.nan
        )
        # "How much of KD's gain does noise give?" only means something when KD gains accuracy.
        frac = gain_rcd / gain_kd if (pd.notna(gain_kd) and pd.notna(gain_rcd) and gain_kd > 0) else math.nan
        kd_gain = None if s_acc_kd is None else bool(s_acc_kd and gain_kd > 0)
        if kd_gain is None:
            rcd_matches, note_match = None, note_acc_kd
        elif not kd_gain:
            rcd_matches, note_match = None, "n/a: KD has no significant accuracy gain"
        elif s_acc_rcd is None:
            rcd_matches, note_match = None, note_acc_rcd
        else:
            rcd_matches, note_match = bool(s_acc_rcd and frac >= RCD_MATCH_FRACTION), ""

        asym_rows = tests[(tests["setup"] == setup) & (tests["kind"] == "asymmetry") & tests["primary"].astype(bool)]
        asym, p_asym, note_asym = _decide(asym_rows.iloc[0] if len(asym_rows) else None, "no kd / nokd runs")
        gains = (
            asymmetry_gains(metrics, setup)
            if {"kd", "nokd"} <= conditions
            else pd.DataFrame(columns=["gain_incorrect", "gain_correct"])
        )
        g_inc = float(gains["gain_incorrect"].median() * 100) if len(gains) else math.nan
        g_cor = float(gains["gain_correct"].median() * 100) if len(gains) else math.nan

        if t_nokd is None:
            transfer = note_nokd
        else:
            transfer = (
                "significant" if t_nokd else "no significant"
            ) + f" functional transfer vs nokd (p_adj {fmt_p_brief(p_nokd)})"
            if t_rcd is not None:
                transfer += (
                    "; vs rcd " + ("significant" if t_rcd else "not significant") + f" (p_adj {fmt_p_brief(p_rcd)})"
                )
        if math.isnan(gain_kd):
            regul = "not tested"
        else:
            regul = f"KD accuracy gain {fmt_pp(gain_kd)} pp (p_adj {fmt_p_brief(p_acc_kd)})"
            if not math.isnan(gain_rcd):
                regul += f"; random control {fmt_pp(gain_rcd)} pp (p_adj {fmt_p_brief(p_acc_rcd)})"
                if not math.isnan(frac):
                    regul += f" = {100 * frac:.0f}% of KD's gain"
                else:
                    regul += "; KD has no accuracy gain for the random control to match"
                if rcd_matches is not None:
                    regul += "; random control matches KD" if rcd_matches else "; random control does not match KD"
        gains_asym = (
            f"gain_incorrect {fmt_pp(g_inc)} pp vs gain_correct {fmt_pp(g_cor)} pp, p_adj {fmt_p_brief(p_asym)}"
        )
        if asym is None:
            asym_text = note_asym
        elif asym:
            asym_text = f"asymmetric and negative: errors copied more ({gains_asym})"
        else:
            asym_text = f"no significant asymmetry ({gains_asym})"
        out.append(
            {
                "setup": setup,
                "n_seeds": n_seeds,
                "transfer_kd_vs_nokd": t_nokd,
                "p_adj_transfer_kd_vs_nokd": p_nokd,
                "transfer_kd_vs_nokd_note": note_nokd,
                "transfer_kd_vs_rcd": t_rcd,
                "p_adj_transfer_kd_vs_rcd": p_rcd,
                "transfer_kd_vs_rcd_note": note_rcd,
                "kd_accuracy_gain": kd_gain,
                "kd_accuracy_gain_note": note_acc_kd,
                "rcd_matches_kd": rcd_matches,
                "rcd_matches_kd_note": note_match,
                "acc_gain_kd": gain_kd,
                "acc_gain_rcd": gain_rcd,
                "rcd_fraction_of_kd_gain": frac,
                "acc_kd_significant": bool(s_acc_kd),
                "p_adj_acc_kd": p_acc_kd,
                "acc_rcd_significant": bool(s_acc_rcd),
                "p_adj_acc_rcd": p_acc_rcd,
                "asymmetric_negative": asym,
                "p_adj_asymmetry": p_asym,
                "asymmetric_negative_note": note_asym,
                "gain_incorrect": g_inc,
                "gain_correct": g_cor,
                "transfer": transfer,
                "regulariser": regul,
                "asymmetry": asym_text,
            }
        )
    df = pd.DataFrame(out)
    for claim in CLAIMS:
        if claim in df:
            df[claim] = df[claim].astype("boolean")
    return df


# --------------------------------------------------------------------------------------------
# Robustness of the verdicts along each sweep
# --------------------------------------------------------------------------------------------


def sweep_points(setup_info: pd.DataFrame, sizes: dict | None = None) -> pd.DataFrame:
    """Every point of every sweep axis: columns sweep (the base setup), axis, value, setup,
    is_base, position (0, 1, ... along the axis).

    A setup is a point of axis A of sweep S when its `sweep` is S and A is in its
    `sweep_params`; the base setup is a point of every axis of its sweep, with its own value.
    Axes with fewer than two points are left out. Order: sweeps as in setup_info, axes in
    SWEEP_VALUE_COLUMNS order, and along an axis temperature and alpha ascending, model and
    student by the student's parameter count (`sizes`: setup -> count, when given), recipe as
    in setup_info (the base first).
    """
    columns = ["sweep", "axis", "value", "setup", "is_base", "position"]
    if setup_info is None or len(setup_info) == 0 or not {"sweep", "sweep_params"} <= set(setup_info.columns):
        return pd.DataFrame(columns=columns)
    info = setup_info.reset_index(drop=True)
    rows = []
    for sweep in pd.unique(info["sweep"].fillna("").astype(str)):
        if not sweep:
            continue
        members = info[info["sweep"].fillna("").astype(str) == sweep]
        for axis, column in SWEEP_VALUE_COLUMNS.items():
            on_axis = members[members["sweep_params"].fillna("").astype(str).str.split(",").map(lambda p: axis in p)]
            if len(on_axis) < 2 or column not in on_axis:
                continue
            points = [(r["setup"], r[column], r["setup"] == sweep, i) for i, (_, r) in enumerate(on_axis.iterrows())]
            if axis in NUMERIC_AXES:
                points.sort(key=lambda p: float(p[1]))
            elif axis in SIZE_SWEEPS and sizes:
                points.sort(key=lambda p: (sizes.get(p[0], math.inf), p[3]))
            for position, (setup, value, is_base, _) in enumerate(points):
                rows.append(
                    {
                        "sweep": sweep,
                        "axis": axis,
                        "value": value,
                        "setup": setup,
                        "is_base": bool(is_base),
                        "position": position,
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def robustness(verdicts: pd.DataFrame, setup_info: pd.DataFrame, sizes: dict | None = None) -> pd.DataFrame:
    """Each claim's verdict at every point of every sweep (sweep_points joined with the
    verdicts): one row per (sweep, axis, value), in axis order, every verdict column."""
    points = sweep_points(setup_info, sizes)
    if points.empty:
        return points.reindex(columns=list(points.columns) + [c for c in verdicts.columns if c != "setup"])
    return points.merge(verdicts, on="setup", how="inner", sort=False)


def robustness_counts(robust: pd.DataFrame) -> pd.DataFrame:
    """Per sweep, axis and claim: n_values (points on the axis), n_yes and n_no (points where
    the claim holds / does not), n_undecided (NA: not tested or not applicable)."""
    rows = []
    for (sweep, axis), g in robust.groupby(["sweep", "axis"], sort=False):
        for claim in CLAIMS:
            flags = g[claim].astype("boolean")
            rows.append(
                {
                    "sweep": sweep,
                    "axis": axis,
                    "claim": claim,
                    "n_values": len(g),
                    "n_yes": int((flags == True).sum()),  # noqa: E712
                    "n_no": int((flags == False).sum()),  # noqa: E712
                    "n_undecided": int(flags.isna().sum()),
                }
            )
    return pd.DataFrame(rows, columns=["sweep", "axis", "claim", "n_values", "n_yes", "n_no", "n_undecided"])


def student_sizes(metrics: pd.DataFrame) -> dict:
    """setup -> parameter count of its kd students (median over seeds), from the metrics."""
    if "num_parameters" not in metrics:
        return {}
    return metrics[metrics["condition"] == "kd"].groupby("setup")["num_parameters"].median().dropna().to_dict()
