"""Bad configs stop the workflow before any job, naming the key or value and the valid choices."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, plan_of, snakemake, training_jobs

from kdtransfer.plan.config import ConfigError, check_config_files, validate_config
from kdtransfer.plan.runs import Plan

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def bad(mutate):
    cfg = copy.deepcopy(DEFAULT)
    mutate(cfg)
    return cfg


CASES = {
    "unknown top-level key": (lambda c: c.update(epochs=3), ["unknown config key 'epochs'", "valid keys", "setups"]),
    "unknown nested key": (
        lambda c: c["setups"]["digits_mlp"]["kd"].update(temprature=2),
        [
            "setups.digits_mlp.kd.temprature",
            "did you mean 'temperature'",
            "alpha, feature_weight, layers, teacher_layers, temperature, variant",
        ],
    ),
    "unknown model": (
        lambda c: c["models"]["mlp"].update(arch="resnet9000"),
        ["unknown model 'resnet9000'", "models.mlp.arch", "mlp, cnn1d, cnn2d", "timm:"],
    ),
    "unknown timm model": (
        lambda c: c["models"]["mlp"].update(arch="timm:resnet_nope"),
        ["unknown timm model 'timm:resnet_nope'", "models.mlp.arch"],
    ),
    "unknown dataset": (
        lambda c: c["datasets"]["digits"].update(loader="cifar1000"),
        ["unknown dataset 'cifar1000'", "datasets.digits.loader", "digits, mnist1d, mnist_subset"],
    ),
    "undefined dataset reference": (
        lambda c: c["setups"]["digits_mlp"].update(dataset="digitz"),
        ["setups.digits_mlp.dataset", "'digitz'", "did you mean 'digits'"],
    ),
    "unknown model option": (
        lambda c: c["models"]["cnn1d"]["options"].update(chanels=[4]),
        [
            "unknown option 'chanels' at models.cnn1d.options",
            "did you mean 'channels'",
            "options of cnn1d: channels, pooled",
        ],
    ),
    "model option the dataset decides": (
        lambda c: c["models"]["mlp"]["options"].update(num_classes=100),
        ["models.mlp.options.num_classes", "come from the setup's dataset", "teacher and student must agree"],
    ),
    "feature variant without layers": (
        lambda c: c["setups"]["digits_mlp"]["kd"].update(variant="hint"),
        ["setups.digits_mlp.kd.variant is 'hint', which needs `layers`"],
    ),
    "unknown model in a size sweep": (
        lambda c: c["setups"]["digits_mlp"].update(sweep={"model": ["mpl"]}),
        ["setups.digits_mlp.sweep.model names 'mpl'", "did you mean 'mlp'"],
    ),
    "bad enum": (
        lambda c: c["setups"]["digits_mlp"]["rcd"].update(noise="laplace"),
        ["'laplace'", "setups.digits_mlp.rcd.noise", "uniform, gaussian"],
    ),
    # Dataset options: the loaders' keyword parameters and their annotations.
    "misspelt dataset option": (
        lambda c: c["datasets"]["mnist1d"]["options"].update(num_sample=2000),
        [
            "unknown option 'num_sample' at datasets.mnist1d.options",
            "did you mean 'num_samples'",
            "options of loader mnist1d: num_samples, split_seed",
        ],
    ),
    "misspelt option of an embedded loader": (
        lambda c: c["datasets"]["digits"]["options"].update(test_fractio=0.2),
        ["unknown option 'test_fractio' at datasets.digits.options", "did you mean 'test_fraction'"],
    ),
    "misspelt option of a file loader": (
        lambda c: c["datasets"].update(cifar10={"loader": "cifar10", "options": {"rooot": "resources/data/cifar"}}),
        [
            "unknown option 'rooot' at datasets.cifar10.options",
            "did you mean 'root'",
            "options of loader cifar10: root, max_train, max_test",
        ],
    ),
    "dataset option of the wrong type": (
        lambda c: c["datasets"]["digits"]["options"].update(test_fraction="0.4x"),
        ["datasets.digits.options.test_fraction: expected a number, got '0.4x'"],
    ),
    "dataset option that YAML read as text": (
        lambda c: c["datasets"]["mnist1d"]["options"].update(num_samples="5e3"),
        ["datasets.mnist1d.options.num_samples: expected an integer, got '5e3'", "YAML reads 5e3 as text"],
    ),
    # Model options: names and types from kdtransfer.catalog.ARCHITECTURES.
    "model option of the wrong type": (
        lambda c: c["models"]["mlp"]["options"].update(hidden="sixteen"),
        ["models.mlp.options.hidden: expected a list of integers or an integer (e.g. [64]), got 'sixteen'"],
    ),
    "model option list with a wrong item": (
        lambda c: c["models"]["cnn1d"]["options"].update(channels=[16, "32"]),
        ["models.cnn1d.options.channels: expected a list of integers (e.g. [64]), got [16, '32']"],
    ),
    "boolean for an integer model option": (
        lambda c: c["models"].update(resnet={"arch": "resnet_cifar", "options": {"depth": True}}),
        ["models.resnet.options.depth: expected an integer, got True"],
    ),
    "number that YAML read as text": (
        lambda c: c["recipes"]["digits"].update(lr="1e-3"),
        ["config at recipes.digits.lr: '1e-3' is text, not a number", "1.0e-3"],
    ),
    # Names become file names and wildcards.
    "setup name with a dash": (
        lambda c: c["setups"].update({"digits-mlp2": c["setups"]["digits_mlp"]}),
        [
            "setups.digits-mlp2: 'digits-mlp2' is not a valid name",
            "letters, digits and _ and start with a letter",
            "rename it (e.g. to 'digits_mlp2')",
        ],
    ),
    "dataset name with a dash": (
        lambda c: c["datasets"].update({"my-digits": c["datasets"]["digits"]}),
        ["datasets.my-digits: 'my-digits' is not a valid name", "e.g. to 'my_digits'", "every setup that refers to it"],
    ),
    # Option values (kdtransfer.options ranges, kdtransfer.catalog rules), before any job.
    "fraction outside (0, 1)": (
        lambda c: c["datasets"]["mnist_subset"]["options"].update(test_fraction=1.5),
        ["config at datasets.mnist_subset.options.test_fraction: 1.5 is not in (0, 1)"],
    ),
    "count below 1": (
        lambda c: c["datasets"]["mnist1d"]["options"].update(num_samples=0),
        ["config at datasets.mnist1d.options.num_samples: 0 is not at least 1"],
    ),
    "negative seed of a split": (
        lambda c: c["datasets"]["digits"]["options"].update(split_seed=-1),
        ["config at datasets.digits.options.split_seed: -1 is not at least 0"],
    ),
    "negative channel count": (
        lambda c: c["models"]["cnn1d"]["options"].update(channels=[16, -4]),
        ["config at models.cnn1d.options.channels: -4 (item 2 of [16, -4]) is not at least 1"],
    ),
    "hidden width of 0": (
        lambda c: c["models"]["mlp"]["options"].update(hidden=0),
        ["config at models.mlp.options.hidden: 0 is not at least 1"],
    ),
    "dropout of 1": (
        lambda c: c["models"]["mlp"]["options"].update(dropout=1),
        ["config at models.mlp.options.dropout: 1 is not in [0, 1)"],
    ),
    "depth a model does not offer": (
        lambda c: c["models"].update(resnet={"arch": "resnet_cifar", "options": {"depth": 50}}),
        ["config at models.resnet.options.depth: 50 is not one of 18, 34"],
    ),
    "choice a model does not offer": (
        lambda c: c["models"].update(vit={"arch": "vit", "options": {"pool": "max"}}),
        ["config at models.vit.options.pool: 'max' is not one of 'cls', 'mean'"],
    ),
    "non-positive ratio": (
        lambda c: c["models"].update(vit={"arch": "vit", "options": {"mlp_ratio": 0}}),
        ["config at models.vit.options.mlp_ratio: 0 is not in (0, inf)"],
    ),
    "ViT dim not divisible by heads": (
        lambda c: c["models"].update(vit={"arch": "vit", "options": {"dim": 100}}),
        ["config at models.vit.options: dim (100) is not divisible by heads (3)"],
    ),
    "text transformer dim not divisible by heads": (
        lambda c: c["models"].update(tt={"arch": "char_transformer", "options": {"heads": 3}}),
        ["config at models.tt.options: dim (128) is not divisible by heads (3)"],
    ),
    "patch larger than the images": (
        lambda c: (
            c["models"].update(vit={"arch": "vit", "options": {"patch_size": [4, 32]}}),
            c["setups"]["mnist_cnn"].update(student="vit"),
        ),
        [
            "config at setups.mnist_cnn: its student models.vit cannot read dataset mnist_subset",
            "patch_size [4, 32] is larger than this dataset's 28x28 inputs",
            "change models.vit.options",
        ],
    ),
    "image model on flat vectors": (
        lambda c: (
            c["models"].update(vit={"arch": "vit", "options": {}}),
            c["setups"]["digits_mlp"].update(student="vit"),
        ),
        [
            "config at setups.digits_mlp: its student models.vit cannot read dataset digits",
            "needs samples shaped [channels, height, width]; this dataset's are [64]",
        ],
    ),
    "more halvings than the image has pixels": (
        lambda c: c["models"]["cnn2d"]["options"].update(channels=[8, 8, 8, 8, 8]),
        [
            "config at setups.mnist_cnn: its teacher models.cnn2d cannot read dataset mnist_subset",
            "needs inputs of at least 32x32 px",
            "[1, 28, 28]",
        ],
    ),
    "token model on images": (
        lambda c: (
            c["models"].update(gru={"arch": "char_gru", "options": {}}),
            c["setups"]["mnist_cnn"].update(sweep={"student": ["cnn2d", "gru"]}),
        ),
        ["config at setups.mnist_cnn (its sweep point 'MNIST (5k) / CNN (student gru)')", "reads int64 token rows"],
    ),
    "predictions without the test split": (
        lambda c: c["training"].update(predict_splits=["train"]),
        ["training.predict_splits is ['train'], without test", "[test, train]"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_validate_config_names_problem_and_choices(case):
    mutate, needles = CASES[case]
    with pytest.raises(ConfigError) as info:
        validate_config(bad(mutate), SCHEMA)
    for needle in needles:
        assert needle in str(info.value)


def test_defaults_are_filled():
    cfg = validate_config({k: v for k, v in DEFAULT.items() if k not in ("training", "analysis")}, SCHEMA)
    assert cfg["training"]["checkpoint_every"] == 1
    assert cfg["analysis"]["fdr_family"] == "setup"
    assert cfg["recipes"]["digits"]["optimizer"] == "sgd"


def test_a_bad_name_is_not_called_an_empty_section():
    with pytest.raises(ConfigError) as info:
        validate_config(bad(CASES["setup name with a dash"][0]), SCHEMA)
    assert "define at least one setup" not in str(info.value)


# Every case's message is checked directly (test_validate_config_names_problem_and_choices); these two,
# a schema error and a value range, check the wiring: the Snakefile stops while it parses, with
# the message and no traceback.
@pytest.mark.parametrize("case", ["misspelt dataset option", "fraction outside (0, 1)"])
def test_workflow_stops_before_any_job(workflow_copy, case):
    mutate, needles = CASES[case]
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(bad(mutate)))
    # A dry run: a config that wrongly passed would plan jobs (and exit 0), not train them.
    proc = snakemake(workflow_copy, "-n", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    for needle in needles:
        assert needle in out
    assert "Traceback" not in out
    assert "Building DAG of jobs" not in out  # stopped while the Snakefile was parsed


def test_run_keys_share_teachers_and_controls_across_a_sweep():
    p = Plan(validate_config(DEFAULT, SCHEMA))
    # digits sweeps T in {1, 4} (one teacher and one nokd key) and its recipe (one more each).
    teachers = {p.run_key("teacher", s) for s in ("digits_mlp", "digits_mlp_T1")}
    controls = {p.run_key("nokd", s) for s in ("digits_mlp", "digits_mlp_T1")}
    assert len(teachers) == len(controls) == 1
    assert p.run_key("teacher", "digits_mlp_digits_cosine") not in teachers
    assert len({p.run_key("kd", s) for s in ("digits_mlp", "digits_mlp_T1")}) == 2
    spec_kd = p.run_spec("kd", p.run_key("kd", "digits_mlp_T1"), 0)
    spec_nokd = p.run_spec("nokd", p.run_key("nokd", "digits_mlp"), 0)
    assert spec_kd["kd"]["temperature"] == 1 and "kd" not in spec_nokd


def test_reordered_config_keys_give_identical_params():
    cfg = validate_config(DEFAULT, SCHEMA)
    reordered = copy.deepcopy(DEFAULT)
    reordered["recipes"]["digits"] = dict(reversed(list(reordered["recipes"]["digits"].items())))
    cfg2 = validate_config(reordered, SCHEMA)
    a, b = Plan(cfg), Plan(cfg2)
    key = a.run_key("teacher", "digits_mlp")
    assert key == b.run_key("teacher", "digits_mlp")
    assert repr(a.run_spec("teacher", key, 0)) == repr(b.run_spec("teacher", key, 0))


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda c: c.update(seeds=[]), "config at seeds.*would produce no runs.*seeds: 10"),
        (lambda c: c.update(setups={}), "config at setups.*would produce no runs.*define at least one setup"),
        (lambda c: c.update(seeds=0), "config at seeds.*would produce no runs"),
    ],
)
def test_configs_that_produce_no_runs_are_rejected(mutate, needle):
    with pytest.raises(ConfigError, match=needle):
        validate_config(bad(mutate), SCHEMA)


def test_independent_condition_adds_fresh_reference_runs():
    cfg = copy.deepcopy(DEFAULT)
    cfg["conditions"] = ["kd", "rcd", "nokd", "independent"]
    # 4 (dataset, model, recipe) keys more (one pack of 10 seeds each): a fresh reference per
    # teacher; kd and rcd of the 5 setups (digits at T 1 and 4 and under cosine, MNIST-1D, MNIST): 10.
    assert training_jobs(plan_of(cfg)) == {"train_reference_seeds0to9": 12, "train_distilled_seeds0to9": 10}


# ---------------------------------------------------------------------------------------------
# Option types (kdtransfer.options): what the config checks before any job


def test_model_registry_agrees_with_the_builders():
    """Each built-in is registered once, torch-free (kdtransfer.catalog.ARCHITECTURES): its
    class takes exactly the registered options, as keywords without defaults of its own, with
    the registered types; every default has its type and lies in its range."""
    import inspect

    from kdtransfer.catalog import ARCHITECTURES
    from kdtransfer.options import annotation_text, matches
    from kdtransfer.training.models import builder
    from kdtransfer.training.models.cifar import RESNET_BLOCKS, VGG_CONVS_PER_STAGE

    for arch, architecture in ARCHITECTURES.items():
        parameters = inspect.signature(builder(arch)).parameters.values()
        keywords = {p.name: p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        assert list(keywords) == list(architecture.options), arch
        assert len(parameters) == len(keywords) + len(architecture.inputs) + 1, arch  # + num_classes
        for name, option in architecture.options.items():
            assert keywords[name].default is inspect.Parameter.empty, f"{arch}.{name}: a second default"
            assert annotation_text(keywords[name].annotation) == option.type, f"{arch}.{name}"
            assert matches(option.default, option.type), f"{arch}.{name}: default {option.default!r}"
            assert option.values is None or option.values.problem(option.default) is None, f"{arch}.{name}"
    assert ARCHITECTURES["resnet_cifar"].options["depth"].values.test(34)
    for arch, depths in (("resnet_cifar", RESNET_BLOCKS), ("vgg_cifar", VGG_CONVS_PER_STAGE)):
        allowed = ARCHITECTURES[arch].options["depth"].values
        assert [d for d in range(1, 60) if allowed.test(d)] == sorted(depths), arch


@pytest.mark.parametrize(
    "annotation,good,wrong",
    [
        ("int", [0, 64, -1], [True, 4.0, "4", None, [4]]),
        ("float", [0, 0.5, 1e-3], [False, "0.5", "1e-3", None]),
        ("bool", [True, False], [0, 1, "true", None]),
        ("str", ["cls", ""], [1, True, None, ["cls"]]),
        ("int | None", [None, 3], [3.5, "3", True]),
        ("list[int] | int", [64, [64], [], [16, 32]], ["sixteen", [16, "32"], [True], 6.4, None]),
        ("str | list[str]", ["all", ["yes", "no"]], [[True, False], True, [1]]),
    ],
)
def test_option_types_accept_exactly_their_values(annotation, good, wrong):
    from kdtransfer.options import matches

    assert all(matches(v, annotation) for v in good)
    assert not any(matches(v, annotation) for v in wrong)


def test_yaml_booleans_where_words_are_expected_are_explained():
    # SpeechCommands words include yes, no, on, off: unquoted, YAML 1.1 reads them as booleans.
    cfg = bad(
        lambda c: c["datasets"].update(
            speech=yaml.safe_load("{loader: speech_commands, options: {classes: [yes, no, up]}}")
        )
    )
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, SCHEMA)
    message = str(info.value)
    assert "datasets.speech.options.classes: expected a string or a list of strings" in message
    assert "got [True, False, 'up']" in message and 'quote them (e.g. "yes")' in message


def test_every_option_type_in_use_is_understood():
    from kdtransfer.catalog import ARCHITECTURES
    from kdtransfer.data import DATASETS, loader_options
    from kdtransfer.options import describe

    annotations = [o.type for architecture in ARCHITECTURES.values() for o in architecture.options.values()]
    annotations += [a for name in DATASETS for a in loader_options(name).values()]
    assert all(describe(a) for a in annotations)
    with pytest.raises(TypeError, match="unsupported option type 'dict'"):
        describe("dict | None")


def test_validating_the_config_does_not_import_torch():
    # The Snakefile validates at parse time: every `snakemake` call would otherwise pay for torch.
    code = (
        "import sys, yaml; from kdtransfer.plan.config import validate_config; "
        f"validate_config(yaml.safe_load(open({str(REPO / 'config.yaml')!r})), {SCHEMA!r}); "
        "heavy = {'torch', 'torchvision', 'sklearn', 'scipy'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Config files: YAML syntax with file, line and column; keys written twice


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seeds: 3\ndatasets:\n  digits: {loader: digits\nmodels: {}\n")
    with pytest.raises(ConfigError) as info:
        check_config_files([path])
    message = str(info.value)
    assert message.startswith(f"{path}, line 4, column 7: YAML syntax error: ")
    assert "line 3, column 11" in message  # where the unclosed flow mapping starts


def test_tab_indentation_is_named(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("seeds: 3\nanalysis:\n\talpha: 0.1\n")
    with pytest.raises(ConfigError, match=r"line 3, column 1: .*indent with spaces, not tabs"):
        check_config_files([path])


def test_a_key_written_twice_is_rejected(tmp_path):
    # YAML keeps the second `digits_mlp` silently: the first setup would vanish from the study.
    path = tmp_path / "exp.yaml"
    path.write_text("setups:\n  digits_mlp: {dataset: a}\n  other: {dataset: b}\n  digits_mlp: {dataset: c}\n")
    with pytest.raises(
        ConfigError, match=r"exp.yaml, line 4: key 'digits_mlp' appears twice in one mapping \(first at line 2\)"
    ):
        check_config_files([path])
    json_path = tmp_path / "exp.json"
    json_path.write_text('{"seeds": 3, "analysis": {"alpha": 0.1, "alpha": 0.2}}')
    with pytest.raises(ConfigError, match="key 'alpha' appears twice in one object"):
        check_config_files([json_path])


def test_valid_files_pass_and_missing_ones_are_left_to_snakemake(tmp_path):
    (tmp_path / "ok.json").write_text('{"seeds": 3}')
    # yte templates may repeat keys such as `?if`: left alone.
    (tmp_path / "yte.yaml").write_text("__use_yte__: true\n?if true:\n  a: 1\n?if false:\n  a: 2\n")
    valid = [
        REPO / "config.yaml",
        REPO / "experiments" / "paper.yaml",
        tmp_path / "ok.json",
        tmp_path / "yte.yaml",
        tmp_path / "missing.yaml",
    ]
    check_config_files(valid)
    # Each valid file is read, not skipped: after them, a file with a repeated key is still
    # found, and it is the only one named.
    (tmp_path / "twice.yaml").write_text("seeds: 3\nseeds: 4\n")
    with pytest.raises(ConfigError) as info:
        check_config_files([*valid, tmp_path / "twice.yaml"])
    assert str(info.value).startswith(f"{tmp_path / 'twice.yaml'}, line 2: key 'seeds' appears twice")
    # The same text as a yte template is left alone (its keys such as `?if` may repeat).
    (tmp_path / "twice_yte.yaml").write_text("__use_yte__: true\nseeds: 3\nseeds: 4\n")
    check_config_files([tmp_path / "twice_yte.yaml"])


def test_workflow_names_the_line_of_a_yaml_error_in_config_yaml(workflow_copy):
    text = (workflow_copy / "config.yaml").read_text()
    (workflow_copy / "config.yaml").write_text(text.replace("seeds: 10", "seeds: [10"))
    proc = snakemake(workflow_copy, "-n", check=False)
    out = proc.stdout + proc.stderr
    line = text.splitlines().index("seeds: 10") + 1
    assert proc.returncode != 0 and f"invalid config: config.yaml, line {line + 1}, column " in out, out
    assert "Traceback" not in out


def test_workflow_rejects_a_key_written_twice_in_a_configfile(workflow_copy):
    text = (workflow_copy / "tests" / "configs" / "tiny.yaml").read_text()
    (workflow_copy / "twice.yaml").write_text(text + "\nseeds: 3\n")
    proc = snakemake(workflow_copy, "-n", "--configfile", "twice.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "key 'seeds' appears twice in one mapping" in out, out
    assert not (workflow_copy / "results").exists()


# Snakemake 9.27 reads --configfile files itself, before the Snakefile runs, so the workflow
# cannot improve these messages (snakemake/common/configfile.py, _load_configfile: `open()` sits
# outside the try that catches FileNotFoundError, and a yaml.YAMLError is replaced by a message
# without its line and column). Strict xfails: they pass, and so fail here, once Snakemake does.
@pytest.mark.xfail(strict=True, reason="Snakemake 9.27 prints a traceback for a missing --configfile")
def test_missing_configfile_is_one_line(workflow_copy):
    proc = snakemake(workflow_copy, "-n", "--configfile", "nope.yaml", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.xfail(strict=True, reason="Snakemake 9.27 drops the line and column of a YAML error in a --configfile")
def test_yaml_error_in_configfile_names_its_line(workflow_copy):
    (workflow_copy / "broken.yaml").write_text("seeds: [3\n")
    proc = snakemake(workflow_copy, "-n", "--configfile", "broken.yaml", check=False)
    assert proc.returncode != 0 and "line 2" in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# The schema documents every key


def test_every_config_key_has_a_description():
    schema = yaml.safe_load(Path(SCHEMA).read_text())
    keys, undocumented = [], []

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            keys.append(f"{path}{name}")
            if not str(sub.get("description", "")).strip():
                undocumented.append(f"{path}{name}")
            walk(sub, f"{path}{name}.")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}<name>.")

    walk(schema, "")
    assert len(keys) >= 52 and "setups.<name>.kd.temperature" in keys
    assert not undocumented, f"config keys without a description: {', '.join(undocumented)}"


def test_analysis_functions_have_no_defaults_for_config_values():
    """The schema is the one source of the analysis settings' defaults: no analysis function
    has a default of its own for alpha, fdr_family, asymmetry_primary or the bootstrap count."""
    import inspect

    from kdtransfer.analysis import figures, persample, stats, study, tables, verdicts

    config_keys = {"alpha", "fdr_family", "asymmetry_primary", "n_bootstrap"}
    checked, defaulted = [], []
    for module in (stats, verdicts, persample, study, tables, figures):
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__:
                continue
            for parameter in inspect.signature(function).parameters.values():
                if parameter.name in config_keys:
                    checked.append(f"{module.__name__}.{name}({parameter.name})")
                    if parameter.default is not inspect.Parameter.empty:
                        defaulted.append(checked[-1])
    assert len(checked) >= 10, checked  # the check sees them
    assert not defaulted, defaulted


def test_training_code_has_no_defaults_for_config_values():
    import inspect

    from kdtransfer.training.optim import SGD, LRSchedule

    for cls in (SGD, LRSchedule):
        defaults = [
            p.name for p in inspect.signature(cls).parameters.values() if p.default is not inspect.Parameter.empty
        ]
        assert defaults == [], (cls.__name__, defaults)


def test_typed_run_settings_have_exactly_the_schemas_keys():
    """A key added to the schema's recipe, kd or rcd reaches training only through RunSpec's
    typed settings: they must name exactly the schema's keys."""
    from dataclasses import fields

    from kdtransfer.spec import KDSettings, RCDSettings, Recipe

    schema = yaml.safe_load(open(SCHEMA))["properties"]
    setup = schema["setups"]["additionalProperties"]["properties"]
    for cls, section in (
        (Recipe, schema["recipes"]["additionalProperties"]),
        (KDSettings, setup["kd"]),
        (RCDSettings, setup["rcd"]),
    ):
        assert {f.name for f in fields(cls)} == set(section["properties"]), cls.__name__


