"""The conda environments of `--sdm conda`.

(a) They pin what pyproject.toml pins, list every dependency the package declares (the package
    itself goes in with --no-deps), and the analysis environment has no torch.
(b) Each environment installs the package from the workflow's checkout, wherever Snakemake puts
    the environment. A stub `conda` first on PATH answers the calls Snakemake 9.27 makes
    (`conda info --json`, `conda --version`, `conda config --get channel_priority --json`,
    `conda env create --quiet --no-default-packages --file <env>.yaml --prefix <env>`, where
    <env>.yaml is Snakemake's copy of envs/x.yaml, and `conda clean -y --tarballs`). For the pip
    section it does what conda's pip installer does (conda/env/installers/pip.py): it writes the
    pip lines to a requirements file in the directory of `--file` and runs
    `<env>/bin/python -m pip install -U -r <that file>` there. Snakemake then runs
    envs/x.post-deploy.sh in the activated environment. The environment's `python` is a stub that
    records each pip call and its working directory. The test resolves every local path pip is
    asked to install as pip does (against its working directory, pypa/pip#6112) and requires
    exactly one install per environment: the workflow's root, editable.
(c) Outside a checkout, the post-deploy scripts install nothing and say how to fix it.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_workflow

ENVS = sorted((REPO / "envs").glob("*.yaml"))


def requirements(lines):
    out = {}
    for req in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*([<>=!~].*)?$", req.strip())
        if m:
            out[m.group(1).lower()] = (m.group(2) or "").strip()
    return out


def pip_section(env: Path) -> list[str]:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict))


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_env_pins_agree_with_pyproject():
    declared = requirements(project()["dependencies"])
    for extra in project()["optional-dependencies"].values():
        declared.update(requirements(extra))
    for env in ENVS:
        for name, spec in requirements(p for p in pip_section(env) if not p.startswith("-")).items():
            assert name in declared, f"{env.name}: {name} is not declared in pyproject.toml"
            assert spec == declared[name], f"{env.name}: {name}{spec} but pyproject.toml says {name}{declared[name]}"


def test_envs_provide_the_package_dependencies():
    """The post-deploy scripts install the package with --no-deps: each env lists what it needs."""
    base = requirements(project()["dependencies"])
    train = {**base, **requirements(project()["optional-dependencies"]["train"])}
    for env, needed in (("analysis.yaml", base), ("train.yaml", train)):
        listed = requirements(pip_section(REPO / "envs" / env))
        assert not needed.keys() - listed.keys(), f"{env} lacks {sorted(needed.keys() - listed.keys())}"


def test_analysis_env_has_no_torch():
    pip = pip_section(REPO / "envs" / "analysis.yaml")
    assert not [p for p in pip if "torch" in p or "timm" in p]


# ---- (b) a stub conda ------------------------------------------------------------------------

FAKE_CONDA = r'''#!{python}
"""Stand-in for conda: records each call, answers what Snakemake asks, builds a stub env."""
import json, os, subprocess, sys, tempfile
import yaml

LOG, BASE, ENV_PYTHON = {log!r}, {base!r}, {env_python!r}


def record(**extra):
    with open(LOG, "a") as f:
        f.write(json.dumps({{"program": "conda", "argv": sys.argv[1:], "cwd": os.getcwd(), **extra}}) + "\n")


args = sys.argv[1:]
if args == ["--version"]:
    record()
    print("conda 24.11.3")
elif args == ["info", "--json"]:
    record()
    print(json.dumps({{"conda_prefix": BASE, "platform": "linux-64", "conda_version": "24.11.3"}}))
elif args[:3] == ["config", "--get", "channel_priority"]:
    record()
    print(json.dumps({{"get": {{"channel_priority": "strict"}}, "rc_path": None, "success": True, "warnings": []}}))
elif args[0] == "clean":  # Snakemake deletes downloaded package tarballs after creating an env
    record()
elif args[:2] == ["env", "create"]:
    file, prefix = args[args.index("--file") + 1], args[args.index("--prefix") + 1]
    content = open(file).read()
    record(file=os.path.abspath(file), content=content, prefix=prefix)
    os.makedirs(os.path.join(prefix, "bin"))
    python = os.path.join(prefix, "bin", "python")
    with open(python, "w") as f:
        f.write(ENV_PYTHON)
    os.chmod(python, 0o755)
    # conda's pip installer: the requirements file goes next to --file, and pip runs there
    pip = [d["pip"] for d in yaml.safe_load(content)["dependencies"] if isinstance(d, dict) and "pip" in d]
    if pip:
        workdir = os.path.dirname(os.path.abspath(file))
        if not os.access(workdir, os.W_OK):
            workdir = None
        with tempfile.NamedTemporaryFile("w", prefix="condaenv.", suffix=".requirements.txt", dir=workdir,
                                         delete=False) as req:
            req.write("\n".join(pip[0]))
        try:
            cmd = [python, "-m", "pip", "install", "-U", "-r", req.name, "--exists-action=b"]
            sys.exit(subprocess.run(cmd, cwd=workdir).returncode)
        finally:
            os.remove(req.name)
else:
    record()
    sys.exit(f"stub conda: unexpected call {{args}}")
'''

ENV_PYTHON = r'''#!{python}
"""The new environment's python, as far as pip goes: records each `python -m pip ...` call."""
import json, os, sys

