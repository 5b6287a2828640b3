"""The SLURM profile as HPC users type it, planned without a cluster (dry run)."""

import os
import subprocess
import sys

import yaml

from conftest import REPO, SNAKEMAKE


def test_literal_profile_slurm_dry_run_after_install(workflow_copy, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    subprocess.run(["bash", str(workflow_copy / "profiles" / "install-slurm-profile.sh")], check=True, env=env)
    assert (home / ".config" / "snakemake" / "slurm" / "config.yaml").exists()
    proc = subprocess.run([*SNAKEMAKE, "--profile", "slurm", "-n", "teachers"], cwd=workflow_copy, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "train_reference" in out and "30" in out


def test_gpu_rules_request_gpu_in_plugin_syntax():
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    for rule in ("train_reference", "train_distilled"):
        res = profile["set-resources"][rule]
        assert res["gpu"] == 1 and res["runtime"] > 0 and res["mem_mb"] > 0 and res["cpus_per_gpu"] > 0
    assert "slurm_extra" not in str(profile)  # GPU/mem/time there are refused by plugin 2.x
