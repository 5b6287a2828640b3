import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run Snakemake in `workdir` (a copy of the workflow), returning the finished process."""
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow (not results/), so tests never touch the checkout's runs."""
    for name in ("Snakefile", "config.yaml", "workflow", "profiles", "envs", "experiments"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    shutil.copytree(REPO / "tests" / "configs", dest / "tests" / "configs")
    return dest


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path)


def planned(config_path):
    """The plan of a config file, as the Snakefile makes it (validated, defaults filled)."""
    import yaml

    from kdtransfer.plan.config import validate_config
    from kdtransfer.plan.runs import Plan

    config = yaml.safe_load(Path(config_path).read_text())
    return Plan(validate_config(config, str(SCHEMA)))


def plan_of(config: dict):
    """The Plan of a config given as a dict (validated, the schema's defaults filled in)."""
    from kdtransfer.plan.config import validate_config
    from kdtransfer.plan.runs import Plan

    return Plan(validate_config(config, str(SCHEMA)))


def training_jobs(plan) -> dict[str, int]:
    """The training jobs (packs) of a Plan by rule name, as `snakemake -n` counts them."""
    from kdtransfer import paths
    from kdtransfer.catalog import REFERENCE_CONDITIONS

    def rule(pack):
        kind = paths.TRAIN_REFERENCE_RULE if pack.condition in REFERENCE_CONDITIONS else paths.TRAIN_DISTILLED_RULE
        return paths.pack_rule_name(kind, pack.block.label)

    return dict(Counter(rule(pack) for pack in plan.packs))


def run_params(
    condition: str,
    *,
    model: dict,
    recipe: dict,
    kd: dict | None = None,
    rcd: dict | None = None,
    teacher: dict | None = None,
    seed: int = 0,
    **training,
) -> dict:
    """A run's params as the plan makes them (Plan.run_spec), for a config of one setup: the
    values a test names, the schema's defaults for every other (tests build no partial specs).
    `teacher` is the teacher's model entry (default: `model`); `training` sets training flags."""
    from kdtransfer.plan.config import validate_config
    from kdtransfer.plan.runs import Plan

    setup = {
        "dataset": "data",
        "teacher": "teacher",
        "student": "student",
        "recipe": "recipe",
        "kd": kd or {},
        "rcd": rcd or {},
    }
    dataset = {"loader": loader_read_by(model["arch"])}
    config = {
        "seeds": [seed],
        "conditions": ["kd", "rcd", "nokd", "independent"],
        "datasets": {"data": dataset},
        "models": {"student": model, "teacher": teacher or model},
        "recipes": {"recipe": recipe},
        "setups": {"s": setup},
        "training": training,
    }
    plan = Plan(validate_config(config, str(SCHEMA)))
    return plan.run_spec(condition, plan.run_key(condition, "s"), seed)


def loader_read_by(arch: str) -> str:
    """A built-in loader whose samples `arch` reads (the config's input check needs one; the
    tests train on arrays of their own)."""
    from kdtransfer.catalog import ARCHITECTURES

    architecture = ARCHITECTURES.get(arch)
    if architecture is None:
        return "digits"
    if "vocab" in architecture.inputs:
        return "names_csv"
    return {3: "cifar10", 2: "mnist1d"}.get(architecture.rank, "digits")


def run_spec(condition: str, **settings):
    """The RunSpec of run_params(condition, **settings)."""
    from kdtransfer.spec import RunSpec

    return RunSpec.from_params(run_params(condition, **settings))


def train_into(out: Path, spec, data, **extra) -> dict:
    """Train `spec` in this process (training.job.train_and_save) with its files in `out`:
    model.pt, p.parquet (test predictions), h.parquet and its checkpoints, saved every epoch.
    `extra`: train_and_save's other keywords (teacher_weights, teacher_model, ...)."""
    from kdtransfer.training.job import train_and_save

    return train_and_save(
        spec,
        data,
        weights_out=str(out / "model.pt"),
        predictions_out={"test": str(out / "p.parquet")},
        history_out=str(out / "h.parquet"),
        checkpoint_every=1,
        **extra,
    )


def run_dir(plan, condition: str, setup: str, seed: int) -> str:
    """results/runs/<run key>/seed<seed> of `condition` in `setup` (run keys end in a digest)."""
    return f"results/runs/{plan.run_key(condition, setup)}/seed{seed}"


def _analysis_defaults() -> dict:
    import yaml

    section = yaml.safe_load(SCHEMA.read_text())["properties"]["analysis"]["properties"]
    return {key: prop["default"] for key, prop in section.items()}


def setup_test_settings(**overrides) -> dict:
    """stats.setup_tests' analysis keywords at the schema's defaults (the analysis functions have
    none of their own), with `overrides`."""
    a = _analysis_defaults()
    return {
        "alpha": a["alpha"],
        "fdr_family": a["fdr_family"],
        "asymmetry_primary": a["asymmetry_primary"],
        "n_bootstrap": a["bootstrap"],
        **overrides,
    }


def per_sample_settings(**overrides) -> dict:
    """persample.per_sample_tests' analysis keywords at the schema's defaults, with `overrides`."""
    a = _analysis_defaults()
    return {"alpha": a["alpha"], "fdr_family": a["fdr_family"], **overrides}


def planned_jobs(stdout: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job in a `snakemake -n` listing."""
    jobs, rule = [], None
    for line in stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            jobs.append((rule, {}))
            continue
        m = re.match(r"^wildcards: (.*)$", line.strip())
        if m and jobs:
            jobs[-1] = (jobs[-1][0], dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
    return jobs


def counts(stdout: str) -> Counter:
    return Counter(rule for rule, _ in planned_jobs(stdout))
