"""Shared helpers: timing, child processes with their own peak memory, result tables."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"

# Ignored by git (bench/results/*.tmp): generated inputs that are cheap to regenerate.
CACHE_DIR = RESULTS_DIR / "cache.tmp"
PYTHON = sys.executable


def analysis_defaults() -> dict:
    """The config's `analysis` settings at the schema's defaults (the one source of them)."""
    import yaml

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return {key: prop["default"] for key, prop in schema["properties"]["analysis"]["properties"].items()}


WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "profiles", "envs", "experiments")


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (never its results/) to benchmark in, so the checkout's runs stay untouched."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def repo_relative(text: str, *workdirs: Path) -> str:
    """`text` with this machine's paths made portable: the checkout's as relative paths, the
    interpreter's site-packages and standard library and any benchmark work folders as placeholders."""
    import sysconfig

    paths = sysconfig.get_paths()
    for path, name in [
        (Path(paths["purelib"]), "<site-packages>"),
        (Path(paths["stdlib"]), "<stdlib>"),
        *((w, "<workdir>") for w in workdirs),
        (REPO, "."),
    ]:
        text = text.replace(f"{path}/", f"{name}/").replace(str(path), name)
    return text


@dataclass
class Row:
    """One line of a result table: a measured quantity of one variant of one case."""

    case: str
    variant: str
    metric: str
    value: float
    unit: str
    ratio: float | None = None  # relative to the case's reference variant, where one applies
    note: str = ""
    samples: list[float] = field(default_factory=list)


def python_c_seconds(program: str) -> float:
    """Wall seconds of `python -c program` in a fresh interpreter (start-up and imports included)."""
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", program], check=True, cwd=REPO, capture_output=True)
    return time.perf_counter() - started


def median(values) -> float:
    return float(statistics.median(values))


def machine_summary() -> str:
    cores = os.cpu_count()
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = ""
    torch = sys.modules.get("torch")  # only where a benchmark imported it: never imported for this line
    if torch is not None and torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name()}"
    return (
        f"{platform.machine()}, {cores} cores, {mem_gib:.0f} GiB{gpu}, Python {platform.python_version()}, "
        f"load average (1, 5, 15 min) when written {load}"
    )


def run_child(args: list[str], *, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run `python -m bench.<...>` as a child that reports JSON on its last stdout line.

    A child process per measurement gives each variant its own peak RSS (ru_maxrss of a process
    is its lifetime maximum, so two variants in one process could not be told apart).
    """
    started = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark child {' '.join(args)} failed "
            f"({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"benchmark child {' '.join(args)} printed no JSON result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    report = json.loads(lines[-1])
    report["process_wall_s"] = wall
    return report


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process image. Not
    ru_maxrss: Linux carries it across fork + exec, so a child of a large parent (the runner,
    after building the synthetic predictions) reports at least the parent's size.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def format_value(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "GiB":
        return f"{value:.2f} GiB"
    if unit == "samples/s":
        return f"{value:,.0f} samples/s" if value >= 100 else f"{value:.1f} samples/s"
    if unit == "ms":
        return f"{value:.1f} ms"
    return f"{value:g} {unit}".strip()


def markdown_table(rows: list[Row]) -> str:
    lines = ["| case | variant | metric | median | ratio | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"| {r.case} | {r.variant} | {r.metric} | {format_value(r.value, r.unit)} | {ratio} | {r.note} |")
    return "\n".join(lines)


def write_results(
    part: str, title: str, rows: list[Row], notes: list[str], command: str, results_dir: str | Path = RESULTS_DIR
) -> Path:
    """bench/results/<part>.md (the committed record) and <part>.csv (every repeat's samples)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    md = results_dir / f"{part}.md"
    text = [
        f"# {title}",
        "",
        f"Command: `{command}`  ",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine_summary()}.",
        "",
        markdown_table(rows),
        "",
    ]
    if notes:
        text += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    md.write_text("\n".join(text))
    csv = results_dir / f"{part}.csv"
    with csv.open("w") as fh:
        fh.write("case,variant,metric,median,unit,ratio,samples,note\n")
        for r in rows:
            samples = " ".join(f"{x:.6g}" for x in r.samples)
            ratio = "" if r.ratio is None else f"{r.ratio:.4f}"
            note = r.note.replace('"', "'")
            fh.write(f'"{r.case}","{r.variant}","{r.metric}",{r.value:.6g},{r.unit},{ratio},{samples},"{note}"\n')
    return md
