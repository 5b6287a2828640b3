"""Planning time: `snakemake -n` (parse the Snakefile, validate the config, build the DAG).

Configs: the embedded default (config.yaml); a synthetic config of 2,000 training runs
generated here (10 base setups over the three embedded datasets, each with a 9-point
temperature sweep, 10 seeds: 100 teachers + 100 nokd controls + 900 kd + 900 rcd students);
and the paper-scale experiment experiments/paper.yaml when it exists. Each runs in a private
copy of the workflow (no results, so every job is planned), repeated and interleaved; the
time of `snakemake --version` is Snakemake's own start-up, for reference.

`--profile-planning` also runs the 2,000-run dry run under cProfile and writes the hot spots
to bench/results/planning_profile.txt.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import PYTHON, REPO, RESULTS_DIR, Row, copy_workflow, median, repo_relative

SNAKEMAKE = [PYTHON, "-m", "snakemake"]
TARGET_SECONDS = 10.0
SWEEP_TEMPERATURES = [1, 2, 3, 4, 5, 6, 8, 12, 16]


def synthetic_config(base_setups: int = 10, seeds: int = 10) -> dict:
    """`base_setups` setups over the embedded datasets (each with its own recipe, so its own
    teachers and controls), each swept over 9 temperatures: 2 x seeds x base_setups shared runs
    plus 2 x 9 x seeds x base_setups kd/rcd students (2,000 runs at the defaults)."""
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    base = next(iter(config["setups"].values()))
    template_by_dataset = {s["dataset"]: s for s in config["setups"].values()}
    datasets = list(template_by_dataset)
    recipes, setups = {}, {}
    for k in range(base_setups):
        dataset = datasets[k % len(datasets)]
        template = template_by_dataset[dataset]
        recipe = f"{template['recipe']}_lr{k}"
        recipes[recipe] = dict(config["recipes"][template["recipe"]], lr=round(0.01 * (k + 1), 4))
        setup = {key: copy.deepcopy(value) for key, value in template.items() if key != "sweep"}
        setup.update(
            label=f"{template.get('label', dataset)} #{k}",
            recipe=recipe,
            kd=dict(base["kd"], temperature=4),
            sweep={"temperature": SWEEP_TEMPERATURES},
        )
        setups[f"s{k}_{dataset}"] = setup
    config.update(seeds=seeds, conditions=["kd", "rcd", "nokd"], recipes=recipes, setups=setups)
    return config


def expected_runs(base_setups: int = 10, seeds: int = 10) -> int:
    return base_setups * seeds * (2 + 2 * len(SWEEP_TEMPERATURES))


def expected_packs(base_setups: int = 10) -> int:
    """Training jobs of the synthetic config: its 10 seeds are one pack (the default pack_size)."""
    return expected_runs(base_setups) // 10


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a dry run: rule -> number of jobs."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table, counts = True, {}
            continue
        if in_table:
            match = re.match(r"^(\S+)\s+(\d+)\s*$", line.strip())
            if match and match.group(1) != "total":
                counts[match.group(1)] = int(match.group(2))
            elif counts and not line.strip():
                in_table = False
    return counts


def dry_run(workdir: Path, configfile: str | None) -> tuple[float, dict[str, int]]:
    args = [*SNAKEMAKE, "-n", "--cores", "2"]
    if configfile:
        args += ["--configfile", configfile]
    started = time.perf_counter()
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"snakemake -n {configfile or ''} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return seconds, job_counts(proc.stdout + proc.stderr)


def startup_seconds(workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([*SNAKEMAKE, "--version"], cwd=workdir, capture_output=True, check=True)
    return time.perf_counter() - started


def profile_dry_run(workdir: Path, configfile: str, top: int = 35) -> Path:
    """cProfile of the 2,000-run dry run; writes the hot spots (cumulative and own time)."""
    import io
    import pstats

    stats_file = workdir / "planning.prof"
    subprocess.run(
        [
            PYTHON,
            "-m",
            "cProfile",
            "-o",
            str(stats_file),
            "-m",
            "snakemake",
            "-n",
            "--cores",
            "2",
            "--configfile",
            configfile,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    out = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    print("Callers of kdtransfer functions (where the workflow's own code spends time):", file=out)
    stats.sort_stats("cumulative").print_stats(r"kdtransfer|common\.smk|Snakefile", 20)
    path = RESULTS_DIR / "planning_profile.txt"
    text = (
        f"cProfile of `snakemake -n --configfile {configfile}` ({expected_runs()} training runs)\n\n" + out.getvalue()
    )
    path.write_text(repo_relative(text, workdir))
    return path


def run(args) -> tuple[list[Row], list[str]]:
    import yaml

    notes = [
        "Each dry run is `python -m snakemake -n --cores 2` in a fresh copy of the workflow without results "
        "(every job planned), a new process each time: the time includes Python and Snakemake start-up."
    ]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="kdtransfer-bench-plan-") as tmp:
        workdir = copy_workflow(Path(tmp))
        (workdir / "bench_2000_runs.yaml").write_text(yaml.safe_dump(synthetic_config(), sort_keys=False))
        configs = {
            "embedded default (config.yaml)": None,
            f"synthetic, {expected_runs():,} training runs": "bench_2000_runs.yaml",
        }
        if (REPO / "experiments" / "paper.yaml").exists():
            configs["paper scale (experiments/paper.yaml)"] = "experiments/paper.yaml"
        else:
            notes.append("experiments/paper.yaml does not exist yet: the paper-scale dry run was skipped.")
        seconds: dict[str, list[float]] = {name: [] for name in configs}
        startup: list[float] = []
        jobs: dict[str, dict[str, int]] = {}
        for repeat in range(args.repeats):
            startup.append(startup_seconds(workdir))
            names = list(configs) if repeat % 2 == 0 else list(reversed(configs))
            for name in names:
                took, counts = dry_run(workdir, configs[name])
                seconds[name].append(took)
                jobs[name] = counts
                print(
                    f"[planning] repeat {repeat + 1}/{args.repeats} {name}: {took:.2f} s, {sum(counts.values())} jobs",
                    flush=True,
                )
            shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
        rows.append(
            Row(
                "snakemake --version",
                "start-up only",
                "wall time",
                median(startup),
                "s",
                samples=startup,
                note="Python + Snakemake import: the floor under every dry run",
            )
        )
        for name, times in seconds.items():
            counts = jobs[name]
            training = sum(v for k, v in counts.items() if k.startswith("train"))
            note = f"{sum(counts.values()):,} jobs ({training:,} training packs)"
            if "synthetic" in name:
                if training != expected_packs():
                    raise AssertionError(
                        f"the synthetic config planned {training} training packs, expected {expected_packs()} "
                        f"({expected_runs()} runs)"
                    )
                note += f"; target <= {TARGET_SECONDS:g} s"
            rows.append(Row(name, "snakemake -n", "planning time", median(times), "s", note=note, samples=times))
        if args.profile_planning:
            path = profile_dry_run(workdir, "bench_2000_runs.yaml")
            notes.append(f"cProfile of the 2,000-run dry run: {path.relative_to(REPO)}.")
    return rows, notes


if __name__ == "__main__":
    sys.exit("run `python -m bench --only planning`")
