"""One model factory: built-ins by name, and any timm model as `timm:<name>`.

`create_model(arch, input_shape, num_classes, vocab_size=0, **options)` builds a freshly
initialised model (seed the global torch RNG first for a fixed init). `input_shape` is one
sample's shape; `vocab_size` comes from the dataset and is needed by the token models only.

| arch | input | options (default) | feature layers |
|---|---|---|---|
| mlp | any float | hidden (64), dropout (0) | features.N |
| cnn1d | [c, l] | channels ([16, 32, 32]), pooled (4) | features.N |
| cnn2d | [c, h, w] | channels ([16, 32]), pooled (4) | features.N |
| resnet_cifar | [c, h, w] | depth (18; or 34), width (64) | layer1..layer4 |
| vgg_cifar | [c, h, w], h, w >= 16 | depth (19; or 11, 13, 16), width (64) | stage1..stage5 |
| vit | [c, h, w] | patch_size (4, or [ph, pw]), dim (192), depth (6), heads (3), mlp_ratio (4), dropout (0), pool ("cls" or "mean") | blocks.0.. |
| char_gru | int64 tokens [L] | embed_dim (64), hidden (128), layers (1), bidirectional (true), dropout (0) | embed, encoder |
| char_transformer | int64 tokens [L] | dim (128), depth (4), heads (4), mlp_ratio (2), dropout (0) | blocks.0.. |

timm models are never pretrained (a run never downloads weights; teachers are trained here).
"""

from __future__ import annotations

import hashlib
import inspect
import math

from torch import nn

from kdtransfer.catalog import MODEL_OPTIONS, TIMM_PREFIX, TOKEN_MODELS
from kdtransfer.training.models.cifar import ResNetCIFAR, VGGCIFAR
from kdtransfer.training.models.errors import ModelError
from kdtransfer.training.models.features import FeatureTap, feature_shapes
from kdtransfer.training.models.small import CNN1d, CNN2d, MLP
from kdtransfer.training.models.text import CharGRU, CharTransformer
from kdtransfer.training.models.vit import ViT

__all__ = ["ModelError", "FeatureTap", "feature_shapes", "create_model", "create_model_for", "count_parameters",
           "state_fingerprint"]

# arch -> (class, its leading arguments from (input_shape, vocab_size), the input rank it needs).
# The class is then called as cls(*leading, num_classes, **options); its keyword parameters with
# defaults are the arch's options.
_BUILDERS = {
    "mlp": (MLP, lambda shape, vocab: (math.prod(shape),), None),
    "cnn1d": (CNN1d, lambda shape, vocab: (shape[0],), 2),
    "cnn2d": (CNN2d, lambda shape, vocab: (shape[0],), 3),
    "resnet_cifar": (ResNetCIFAR, lambda shape, vocab: (shape[0],), 3),
    "vgg_cifar": (VGGCIFAR, lambda shape, vocab: (shape[0],), 3),
    "vit": (ViT, lambda shape, vocab: (shape,), 3),
    "char_gru": (CharGRU, lambda shape, vocab: (vocab,), 1),
    "char_transformer": (CharTransformer, lambda shape, vocab: (vocab, shape[0]), 1),
}
_SHAPE_NAMES = {1: "int64 token rows [L]", 2: "[channels, length]", 3: "[channels, height, width]"}


def _options_of(cls) -> tuple[str, ...]:
    return tuple(name for name, p in inspect.signature(cls).parameters.items() if p.default is not inspect.Parameter.empty)


assert {a: set(_options_of(b[0])) for a, b in _BUILDERS.items()} == {a: set(o) for a, o in MODEL_OPTIONS.items()}, \
    "kdtransfer.catalog.MODEL_OPTIONS is out of date"


def _check_input(arch: str, input_shape: tuple[int, ...], vocab_size: int, rank: int | None) -> None:
    if arch in TOKEN_MODELS and vocab_size < 1:
        raise ModelError(f"model {arch!r} reads int64 token rows [n, L], but this dataset is not text (vocab_size 0)")
    if arch not in TOKEN_MODELS and vocab_size > 0:
        raise ModelError(f"model {arch!r} needs float inputs, but this dataset holds tokens (vocab_size {vocab_size}); "
                         f"token models: {', '.join(TOKEN_MODELS)}")
    if rank is not None and len(input_shape) != rank:
        raise ModelError(f"model {arch!r} needs samples shaped {_SHAPE_NAMES[rank]}; this dataset's are {list(input_shape)}")
    min_size = getattr(_BUILDERS[arch][0], "min_size", 0)
    if min(input_shape[1:], default=min_size) < min_size:
        raise ModelError(f"model {arch!r} needs images of at least {min_size}x{min_size} px; this dataset's are {list(input_shape)}")


def _create_timm(arch: str, input_shape: tuple[int, ...], num_classes: int, options: dict) -> nn.Module:
    import timm  # only here: importing timm costs about a second

    name = arch[len(TIMM_PREFIX):]
    if not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r} (from arch {arch!r}); see timm.list_models()")
    if len(input_shape) != 3:
        raise ModelError(f"timm models need images [channels, height, width]; this dataset's samples are {list(input_shape)}")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **options)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"timm model {name!r} rejected its options {options}: {exc}") from None
    model.feature_layout = "tokens"  # timm's 3-D block outputs are [n, tokens, dim]; 4-D are NCHW
    return model


def create_model(arch: str, input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 0, **options) -> nn.Module:
    """Build a freshly initialised model. Seed the global torch RNG first for a fixed init."""
    input_shape = tuple(input_shape)
    if arch.startswith(TIMM_PREFIX):
        return _create_timm(arch, input_shape, num_classes, options)
    if arch not in _BUILDERS:
        raise ModelError(f"unknown model {arch!r}; built-ins: {', '.join(sorted(_BUILDERS))}, or timm:<name>")
    cls, leading, rank = _BUILDERS[arch]
    unknown = sorted(set(options) - set(MODEL_OPTIONS[arch]))
    if unknown:
        raise ModelError(f"model {arch!r} has no option {unknown[0]!r}; valid options: {', '.join(MODEL_OPTIONS[arch])}")
    _check_input(arch, input_shape, vocab_size, rank)
    try:
        return cls(*leading(input_shape, vocab_size), num_classes, **options)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model {arch!r} rejected its options {options}: {exc}") from None


def create_model_for(entry: dict, data) -> nn.Module:
    """A config `models` entry ({arch, options}) built for a dataset: input shape, number of
    classes and vocabulary size come from the data, so teacher and student always agree."""
    return create_model(entry["arch"], data.input_shape, data.num_classes, vocab_size=data.vocab_size,
                        **entry.get("options", {}))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_fingerprint(model: nn.Module) -> str:
    """A short hash of all weights, to check that two runs started from the same init."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
