"""One model factory: built-ins by name, and any timm model as `timm:<name>`.

`create_model(arch, input_shape, num_classes, vocab_size=0, **options)` builds a freshly
initialised model (seed the global torch RNG first for a fixed init). `input_shape` is one
sample's shape; `vocab_size` comes from the dataset and is needed by the token models only.

The built-ins, their options, defaults and ranges, and the inputs they read are registered
once, in kdtransfer.catalog.ARCHITECTURES (torch-free: the config is checked against it before
any job); create_model checks the same there and fills in the defaults. Feature layers for
hint and attention KD: mlp, cnn1d, cnn2d `features.N`; resnet_cifar `layer1..layer4`;
vgg_cifar `stage1..stage5`; vit and char_transformer `blocks.N`; char_gru `embed`, `encoder`.

timm models are never pretrained (a run never downloads weights; teachers are trained here).
"""

from __future__ import annotations

import hashlib
import importlib
import math

from torch import nn

from kdtransfer.catalog import ARCHITECTURES, TIMM_PREFIX, input_problem, model_options, model_problem
from kdtransfer.training.models.errors import ModelError
from kdtransfer.training.models.features import FeatureTap, feature_shapes

__all__ = [
    "ModelError",
    "FeatureTap",
    "feature_shapes",
    "create_model",
    "create_model_for",
    "count_parameters",
    "state_fingerprint",
]


def builder(arch: str) -> type[nn.Module]:
    """The torch class of built-in `arch` (kdtransfer.catalog.ARCHITECTURES names it)."""
    module, name = ARCHITECTURES[arch].builder.split(":")
    return getattr(importlib.import_module(module), name)


def _leading_arguments(arch: str, input_shape: tuple[int, ...], vocab_size: int) -> list:
    from_data = {
        "features": math.prod(input_shape),
        "channels": input_shape[0],
        "shape": input_shape,
        "vocab": vocab_size,
        "length": input_shape[0],
    }
    return [from_data[name] for name in ARCHITECTURES[arch].inputs]


def _create_timm(arch: str, input_shape: tuple[int, ...], num_classes: int, options: dict) -> nn.Module:
    import timm  # only here: importing timm costs about a second

    name = arch[len(TIMM_PREFIX) :]
    if not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r} (from arch {arch!r}); see timm.list_models()")
    if len(input_shape) != 3:
        raise ModelError(
            f"timm models need images [channels, height, width]; this dataset's samples are {list(input_shape)}"
        )
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **options)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelError(f"timm model {name!r} rejected its options {options}: {exc}") from None
    model.feature_layout = "tokens"  # timm's 3-D block outputs are [n, tokens, dim]; 4-D are NCHW
    return model


def create_model(
    arch: str, input_shape: tuple[int, ...], num_classes: int, vocab_size: int = 0, **options
) -> nn.Module:
    """Build a freshly initialised model. Seed the global torch RNG first for a fixed init."""
    input_shape = tuple(input_shape)
    if arch.startswith(TIMM_PREFIX):
        return _create_timm(arch, input_shape, num_classes, options)
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown model {arch!r}; built-ins: {', '.join(sorted(ARCHITECTURES))}, or timm:<name>")
    problem = model_problem(arch, options, f"options of model {arch!r}") or input_problem(
        arch, options, input_shape, tokens=vocab_size > 0
    )
    if problem:
        raise ModelError(problem)
    return builder(arch)(
        *_leading_arguments(arch, input_shape, vocab_size), num_classes, **model_options(arch, options)
    )


def create_model_for(entry: dict, data) -> nn.Module:
    """A config `models` entry ({arch, options}) built for a dataset: input shape, number of
    classes and vocabulary size come from the data, so teacher and student always agree."""
    return create_model(
        entry["arch"], data.input_shape, data.num_classes, vocab_size=data.vocab_size, **entry.get("options", {})
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_fingerprint(model: nn.Module) -> str:
    """A short hash of all weights, to check that two runs started from the same init."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
