"""Names the config may use, known without importing torch (the Snakefile checks them at parse)."""

# Built-in architectures and the options each accepts (kdtransfer.models checks that its
# builders take exactly these), so a config can be checked before any job imports torch.
MODEL_OPTIONS = {
    "mlp": ("hidden", "dropout"),
    "cnn1d": ("channels", "pooled"),
    "cnn2d": ("channels", "pooled"),
    "resnet_cifar": ("depth", "width"),
    "vgg_cifar": ("depth", "width"),
    "vit": ("patch_size", "dim", "depth", "heads", "mlp_ratio", "dropout", "pool"),
    "char_gru": ("embed_dim", "hidden", "layers", "bidirectional", "dropout"),
    "char_transformer": ("dim", "depth", "heads", "mlp_ratio", "dropout"),
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
