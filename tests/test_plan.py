"""The planner: sweeps expand into setups, shared runs are planned once, specs hold exactly
what a run depends on."""

import copy

import pytest
import yaml

from conftest import REPO
from kdtransfer.config import ConfigError, validate_config
from kdtransfer.plan import Plan

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
BASE = {
    "seeds": 2,
    "datasets": {"digits": {"loader": "digits"}},
    "models": {"small": {"arch": "mlp", "options": {"hidden": [8]}}, "mid": {"arch": "mlp", "options": {"hidden": [32]}},
               "big": {"arch": "mlp", "options": {"hidden": [128]}}},
    "recipes": {"r": {"lr": 0.1, "epochs": 1, "batch_size": 32}},
    "setups": {"s": {"dataset": "digits", "teacher": "mid", "recipe": "r"}},
}


def plan_of(**setup) -> Plan:
    cfg = copy.deepcopy(BASE)
    cfg["setups"]["s"].update(setup)
    return Plan(validate_config(cfg, SCHEMA))


def keys(plan: Plan, condition: str) -> set[str]:
    return {r.key for r in plan.runs if r.condition == condition}


def test_self_distillation_size_sweep_trains_one_teacher_and_control_per_size():
    plan = plan_of(sweep={"model": ["small", "mid", "big"]})
    assert set(plan.setups) == {"s", "s_small", "s_big"}  # "mid" is the base setup itself
    assert plan.setups["s_small"]["teacher"] == plan.setups["s_small"]["student"] == "small"
    assert keys(plan, "teacher") == {f"teacher/digits/{m}/r" for m in ("small", "mid", "big")}
    assert keys(plan, "nokd") == {f"nokd/digits/{m}/r" for m in ("small", "mid", "big")}
    assert plan.setups["s"]["sweep_params"] == ["model"] and plan.setups["s_big"]["sweep_group"] == "s"
    assert plan.teacher_run_key("kd", "kd/s_big") == "teacher/digits/big/r"


def test_standard_distillation_student_sweep_shares_the_teacher():
    plan = plan_of(student="small", sweep={"student": ["small", "big"]})
    assert set(plan.setups) == {"s", "s_to_big"}
    assert keys(plan, "teacher") == {"teacher/digits/mid/r"}
    assert keys(plan, "nokd") == {"nokd/digits/small/r", "nokd/digits/big/r"}
    spec = plan.run_spec("kd", "kd/s_to_big", 1)
    assert spec["model"]["options"]["hidden"] == [128] and spec["seed"] == 1


def test_temperature_and_alpha_sweeps_reuse_teachers_and_controls():
    plan = plan_of(sweep={"temperature": [1, 4, 8], "alpha": [0.5, 0.9]})
    assert set(plan.setups) == {"s", "s_T1", "s_T8", "s_a0p5"}
    assert len(keys(plan, "teacher")) == 1 and len(keys(plan, "nokd")) == 1 and len(keys(plan, "kd")) == 4
    assert plan.run_spec("kd", "kd/s_a0p5", 0)["kd"]["alpha"] == 0.5
    assert plan.setups["s"]["sweep_params"] == ["temperature", "alpha"] and plan.setups["s_T8"]["sweep_params"] == ["temperature"]
    rows = {r["setup"]: r for r in plan.setup_table()}
    assert rows["s"]["sweep_params"] == "temperature,alpha" and rows["s_T1"]["label"] == "s (T=1)"


def test_specs_hold_what_a_run_depends_on_and_nothing_else():
    plan = plan_of(kd={"variant": "hint", "layers": ["features.1"], "feature_weight": 2.0}, rcd={"noise": "gaussian"})
    nokd, kd, rcd = (plan.run_spec(c, k, 0) for c, k in (("nokd", "nokd/digits/mid/r"), ("kd", "kd/s"), ("rcd", "rcd/s")))
    assert "kd" not in nokd and "rcd" not in nokd and "checkpoint_every" not in nokd
    assert kd["kd"] == {"alpha": 0.9, "temperature": 4, "variant": "hint", "feature_weight": 2.0,
                        "layers": ["features.1"], "teacher_layers": ["features.1"]}
    assert rcd["rcd"] == {"noise": "gaussian", "resample": "step"} and "rcd" not in kd
    # rcd of a feature variant needs the teacher's architecture (noise map shapes), not its weights.
    assert plan.teacher_model("rcd", "rcd/s") == {"arch": "mlp", "options": {"hidden": [32]}}
    assert plan.teacher_run_key("rcd", "rcd/s") is None and plan.teacher_run_key("kd", "kd/s") == "teacher/digits/mid/r"
    logit = plan_of()
    assert logit.teacher_model("rcd", "rcd/s") is None
    assert logit.run_spec("kd", "kd/s", 0)["kd"]["layers"] == []


def test_a_sweep_that_names_an_existing_setup_is_a_config_error():
    cfg = copy.deepcopy(BASE)
    cfg["setups"]["s"]["sweep"] = {"temperature": [2]}
    cfg["setups"]["s_T2"] = {"dataset": "digits", "teacher": "mid", "recipe": "r"}
    with pytest.raises(ConfigError, match="sweep of setup 's' makes a setup named 's_T2', which exists already"):
        validate_config(cfg, SCHEMA)


def test_unknown_run_key_is_named():
    with pytest.raises(KeyError, match="no setup of this config produces a kd run with key 'kd/nope'"):
        plan_of().run_spec("kd", "kd/nope", 0)


def test_default_config_plans_160_distinct_runs():
    cfg = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), SCHEMA)
    plan = Plan(cfg)
    assert len(plan.runs) == len(set(plan.runs)) == 160
