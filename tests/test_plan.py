"""The planner: sweeps expand into setups, shared runs are planned once, specs hold exactly
what a run depends on."""

import copy
import re

import pytest
import yaml
from conftest import REPO

from kdtransfer.plan.config import ConfigError, validate_config
from kdtransfer.plan.runs import Plan

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
BASE = {
    "seeds": 2,
    "datasets": {"digits": {"loader": "digits"}},
    "models": {
        "small": {"arch": "mlp", "options": {"hidden": [8]}},
        "mid": {"arch": "mlp", "options": {"hidden": [32]}},
        "big": {"arch": "mlp", "options": {"hidden": [128]}},
    },
    "recipes": {"r": {"lr": 0.1, "epochs": 1, "batch_size": 32}},
    "setups": {"s": {"dataset": "digits", "teacher": "mid", "recipe": "r"}},
}


def plan_of(**setup) -> Plan:
    cfg = copy.deepcopy(BASE)
    cfg["setups"]["s"].update(setup)
    return Plan(validate_config(cfg, SCHEMA))


def keys(plan: Plan, condition: str) -> set[str]:
    """Run keys of a condition without their digests (test_run_keys_* check the digests)."""
    return {strip(r.key) for r in plan.runs if r.condition == condition}


def strip(key: str) -> str:
    name, digest = key.rsplit("-", 1)
    assert re.fullmatch(r"[0-9a-f]{8}", digest), key
    return name


def key(plan: Plan, condition: str, name: str) -> str:
    """The full run key whose readable part is `name`."""
    (match,) = [
        r.key for r in plan.runs if r.condition == condition and strip(r.key) == name and r.seed == plan.seeds[0]
    ]
    return match


def test_self_distillation_size_sweep_trains_one_teacher_and_control_per_size():
    plan = plan_of(sweep={"model": ["small", "mid", "big"]})
    assert set(plan.setups) == {"s", "s_small", "s_big"}  # "mid" is the base setup itself
    assert plan.setups["s_small"]["teacher"] == plan.setups["s_small"]["student"] == "small"
    assert keys(plan, "teacher") == {f"teacher/digits/{m}/r" for m in ("small", "mid", "big")}
    assert keys(plan, "nokd") == {f"nokd/digits/{m}/r" for m in ("small", "mid", "big")}
    assert plan.setups["s"]["sweep_params"] == ["model"] and plan.setups["s_big"]["sweep_group"] == "s"
    assert plan.teacher_run_key("kd", key(plan, "kd", "kd/s_big")) == key(plan, "teacher", "teacher/digits/big/r")


def test_standard_distillation_student_sweep_shares_the_teacher():
    plan = plan_of(student="small", sweep={"student": ["small", "big"]})
    assert set(plan.setups) == {"s", "s_to_big"}
    assert keys(plan, "teacher") == {"teacher/digits/mid/r"}
    assert keys(plan, "nokd") == {"nokd/digits/small/r", "nokd/digits/big/r"}
    spec = plan.run_spec("kd", key(plan, "kd", "kd/s_to_big"), 1)
    assert spec["model"]["options"]["hidden"] == [128] and spec["seed"] == 1


def test_temperature_and_alpha_sweeps_reuse_teachers_and_controls():
    plan = plan_of(sweep={"temperature": [1, 4, 8], "alpha": [0.5, 0.9]})
    assert set(plan.setups) == {"s", "s_T1", "s_T8", "s_a0p5"}
    assert len(keys(plan, "teacher")) == 1 and len(keys(plan, "nokd")) == 1 and len(keys(plan, "kd")) == 4
    assert plan.run_spec("kd", key(plan, "kd", "kd/s_a0p5"), 0)["kd"]["alpha"] == 0.5
    assert plan.setups["s"]["sweep_params"] == ["temperature", "alpha"] and plan.setups["s_T8"]["sweep_params"] == [
        "temperature"
    ]
    rows = {r["setup"]: r for r in plan.setup_table()}
    assert rows["s"]["sweep_params"] == "temperature,alpha" and rows["s_T1"]["label"] == "s (T=1)"


def test_specs_hold_what_a_run_depends_on_and_nothing_else():
    plan = plan_of(kd={"variant": "hint", "layers": ["features.1"], "feature_weight": 2.0}, rcd={"noise": "gaussian"})
    nokd, kd, rcd = (
        plan.run_spec(c, key(plan, c, k), 0)
        for c, k in (("nokd", "nokd/digits/mid/r"), ("kd", "kd/s"), ("rcd", "rcd/s"))
    )
    assert "kd" not in nokd and "rcd" not in nokd and "checkpoint_every" not in nokd
    assert kd["kd"] == {
        "alpha": 0.9,
        "temperature": 4,
        "variant": "hint",
        "feature_weight": 2.0,
        "layers": ["features.1"],
        "teacher_layers": ["features.1"],
    }
    assert rcd["rcd"] == {"noise": "gaussian", "resample": "step"} and "rcd" not in kd
    # rcd of a feature variant needs the teacher's architecture (noise map shapes), not its weights.
    assert plan.teacher_model("rcd", key(plan, "rcd", "rcd/s")) == {"arch": "mlp", "options": {"hidden": [32]}}
    assert plan.teacher_run_key("rcd", key(plan, "rcd", "rcd/s")) is None
    assert plan.teacher_run_key("kd", key(plan, "kd", "kd/s")) == key(plan, "teacher", "teacher/digits/mid/r")
    logit = plan_of()
    assert logit.teacher_model("rcd", key(logit, "rcd", "rcd/s")) is None
    assert logit.run_spec("kd", key(logit, "kd", "kd/s"), 0)["kd"]["layers"] == []


