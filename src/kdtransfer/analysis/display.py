"""How results are shown, defined once for figures, tables and the console: display names of
conditions, claims and sweep axes, setup labels and order, number formats.

Nothing here decides anything: which claims hold is `verdicts.verdicts`' job; this module only
names and formats what it decided.
"""

from __future__ import annotations

import math

import pandas as pd

from kdtransfer.catalog import NUMERIC_AXES, SWEEP_VALUE_COLUMNS, sweep_point_label

# condition -> what a reader sees
CONDITION_NAMES = {
    "teacher": "teacher",
    "teacher_other_seed": "teacher, other seed",
    "nokd": "control (no KD)",
    "rcd": "random control",
    "kd": "KD",
    "independent": "independent",
}

# verdict flag column (verdicts.CLAIMS) -> column header of the verdict and robustness tables
CLAIM_NAMES = {
    "transfer_kd_vs_nokd": "transfer: kd > nokd",
    "transfer_kd_vs_rcd": "transfer: kd > rcd",
    "kd_accuracy_gain": "KD accuracy gain",
    "rcd_matches_kd": "RCD matches KD accuracy",
    "asymmetric_negative": "asymmetric, negative payoff",
}
# ... and where space is short (the console summary)
CLAIM_SHORT_NAMES = {
    "transfer_kd_vs_nokd": "transfer>nokd",
    "transfer_kd_vs_rcd": "transfer>rcd",
    "kd_accuracy_gain": "KD acc. gain",
    "rcd_matches_kd": "RCD matches KD",
    "asymmetric_negative": "asym. negative",
}

# sweep axis -> its title (the value of a setup on an axis: catalog.SWEEP_VALUE_COLUMNS)
SWEEP_AXIS_NAMES = {
    "temperature": "temperature T",
    "alpha": "KD weight α",
    "model": "model (teacher = student)",
    "student": "student",
    "recipe": "recipe",
}


def axis_value_text(axis: str, value) -> str:
    """The bare value along an axis (tick labels, table cells): "4", "0.5", "mlp_small"."""
    if axis in NUMERIC_AXES:
        return f"{float(value):g}"
    return str(value)


def _text(value) -> str:
    return value if isinstance(value, str) and value else ""


def sweep_axes_of(row) -> list[str]:
    """The sweep axes a setup_info row is a point of (its `sweep_params`), known axes only."""
    params = _text(row.get("sweep_params")) if hasattr(row, "get") else ""
    return [p for p in params.split(",") if p in SWEEP_VALUE_COLUMNS]


def config_labels(setup_info: pd.DataFrame | None) -> dict:
    """setup -> its label as the config gives it (a sweep is titled by its base's plain label)."""
    if setup_info is None or len(setup_info) == 0:
        return {}
    return {row["setup"]: _text(row.get("label")) or str(row["setup"]) for _, row in setup_info.iterrows()}


def axis_name(axis: str) -> str:
    return SWEEP_AXIS_NAMES.get(axis, axis)


def setup_labels(setup_info: pd.DataFrame | None) -> dict:
    """setup -> display label. The base setup of a sweep is labelled with its value on each of
    its axes, like its variants are ("Digits / MLP (T=4, mlp)" beside "Digits / MLP (T=2)"), so
    no point of a sweep is left unlabelled."""
    if setup_info is None or len(setup_info) == 0:
        return {}
    labels = {}
    for _, row in setup_info.iterrows():
        label = _text(row.get("label")) or str(row["setup"])
        if _text(row.get("sweep")) == row["setup"]:
            values = [
                sweep_point_label(axis, row[SWEEP_VALUE_COLUMNS[axis]])
                for axis in sweep_axes_of(row)
                if SWEEP_VALUE_COLUMNS[axis] in row and pd.notna(row[SWEEP_VALUE_COLUMNS[axis]])
            ]
            if values:
                label = f"{label} ({', '.join(values)})"
        labels[row["setup"]] = label
    return labels


def setup_info_frame(rows: list[dict]) -> pd.DataFrame:
    """The setup table (kdtransfer.plan.runs.Plan.setup_table, the rules' `setups` param) as the
    DataFrame figures and tables take."""
    return pd.DataFrame(rows)


def setup_order(frame: pd.DataFrame, setup_info: pd.DataFrame | None) -> list:
    """Setups present in `frame`, in setup_info (config) order first, then any others."""
    present = list(pd.unique(frame["setup"])) if len(frame) else []
    known = list(setup_info["setup"]) if setup_info is not None and len(setup_info) else []
    order = [s for s in known if s in present]
    return order + [s for s in present if s not in order]


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def fmt_p(p) -> str:
    """A p-value: 3 decimals, scientific below 0.001, "--" when missing."""
    if is_missing(p):
        return "--"
    p = float(p)
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def fmt_p_brief(p) -> str:
    """A p-value in running text (the verdict sentences): 3 significant digits, "n/a" when missing."""
    return "n/a" if is_missing(p) else f"{float(p):.3g}"


def fmt_pp(x, sign: bool = True) -> str:
    """Percentage points, 2 decimals, signed by default."""
    if is_missing(x):
        return "--"
    return f"{float(x):+.2f}" if sign else f"{float(x):.2f}"


def fmt_num(x, decimals: int = 3) -> str:
    return "--" if is_missing(x) else f"{float(x):.{decimals}f}"
