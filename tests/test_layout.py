"""The package's layout is its design: the plan, the files between the halves and the analysis
half never import torch, and the workflow's rules pass Snakemake's linter."""

import importlib
import re
import subprocess
import sys

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "kdtransfer"
# Torch-free by design: what the Snakefile imports at parse time, what analysis jobs run, and the
# vocabulary both halves share.
TORCH_FREE_PACKAGES = ("plan", "io", "analysis")
TORCH_FREE_MODULES = ("kdtransfer", "kdtransfer.catalog", "kdtransfer.options", "kdtransfer.spec")


def modules_of(package: str) -> list[str]:
    """Every module of kdtransfer.<package>, found on disk (a new module is covered unasked)."""
    root = PACKAGE / package
    return sorted(
        f"kdtransfer.{package}." + ".".join(p.relative_to(root).with_suffix("").parts)
        for p in root.rglob("*.py")
        if p.name != "__init__.py"
    ) + [f"kdtransfer.{package}"]


def test_the_torch_free_packages_are_found():
    found = {m for p in TORCH_FREE_PACKAGES for m in modules_of(p)}
    assert {"kdtransfer.plan.runs", "kdtransfer.io.predictions", "kdtransfer.analysis.figures"} <= found


@pytest.mark.parametrize("package", TORCH_FREE_PACKAGES)
def test_package_never_imports_torch(package):
    modules = modules_of(package) + list(TORCH_FREE_MODULES)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    heavy = sorted({'torch', 'torchvision', 'timm'} & set(sys.modules))\n"
        "    if heavy:\n"
        "        sys.exit(f'{name} imported {heavy}')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_check_sees_torch_where_it_is_imported():
    """The check above can fail: the training half does import torch."""
    code = "import sys, kdtransfer.training.loop; sys.exit(0 if 'torch' in sys.modules else 1)"
    proc = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0


@pytest.mark.parametrize("configfile", ["config.yaml", "experiments/paper.yaml"])
def test_snakemake_lint_finds_nothing(workflow_copy, configfile):
    from conftest import snakemake

    args = ["--lint"] if configfile == "config.yaml" else ["--lint", "--configfile", configfile]
    proc = snakemake(workflow_copy, *args, check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-4000:]


# Documents that name the package's modules and functions by their dotted path.
DOCUMENTS = [
    "README.md",
    "docs/*.md",
    "Makefile",
    ".ci/run",
    "bench/*.py",
    "bench/*.sh",
    "config.yaml",
    "workflow/schemas/config.schema.yaml",
    "workflow/report/*.rst",
    "workflow/rules/*.smk",
    "experiments/*.yaml",
    "profiles/*/config.yaml",
]


def resolves(reference: str) -> bool:
    """Whether a dotted reference names a module, or an attribute reachable from one."""
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_module_paths_named_in_the_docs_exist():
    """A module moved or renamed leaves no stale `kdtransfer.<path>` in the documentation."""
    stale = []
    for pattern in DOCUMENTS:
        for path in sorted(REPO.glob(pattern)):
            for reference in sorted(set(re.findall(r"\bkdtransfer(?:\.[A-Za-z_]\w*)+", path.read_text()))):
                if not resolves(reference):
                    stale.append(f"{path.relative_to(REPO)}: {reference}")
    assert not stale, stale


def test_the_reference_check_can_fail():
    assert resolves("kdtransfer.analysis.verdicts.verdicts") and resolves("kdtransfer.training.loop")
    assert not resolves("kdtransfer.stats.verdicts") and not resolves("kdtransfer.analysis.verdicts.no_such_name")


def _rule_bodies() -> dict[str, str]:
    """Each rule of workflow/rules/*.smk and the Snakefile: its name (the literal one, or the
    expression of a named one) and its text."""
    bodies = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        text = path.read_text()
        starts = [
            (m.start(), m.group(1) or m.group(2))
            for m in re.finditer(r"^ *rule(?: (\w+))?:\n(?: +name:\n +(.+)\n)?", text, flags=re.M)
        ]
        for (start, name), (end, _) in zip(starts, [*starts[1:], (len(text), None)]):
            bodies[f"{path.name}: {name}"] = text[start:end]
    return bodies


def test_every_rule_that_runs_a_job_has_a_log_and_a_benchmark():
    bodies = _rule_bodies()
    runs = {name: body for name, body in bodies.items() if re.search(r"^ +(script|shell|run):", body, flags=re.M)}
    assert len(runs) >= 8, sorted(
        bodies
    )  # prepare_data, download_dataset, two training kinds, metrics, statistics, ...
    for name, body in runs.items():
        assert re.search(r"^ +log:", body, flags=re.M), f"{name} has no log:"
        assert re.search(r"^ +benchmark:", body, flags=re.M), f"{name} has no benchmark:"
