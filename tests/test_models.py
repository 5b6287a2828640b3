"""The model factory: every built-in builds and runs, parameter counts, feature hooks, errors."""

import pytest
import torch

from kdtransfer.catalog import BUILTIN_MODELS
from kdtransfer.training.models import FeatureTap, ModelError, count_parameters, create_model, feature_shapes

# (arch, per-sample input shape, vocab_size, options): small sizes, so each builds in milliseconds.
CASES = [
    ("mlp", (64,), 0, {"hidden": [8]}),
    ("cnn1d", (1, 40), 0, {"channels": [4, 8]}),
    ("cnn2d", (1, 28, 28), 0, {"channels": [4, 8]}),
    ("resnet_cifar", (3, 32, 32), 0, {"width": 4}),
    ("vgg_cifar", (3, 32, 32), 0, {"depth": 11, "width": 4}),
    ("vit", (3, 32, 32), 0, {"dim": 16, "depth": 2, "heads": 2}),
    ("char_gru", (12,), 30, {"embed_dim": 8, "hidden": 8}),
    ("char_transformer", (12,), 30, {"dim": 16, "depth": 2, "heads": 2}),
]


def example(shape, vocab, n=3):
    if vocab:
        x = torch.randint(1, vocab, (n, *shape))
        x[:, shape[0] // 2 :] = 0  # right padding
        return x
    return torch.randn(n, *shape)


def test_cases_cover_every_builtin():
    assert sorted(c[0] for c in CASES) == sorted(BUILTIN_MODELS)


@pytest.mark.parametrize("arch,shape,vocab,options", CASES, ids=[c[0] for c in CASES])
def test_every_builtin_builds_and_gives_one_logit_per_class(arch, shape, vocab, options):
    torch.manual_seed(0)
    model = create_model(arch, shape, 7, vocab_size=vocab, **options)
    out = model(example(shape, vocab))
    assert out.shape == (3, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_same_seed_same_init():
    def build():
        torch.manual_seed(1)
        return create_model("vit", (3, 32, 32), 10, dim=16, depth=1, heads=2)

    for a, b in zip(build().parameters(), build().parameters()):
        assert torch.equal(a, b)


def test_resnet18_cifar_parameter_counts():
    # The CIFAR ResNet-18 (kuangliu/pytorch-cifar and the papers using it): 11,173,962 for 10 classes.
    assert count_parameters(create_model("resnet_cifar", (3, 32, 32), 10)) == 11_173_962
    # Width scales every conv: counts grow ~4x per doubling (the model-size family).
    counts = [count_parameters(create_model("resnet_cifar", (3, 32, 32), 10, width=w)) for w in (8, 16, 32)]
    assert counts == [176_402, 701_466, 2_797_610]
    assert count_parameters(create_model("resnet_cifar", (3, 32, 32), 10, depth=34)) == 21_282_122


def test_vgg19_cifar_parameter_count():
    # kuangliu's CIFAR VGG-19 (conv biases, BN, one 512->10 linear) has 20,040,522 parameters; ours
    # drops the conv biases (redundant before BN): 64*2 + 128*2 + 256*4 + 512*8 = 5,504 fewer.
    assert count_parameters(create_model("vgg_cifar", (3, 32, 32), 10)) == 20_040_522 - 5_504


def test_vit_parameter_count_by_hand():
    c, p, d, depth, h, classes, tokens = 3, 4, 32, 2, 64, 10, (32 // 4) ** 2 + 1  # mlp_ratio 2 -> hidden 64
    block = 2 * (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d)  # 2 LNs, qkv, proj, mlp
    expected = (c * p * p * d + d) + d + tokens * d + depth * block + 2 * d + (d * classes + classes)
    model = create_model("vit", (3, 32, 32), classes, dim=d, depth=depth, heads=4, mlp_ratio=2.0)
    assert count_parameters(model) == expected


def test_resnet_and_vgg_feature_layers_by_name():
    resnet = create_model("resnet_cifar", (3, 32, 32), 10, width=4)
    names = ["layer1", "layer2", "layer3", "layer4"]
    assert feature_shapes(resnet, names, torch.randn(2, 3, 32, 32)) == [
        (4, 32, 32),
        (8, 16, 16),
        (16, 8, 8),
        (32, 4, 4),
    ]
    vgg = create_model("vgg_cifar", (3, 32, 32), 10, depth=11, width=4)
    names = [f"stage{k}" for k in range(1, 6)]
    assert feature_shapes(vgg, names, torch.randn(2, 3, 32, 32)) == [
        (4, 32, 32),
        (8, 16, 16),
        (16, 8, 8),
        (32, 4, 4),
        (32, 2, 2),
    ]


def test_vit_blocks_come_back_channels_first_with_the_class_token():
    vit = create_model("vit", (3, 32, 32), 10, dim=16, depth=2, heads=2)
    assert feature_shapes(vit, ["blocks.0", "blocks.1"], torch.randn(2, 3, 32, 32)) == [(16, 65), (16, 65)]
    mean_pooled = create_model("vit", (3, 32, 32), 10, dim=16, depth=1, heads=2, pool="mean")
    assert feature_shapes(mean_pooled, ["blocks.0"], torch.randn(2, 3, 32, 32)) == [(16, 64)]


def test_vit_on_spectrograms_pads_to_rectangular_patches():
    # [1, 40 mels, 101 frames] with 8x10 patches: 5 rows, 101 -> 110 frames (zero-padded) = 11 columns.
    vit = create_model("vit", (1, 40, 101), 12, patch_size=[8, 10], dim=16, depth=1, heads=2)
    assert feature_shapes(vit, ["blocks.0"], torch.randn(2, 1, 40, 101)) == [(16, 5 * 11 + 1)]
    assert vit(torch.randn(2, 1, 40, 101)).shape == (2, 12)


def test_feature_tap_sees_the_forward_and_keeps_gradients():
    model = create_model("resnet_cifar", (3, 16, 16), 10, width=4)
    tap = FeatureTap(model, ["layer2"], "student")
    model(torch.randn(2, 3, 16, 16))  # outside `with`: nothing kept
    with tap:
        model(torch.randn(2, 3, 16, 16))
    (fmap,) = tap.take()
    assert fmap.shape == (2, 8, 8, 8) and fmap.requires_grad
    fmap.sum().backward()
    assert model.layer1[0].conv1.weight.grad is not None
    tap.remove()


def test_timm_models_are_tapped_too():
    resnet = create_model("timm:resnet10t", (3, 32, 32), 10)
    assert feature_shapes(resnet, ["layer1"], torch.randn(2, 3, 32, 32)) == [(64, 8, 8)]  # timm keeps the ImageNet stem
    vit = create_model("timm:vit_tiny_patch16_224", (3, 32, 32), 10, img_size=32, patch_size=8, depth=2)
    assert feature_shapes(vit, ["blocks.1"], torch.randn(2, 3, 32, 32)) == [(192, 17)]


def test_unknown_feature_layer_lists_valid_names():
    model = create_model("resnet_cifar", (3, 32, 32), 10, width=4)
    with pytest.raises(ModelError, match=r"no module named 'layer5'.*layer1.*layer4"):
        FeatureTap(model, ["layer5"], "student")


@pytest.mark.parametrize("arch", ["char_gru", "char_transformer"])
def test_token_models_ignore_padding(arch):
    torch.manual_seed(0)
    options = {"embed_dim": 8, "hidden": 8, "layers": 2} if arch == "char_gru" else {"dim": 16, "depth": 2, "heads": 2}
    model = create_model(arch, (10,), 5, vocab_size=20, **options).eval()
    real = [[3, 4, 5, 0, 0, 0, 0, 0, 0, 0], [7, 8, 9, 10, 11, 12, 1, 2, 0, 0]]
    right = torch.tensor(real)
    shorter = right[:, :8]  # fewer padding columns
    left = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 3, 4, 5], [0, 0, 7, 8, 9, 10, 11, 12, 1, 2]])
    with torch.no_grad():
        ref = model(right)
        torch.testing.assert_close(model(shorter), ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(model(left), ref, rtol=0, atol=1e-6)
        # Each row is classified on its own tokens: a padding-only row neither fails nor leaks.
        with_empty = model(torch.cat([right, torch.zeros(1, 10, dtype=torch.long)]))
    assert torch.isfinite(with_empty).all()
    torch.testing.assert_close(with_empty[:2], ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: create_model("resnet9000", (3, 32, 32), 10),
            r"unknown model 'resnet9000'.*resnet_cifar.*vgg_cifar.*vit.*timm:<name>",
        ),
        (
            lambda: create_model("resnet_cifar", (3, 32, 32), 10, widht=8),
            r"unknown option 'widht' at options of model 'resnet_cifar' \(did you mean 'width'\?\); "
            r"options of resnet_cifar: depth, width",
        ),
        (
            lambda: create_model("resnet_cifar", (3, 32, 32), 10, depth=50),
            r"options of model 'resnet_cifar'.depth: 50 is not one of 18, 34",
        ),
        (
            lambda: create_model("vgg_cifar", (3, 32, 32), 10, depth=12),
            r"options of model 'vgg_cifar'.depth: 12 is not one of 11, 13, 16, 19",
        ),
        (
            lambda: create_model("vgg_cifar", (1, 8, 8), 10),
            r"'vgg_cifar' with these options needs inputs of at least 16x16 px",
        ),
        (
            lambda: create_model("vit", (3, 32, 32), 10, dim=10, heads=3),
            r"'vit'.*dim \(10\) is not divisible by heads \(3\)",
        ),
        (lambda: create_model("vit", (64,), 10), r"'vit' needs samples shaped \[channels, height, width\]"),
        (lambda: create_model("char_gru", (12,), 10), r"'char_gru' reads int64 token rows.*not text"),
        (
            lambda: create_model("resnet_cifar", (12,), 10, vocab_size=30),
            r"'resnet_cifar' needs float inputs.*char_gru",
        ),
        (lambda: create_model("timm:resnet_nope", (3, 32, 32), 10), r"unknown timm model 'resnet_nope'"),
        (
            lambda: create_model("timm:resnet18", (3, 32, 32), 10, bogus_option=1),
            r"timm model 'resnet18' rejected its options",
        ),
    ],
)
def test_bad_arch_or_options_raise_model_error(call, message):
    with pytest.raises(ModelError, match=message):
        call()


