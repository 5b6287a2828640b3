"""The GPU check's CPU side (bench/gpu_check.sh, bench/paper.py, bench/gpu.py's projection): what
can go wrong before any GPU is involved, so that nothing does on the lent machine.

The GPU tests themselves are in tests/gpu (skipped without CUDA; KDTRANSFER_TEST_DEVICE=cpu
runs their logic here).
"""

import argparse
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

sys.path.insert(0, str(REPO))  # bench/ is not an installed package

from bench.common import Row, write_results  # noqa: E402
from bench.gpu import (  # noqa: E402
    CHECKPOINT,
    CLASS_VARIANT,
    START_UP,
    STEP,
    TEST_PASS,
    PaperRuns,
    paper_cost_classes,
    run_projection,
)
from bench.paper import SCHEMA, read_config  # noqa: E402
from kdtransfer.plan.config import validate_config  # noqa: E402

CONFIGS = [
    REPO / "experiments" / "paper.yaml",
    REPO / "config.yaml",
    *sorted((REPO / "tests" / "configs").glob("*.yaml")),
]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_read_without_jsonschema_equals_the_validated_one(path):
    # The GPU machine has no jsonschema: there the Plan is made from read_config's config.
    assert read_config(path) == validate_config(yaml.safe_load(path.read_text()), str(SCHEMA))


def test_every_paper_run_has_one_cost_class():
    runs = PaperRuns()
    classes = paper_cost_classes(runs)
    assert sum(len(members) for members in classes.values()) == len(runs.plan.runs) == 670
    keys = {cls.key: cls for cls in classes}
    # A temperature sweep costs what its base setup costs; a feature variant and a larger teacher do not.
    swept = {run.key for run in classes[keys["cifar10 / resnet18 / kd resnet18"]]}
    assert {
        runs.plan.run_key("kd", s) for s in ("cifar10_resnet18", "cifar10_resnet18_T1", "cifar10_resnet18_T16")
    } <= swept
    assert {
        "cifar10 / resnet18 / kd resnet18 hint",
        "cifar10 / resnet18 / rcd attention",
        "cifar10 / resnet18 / kd resnet34",
        "cifar10 / resnet34",
        "tiny_imagenet / resnet18",
        "names / char_gru",
    } <= set(keys)
    # Without augmentation kd's teacher runs once per run, not per step: its steps are cross-entropy's.
    assert not any(key.startswith(("names /", "speech_commands /")) and " kd " in key for key in keys)


def test_projection_adds_up_runs_epochs_steps_and_overheads(tmp_path):
    runs = PaperRuns()
    rows = [Row("training process", CLASS_VARIANT, START_UP, 4.0, "s")]
    for cls in paper_cost_classes(runs):
        rows += [
            Row(cls.key, CLASS_VARIANT, STEP, 10.0, "ms"),
            Row(cls.key, CLASS_VARIANT, TEST_PASS, 0.5, "s"),
            Row(cls.key, CLASS_VARIANT, CHECKPOINT, 0.2, "s"),
        ]
    write_results("gpu-training", "measured", rows, [], "test", tmp_path)
    args = argparse.Namespace(gpu_csv="", results_dir=str(tmp_path))
    projected, notes = run_projection(args)
    hours = {row.case: row.value for row in projected}
    # Names / char GRU by hand: teacher, nokd, rcd and kd runs of 10 seeds; 40 epochs of ceil(14,400 / 256) = 57
    # steps and a test pass; a checkpoint every 5 epochs and the final weights; kd's one teacher
    # pass over the 14,400 training names at the test pass's rate (3,600 names in 0.5 s).
    per_run = 4.0 + 40 * (57 * 0.01 + 0.5) + ((40 - 1) // 5 + 1) * 0.2
    assert math.ceil(14_400 / 256) == 57
    assert hours["names / char_gru"] == pytest.approx((40 * per_run + 10 * 0.5 * 14_400 / 3_600) / 3600)
    assert hours["experiments/paper.yaml, all runs"] == pytest.approx(
        sum(
            value
            for case, value in hours.items()
            if case != "experiments/paper.yaml, all runs" and not case.startswith("all ")
        )
    )
    assert not any("NOT MEASURED" in note for note in notes)


def test_projection_names_the_classes_it_could_not_price(tmp_path):
    write_results(
        "gpu-training", "measured", [Row("names / char_gru", CLASS_VARIANT, STEP, 10.0, "ms")], [], "test", tmp_path
    )
    _, notes = run_projection(argparse.Namespace(gpu_csv="", results_dir=str(tmp_path)))
    assert "NOT MEASURED" in notes[-1] and "cifar10 / resnet18 / kd resnet18" in notes[-1]


def test_smoke_run_blocks_the_packages_the_gpu_machine_lacks():
    env = {"PYTHONPATH": f"{REPO / 'bench' / 'device_env'}:{REPO / 'src'}", "PATH": "/usr/bin:/bin"}
    for module in ("jsonschema", "snakemake", "mnist1d", "mlxtend", "kdtransfer.plan.config"):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True)
        assert proc.returncode != 0 and "not installed on the GPU machine" in proc.stderr, module
    proc = subprocess.run(
        [sys.executable, "-c", "import yaml, kdtransfer.plan.runs, bench.paper"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")], check=True)
    assert Path(REPO / "bench" / "gpu_check.sh").read_text().startswith("#!/usr/bin/env bash")