def test_a_sweep_that_names_an_existing_setup_is_a_config_error():
    cfg = copy.deepcopy(BASE)
    cfg["setups"]["s"]["sweep"] = {"temperature": [2]}
    cfg["setups"]["s_T2"] = {"dataset": "digits", "teacher": "mid", "recipe": "r"}
    with pytest.raises(ConfigError, match="sweep of setup 's' makes a setup named 's_T2', which exists already"):
        validate_config(cfg, SCHEMA)


def test_unknown_run_key_is_named():
    with pytest.raises(KeyError, match="no setup of this config produces a kd run with key 'kd/nope'"):
        plan_of().run_spec("kd", "kd/nope", 0)


def test_recipe_sweep_trains_teachers_and_controls_once_per_recipe_and_shares_the_rest():
    cfg = copy.deepcopy(BASE)
    cfg["recipes"]["r_cos"] = dict(cfg["recipes"]["r"], schedule="cosine")
    cfg["setups"]["s"]["sweep"] = {"temperature": [1, 4], "recipe": ["r", "r_cos"]}
    plan = Plan(validate_config(cfg, SCHEMA))
    assert set(plan.setups) == {"s", "s_T1", "s_r_cos"}
    assert keys(plan, "teacher") == {"teacher/digits/mid/r", "teacher/digits/mid/r_cos"}
    assert keys(plan, "nokd") == {"nokd/digits/mid/r", "nokd/digits/mid/r_cos"}
    # The temperature variant keeps sharing the base recipe's teacher and control.
    assert plan.run_key("teacher", "s_T1") == plan.run_key("teacher", "s") != plan.run_key("teacher", "s_r_cos")
    assert plan.run_key("nokd", "s_T1") == plan.run_key("nokd", "s")
    assert plan.run_spec("kd", plan.run_key("kd", "s_r_cos"), 0)["recipe"]["schedule"] == "cosine"
    assert plan.setups["s_r_cos"]["label"] == "s (recipe r_cos)" and plan.setups["s_r_cos"]["sweep_params"] == [
        "recipe"
    ]


def test_a_recipe_sweep_naming_an_unknown_recipe_is_a_config_error():
    cfg = copy.deepcopy(BASE)
    cfg["setups"]["s"]["sweep"] = {"recipe": ["r", "rr"]}
    with pytest.raises(ConfigError, match=r"setups.s.sweep.recipe names 'rr', which is not defined under `recipes`"):
        validate_config(cfg, SCHEMA)


def test_run_keys_are_shared_exactly_when_the_runs_are_the_same():
    # Two experiment files in one checkout: a name that means the same thing gives the same key
    # (the run is shared), a name that means something else gives another key (never overwritten).
    same = plan_of()
    assert same.run_key("teacher", "s") == plan_of().run_key("teacher", "s")
    reordered = copy.deepcopy(BASE)
    reordered["recipes"]["r"] = dict(reversed(list(reordered["recipes"]["r"].items())))
    assert Plan(validate_config(reordered, SCHEMA)).run_key("teacher", "s") == same.run_key("teacher", "s")
    other_data = copy.deepcopy(BASE)
    other_data["datasets"]["digits"]["options"] = {"test_fraction": 0.5}
    other = Plan(validate_config(other_data, SCHEMA))
    assert other.data_file("digits") != same.data_file("digits")
    assert all(other.run_key(c, "s") != same.run_key(c, "s") for c in other.conditions)


def test_a_changed_hyper_parameter_changes_exactly_the_keys_of_the_runs_it_changes():
    base = plan_of(kd={"temperature": 4})
    hotter = plan_of(kd={"temperature": 8})
    assert {c for c in base.conditions if base.run_key(c, "s") != hotter.run_key(c, "s")} == {"kd", "rcd"}
    # A kd student depends on its teacher: a wider teacher re-keys the teacher and the kd student,
    # not the control or the random control (a logit rcd never sees the teacher).
    standard = plan_of(student="small")
    cfg = copy.deepcopy(BASE)
    cfg["models"]["mid"]["options"]["hidden"] = [48]
    cfg["setups"]["s"]["student"] = "small"
    wider = Plan(validate_config(cfg, SCHEMA))
    assert {c for c in standard.conditions if standard.run_key(c, "s") != wider.run_key(c, "s")} == {"teacher", "kd"}


