"""DAG tests: the planned jobs, reuse of shared runs, and reruns after a param change."""

from collections import Counter

import yaml
from conftest import REPO, counts, plan_of, planned, planned_jobs, snakemake, training_jobs

# The pack rules of the default pack size (10) over seeds 0..9: one block.
REFERENCE, DISTILLED = "train_reference_seeds0to9", "train_distilled_seeds0to9"


def test_default_config_plans_every_run_once_in_packs(workflow_copy):
    """Snakemake plans exactly the Plan's packs: the other job-count tests ask the Plan."""
    out = snakemake(workflow_copy, "-n", "--cores", "2").stdout
    c = counts(out)
    # 3 setups + 1 extra temperature + 1 extra recipe on digits; 10 seeds in one pack per run key.
    # Teachers and nokd controls are shared by the temperature sweep and trained again under the
    # cosine recipe: 4 teacher keys and 4 nokd keys, 5 kd and 5 rcd setups; 180 runs in 18 jobs.
    assert c == Counter(
        {
            "prepare_data": 3,
            REFERENCE: 8,
            DISTILLED: 10,
            "metrics": 5,
            "statistics": 1,
            "figures": 1,
            "tables": 1,
            "all": 1,
        }
    )
    assert sum(c.values()) == 30
    plan = planned(workflow_copy / "config.yaml")
    assert {rule: n for rule, n in c.items() if rule.startswith("train_")} == training_jobs(plan)
    trained = sorted(w["condition"] + "/" for rule, w in planned_jobs(out) if rule.startswith("train_"))
    assert trained == sorted(pack.condition + "/" for pack in plan.packs)


def test_pack_size_one_plans_one_job_per_run():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["training"]["pack_size"] = 1
    jobs = training_jobs(plan_of(cfg))
    assert jobs == {
        **{f"train_reference_seed{s}": 8 for s in range(10)},
        **{f"train_distilled_seed{s}": 10 for s in range(10)},
    }
    assert sum(jobs.values()) == 180  # the per-run design: 180 training jobs


def test_uneven_packs_follow_blocks_of_seed_values():
    cfg = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    cfg.update(seeds=[0, 2, 3, 7], training={"pack_size": 3})  # blocks 0-2, 3-5, 6-8
    plan = plan_of(cfg)
    assert training_jobs(plan) == {
        f"train_{kind}_seeds{first}to{first + 2}": n
        for first in (0, 3, 6)
        for kind, n in (("reference", 6), ("distilled", 8))
    }
    # each job trains its block's seeds: seeds 0 and 2 in the first, 3 in the second, 7 in the third
    assert [block.seeds for block in plan.seed_blocks] == [(0, 2), (3,), (7,)]


def test_named_targets(workflow_copy):
    assert counts(snakemake(workflow_copy, "-n", "teachers").stdout) == Counter(
        {"prepare_data": 3, REFERENCE: 4, "teachers": 1}
    )
    c = counts(snakemake(workflow_copy, "-n", "students").stdout)
    assert c[REFERENCE] == 8 and c[DISTILLED] == 10 and "metrics" not in c


def test_tiny_config_plan():
    plan = planned(REPO / "tests/configs/tiny.yaml")
    # teachers and nokd of (digits, mlp), (digits, mlp_small), (mnist1d, cnn1d): 3 x 2 packs of 4 seeds;
    # kd and rcd of digits_mlp, its T=2 and mlp_small variants, mnist1d_cnn: 4 x 2 packs.
    assert training_jobs(plan) == {REFERENCE: 6, DISTILLED: 8}
    assert len(plan.setups) == 4 and plan.seeds == [0, 1, 2, 3]


def test_paper_experiment_plans_the_whole_study_with_shared_runs_once(workflow_copy):
    out = snakemake(workflow_copy, "-n", "--configfile", "experiments/paper.yaml").stdout
    jobs = planned_jobs(out)
    c = counts(out)
    # 20 setups after expanding the CIFAR-10 ResNet-18 sweeps (T in {1,2,8,16}: 4 more; widths
    # 8/16/32: 3 more; the constant-lr recipe: 1 more). 14 distinct teachers and 13 distinct nokd
    # controls (the temperature sweep, both feature variants and ResNet-34 -> ResNet-18 reuse the
    # ResNet-18 ones; the recipe sweep trains its own), 10 seeds: 670 runs in 67 packs.
    assert c == Counter(
        {
            "prepare_data": 5,
            REFERENCE: 27,
            DISTILLED: 40,
            "metrics": 20,
            "statistics": 1,
            "figures": 1,
            "tables": 1,
            "all": 1,
        }
    )
    assert sum(c.values()) <= 120
    reference = Counter((w["condition"], w["dataset"], w["model"], w["recipe"]) for r, w in jobs if r == REFERENCE)
    assert all(n == 1 for n in reference.values())  # every shared run key in one pack of its 10 seeds
    for recipe in ("cifar_sgd", "cifar_sgd_constant"):  # each teacher and control once per recipe
        assert reference[("teacher", "cifar10", "resnet18", recipe)] == 1
        assert reference[("nokd", "cifar10", "resnet18", recipe)] == 1
    distilled = Counter(w["setup"] for r, w in jobs if r == DISTILLED)
    assert {
        "cifar10_resnet18_T1",
        "cifar10_resnet18_T16",
        "cifar10_resnet18_resnet18_w8",
        "cifar10_resnet18_hint",
        "cifar10_resnet34_to_resnet18",
        "speech_vit",
        "names_gru",
        "tiny_imagenet_resnet18",
        "cifar10_resnet18_cifar_sgd_constant",
    } <= set(distilled)
    assert set(distilled.values()) == {2}  # one kd and one rcd pack each
