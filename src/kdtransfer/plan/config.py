"""Config validation with messages that name the offending key and the valid choices.

Runs at Snakefile parse time, before any job: the config files' YAML (syntax, with line and
column; duplicate keys), the schema (unknown keys rejected, defaults filled), then
cross-references (setups name existing datasets, models and recipes; loaders and model
architectures exist; loader and model options have the declared names and types, see
kdtransfer.options). torch is imported only if a `timm:` model must be checked.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re

import jsonschema
import yaml

from kdtransfer.catalog import BUILTIN_MODELS, TIMM_PREFIX, input_problem, model_problem
from kdtransfer.plan.sweeps import expand_setups


class ConfigError(ValueError):
    pass


def _path(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def _allowed_keys(schema: dict) -> list[str]:
    return sorted(schema.get("properties", {}))


def _hint(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_error(err: jsonschema.ValidationError) -> str:
    where = _path(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = _allowed_keys(err.schema)
        extra = [k for k in err.instance if k not in allowed]
        if allowed:
            key = extra[0] if extra else "?"
            return (
                f"unknown config key {_path([*err.absolute_path, key])!r}{_hint(key, allowed)}; "
                f"valid keys at {where}: {', '.join(allowed)}"
            )
    if err.validator == "enum":
        return (
            f"config value {err.instance!r} at {where} is not allowed{_hint(err.instance, err.validator_value)}; "
            f"valid choices: {', '.join(map(str, err.validator_value))}"
        )
    if err.validator == "required":
        return f"config at {where} is missing a required key: {err.message}"
    if "propertyNames" in err.schema_path:
        return _bad_name_message(str(err.instance), where, err.validator_value)
    if where in NO_RUN_HINTS and _is_empty(err.instance):
        return f"config at {where}: {err.message}; {NO_RUN_HINTS[where]}"
    if err.validator == "type" and isinstance(err.instance, str) and _EXPONENT_NUMBER.fullmatch(err.instance.strip()):
        return (
            f"config at {where}: {err.instance!r} is text, not a number: YAML reads {err.instance} as a string; "
            f"write it with a decimal point and a signed exponent (e.g. 1.0e-3)"
        )
    return f"config at {where}: {err.message}"


# YAML 1.1 (PyYAML, hence Snakemake) reads 1e-3 (no point) and 1.0e3 (unsigned exponent) as text.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


# Keys that, when empty, leave nothing to train: say so, and what to write instead.
NO_RUN_HINTS = {
    "seeds": (
        "this config would produce no runs: set `seeds` to a count >= 1 (e.g. seeds: 10) or a list (seeds: [0, 1, 2])"
    ),
    "setups": "this config would produce no runs: define at least one setup (dataset, teacher, recipe)",
    "datasets": "define at least one dataset (e.g. digits: {loader: digits})",
    "models": "define at least one model (e.g. mlp: {arch: mlp})",
    "recipes": "define at least one recipe (lr, epochs, batch_size)",
}


def _bad_name_message(name: str, where: str, pattern: str) -> str:
    fixed = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not re.match(pattern, fixed):
        fixed = f"x{fixed}"
    renamed = "" if where == "setups" else " and every setup that refers to it"
    return (
        f"{where}.{name}: {name!r} is not a valid name: names under `{where}` may use letters, digits and _ "
        f"and start with a letter (they become file names and Snakemake wildcards); rename it (e.g. to "
        f"{fixed!r}){renamed}"
    )


def _is_empty(value) -> bool:
    if isinstance(value, (dict, list)):
        return not value
    return isinstance(value, int) and not isinstance(value, bool) and value < 1


def check_config_files(paths) -> None:
    """Read each config file as Snakemake does (JSON, else YAML) and raise ConfigError naming
    the file, line and column of a YAML syntax error, or a key written twice in one mapping
    (YAML keeps the last silently: a second `digits_mlp:` would replace the first). Missing
    files are left to Snakemake."""
    for path in map(str, paths):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            json.loads(text, object_pairs_hook=lambda pairs: _no_duplicate_json_keys(path, pairs))
        except ConfigError:
            raise
        except ValueError:
            pass  # not JSON: YAML
        else:
            continue
        try:
            document = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            raise ConfigError(_yaml_error_message(path, exc)) from None
        if document is not None and not _uses_yte(document):
            _no_duplicate_yaml_keys(path, document)


def _yaml_error_message(path: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else path
    message = f"{where}: YAML syntax error: {exc.problem or exc.context}"
    if exc.context and exc.context_mark and exc.problem:
        message += f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    if "\\t" in str(exc.problem):
        message += "; indent with spaces, not tabs"
    return message


def _uses_yte(document) -> bool:
    # yte templates (`__use_yte__: true`) may repeat keys such as `?if`; leave them to yte.
    return isinstance(document, yaml.MappingNode) and any(key.value == "__use_yte__" for key, _ in document.value)


def _no_duplicate_yaml_keys(path: str, node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                # By tag too: `1:` and `"1":` are different keys.
                if (key.tag, key.value) in seen:
                    raise ConfigError(
                        f"{path}, line {key.start_mark.line + 1}: key {key.value!r} appears twice in one mapping "
                        f"(first at line {seen[key.tag, key.value] + 1}); YAML would silently keep only the last: "
                        f"rename or merge them"
                    )
                seen[key.tag, key.value] = key.start_mark.line
            _no_duplicate_yaml_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _no_duplicate_yaml_keys(path, item)


def _no_duplicate_json_keys(path: str, pairs) -> dict:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ConfigError(
                f"{path}: key {key!r} appears twice in one object; JSON readers keep only the last: "
                f"rename or merge them"
            )
    return dict(pairs)


def _with_defaults(validator_class):
    """A validator that also fills in `default`s, like snakemake.utils.validate(set_default=True)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict, schema_path: str) -> dict:
    """Return a validated copy of `config` with defaults filled; raise ConfigError otherwise."""
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    config = copy.deepcopy(dict(config))
    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    # Two passes: defaults inserted in the first (e.g. `kd: {}`) get their own defaults next.
    for _ in range(2):
        errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
        if errors:
            best = jsonschema.exceptions.best_match(errors)
            # Prefer the most specific message for unknown keys and enums.
            for e in errors:
                if e.validator in ("additionalProperties", "enum"):
                    best = e
                    break
            raise ConfigError(_format_error(best))
    _check_references(config)
    return config


