"""DAG tests: the planned jobs, reuse of shared runs, and reruns after a param change."""

import re
from collections import Counter

import yaml

from conftest import REPO, snakemake


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


def test_default_config_plans_every_run_once(workflow_copy):
    out = snakemake(workflow_copy, "-n", "--cores", "2").stdout
    c = counts(out)
    # 3 setups + 1 extra temperature + 1 extra recipe on digits; 10 seeds. Teachers and nokd
    # controls are shared by the temperature sweep and trained again under the cosine recipe:
    # 4 teacher keys and 4 nokd keys, 5 kd and 5 rcd setups.
    assert c == Counter({"prepare_data": 3, "train_reference": 80, "train_distilled": 100, "metrics": 5,
                         "statistics": 1, "figures": 1, "tables": 1, "all": 1})


def test_named_targets(workflow_copy):
    assert counts(snakemake(workflow_copy, "-n", "teachers").stdout) == Counter(
        {"prepare_data": 3, "train_reference": 40, "teachers": 1})
    c = counts(snakemake(workflow_copy, "-n", "students").stdout)
    assert c["train_reference"] == 80 and c["train_distilled"] == 100 and "metrics" not in c


def test_tiny_config_plan(workflow_copy):
    out = snakemake(workflow_copy, "-n", "--configfile", "tests/configs/tiny.yaml").stdout
    c = counts(out)
    # teachers and nokd of (digits, mlp), (digits, mlp_small), (mnist1d, cnn1d): 3 x 2 x 4 seeds;
    # kd and rcd of digits_mlp, its T=2 and mlp_small variants, mnist1d_cnn: 4 x 2 x 4 seeds.
    assert c["train_reference"] == 24 and c["train_distilled"] == 32 and c["metrics"] == 4


def test_paper_experiment_plans_the_whole_study_with_shared_runs_once(workflow_copy):
    out = snakemake(workflow_copy, "-n", "--configfile", "experiments/paper.yaml").stdout
    jobs = planned_jobs(out)
    c = counts(out)
    # 20 setups after expanding the CIFAR-10 ResNet-18 sweeps (T in {1,2,8,16}: 4 more; widths
    # 8/16/32: 3 more; the constant-lr recipe: 1 more). 14 distinct teachers and 13 distinct nokd
    # controls (the temperature sweep, both feature variants and ResNet-34 -> ResNet-18 reuse the
    # ResNet-18 ones; the recipe sweep trains its own), 10 seeds.
    assert c == Counter({"prepare_data": 5, "train_reference": 270, "train_distilled": 400, "metrics": 20,
                         "statistics": 1, "figures": 1, "tables": 1, "all": 1})
    reference = Counter((w["condition"], w["dataset"], w["model"], w["recipe"]) for r, w in jobs if r == "train_reference")
    assert all(n == 10 for n in reference.values())  # every shared run once per seed
    for recipe in ("cifar_sgd", "cifar_sgd_constant"):  # each teacher and control once per recipe
        assert reference[("teacher", "cifar10", "resnet18", recipe)] == 10
        assert reference[("nokd", "cifar10", "resnet18", recipe)] == 10
    distilled = Counter(w["setup"] for r, w in jobs if r == "train_distilled")
    assert {"cifar10_resnet18_T1", "cifar10_resnet18_T16", "cifar10_resnet18_resnet18_w8", "cifar10_resnet18_hint",
            "cifar10_resnet34_to_resnet18", "speech_vit", "names_gru", "tiny_imagenet_resnet18",
            "cifar10_resnet18_cifar_sgd_constant"} <= set(distilled)
    assert set(distilled.values()) == {20}  # kd and rcd, 10 seeds each
