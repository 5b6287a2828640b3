"""Sweeps into setups: each value on each axis of a setup's `sweep` adds one variant of it.

The base setup is kept and is a point of every axis of its sweep; a variant is named after its
base and value (`digits_mlp_T16`, `_a0p5`, `_mlp_small`, `_to_mlp_small`, `_digits_cosine`)
and labelled with the value (kdtransfer.catalog.sweep_point_label). A value equal to the base
setup's own adds nothing: the base already is that point.
"""

from __future__ import annotations

import copy

from kdtransfer.catalog import SWEEP_KEYS, SWEEP_VALUE_COLUMNS, sweep_point_label


def _number_tag(prefix: str, value: float) -> str:
    return (prefix + f"{value:g}").replace(".", "p").replace("-", "m")


def _variant(base: dict, key: str, value) -> tuple[str, dict]:
    """(name suffix, variant setup) of `base` with sweep `key` set to `value`."""
    variant = copy.deepcopy(base)
    if key == "temperature":
        variant["kd"]["temperature"] = value
        return _number_tag("T", value), variant
    if key == "alpha":
        variant["kd"]["alpha"] = value
        return _number_tag("a", value), variant
    if key == "model":  # self-distillation family: teacher and student are both `value`
        variant["teacher"] = variant["student"] = value
        return value, variant
    if key == "student":  # standard distillation family: one teacher, students of several sizes
        variant["student"] = value
        return f"to_{value}", variant
    if key == "recipe":  # the same setup under another training recipe (teachers and controls too)
        variant["recipe"] = value
        return value, variant
    raise ValueError(f"unknown sweep key {key!r}; valid: {', '.join(SWEEP_KEYS)}")


def setup_row(name: str, setup: dict) -> dict:
    """One row of the setup table (Plan.setup_table): what figures and tables show of a setup,
    its value on every sweep axis among them (catalog.SWEEP_VALUE_COLUMNS)."""
    return {
        "setup": name,
        "label": setup["label"],
        "dataset": setup["dataset"],
        "teacher": setup["teacher"],
        "student": setup["student"],
        "recipe": setup["recipe"],
        "variant": setup["kd"]["variant"],
        "alpha": setup["kd"]["alpha"],
        "temperature": setup["kd"]["temperature"],
        "sweep": setup["sweep_group"],
        "sweep_params": ",".join(setup["sweep_params"]),
    }


def expand_setups(config: dict) -> dict[str, dict]:
    """Setups with sweeps expanded. Each gains `label`, `student`, `sweep_group` (the base
    setup's name for every member of one of its sweeps, else "") and `sweep_params` (the sweep
    keys it is a point of: the base setup is a point of all of them)."""
    out: dict[str, dict] = {}
    for name, setup in config["setups"].items():
        base = copy.deepcopy(setup)
        base.setdefault("label", name)
        base.setdefault("student", base["teacher"])
        sweep = base.pop("sweep", {}) or {}
        base["sweep_group"] = name if sweep else ""
        base["sweep_params"] = [k for k in SWEEP_KEYS if k in sweep]
        out[name] = base
        base_values = setup_row(name, base)
        for key in base["sweep_params"]:
            for value in sweep[key]:
                if value == base_values[SWEEP_VALUE_COLUMNS[key]]:
                    continue  # the base setup already is this point of the sweep
                suffix, variant = _variant(base, key, value)
                variant["label"] = f"{base['label']} ({sweep_point_label(key, value)})"
                variant["sweep_params"] = [key]
                variant_name = f"{name}_{suffix}"
                if variant_name in out or variant_name in config["setups"]:
                    raise ValueError(
                        f"sweep of setup {name!r} makes a setup named {variant_name!r}, which exists already"
                    )
                out[variant_name] = variant
    return out
