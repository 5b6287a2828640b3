"""Names the config may use, known without importing torch (the Snakefile checks them at parse)."""

BUILTIN_MODELS = ("mlp", "cnn1d", "cnn2d")
TIMM_PREFIX = "timm:"
CONDITIONS = ("teacher", "kd", "rcd", "nokd", "independent")
STUDENT_CONDITIONS = ("kd", "rcd", "nokd", "independent")
