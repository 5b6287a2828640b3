"""What the Snakemake report shows, in reading order: figure and table names, their report
categories (numbered, because the report sorts categories alphabetically) and the label each
item is listed under. Imports nothing heavy: the Snakefile reads it at parse time."""

from __future__ import annotations

from kdtransfer.catalog import SIZE_SWEEPS, SWEEP_KEYS

# name -> (category, label); the answer first, then the evidence behind it. Labels are short:
# the report's menu grows to fit them and takes the width from the figures. Within a
# category the report sorts by label: a table's label is a prefix of its figure's, so it comes first.
FIGURES = {
    "robustness": ("2. Robustness", "Verdicts along each sweep: effect sizes"),
    "agreement_by_condition": ("3. Functional transfer", "Agreement by condition"),
    "asymmetric_payoff": ("3. Functional transfer", "Asymmetric payoff"),
    "accuracy_by_condition": ("4. Regulariser", "Accuracy by condition"),
    "tests_overview": ("5. Significance", "Effect sizes of all tests"),
    "temperature": ("6. Sweeps", "Temperature sweep"),
    "scaling": ("6. Sweeps", "Transfer vs model size"),
}
TABLES = {
    "verdicts": ("1. Verdicts", "Verdicts per setup"),
    "robustness": ("2. Robustness", "Verdicts along each sweep"),
    "tests": ("5. Significance", "All paired tests"),
    "summary": ("7. Summary", "Mean ± sd per condition"),
}
# Drawn only when some sweep of the config has a value besides its base setup's, on these axes.
NEEDS_SWEEP = {
    "robustness": set(SWEEP_KEYS),
    "temperature": {"temperature"},
    "scaling": set(SIZE_SWEEPS),
}


def _present(items: dict, swept_keys) -> dict:
    return {
        name: item for name, item in items.items() if name not in NEEDS_SWEEP or NEEDS_SWEEP[name] & set(swept_keys)
    }


def figures(swept_keys) -> dict[str, tuple[str, str]]:
    """figure name -> (report category, label), for a config whose sweeps cover `swept_keys`."""
    return _present(FIGURES, swept_keys)


def tables(swept_keys) -> dict[str, tuple[str, str]]:
    """table name -> (report category, label), for a config whose sweeps cover `swept_keys`."""
    return _present(TABLES, swept_keys)
