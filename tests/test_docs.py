"""The documentation stays true to the code: docs/architecture.md is generated from the module
docstrings (docs/build_architecture.py) and never drifts from them, and every relative link in
the README, the changelog and docs/ points at a file that exists."""

import importlib.util
import re
import shutil

import pytest
from conftest import REPO

ARCHITECTURE = REPO / "docs" / "architecture.md"
LINKED_DOCUMENTS = ["README.md", "CHANGELOG.md", "docs/*.md"]


def build_architecture():
    spec = importlib.util.spec_from_file_location("build_architecture", REPO / "docs" / "build_architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_page_is_generated_from_the_docstrings():
    expected = build_architecture().render(REPO / "src" / "kdtransfer")
    assert ARCHITECTURE.read_text(encoding="utf-8") == expected, (
        "docs/architecture.md is out of date with the module docstrings: run python3 docs/build_architecture.py"
    )


def test_architecture_page_follows_a_changed_docstring(tmp_path):
    """The check above can fail: a docstring edited, a module added, each changes the page."""
    build = build_architecture()
    package = tmp_path / "kdtransfer"
    shutil.copytree(REPO / "src" / "kdtransfer", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = build.render(package)
    options = package / "options.py"
    options.write_text('"""A drifted docstring."""\n' + options.read_text(encoding="utf-8"), encoding="utf-8")
    edited = build.render(package)
    assert edited != before and "- `options.py`: A drifted docstring." in edited
    (package / "plan" / "new_module.py").write_text('"""Something new.\n\nNot on the page."""\n')
    added = build.render(package)
    assert "- `new_module.py`: Something new.\n" in added and "Not on the page" not in added


def test_every_module_is_on_the_architecture_page():
    page = ARCHITECTURE.read_text(encoding="utf-8")
    for path in sorted((REPO / "src" / "kdtransfer").rglob("*.py")):
        if "__pycache__" not in path.parts and path.name != "__init__.py":
            assert f"- `{path.name}`: " in page, path


def links(text: str) -> list[str]:
    """Markdown link targets, without their #anchors; web addresses and pure anchors left out."""
    targets = (m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text))
    return [t for t in targets if t and not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("pattern", LINKED_DOCUMENTS)
def test_relative_links_resolve(pattern):
    broken = []
    for path in sorted(REPO.glob(pattern)):
        for target in links(path.read_text(encoding="utf-8")):
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_the_link_check_can_fail():
    assert links("see [a](docs/a.md#x), [b](https://example.org) and [c](#top)") == ["docs/a.md"]


def test_readme_is_short():
    """A newcomer reads it in ten minutes; details live in docs/."""
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
