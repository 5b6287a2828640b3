"""Option types and value ranges for dataset loaders and models, checked before any job runs.

A type is a Python annotation as text, in the subset that a YAML config can express: int,
float, bool, str, None, list[T], and unions with `|` ("list[int] | int", "int | None").
A value range (`Values`: between, at_least, one_of) applies to a number, a string, or each
item of a list; null always passes it (null means "not set"). Loaders declare their types in
their signatures and their ranges with kdtransfer.data.core.loader; built-in models both in
kdtransfer.catalog. Checking needs nothing heavy (no torch): the Snakefile does it at parse time.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Values:
    """The values an option may take, and how a message names them ("in (0, 1)")."""

    phrase: str
    test: Callable[[Any], bool]

    def problem(self, value: Any) -> str | None:
        """'-4 is not at least 1' for the first value (or list item) outside the range."""
        is_list = isinstance(value, (list, tuple))
        for number, item in enumerate(value if is_list else [value], start=1):
            if item is not None and not isinstance(item, bool) and not self.test(item):
                where = f" (item {number} of {_show(value)})" if is_list else ""
                return f"{_show(item)}{where} is not {self.phrase}"
        return None


def between(low: float, high: float, *, low_closed: bool = False, high_closed: bool = False) -> Values:
    """An interval; open at both ends unless said (a fraction: between(0, 1))."""
    left, right = "[" if low_closed else "(", "]" if high_closed else ")"
    above = (lambda v: v >= low) if low_closed else (lambda v: v > low)
    below = (lambda v: v <= high) if high_closed else (lambda v: v < high)
    shown = "inf" if math.isinf(high) else f"{high:g}"
    return Values(f"in {left}{low:g}, {shown}{right}", lambda v: above(v) and below(v))


def at_least(low: int) -> Values:
    return Values(f"at least {low}", lambda v: v >= low)


def one_of(*choices) -> Values:
    return Values("one of " + ", ".join(map(repr, choices)), lambda v: v in choices)


FRACTION = between(0, 1)  # a share of the data: neither none nor all of it
DROPOUT = between(0, 1, low_closed=True)  # a probability of dropping; 1 would drop everything
POSITIVE = between(0, math.inf)  # a real number above 0 (a ratio)
COUNT = at_least(1)  # sizes, widths, lengths, numbers of layers and samples
SEED = at_least(0)  # numpy's generators take non-negative seeds

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
            raise TypeError(
                f"unsupported option type {part!r} in {annotation!r}: use int, float, bool, str, None, list[...] and |"
            )
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
    holds_bool = isinstance(value, bool) or (
        isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)
    )
    if wants_text and holds_bool:
        return '; YAML reads unquoted yes, no, on, off, true and false as booleans: quote them (e.g. "yes")'
    return ""


def _is_number(text: str) -> bool:
    # Only numbers with an exponent: YAML 1.1 reads 1e-3 (no point) and 1.0e3 (no sign) as text.
    return re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", text.strip()) is not None


def _show(value: Any) -> str:
    return repr(list(value) if isinstance(value, tuple) else value)


def option_problem(
    declared: Mapping[str, str],
    given: Mapping[str, Any],
    where: str,
    owner: str,
    values: Mapping[str, Values] | None = None,
) -> str | None:
    """What is wrong with `given` options, as one message (None: nothing). `declared` maps each
    option to its type annotation, `values` some of them to their range; `where` is the config
    path of the options (e.g. models.mlp.options), `owner` what takes them (e.g. "mlp")."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(declared), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        valid = ", ".join(declared) or "none"
        return f"unknown option {unknown[0]!r} at {where}{hint}; options of {owner}: {valid}"
    for name, value in given.items():
        annotation = declared[name]
        if not matches(value, annotation):
            return (
                f"{where}.{name}: expected {describe(annotation)}{_example(annotation)}, got {_show(value)}"
                f"{_yaml_hint(value, annotation)}"
            )
        outside = name in (values or {}) and values[name].problem(value)
        if outside:
            return f"{where}.{name}: {outside}"
    return None


def signature_options(function) -> dict[str, str]:
    """{option: annotation text} of a function whose parameters are all options (a dataset
    loader): every one must be a keyword with a default and a type annotation."""
    options = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if (
            parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            or parameter.default is inspect.Parameter.empty
        ):
            raise TypeError(
                f"{function.__qualname__}: parameter {name!r} must be a keyword with a default "
                "(every parameter is a config option; no **kwargs, so typos are caught)"
            )
        try:
            options[name] = annotation_text(parameter.annotation)
            _alternatives(options[name])
        except TypeError as exc:
            raise TypeError(f"{function.__qualname__}: parameter {name!r}: {exc}") from None
    return options
