"""From a validated config to the runs to train: what each run depends on names its path.

A teacher depends on (dataset, teacher model, recipe, seed); a `nokd` or `independent`
control on (dataset, student model, recipe, seed); `kd` and `rcd` students on their setup. So
a temperature sweep reuses one set of teachers and controls, and Snakemake trains each
distinct model once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    condition: str
    key: str  # path below results/runs/, e.g. "teacher/digits/mlp/digits" or "kd/digits_mlp"
    seed: int

    @property
    def directory(self) -> str:
        return f"results/runs/{self.key}/seed{self.seed}"


def canonical(obj):
    """Dicts with sorted keys, recursively. Snakemake compares params by their repr, so a
    config whose keys are merely reordered must give identical params (no spurious reruns)."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def _temperature_tag(value: float) -> str:
    return ("T" + f"{value:g}").replace(".", "p").replace("-", "m")


def expand_setups(config: dict) -> dict[str, dict]:
    """Setups with sweeps expanded; each gains `label`, `student` and `sweep_group`."""
    out: dict[str, dict] = {}
    for name, setup in config["setups"].items():
        base = copy.deepcopy(setup)
        base.setdefault("label", name)
        base.setdefault("student", base["teacher"])
        sweep = base.pop("sweep", {}) or {}
        base["sweep_group"] = name if sweep else ""
        out[name] = base
        for value in sweep.get("temperature", []):
            if value == base["kd"]["temperature"]:
                continue  # the base setup already is this point of the sweep
            variant = copy.deepcopy(base)
            variant["kd"]["temperature"] = value
            variant["label"] = f"{base['label']} (T={value:g})"
            out[f"{name}_{_temperature_tag(value)}"] = variant
    return out


def seeds_of(config: dict) -> list[int]:
    seeds = config["seeds"]
    return list(range(seeds)) if isinstance(seeds, int) else sorted(seeds)


def teacher_key(setup: dict) -> str:
    return f"teacher/{setup['dataset']}/{setup['teacher']}/{setup['recipe']}"


def control_key(condition: str, setup: dict) -> str:
    return f"{condition}/{setup['dataset']}/{setup['student']}/{setup['recipe']}"


def run_key(condition: str, setup_name: str, setup: dict) -> str:
    if condition == "teacher":
        return teacher_key(setup)
    if condition in ("nokd", "independent"):
        return control_key(condition, setup)
    return f"{condition}/{setup_name}"


def setup_runs(config: dict, setup_name: str, setup: dict) -> dict[str, list[Run]]:
    """Runs a setup's analysis needs, by condition (teacher first)."""
    seeds = seeds_of(config)
    conditions = ["teacher", *config["conditions"]]
    return {c: [Run(c, run_key(c, setup_name, setup), s) for s in seeds] for c in conditions}


def all_runs(config: dict) -> list[Run]:
    """Every distinct run of the experiment, each once."""
    seen: dict[tuple, Run] = {}
    for name, setup in expand_setups(config).items():
        for runs in setup_runs(config, name, setup).values():
            for run in runs:
                seen.setdefault((run.key, run.seed), run)
    return list(seen.values())


def run_spec(config: dict, condition: str, key: str, seed: int) -> dict:
    """Everything that determines a run's result, and nothing else (the rule's params).

    A KD temperature is in a `kd` run's spec but not in its `nokd` control's, so changing it
    re-runs only what it changes.
    """
    setups = expand_setups(config)
    setup = _setup_for_key(setups, condition, key)
    model_name = setup["teacher"] if condition == "teacher" else setup["student"]
    spec = {
        "run_key": key,
        "condition": condition,
        "seed": int(seed),
        "model": copy.deepcopy(config["models"][model_name]),
        "recipe": copy.deepcopy(config["recipes"][setup["recipe"]]),
        "checkpoint_every": config["training"]["checkpoint_every"],
        "deterministic": config["training"]["deterministic"],
    }
    if condition in ("kd", "rcd"):
        spec["kd"] = {k: setup["kd"][k] for k in ("alpha", "temperature")}
    if condition == "rcd":
        spec["rcd"] = dict(setup["rcd"])
    return canonical(spec)


def _setup_for_key(setups: dict, condition: str, key: str) -> dict:
    for name, setup in setups.items():
        if run_key(condition, name, setup) == key:
            return setup
    raise KeyError(f"no setup of this config produces a {condition} run with key {key!r}")


def teacher_of(config: dict, key: str) -> tuple[str, dict]:
    """For a kd run key: the teacher's run key and its model entry."""
    setups = expand_setups(config)
    setup = _setup_for_key(setups, "kd", key)
    return teacher_key(setup), canonical(config["models"][setup["teacher"]])


def dataset_of(config: dict, condition: str, key: str) -> str:
    return _setup_for_key(expand_setups(config), condition, key)["dataset"]


def setup_table(config: dict) -> list[dict]:
    """One row per setup for figures and tables (display names, sweep groups)."""
    rows = []
    for name, s in expand_setups(config).items():
        rows.append({
            "setup": name, "label": s["label"], "dataset": s["dataset"], "teacher": s["teacher"],
            "student": s["student"], "recipe": s["recipe"], "variant": s["kd"]["variant"],
            "alpha": s["kd"]["alpha"], "temperature": s["kd"]["temperature"], "sweep": s["sweep_group"],
        })
    return canonical(rows)


def setup_info_frame(rows: list[dict], dataset_modalities: dict[str, str] | None = None):
    """The setup table as a DataFrame with the columns figures and tables expect."""
    import numpy as np
    import pandas as pd

    df = pd.DataFrame(rows)
    df["modality"] = df["dataset"].map(dataset_modalities or {}).fillna("")
    if "scale" not in df:
        df["scale"] = np.nan
    return df