args = sys.argv[1:]
if args[:2] != ["-m", "pip"]:
    sys.exit(f"stub python: only `python -m pip` is expected, got {{args}}")
requirement_files = {{}}
for flag, value in zip(args, args[1:]):
    if flag in ("-r", "--requirement"):
        with open(value) as f:  # pip opens it relative to its working directory
            requirement_files[value] = f.read()
with open({log!r}, "a") as f:
    f.write(json.dumps({{
        "program": "pip", "prefix": os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        "argv": args[2:], "cwd": os.getcwd(), "requirement_files": requirement_files,
        "environ": dict(os.environ),
    }}) + "\n")
'''

# conda's bin/activate, sourced by Snakemake before the post-deploy script
ACTIVATE = 'CONDA_PREFIX="$1"; PATH="$1/bin:$PATH"; export CONDA_PREFIX PATH\n'


@pytest.fixture
def fake_conda(tmp_path: Path) -> tuple[dict, Path]:
    """(environment with a stub conda first on PATH, the log it writes)."""
    base, log = tmp_path / "conda-base", tmp_path / "conda-calls.jsonl"
    (base / "bin").mkdir(parents=True)
    env_python = ENV_PYTHON.format(python=sys.executable, log=str(log))
    conda = base / "bin" / "conda"
    conda.write_text(FAKE_CONDA.format(python=sys.executable, log=str(log), base=str(base), env_python=env_python))
    conda.chmod(conda.stat().st_mode | stat.S_IXUSR)
    (base / "bin" / "activate").write_text(ACTIVATE)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONDA") and k != "KDTRANSFER_ROOT"}
    environ["PATH"] = f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}"
    return environ, log


def calls(log: Path, program: str) -> list[dict]:
    return [c for c in map(json.loads, log.read_text().splitlines()) if c["program"] == program]


_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")  # pip expands ${NAME} in requirement files
_TAKES_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--src",
}


def local_installs(pip_call: dict) -> list[tuple[Path, bool, str]]:
    """(resolved path, editable, as written) for each local path that one pip call installs, from
    its command line or its requirement files, resolved against pip's working directory."""
    tokens = list(pip_call["argv"])
    for text in pip_call["requirement_files"].values():
        for line in text.splitlines():
            line = re.sub(r"(^|\s+)#.*$", "", line).strip()
            line = _ENV_VAR.sub(lambda m: pip_call["environ"].get(m.group(1)) or m.group(0), line)
            tokens.extend(line.split(None, 1) if line.startswith("-") else [line] if line else [])
    out, i = [], 0
    while i < len(tokens):
        token, editable = tokens[i], False
        if token in ("-e", "--editable"):
            editable, token, i = True, tokens[i + 1], i + 1
        elif token.startswith("--editable="):
            editable, token = True, token.split("=", 1)[1]
        elif token in _TAKES_VALUE:
            i += 2
            continue
        i += 1
        if editable or token.startswith((".", "/", "file:")):
            path = unquote(urlparse(token).path) if token.startswith("file:") else token
            out.append((Path(os.path.normpath(os.path.join(pip_call["cwd"], path))), editable, token))
    return out


def assert_each_env_installs(log: Path, root: Path) -> None:
    created = {c["prefix"]: c for c in calls(log, "conda") if c["argv"][:2] == ["env", "create"]}
    assert sorted(c["content"] for c in created.values()) == sorted(e.read_text() for e in ENVS), (
        "Snakemake should have created one environment per envs/*.yaml"
    )
    installs = {prefix: [] for prefix in created}
    for call in calls(log, "pip"):
        installs[call["prefix"]] += [
            (path, editable, token, call["cwd"]) for path, editable, token in local_installs(call)
        ]
    for prefix, found in installs.items():
        env = next(e.name for e in ENVS if e.read_text() == created[prefix]["content"])
        assert [(path.resolve(), editable) for path, editable, *_ in found] == [(root.resolve(), True)], (
            f"{env} (env {prefix}) should install the workflow's root {root} once, editable; pip was asked for "
            + "; ".join(f"{token!r} in {cwd} -> {path} (editable={editable})" for path, editable, token, cwd in found)
        )


def run_snakemake(cwd: Path, environ: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*SNAKEMAKE, "--sdm", "conda", "--conda-create-envs-only", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def checkout(tmp_path: Path) -> Path:
    """A copy of the workflow that is also a checkout of the package (pyproject.toml, src/)."""
    (tmp_path / "kdtransfer").mkdir()
    root = copy_workflow(tmp_path / "kdtransfer")
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return root


@pytest.mark.parametrize("where", ["default", "conda-prefix", "slurm-profile"])
def test_conda_envs_install_this_checkout(tmp_path, fake_conda, where):
    """From the repository root, with envs under .snakemake/conda, under a --conda-prefix outside
    the checkout (as profiles/slurm suggests), or through profiles/slurm."""
    environ, log = fake_conda
    root = checkout(tmp_path)
    args = {
        "default": [],
        "conda-prefix": ["--conda-prefix", str(tmp_path / "shared" / "conda-envs")],
        "slurm-profile": ["--profile", "profiles/slurm"],
    }[where]
    run_snakemake(root, environ, "--configfile", "tests/configs/tiny.yaml", *args)
    assert_each_env_installs(log, root)


def test_conda_envs_install_the_named_checkout_from_another_directory(tmp_path, fake_conda):
    """`snakemake -s <checkout>/Snakefile -d <elsewhere>`: KDTRANSFER_ROOT names the checkout."""
    environ, log = fake_conda
    root = checkout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_snakemake(
        elsewhere,
        {**environ, "KDTRANSFER_ROOT": str(root)},
        "--snakefile",
        str(root / "Snakefile"),
        "--configfile",
        str(root / "tests" / "configs" / "tiny.yaml"),
    )
    assert_each_env_installs(log, root)


@pytest.mark.parametrize("script", sorted((REPO / "envs").glob("*.post-deploy.sh")), ids=lambda p: p.name)
def test_post_deploy_refuses_a_directory_that_is_not_the_checkout(tmp_path, fake_conda, script):
    """Run elsewhere without KDTRANSFER_ROOT, the script installs nothing and names the fix."""
    environ, log = fake_conda
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text(ENV_PYTHON.format(python=sys.executable, log=str(log)))
    (env / "bin" / "python").chmod(0o755)
    proc = subprocess.run(
        ["sh", str(script)],
        cwd=tmp_path,
        env={**environ, "CONDA_PREFIX": str(env)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"{tmp_path.resolve()} is not a kdtransfer checkout" in proc.stderr, proc.stderr
    assert "KDTRANSFER_ROOT=" in proc.stderr, proc.stderr
    assert not log.exists() or not calls(log, "pip")
