"""From resident arrays to model inputs and outputs, one batch at a time on the device.

Batches are index slices of a per-epoch permutation drawn from a generator seeded by (seed,
data-order role, epoch): the batch order is a pure function of the seed, so a resumed run sees
exactly the batches it would have, and kd, rcd and nokd of a seed see the same ones.

uint8 images stay uint8 where they are held (4x smaller on the GPU) and are scaled and
standardised per batch; then the batched augmentation; channels_last for image batches on CUDA;
bf16 autocast on CUDA when asked for. Used alike by training, the teacher's targets and the
final predictions, so every model sees its inputs prepared one way.
"""

from __future__ import annotations

import contextlib
import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from kdtransfer.data import ArrayDataset
from kdtransfer.spec import Recipe
from kdtransfer.training.seeding import derive_seed


def steps_per_epoch(n: int, recipe: Recipe) -> int:
    return n // recipe.batch_size if recipe.drop_last else math.ceil(n / recipe.batch_size)


def epoch_permutation(order_seed: int, epoch: int, n: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(derive_seed(order_seed, "epoch", epoch))
    return torch.randperm(n, generator=g).to(device)


def order_fingerprint(order_seed: int, n: int, epochs: int) -> str:
    """A short hash of a run's whole batch order, to check that runs shared it."""
    h = hashlib.sha256()
    for epoch in range(epochs):
        h.update(epoch_permutation(order_seed, epoch, n).numpy().tobytes())
    return h.hexdigest()[:16]


def autocast_context(device: torch.device, bf16: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and bf16 else contextlib.nullcontext()


def to_device_async(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor (random draws) on `device` without stalling the host.

    A plain copy from pageable memory to a GPU waits until the GPU has finished all the work
    queued before it: one such copy per step would leave the GPU idle while Python queues the
    next step. A pinned, non-blocking copy is queued behind that work instead (the pinned buffer
    is kept until the copy has run). On the CPU it is the tensor itself.
    """
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def augment_batch(x: torch.Tensor, augment: str, generator: torch.Generator) -> torch.Tensor:
    """Batched augmentation on the device: `flip_crop` = random 4-px-padded crop + horizontal flip.

    Works on the float batch as the model sees it (scaled and standardised): reflect padding,
    cropping and flipping commute with a per-channel affine map, so this equals augmenting the
    raw image first. The draws come from `generator` (CPU), so they are the same on any device.
    """
    if augment == "none":
        return x
    if augment != "flip_crop" or x.dim() != 4:
        raise ValueError(f"augment {augment!r} needs image batches [n, c, h, w]; valid: none, flip_crop")
    n, _, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = to_device_async(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    dy = to_device_async(torch.randint(0, 2 * pad + 1, (n,), generator=generator), x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None, :]  # [n, h]
    cols = dx[:, None] + torch.arange(w, device=x.device)[None, :]  # [n, w]
    out = padded[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(x.shape[1], device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
    flip = to_device_async(torch.rand(n, generator=generator) < 0.5, x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class BatchInputs:
    """Resident arrays to model inputs, one batch at a time on the device.

    uint8 images: x.float()/255, then (x - mean[c]) / std[c] when the dataset gives mean/std.
    float32 (already standardised) and int64 tokens pass through. Then the augmentation, and
    channels_last for image batches (4-D) on CUDA (tensor-core convolutions). Not on CPU, though
    oneDNN runs 2-D convolutions 1.4-1.8x faster in it there: torch 2.14.1's oneDNN 3.12
    corrupts memory in the backward of a strided 1x1 convolution (a ResNet shortcut) with fewer
    than 8 input channels at one thread, which is how training jobs run
    (tests/test_train.py::test_narrow_resnet_trains_on_one_cpu_thread).
    """

    def __init__(self, data: ArrayDataset, device: torch.device | str):
        self.device = torch.device(device)
        self.mean = self.std = None
        if data.x_train.dtype == np.uint8 and data.mean is not None:
            channels = data.x_train.shape[1]
            shape = (1, channels) + (1,) * (data.x_train.ndim - 2)
            self.mean = torch.as_tensor(np.asarray(data.mean, np.float32)).reshape(shape).to(device)
            self.std = torch.as_tensor(np.asarray(data.std, np.float32)).reshape(shape).to(device)
        self.channels_last = data.x_train.ndim == 4 and self.device.type == "cuda"

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on the batches' device, in the memory format of the batches it will be given."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def __call__(
        self, x: torch.Tensor, augment: str = "none", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255
            if self.mean is not None:
                x = (x - self.mean) / self.std
        x = augment_batch(x, augment, generator)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class ResidentData:
    """A prepared dataset held on the device once, for every run that trains on it: the arrays as
    tensors there (uint8 images stay uint8) and the BatchInputs that turn them into batches. A
    training pack makes one and passes it to each of its runs, so a GPU receives the data once."""

    def __init__(self, data: ArrayDataset, device: torch.device | str):
        self.data, self.device = data, torch.device(device)
        self.inputs = BatchInputs(data, self.device)
        self.x_train, self.y_train, self.x_test, self.y_test = (
            torch.from_numpy(a).to(self.device) for a in (data.x_train, data.y_train, data.x_test, data.y_test)
        )


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024, *, inputs: BatchInputs | None = None, bf16: bool
) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    outs = []
    with autocast_context(device, bf16):
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            outs.append(model(inputs(xb) if inputs is not None else xb).float())
    return torch.cat(outs)
