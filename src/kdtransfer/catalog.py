"""The project's vocabulary, known without importing torch (the Snakefile checks a config at
parse): the conditions, KD variants and built-in models a config may name, and the sweep axes
with the setup-table column and the label of a setup's value on each. Shared by the plan, the
training half and the analysis half, so each names things one way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kdtransfer.options import COUNT, DROPOUT, POSITIVE, Values, one_of, option_problem


@dataclass(frozen=True)
class Option:
    """A built-in model's option: its type (as in kdtransfer.options), its default, its range."""

    type: str
    default: Any
    values: Values | None = None


@dataclass(frozen=True)
class Architecture:
    """A built-in model, registered once: the options it takes and what it reads, known without
    torch (the config is checked before any job), and the torch class that builds it, imported
    only when a model is built.

    The class is called as cls(*inputs, num_classes, **options) with every option given (the
    defaults come from here); `inputs` name its leading arguments, taken from the data:
    "features" (values per sample), "channels", "shape" (one sample's), "vocab", "length"."""

    builder: str  # "module:Class"
    inputs: tuple[str, ...]
    options: dict[str, Option]
    rank: int | None = None  # the sample rank it needs ([c, l] is 2, [c, h, w] 3); None: any
    min_size: Callable[[dict], int] = lambda options: 1  # smallest height/width (length) it takes
    checks: tuple[Callable[[dict], str | None], ...] = ()  # rules between options


def _heads_divide_dim(options: dict) -> str | None:
    if options["dim"] % options["heads"]:
        return (
            f"dim ({options['dim']}) is not divisible by heads ({options['heads']}): each attention head "
            f"takes dim / heads channels"
        )
    return None


_TRANSFORMER = {"dim": COUNT, "depth": COUNT, "heads": COUNT}
_MODELS = "kdtransfer.training.models"
ARCHITECTURES = {
    "mlp": Architecture(
        f"{_MODELS}.small:MLP",
        ("features",),
        {"hidden": Option("list[int] | int", 64, COUNT), "dropout": Option("float", 0.0, DROPOUT)},
    ),
    # Each conv layer halves the signal or image (a 2x max-pool).
    "cnn1d": Architecture(
        f"{_MODELS}.small:CNN1d",
        ("channels",),
        {"channels": Option("list[int]", (16, 32, 32), COUNT), "pooled": Option("int", 4, COUNT)},
        rank=2,
        min_size=lambda options: 2 ** len(options["channels"]),
    ),
    "cnn2d": Architecture(
        f"{_MODELS}.small:CNN2d",
        ("channels",),
        {"channels": Option("list[int]", (16, 32), COUNT), "pooled": Option("int", 4, COUNT)},
        rank=3,
        min_size=lambda options: 2 ** len(options["channels"]),
    ),
    "resnet_cifar": Architecture(
        f"{_MODELS}.cifar:ResNetCIFAR",
        ("channels",),
        {"depth": Option("int", 18, one_of(18, 34)), "width": Option("int", 64, COUNT)},
        rank=3,
    ),
    # Four 2x max-pools before the global pool.
    "vgg_cifar": Architecture(
        f"{_MODELS}.cifar:VGGCIFAR",
        ("channels",),
        {"depth": Option("int", 19, one_of(11, 13, 16, 19)), "width": Option("int", 64, COUNT)},
        rank=3,
        min_size=lambda options: 16,
    ),
    "vit": Architecture(
        f"{_MODELS}.vit:ViT",
        ("shape",),
        {
            "patch_size": Option("int | list[int]", 4, COUNT),
            "dim": Option("int", 192, COUNT),
            "depth": Option("int", 6, COUNT),
            "heads": Option("int", 3, COUNT),
            "mlp_ratio": Option("float", 4.0, POSITIVE),
            "dropout": Option("float", 0.0, DROPOUT),
            "pool": Option("str", "cls", one_of("cls", "mean")),
        },
        rank=3,
        checks=(_heads_divide_dim,),
    ),
    "char_gru": Architecture(
        f"{_MODELS}.text:CharGRU",
        ("vocab",),
        {
            "embed_dim": Option("int", 64, COUNT),
            "hidden": Option("int", 128, COUNT),
            "layers": Option("int", 1, COUNT),
            "bidirectional": Option("bool", True),
            "dropout": Option("float", 0.0, DROPOUT),
        },
        rank=1,
    ),
    "char_transformer": Architecture(
        f"{_MODELS}.text:CharTransformer",
        ("vocab", "length"),
        {
            "dim": Option("int", 128, COUNT),
            "depth": Option("int", 4, COUNT),
            "heads": Option("int", 4, COUNT),
            "mlp_ratio": Option("float", 2.0, POSITIVE),
            "dropout": Option("float", 0.0, DROPOUT),
        },
        rank=1,
        checks=(_heads_divide_dim,),
    ),
}
BUILTIN_MODELS = tuple(ARCHITECTURES)
# These read int64 tokens [n, L] (0 = padding) and take their vocabulary size from the dataset.
TOKEN_MODELS = tuple(arch for arch, architecture in ARCHITECTURES.items() if "vocab" in architecture.inputs)
TIMM_PREFIX = "timm:"
FEATURE_VARIANTS = ("hint", "attention")
KD_VARIANTS = ("logit", *FEATURE_VARIANTS)
# In the order tables and figures show them: the control first, KD last before the reference.
STUDENT_CONDITIONS = ("nokd", "rcd", "kd", "independent")
# Which kind of training rule makes a condition's runs (workflow/rules/train.smk; one rule per
# block of seeds, train_reference_seeds0to9, ...): train_reference the runs without a teacher
# signal, train_distilled those with one.
REFERENCE_CONDITIONS = ("teacher", "nokd", "independent")
DISTILLED_CONDITIONS = ("kd", "rcd")

