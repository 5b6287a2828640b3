"""The conda environments and pyproject.toml pin the same versions."""

import re
import tomllib

import yaml

from conftest import REPO


def requirements(lines):
    out = {}
    for req in lines:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*([<>=!~].*)?$", req.strip())
        if m:
            out[m.group(1).lower()] = (m.group(2) or "").strip()
    return out


def test_env_pins_agree_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = requirements(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.update(requirements(extra))
    for env in (REPO / "envs").glob("*.yaml"):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict))
        for name, spec in requirements(p for p in pip if not p.startswith("-e")).items():
            assert name in declared, f"{env.name}: {name} is not declared in pyproject.toml"
            assert spec == declared[name], f"{env.name}: {name}{spec} but pyproject.toml says {name}{declared[name]}"


def test_analysis_env_has_no_torch():
    deps = yaml.safe_load((REPO / "envs" / "analysis.yaml").read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert not [p for p in pip if "torch" in p or "timm" in p]
