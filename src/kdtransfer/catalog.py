"""The project's vocabulary, known without importing torch (the Snakefile checks a config at
parse): the conditions, KD variants and built-in models a config may name, and the sweep axes
with the setup-table column and the label of a setup's value on each. Shared by the plan, the
training half and the analysis half, so each names things one way."""

# Built-in architectures, the options each accepts and their types (as in kdtransfer.options),
# so a config can be checked before any job imports torch. These are the builders' keyword
# parameters and annotations: tests/test_config.py checks that the two agree.
MODEL_OPTIONS = {
    "mlp": {"hidden": "list[int] | int", "dropout": "float"},
    "cnn1d": {"channels": "list[int]", "pooled": "int"},
    "cnn2d": {"channels": "list[int]", "pooled": "int"},
    "resnet_cifar": {"depth": "int", "width": "int"},
    "vgg_cifar": {"depth": "int", "width": "int"},
    "vit": {"patch_size": "int | list[int]", "dim": "int", "depth": "int", "heads": "int", "mlp_ratio": "float",
            "dropout": "float", "pool": "str"},
    "char_gru": {"embed_dim": "int", "hidden": "int", "layers": "int", "bidirectional": "bool", "dropout": "float"},
    "char_transformer": {"dim": "int", "depth": "int", "heads": "int", "mlp_ratio": "float", "dropout": "float"},
}
BUILTIN_MODELS = tuple(MODEL_OPTIONS)
# These read int64 tokens [n, L] (0 = padding) and take their vocabulary size from the dataset.
TOKEN_MODELS = ("char_gru", "char_transformer")
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
SWEEP_VALUE_COLUMNS = {"temperature": "temperature", "alpha": "alpha", "model": "teacher", "student": "student", "recipe": "recipe"}
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
