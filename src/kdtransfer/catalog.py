"""Names the config may use, known without importing torch (the Snakefile checks them at parse)."""

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
# Which training rule makes a condition's runs (workflow/rules/train.smk): train_reference the
# runs without a teacher signal, train_distilled those with one.
REFERENCE_CONDITIONS = ("teacher", "nokd", "independent")
DISTILLED_CONDITIONS = ("kd", "rcd")
