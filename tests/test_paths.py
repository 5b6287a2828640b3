"""Rule names and result paths are spelled once, in kdtransfer.paths: its rule names are the
workflow's, and no other module of the package spells a rule name or a results path in code."""

from __future__ import annotations

import ast
import re

from conftest import REPO

from kdtransfer import paths

RULE_CONSTANTS = (
    "DOWNLOAD_RULE",
    "DOWNLOAD_TARGET",
    "PREPARE_RULE",
    "STATISTICS_RULE",
    "TRAIN_REFERENCE_RULE",
    "TRAIN_DISTILLED_RULE",
)


def _workflow_text() -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))


def test_every_rule_name_in_paths_is_a_rule_of_the_workflow():
    text = _workflow_text()
    literal = set(re.findall(r"^rule (\w+):", text, flags=re.M))
    pack_kinds = set(re.findall(r"pack_rule_name\(paths\.(\w+), block\)", text))
    assert pack_kinds == {"TRAIN_REFERENCE_RULE", "TRAIN_DISTILLED_RULE"}
    for name in RULE_CONSTANTS:
        if name not in pack_kinds:
            assert getattr(paths, name) in literal, (
                f"paths.{name} = {getattr(paths, name)!r} is not a rule of workflow/rules"
            )
    assert paths.pack_rule_name(paths.TRAIN_REFERENCE_RULE, "seeds0to9") == "train_reference_seeds0to9"


def _code_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_module_but_paths_spells_a_rule_name_or_a_results_path():
    rules = {getattr(paths, name) for name in RULE_CONSTANTS} | set(
        re.findall(r"^rule (\w+):", _workflow_text(), flags=re.M)
    )
    spelled = re.compile(
        r"(?:^|[\s`(])(?:"
        + "|".join(sorted(map(re.escape, rules - {"metrics", "figures", "tables", "statistics"})))
        + r")\b"
        r"|--forcerun \w|\b(?:results|resources)/"
    )
    found = []
    for source in sorted((REPO / "src" / "kdtransfer").rglob("*.py")):
        if source.name == "paths.py" and source.parent.name == "kdtransfer":
            continue
        for line, text in _code_strings(ast.parse(source.read_text())):
            if spelled.search(text):
                found.append(f"{source.relative_to(REPO)}:{line}: {text!r}")
    assert not found, "\n".join(found)


def test_a_results_path_moves_with_the_results_directory():
    assert str(paths.in_results(paths.VERDICTS, "elsewhere")) == "elsewhere/analysis/verdicts.parquet"
    assert (
        paths.training_rule_of("results/runs/kd/s-1a2b3c4d/seed0/model.pt")
        == "its training pack (rule train_distilled_seeds...)"
    )
    assert (
        paths.training_rule_of("results/runs/teacher/d/m/r-1a2b3c4d/seed0/model.pt")
        == "its training pack (rule train_reference_seeds...)"
    )
    assert paths.training_rule_of("somewhere/model.pt") == "the training rule"