# Parameters that share a name with a config key but mean something else.
NOT_CONFIG_VALUES = {
    "kdtransfer.training.batches.predict_logits(batch_size)": "inference chunk size, not the recipe's batch size",
    "kdtransfer.training.models.text.CharGRU.__init__(layers)": "a model option (GRU depth), not kd.layers",
}


def test_no_training_default_disagrees_with_the_schema():
    """Every function of the training half and of spec with a parameter named like a recipe, kd,
    rcd or training key: if it has a default at all, it is None (absent) or the schema's own
    (today weight_decay, feature_weight and alpha must never get a default of their own again)."""
    import importlib
    import inspect
    import pkgutil

    import kdtransfer.training

    schema = yaml.safe_load(open(SCHEMA))["properties"]
    setup = schema["setups"]["additionalProperties"]["properties"]
    sections = (schema["recipes"]["additionalProperties"], setup["kd"], setup["rcd"], schema["training"])
    default_of = {key: prop.get("default") for section in sections for key, prop in section["properties"].items()}
    modules = [
        "kdtransfer.spec",
        "kdtransfer.training",
        *(m.name for m in pkgutil.walk_packages(kdtransfer.training.__path__, "kdtransfer.training.")),
    ]
    checked, wrong = [], []
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if getattr(obj, "__module__", None) != module_name:
                continue
            functions = (
                [(name, obj)]
                if inspect.isfunction(obj)
                else (
                    [(f"{name}.{n}", f) for n, f in vars(obj).items() if inspect.isfunction(f)]
                    if inspect.isclass(obj)
                    else []
                )
            )
            for qualname, function in functions:
                for p in inspect.signature(function).parameters.values():
                    where = f"{module_name}.{qualname}({p.name})"
                    if p.name not in default_of or where in NOT_CONFIG_VALUES:
                        continue
                    checked.append(where)
                    if (
                        p.default is not inspect.Parameter.empty
                        and p.default is not None
                        and p.default != default_of[p.name]
                    ):
                        wrong.append(f"{where} = {p.default!r}, the schema says {default_of[p.name]!r}")
    assert len(checked) >= 20, checked  # the check sees the training code's settings
    assert not wrong, wrong