def test_default_config_plans_each_distinct_run_once():
    cfg = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), SCHEMA)
    plan = Plan(cfg)
    # 3 setups; digits_mlp sweeps T in {1, 4} and its recipe in {digits, digits_cosine}: 5
    # setups. Teachers and nokd: digits x 2 recipes, mnist1d, mnist_subset = 4 keys each; kd and
    # rcd: 5 keys each. 18 keys x 10 seeds.
    assert len(plan.runs) == 180
    by_key = {}
    for run in plan.runs:
        by_key.setdefault(run.key, []).append(run.seed)
    assert all(sorted(seeds) == list(range(10)) for seeds in by_key.values())
    # Distinct keys are distinct runs: no two keys train the same specification.
    specs = [
        repr({**plan.run_spec(run.condition, run.key, 0), "run_key": None})
        + plan.setup_for_key(run.condition, run.key)["dataset"]
        + str(plan.teacher_run_key(run.condition, run.key))
        for run in plan.runs
        if run.seed == 0
    ]
    assert len(specs) == len(set(specs)) == 18


@pytest.mark.parametrize("switch", ["bf16", "deterministic", "compile"])
def test_gpu_switches_are_part_of_every_runs_identity(switch):
    # They change results on CUDA, and the plan cannot know where a job will run: the schema
    # says that changing one retrains every run, on CPU too.
    cfg = copy.deepcopy(BASE)
    base = Plan(validate_config(copy.deepcopy(cfg), SCHEMA))
    cfg["training"] = {switch: not base.config["training"][switch]}
    flipped = Plan(validate_config(cfg, SCHEMA))
    assert all(flipped.run_key(c, "s") != base.run_key(c, "s") for c in base.conditions)
    schema = yaml.safe_load(open(SCHEMA))
    assert "retrain" in schema["properties"]["training"]["properties"][switch]["description"]


# ---- packs: how runs group into training jobs ---------------------------------------------------


def plan_with(seeds, pack_size=None) -> Plan:
    cfg = copy.deepcopy(BASE)
    cfg["seeds"] = seeds
    if pack_size is not None:
        cfg["training"] = {"pack_size": pack_size}
    return Plan(validate_config(cfg, SCHEMA))


def blocks(plan: Plan) -> list[tuple[str, tuple[int, ...]]]:
    return [(b.label, b.seeds) for b in plan.seed_blocks]


def test_packs_are_blocks_of_seed_values_that_adding_seeds_leaves_alone():
    assert blocks(plan_with(10)) == [("seeds0to9", tuple(range(10)))]  # the default pack_size, 10
    assert blocks(plan_with(20)) == [("seeds0to9", tuple(range(10))), ("seeds10to19", tuple(range(10, 20)))]
    assert blocks(plan_with(8)) == [("seeds0to9", tuple(range(8)))]  # fewer seeds: the same block, smaller
    assert blocks(plan_with(5, pack_size=2)) == [("seeds0to1", (0, 1)), ("seeds2to3", (2, 3)), ("seeds4to5", (4,))]
    assert blocks(plan_with([17, 3, 5], pack_size=4)) == [
        ("seeds0to3", (3,)),
        ("seeds4to7", (5,)),
        ("seeds16to19", (17,)),
    ]
    assert blocks(plan_with(3, pack_size=1)) == [("seed0", (0,)), ("seed1", (1,)), ("seed2", (2,))]


def test_a_pack_is_one_run_key_over_one_block_and_every_run_is_in_exactly_one():
    plan = plan_with(5, pack_size=2)
    assert len(plan.packs) == len({(r.condition, r.key) for r in plan.runs}) * 3
    in_packs = sorted((p.condition, p.key, s) for p in plan.packs for s in p.block.seeds)
    assert in_packs == sorted((r.condition, r.key, r.seed) for r in plan.runs)
    kd = next(p for p in plan.packs if p.condition == "kd")
    assert kd.name == f"{kd.key} seeds 0-1"


def test_pack_size_is_no_part_of_any_runs_identity():
    one, ten = plan_with(4, pack_size=1), plan_with(4)
    assert [(r.condition, r.key, r.seed) for r in one.runs] == [(r.condition, r.key, r.seed) for r in ten.runs]
    for r in ten.runs:
        assert one.run_spec(r.condition, r.key, r.seed) == ten.run_spec(r.condition, r.key, r.seed)
        # a pack's spec is every run's, less the seed
        assert ten.pack_spec(r.condition, r.key) == {
            k: v for k, v in ten.run_spec(r.condition, r.key, r.seed).items() if k != "seed"
        }


def test_pack_size_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="training.pack_size"):
        plan_with(4, pack_size=0)
