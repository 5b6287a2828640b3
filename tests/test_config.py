"""Bad configs stop the workflow before any job, naming the key or value and the valid choices."""

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from kdtransfer.config import ConfigError, validate_config
from kdtransfer import plan

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def bad(mutate):
    cfg = copy.deepcopy(DEFAULT)
    mutate(cfg)
    return cfg


CASES = {
    "unknown top-level key": (lambda c: c.update(epochs=3), ["unknown config key 'epochs'", "valid keys", "setups"]),
    "unknown nested key": (
        lambda c: c["setups"]["digits_mlp"]["kd"].update(temprature=2),
        ["setups.digits_mlp.kd.temprature", "did you mean 'temperature'", "alpha, feature_weight, layers, teacher_layers, temperature, variant"],
    ),
    "unknown model": (
        lambda c: c["models"]["mlp"].update(arch="resnet9000"),
        ["unknown model 'resnet9000'", "models.mlp.arch", "mlp, cnn1d, cnn2d", "timm:"],
    ),
    "unknown timm model": (
        lambda c: c["models"]["mlp"].update(arch="timm:resnet_nope"),
        ["unknown timm model 'timm:resnet_nope'", "models.mlp.arch"],
    ),
    "unknown dataset": (
        lambda c: c["datasets"]["digits"].update(loader="cifar1000"),
        ["unknown dataset 'cifar1000'", "datasets.digits.loader", "digits, mnist1d, mnist_subset"],
    ),
    "undefined dataset reference": (
        lambda c: c["setups"]["digits_mlp"].update(dataset="digitz"),
        ["setups.digits_mlp.dataset", "'digitz'", "did you mean 'digits'"],
    ),
    "unknown model option": (
        lambda c: c["models"]["cnn1d"]["options"].update(chanels=[4]),
        ["unknown option 'chanels' at models.cnn1d.options", "did you mean 'channels'", "options of cnn1d: channels, pooled"],
    ),
    "model option the dataset decides": (
        lambda c: c["models"]["mlp"]["options"].update(num_classes=100),
        ["models.mlp.options.num_classes", "come from the setup's dataset", "teacher and student must agree"],
    ),
    "feature variant without layers": (
        lambda c: c["setups"]["digits_mlp"]["kd"].update(variant="hint"),
        ["setups.digits_mlp.kd.variant is 'hint', which needs `layers`"],
    ),
    "unknown model in a size sweep": (
        lambda c: c["setups"]["digits_mlp"].update(sweep={"model": ["mpl"]}),
        ["setups.digits_mlp.sweep.model names 'mpl'", "did you mean 'mlp'"],
    ),
    "bad enum": (
        lambda c: c["setups"]["digits_mlp"]["rcd"].update(noise="laplace"),
        ["'laplace'", "setups.digits_mlp.rcd.noise", "uniform, gaussian"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_validate_config_names_problem_and_choices(case):
    mutate, needles = CASES[case]
    with pytest.raises(ConfigError) as info:
        validate_config(bad(mutate), SCHEMA)
    for needle in needles:
        assert needle in str(info.value)


def test_defaults_are_filled():
    cfg = validate_config({k: v for k, v in DEFAULT.items() if k not in ("training", "analysis")}, SCHEMA)
    assert cfg["training"]["checkpoint_every"] == 1
    assert cfg["analysis"]["fdr_family"] == "setup"
    assert cfg["recipes"]["digits"]["optimizer"] == "sgd"


@pytest.mark.parametrize("case", ["unknown top-level key", "unknown model", "unknown dataset"])
def test_workflow_stops_before_any_job(workflow_copy, case):
    mutate, needles = CASES[case]
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(bad(mutate)))
    proc = snakemake(workflow_copy, "--cores", "1", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    for needle in needles:
        assert needle in out
    assert "Traceback" not in out
    assert not (workflow_copy / "results").exists()


def test_run_keys_share_teachers_and_controls_across_a_sweep():
    cfg = validate_config(DEFAULT, SCHEMA)
    runs = plan.Plan(cfg).runs
    by = {}
    for r in runs:
        by.setdefault(r.condition, set()).add(r.key)
    # digits sweep T in {1, 4, 16} -> 3 kd and 3 rcd setups, but one teacher and one nokd key.
    assert len([k for k in by["teacher"] if k.startswith("teacher/digits/")]) == 1
    assert len([k for k in by["nokd"] if k.startswith("nokd/digits/")]) == 1
    assert {k for k in by["kd"] if "digits" in k} == {"kd/digits_mlp", "kd/digits_mlp_T1", "kd/digits_mlp_T16"}
    spec_kd = plan.Plan(cfg).run_spec("kd", "kd/digits_mlp_T16", 0)
    spec_nokd = plan.Plan(cfg).run_spec("nokd", "nokd/digits/mlp/digits", 0)
    assert spec_kd["kd"]["temperature"] == 16 and "kd" not in spec_nokd


def test_reordered_config_keys_give_identical_params():
    cfg = validate_config(DEFAULT, SCHEMA)
    reordered = copy.deepcopy(DEFAULT)
    reordered["recipes"]["digits"] = dict(reversed(list(reordered["recipes"]["digits"].items())))
    cfg2 = validate_config(reordered, SCHEMA)
    key = "teacher/digits/mlp/digits"
    assert repr(plan.Plan(cfg).run_spec("teacher", key, 0)) == repr(plan.Plan(cfg2).run_spec("teacher", key, 0))


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.update(seeds=[]), "config at seeds.*would produce no runs.*seeds: 10"),
    (lambda c: c.update(setups={}), "config at setups.*would produce no runs.*define at least one setup"),
    (lambda c: c.update(seeds=0), "config at seeds.*would produce no runs"),
])
def test_configs_that_produce_no_runs_are_rejected(mutate, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(bad(mutate), SCHEMA)


def test_independent_condition_adds_fresh_reference_runs(workflow_copy):
    from test_dag import counts

    cfg = yaml.safe_load((workflow_copy / "config.yaml").read_text())
    cfg["conditions"] = ["kd", "rcd", "nokd", "independent"]
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    c = counts(snakemake(workflow_copy, "-n").stdout)
    assert c["train_reference"] == 90 and c["train_distilled"] == 100