@pytest.mark.parametrize(
    "arch,options,rank",
    [
        ("cnn1d", {"channels": [4, 4, 4]}, 2),
        ("cnn2d", {"channels": [4, 4, 4, 4]}, 3),
        ("vgg_cifar", {"depth": 11, "width": 4}, 3),
    ],
)
def test_the_smallest_input_the_catalog_allows_is_the_smallest_torch_can_run(arch, options, rank):
    """The start-up rule (kdtransfer.catalog min_size) is neither stricter nor looser than the
    model: at the smallest allowed size a forward pass runs; one smaller, torch itself fails."""
    from kdtransfer.catalog import ARCHITECTURES, model_options
    from kdtransfer.training.models import builder

    size = ARCHITECTURES[arch].min_size(model_options(arch, options))
    shape = (1, size) if rank == 2 else (1, size, size)
    create_model(arch, shape, 3, **options).eval()(torch.zeros(2, *shape))
    smaller = (1, size - 1) if rank == 2 else (1, size - 1, size - 1)
    with pytest.raises(ModelError, match=f"at least {size}"):
        create_model(arch, smaller, 3, **options)
    unchecked = builder(arch)(1, 3, **model_options(arch, options)).eval()
    with pytest.raises(RuntimeError):
        unchecked(torch.zeros(2, *smaller))
