"""The SLURM profile as HPC users type it (`snakemake --profile slurm`), without a cluster.

(a) Installed with profiles/install-slurm-profile.sh into a temporary HOME, the literal command
    plans the workflow (dry run).
(b) The sbatch call the plugin builds for each training rule carries the GPU, CPU, memory, time,
    partition and account settings of the profile. A real run is started against stub SLURM
    commands placed first on PATH: the stub `sbatch` records its arguments and refuses the job,
    so nothing runs; the plugin's own code builds the call (tests/test_slurm_cluster.py then runs
    the same profile on a real cluster).
"""

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import yaml
from conftest import REPO, SNAKEMAKE, planned, run_dir

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
TINY = ["--configfile", "tests/configs/tiny.yaml"]
TINY_PLAN = planned(REPO / "tests/configs/tiny.yaml")
TEACHERS = [run_dir(TINY_PLAN, "teacher", "digits_mlp", seed) for seed in TINY_PLAN.seeds]
CONTROL = run_dir(TINY_PLAN, "nokd", "digits_mlp", 0)
STUDENT = run_dir(TINY_PLAN, "kd", "digits_mlp", 0)


def installed_profile_env(workflow: Path, home: Path) -> dict:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    subprocess.run(
        ["bash", str(workflow / "profiles" / "install-slurm-profile.sh")],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert (home / ".config" / "snakemake" / "slurm" / "config.yaml").read_text() == PROFILE.read_text()
    return env


def test_profile_shape():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1
    assert "cpus_per_task" not in profile["default-resources"]  # it would override cpus_per_gpu
    for rule in ("train_reference", "train_distilled"):
        res = profile["set-resources"][rule]
        assert res["gpu"] == 1 and res["cpus_per_gpu"] > 0 and res["mem_mb"] > 0
        # a pack's time limit is the sum over its runs, capped at the partition's limit
        assert res["runtime_per_run"] > 0 and res["runtime_max"] >= res["runtime_per_run"] and "runtime" not in res
    # GPU/memory/time in slurm_extra are refused by plugin 2.x
    assert all("slurm_extra" not in res for res in [profile["default-resources"], *profile["set-resources"].values()])
    text = PROFILE.read_text()
    assert text.count("PLACEHOLDER: your GPU partition") == 1 and text.count("PLACEHOLDER: your account") == 1


def test_workflow_profile_does_not_override_the_cluster_profile():
    """profiles/default is auto-loaded after --profile and its top-level keys replace the cluster
    profile's: any key both set must agree, or the cluster profile silently loses it (retries)."""
    workflow_profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    cluster_profile = yaml.safe_load(PROFILE.read_text())
    clashes = {
        key: (workflow_profile[key], cluster_profile[key])
        for key in workflow_profile.keys() & cluster_profile.keys()
        if workflow_profile[key] != cluster_profile[key]
    }
    assert not clashes, f"profiles/default overrides profiles/slurm on {clashes}"
    assert "retries" not in workflow_profile


def test_install_refuses_to_clobber_then_force_replaces(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    script = REPO / "profiles" / "install-slurm-profile.sh"
    subprocess.run(["bash", str(script)], check=True, env=env, capture_output=True)
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "--force" in again.stderr
    subprocess.run(["bash", str(script), "--force", "--link"], check=True, env=env, capture_output=True)
    assert (tmp_path / "xdg" / "snakemake" / "slurm").resolve() == PROFILE.parent


def test_literal_profile_slurm_dry_run_after_install(workflow_copy, tmp_path):
    env = installed_profile_env(workflow_copy, tmp_path / "home")
    proc = subprocess.run(
        [*SNAKEMAKE, "--profile", "slurm", "-n"],
        cwd=workflow_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"Using profiles? slurm", out), out[-2000:]
    assert "train_reference" in out and "train_distilled" in out and "This was a dry-run" in out


STUB = """#!/bin/sh
# stub {name}: record the call, answer like a cluster with no accounting and no jobs
printf '%s\\n' "$*" >> "{calls}/{name}.calls"
case "{name}" in
  sbatch) echo "sbatch: error: stub cluster refuses every job" >&2; exit 1 ;;
  sinfo) echo "stubpart*"; exit 0 ;;
  sacctmgr|sshare|squeue|sacct|scancel) exit 0 ;;
  *) exit 1 ;;
esac
"""


def fake_slurm(bindir: Path, calls: Path) -> None:
    bindir.mkdir()
    calls.mkdir()
    for name in ("sbatch", "sinfo", "squeue", "sacct", "sacctmgr", "sshare", "scontrol", "scancel", "srun"):
        path = bindir / name
        path.write_text(STUB.format(name=name, calls=calls))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sbatch_call_for_training_rules_carries_the_profiles_request(workflow_copy, tmp_path):
    env = installed_profile_env(workflow_copy, tmp_path / "home")
    fake_slurm(tmp_path / "bin", tmp_path / "calls")
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    # The data and the teachers of a kd pack exist, so exactly two packs are submitted: the nokd
    # controls' (a reference pack) and the kd students' (a distilled pack), 4 seeds each.
    stubs = [TINY_PLAN.data_file("digits")] + [
        f"{t}/{name}" for t in TEACHERS for name in ("model.pt", "history.parquet", "predictions_test.parquet")
    ]
    for path in stubs:
        (workflow_copy / path).parent.mkdir(parents=True, exist_ok=True)
        (workflow_copy / path).write_bytes(b"stub")
    targets = [f"{CONTROL}/model.pt", f"{STUDENT}/model.pt"]
    proc = subprocess.run(
        [
            *SNAKEMAKE,
            "--profile",
            "slurm",
            *TINY,
            "--retries",
            "0",
            "--latency-wait",
            "1",
            "--slurm-init-seconds-before-status-checks",
            "1",
            *targets,
        ],
        cwd=workflow_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, "the stub sbatch refuses jobs, so the run must fail"
    calls = (tmp_path / "calls" / "sbatch.calls").read_text().splitlines()
    by_rule = {}
    for call in calls:
        args = shlex.split(call)
        comment = args[args.index("--comment") + 1]
        by_rule[comment.split("_wildcards")[0].removeprefix("rule_")] = args
    assert set(by_rule) == {"train_reference_seeds0to9", "train_distilled_seeds0to9"}, out[-4000:]
    profile = yaml.safe_load(PROFILE.read_text())
    site = profile["default-resources"]
    for rule, args in by_rule.items():
        want = profile["set-resources"][rule.removesuffix("_seeds0to9")]  # the kind's settings, for each of its packs
        line = " ".join(args)
        assert f"--gpus={want['gpu']}" in args, line
        assert f"--cpus-per-gpu={want['cpus_per_gpu']}" in args, line
        assert "--cpus-per-task" not in line, line
        runs = len(TINY_PLAN.seeds)  # 4 runs in the pack: the sum of their time (first attempt)
        assert args[args.index("-t") + 1] == str(min(runs * want["runtime_per_run"], want["runtime_max"])), line
        assert args[args.index("--mem") + 1] == str(want["mem_mb"]), line
        assert args[args.index("-p") + 1] == site["slurm_partition"], line
        assert args[args.index("-A") + 1] == site["slurm_account"], line
        assert args[args.index("--output") + 1].startswith(f"{workflow_copy}/.snakemake/slurm_logs/rule_{rule}/"), line
    # The plugin reports the refused call in full: what a user would see on a misconfigured site.
    assert "SLURM sbatch failed" in out and "--gpus=1" in out


def pack_resources(workflow_copy, *set_resources) -> dict[str, set[str]]:
    """rule -> the `resources:` lines `snakemake -n` shows for its jobs, under --set-resources."""
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", *TINY, "--set-resources", *set_resources],
        cwd=workflow_copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    shown, rule = {}, None
    for line in proc.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line.strip()):
            rule = m.group(1)
        elif line.strip().startswith("resources:") and rule:
            shown.setdefault(rule, set()).add(line.strip())
    return shown


def test_a_packs_time_limit_is_the_sum_over_its_runs_capped_at_runtime_max(workflow_copy):
    shown = pack_resources(
        workflow_copy,
        "train_reference:runtime_per_run=7",
        "train_reference:gpu=1",
        "train_reference:mem_mb=1500*attempt",
        "train_distilled:runtime_per_run=7",
        "train_distilled:runtime_max=20",
        "train_distilled_seeds0to9:mem_mb=123",
    )
    # 4 runs per pack (tiny.yaml's seeds): 28 minutes; the distilled packs capped at 20
    (reference,) = shown["train_reference_seeds0to9"]
    assert "gpu=1" in reference and "runtime=28" in reference and "mem_mb=1500" in reference  # an expression, evaluated
    (distilled,) = shown["train_distilled_seeds0to9"]
    assert "runtime=20" in distilled and "gpu" not in distilled
    assert "mem_mb=123" in distilled  # a pack rule's own name overrides its kind's setting


def test_a_fixed_runtime_for_a_kind_of_pack_is_refused_with_the_fix(workflow_copy):
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", *TINY, "--set-resources", "train_reference:runtime=60"],
        cwd=workflow_copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "train_reference: runtime_per_run" in out and "Traceback" not in out
