"""The end of `make run`: a short verdict summary and where the report is, for the console.

    python -m kdtransfer.analysis.verdict_summary [--results results] [--report results/report.html]

Reads results/analysis/verdicts.parquet (verdicts.verdicts) and, when the config has a sweep,
results/tables/robustness.csv (its per-axis tallies). Prints one line per setup with each claim
answered yes / no (BY-adjusted p) or why it is undecided, then the robustness tallies, then the
paths to open. Exits 1 with a one-line message when the verdicts are missing.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from kdtransfer import paths
from kdtransfer.analysis.display import CLAIM_NAMES, CLAIM_SHORT_NAMES, is_missing
from kdtransfer.analysis.tables import SUMMARY_VALUE, claim_cell
from kdtransfer.analysis.verdicts import CLAIMS


def _answer(v, claim: str) -> str:
    if is_missing(v[claim]):
        note = str(v.get(f"{claim}_note") or "")
        return "n/a" if note.startswith("n/a") else "not tested"
    return claim_cell(v, claim, p_label="")


def verdict_lines(verdicts: pd.DataFrame) -> list[str]:
    """A fixed-width table: setup, seeds, each claim as "yes (p_adj)" / "no (p_adj)" / "n/a" /
    "not tested"; the accuracy claims with the gain they rest on ("no: -3.84 pp (0.029)")."""
    header = ["setup", "seeds", *CLAIM_SHORT_NAMES.values()]
    rows = [
        [str(v["setup"]), str(int(v["n_seeds"])), *(_answer(v, c) for c in CLAIM_SHORT_NAMES)]
        for _, v in verdicts.iterrows()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]]


def _tally(cell: str) -> str:
    """ "yes at 2 of 3 values (1 more undecided)" -> "2/3 (+1 undecided)"."""
    found = re.match(r"yes at (\d+) of (\d+) values(?: \((\d+) more undecided\))?", str(cell))
    if not found:
        return "undecided" if str(cell).startswith("undecided") else str(cell)
    return f"{found[1]}/{found[2]}" + (f" (+{found[3]} undecided)" if found[3] else "")


def robustness_lines(robustness: pd.DataFrame) -> list[str]:
    """One line per sweep axis from the robustness table's summary rows: "Digits / MLP,
    temperature T: transfer>nokd 1/3 · transfer>rcd 0/3 · ..." (k/n: the claim holds at k of
    the n values where it is decided)."""
    if robustness is None or robustness.empty or "value" not in robustness:
        return []
    lines = []
    for _, r in robustness[robustness["value"].astype(str).str.startswith(SUMMARY_VALUE)].iterrows():
        tally = " · ".join(f"{CLAIM_SHORT_NAMES[c]} {_tally(r[CLAIM_NAMES[c]])}" for c in CLAIMS if CLAIM_NAMES[c] in r)
        lines.append(f"{r['sweep']}, {r['axis']}: {tally}")
    return lines


def summary_text(
    verdicts: pd.DataFrame, robustness: pd.DataFrame | None, report: str | Path, tables: str | Path
) -> str:
    parts = [
        "",
        "Verdicts (yes / no with the Benjamini-Yekutieli-adjusted p; details: " + f"{Path(tables) / 'verdicts.csv'}):",
        *("  " + line for line in verdict_lines(verdicts)),
    ]
    rob = robustness_lines(robustness)
    if rob:
        parts += [
            "",
            f"Robustness along the sweeps (k/n: values at which the claim holds; {Path(tables) / 'robustness.csv'}):",
            *("  " + line for line in rob),
        ]
    report = Path(report)
    parts += [
        "",
        f"Report: {report.resolve()}"
        if report.exists()
        else f"Report: {report} (not written yet: snakemake --report {report})",
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kdtransfer.analysis.verdict_summary", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--results", default=paths.RESULTS_DIR, help=f"the workflow's results directory (default: {paths.RESULTS_DIR})"
    )
    parser.add_argument("--report", default=None, help=f"the report's path (default: {paths.REPORT} below --results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    verdicts_path = paths.in_results(paths.VERDICTS, results)
    if not verdicts_path.exists():
        print(
            f"no verdicts at {verdicts_path}: run the workflow first (make run, or snakemake --cores N)",
            file=sys.stderr,
        )
        return 1
    robustness_path = paths.in_results(paths.TABLE.format(name="robustness", ext="csv"), results)
    robustness = pd.read_csv(robustness_path) if robustness_path.exists() else None
    print(
        summary_text(
            pd.read_parquet(verdicts_path),
            robustness,
            args.report or paths.in_results(paths.REPORT, results),
            robustness_path.parent,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