def _check_references(config: dict) -> None:
    from kdtransfer.data import DATASETS, dataset_problem

    for name, ds in config["datasets"].items():
        if ds["loader"] not in DATASETS:
            raise ConfigError(
                f"unknown dataset {ds['loader']!r} at datasets.{name}.loader{_hint(ds['loader'], DATASETS)}; "
                f"valid choices: {', '.join(sorted(DATASETS))}"
            )
        _raise_if(dataset_problem(ds["loader"], ds["options"], f"datasets.{name}.options"))
    timm_names = []
    for name, model in config["models"].items():
        arch = model["arch"]
        derived = sorted(set(model.get("options", {})) & DATASET_DERIVED_OPTIONS)
        if derived:
            # Teacher and student take these from the setup's dataset, so they always agree.
            raise ConfigError(
                f"models.{name}.options.{derived[0]}: the number of classes, input channels and vocabulary size "
                f"come from the setup's dataset (teacher and student must agree on them); remove the option"
            )
        if arch.startswith(TIMM_PREFIX):
            timm_names.append((name, arch))
        elif arch not in BUILTIN_MODELS:
            raise ConfigError(
                f"unknown model {arch!r} at models.{name}.arch{_hint(arch, BUILTIN_MODELS)}; valid choices: "
                f"{', '.join(BUILTIN_MODELS)}, or any timm model as 'timm:<name>' (e.g. timm:resnet18)"
            )
        else:
            _raise_if(model_problem(arch, model["options"], f"models.{name}.options"))
    if timm_names:
        import timm  # only now: it imports torch

        for name, arch in timm_names:
            if not timm.is_model(arch[len(TIMM_PREFIX) :]):
                raise ConfigError(
                    f"unknown timm model {arch!r} at models.{name}.arch"
                    f"{_hint(arch[len(TIMM_PREFIX) :], timm.list_models())}; see timm.list_models()"
                )
    for key, section in (("dataset", "datasets"), ("teacher", "models"), ("student", "models"), ("recipe", "recipes")):
        for setup_name, setup in config["setups"].items():
            if key in setup and setup[key] not in config[section]:
                raise ConfigError(
                    f"setups.{setup_name}.{key} names {setup[key]!r}, which is not defined under `{section}`"
                    f"{_hint(setup[key], config[section])}; defined: {', '.join(sorted(config[section]))}"
                )
    for setup_name, setup in config["setups"].items():
        _check_setup(setup_name, setup, config)
    _check_training(config["training"])
    try:
        setups = expand_setups(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    for setup_name, setup in setups.items():
        _check_inputs(setup_name, setup, config)


def _check_inputs(setup_name: str, setup: dict, config: dict) -> None:
    """Teacher and student can read the setup's dataset, where its sample shape is known before
    it is prepared (every built-in loader's is; timm models are left to timm)."""
    from kdtransfer.data import sample_shape

    dataset = config["datasets"][setup["dataset"]]
    known = sample_shape(dataset["loader"], dataset["options"])
    if known is None:
        return
    shape, tokens = known
    where = f"setups.{setup['sweep_group'] or setup_name}"
    if setup["sweep_group"] and setup_name != setup["sweep_group"]:
        where += f" (its sweep point {setup['label']!r})"
    for role in ("teacher", "student"):
        model = config["models"][setup[role]]
        if model["arch"] in BUILTIN_MODELS:
            problem = input_problem(model["arch"], model["options"], shape, tokens)
            if problem:
                raise ConfigError(
                    f"config at {where}: its {role} models.{setup[role]} cannot read dataset "
                    f"{setup['dataset']}: {problem}; change models.{setup[role]}.options, or pick "
                    f"another model or dataset for the setup"
                )


def _raise_if(problem: str | None) -> None:
    if problem:
        # A wrong type or value names its key first, as the schema's messages do.
        raise ConfigError(problem if problem.startswith("unknown option") else f"config at {problem}")


def _check_training(training: dict) -> None:
    splits = training["predict_splits"]
    if "test" not in splits:
        raise ConfigError(
            f"training.predict_splits is {splits}, without test: every analysis (metrics, tests, figures) compares "
            f"the runs' test predictions; write [test] (the default) or [test, train]"
        )


DATASET_DERIVED_OPTIONS = {"num_classes", "in_chans", "in_channels", "in_features", "vocab_size"}


def _check_setup(name: str, setup: dict, config: dict) -> None:
    kd = setup["kd"]
    if kd["variant"] != "logit":
        if not kd.get("layers"):
            raise ConfigError(
                f"setups.{name}.kd.variant is {kd['variant']!r}, which needs `layers`: the student modules whose "
                f"feature maps are matched, e.g. layers: [layer3] for resnet_cifar"
            )
        teacher_layers = kd.get("teacher_layers") or kd["layers"]
        if len(teacher_layers) != len(kd["layers"]):
            raise ConfigError(
                f"setups.{name}.kd.teacher_layers has {len(teacher_layers)} names but kd.layers has "
                f"{len(kd['layers'])}: they are matched pairwise"
            )
    elif kd.get("layers") or kd.get("teacher_layers"):
        raise ConfigError(f"setups.{name}.kd.layers is set but kd.variant is 'logit'; set variant to hint or attention")
    for axis, section in (("model", "models"), ("student", "models"), ("recipe", "recipes")):
        for value in setup.get("sweep", {}).get(axis, []):
            if value not in config[section]:
                raise ConfigError(
                    f"setups.{name}.sweep.{axis} names {value!r}, which is not defined under `{section}`"
                    f"{_hint(value, config[section])}; defined: {', '.join(sorted(config[section]))}"
                )