# Sweep axes (the keys of a setup's `sweep`), in the order the plan makes their variants and the
# figures and tables show them -> the setup-table column (Plan.setup_table) that holds a setup's
# value on the axis.
SWEEP_VALUE_COLUMNS = {
    "temperature": "temperature",
    "alpha": "alpha",
    "model": "teacher",
    "student": "student",
    "recipe": "recipe",
}
SWEEP_KEYS = tuple(SWEEP_VALUE_COLUMNS)
NUMERIC_AXES = ("temperature", "alpha")
# Sweeps that vary model size (the scaling figure) rather than a KD hyper-parameter or the recipe.
SIZE_SWEEPS = ("model", "student")


def sweep_point_label(axis: str, value) -> str:
    """A point of a sweep as setup labels show it: "T=4", "α=0.5", "mlp_small" (model: teacher
    = student), "student mlp_small", "recipe cosine". The plan labels a sweep's variants with
    it, the figures and tables the sweep's base setup."""
    if axis == "temperature":
        return f"T={float(value):g}"
    if axis == "alpha":
        return f"α={float(value):g}"
    if axis == "student":
        return f"student {value}"
    if axis == "recipe":
        return f"recipe {value}"
    return str(value)


_SHAPE_NAMES = {1: "int64 token rows [L]", 2: "[channels, length]", 3: "[channels, height, width]"}


def model_options(arch: str, given: dict) -> dict:
    """A built-in's options with its defaults filled in (lists as lists)."""
    options = {name: option.default for name, option in ARCHITECTURES[arch].options.items()}
    options.update(given)
    return {name: list(value) if isinstance(value, tuple) else value for name, value in options.items()}


def model_problem(arch: str, given: dict, where: str) -> str | None:
    """What is wrong with the options of built-in model `arch` (unknown names, types, ranges,
    rules between options), as one message; None if nothing. `where` names the options in the
    message (a config path such as models.mlp.options)."""
    declared = ARCHITECTURES[arch].options
    problem = option_problem(
        {name: o.type for name, o in declared.items()},
        given,
        where,
        arch,
        {name: o.values for name, o in declared.items() if o.values},
    )
    if problem:
        return problem
    options = model_options(arch, given)
    for check in ARCHITECTURES[arch].checks:
        problem = check(options)
        if problem:
            return f"{where}: {problem}"
    return None


def input_problem(arch: str, given: dict, sample_shape: tuple[int, ...], tokens: bool) -> str | None:
    """Whether built-in `arch` with options `given` (already valid) can read samples of
    `sample_shape` (int64 token rows if `tokens`): None, or what does not fit."""
    architecture = ARCHITECTURES[arch]
    shape = list(sample_shape)
    reads_tokens = "vocab" in architecture.inputs
    if reads_tokens and not tokens:
        return f"model {arch!r} reads int64 token rows [n, L], but this dataset is not text (its samples are {shape})"
    if tokens and not reads_tokens:
        return (
            f"model {arch!r} needs float inputs, but this dataset holds tokens; token models: {', '.join(TOKEN_MODELS)}"
        )
    if architecture.rank is not None and len(shape) != architecture.rank:
        return f"model {arch!r} needs samples shaped {_SHAPE_NAMES[architecture.rank]}; this dataset's are {shape}"
    options = model_options(arch, given)
    min_size = architecture.min_size(options)
    if architecture.rank and architecture.rank > 1 and min(shape[1:]) < min_size:
        least = f"{min_size}x{min_size} px" if architecture.rank == 3 else f"{min_size} values long"
        return (
            f"model {arch!r} with these options needs inputs of at least {least} (its down-sampling would "
            f"leave nothing); this dataset's samples are {shape}"
        )
    if "patch_size" in options:
        patch = options["patch_size"]
        patch = [patch, patch] if isinstance(patch, int) else list(patch)
        if len(patch) != 2:
            return f"model {arch!r}: patch_size is one size or [height, width], not {patch}"
        if patch[0] > shape[1] or patch[1] > shape[2]:
            return (
                f"model {arch!r}: patch_size {options['patch_size']} is larger than this dataset's "
                f"{shape[1]}x{shape[2]} inputs: every sample would be one zero-padded patch"
            )
    return None
