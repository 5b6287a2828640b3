"""Option types for dataset loaders and models, checked before any job runs.

A type is a Python annotation as text, in the subset that a YAML config can express: int,
float, bool, str, None, list[T], and unions with `|` ("list[int] | int", "int | None").
Loaders declare theirs in their signatures; built-in models in kdtransfer.catalog. Checking
needs nothing heavy (no torch): the Snakefile does it at parse time.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Any, Mapping

# Scalar type name -> (what a message calls it, its plural, test).
_SCALARS = {
    "int": ("an integer", "integers", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    # A whole number is a valid float (`dropout: 0`); YAML has no other way to tell them apart.
    "float": ("a number", "numbers", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "bool": ("true or false", "booleans", lambda v: isinstance(v, bool)),
    "str": ("a string", "strings", lambda v: isinstance(v, str)),
    "None": ("null", "nulls", lambda v: v is None),
}
# One example of each list type, written as in YAML.
_LIST_EXAMPLES = {"int": "[64]", "float": "[0.5]", "str": '["yes", "no"]', "bool": "[true]"}
_LIST = re.compile(r"^list\[(.+)\]$")


def annotation_text(annotation: Any) -> str:
    """A signature's annotation as text: modules with `from __future__ import annotations`
    store strings, the others type objects."""
    if annotation is inspect.Parameter.empty:
        raise TypeError("no type annotation")
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _alternatives(annotation: str) -> list[str]:
    # Split at top-level `|` only ("list[int | None] | int" has two alternatives).
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(annotation):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            parts.append(annotation[start:i].strip())
            start = i + 1
    parts.append(annotation[start:].strip())
    for part in parts:
        if part not in _SCALARS and not _LIST.match(part):
            raise TypeError(f"unsupported option type {part!r} in {annotation!r}: use int, float, bool, str, None, "
                            "list[...] and |")
    return parts


def matches(value: Any, annotation: str) -> bool:
    for part in _alternatives(annotation):
        inner = _LIST.match(part)
        if inner:
            # YAML gives lists; tuples are Python defaults such as channels=(16, 32).
            if isinstance(value, (list, tuple)) and all(matches(item, inner.group(1)) for item in value):
                return True
        elif _SCALARS[part][2](value):
            return True
    return False


def describe(annotation: str) -> str:
    """'list[int] | int' -> 'a list of integers or an integer'."""
    words = []
    for part in _alternatives(annotation):
        inner = _LIST.match(part)
        if inner:
            items = _alternatives(inner.group(1))
            words.append("a list of " + " or ".join(_SCALARS[i][1] if i in _SCALARS else "lists" for i in items))
        else:
            words.append(_SCALARS[part][0])
    return " or ".join(words)


def _example(annotation: str) -> str:
    for part in _alternatives(annotation):
        inner = _LIST.match(part)
        if inner and inner.group(1) in _LIST_EXAMPLES:
            return f" (e.g. {_LIST_EXAMPLES[inner.group(1)]})"
    return ""


def _yaml_hint(value: Any, annotation: str) -> str:
    """The two YAML 1.1 surprises a config meets: 1e-3 is text, unquoted yes/no/on/off are booleans."""
    parts = set(_alternatives(annotation))
    if isinstance(value, str) and parts & {"float", "int"} and _is_number(value):
        return f"; YAML reads {value} as text: write it with a decimal point and a signed exponent (e.g. 1.0e-3)"
    wants_text = "str" in parts or "list[str]" in parts
    holds_bool = isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value))
    if wants_text and holds_bool:
        return "; YAML reads unquoted yes, no, on, off, true and false as booleans: quote them (e.g. \"yes\")"
    return ""


def _is_number(text: str) -> bool:
    # Only numbers with an exponent: YAML 1.1 reads 1e-3 (no point) and 1.0e3 (no sign) as text.
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", text.strip()) is not None


def _show(value: Any) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)


def option_problem(declared: Mapping[str, str], given: Mapping[str, Any], where: str, owner: str) -> str | None:
    """What is wrong with `given` options, as one message (None: nothing). `declared` maps each
    option to its type annotation; `where` is the config path of the options (e.g.
    models.mlp.options), `owner` what takes them (e.g. "mlp")."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(declared), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        valid = ", ".join(declared) or "none"
        return f"unknown option {unknown[0]!r} at {where}{hint}; options of {owner}: {valid}"
    for name, value in given.items():
        annotation = declared[name]
        if not matches(value, annotation):
            return (f"{where}.{name}: expected {describe(annotation)}{_example(annotation)}, got {_show(value)}"
                    f"{_yaml_hint(value, annotation)}")
    return None


def signature_options(function) -> dict[str, str]:
    """{option: annotation text} of a function whose parameters are all options (a dataset
    loader): every one must be a keyword with a default and a type annotation."""
    options = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) \
                or parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{function.__qualname__}: parameter {name!r} must be a keyword with a default "
                            "(every parameter is a config option; no **kwargs, so typos are caught)")
        try:
            options[name] = annotation_text(parameter.annotation)
            _alternatives(options[name])
        except TypeError as exc:
            raise TypeError(f"{function.__qualname__}: parameter {name!r}: {exc}") from None
    return options
