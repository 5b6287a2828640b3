"""The device a run trains on, and the process-wide switches a deterministic CUDA run needs."""

from __future__ import annotations

import os

import torch

FUSED_ATTENTION_SWITCHES = ("enable_flash_sdp", "enable_mem_efficient_sdp", "enable_cudnn_sdp")


def pick_device() -> torch.device:
    """The GPU this process sees first (the one it claimed, kdtransfer.training.gpus), else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def device_label(device: torch.device) -> str:
    """'cpu', or which GPU: 'cuda:0 = GPU 3 (NVIDIA H200)', the torch index, the machine's GPU it
    maps to (its CUDA_VISIBLE_DEVICES entry) and the GPU's name."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    entries = [e.strip() for e in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if e.strip()]
    machine = entries[index] if index < len(entries) else str(index)
    return f"cuda:{index} = GPU {machine} ({torch.cuda.get_device_name(index)})"


def configure_device(device: torch.device, *, deterministic: bool) -> None:
    """The determinism switch (RunSpec.deterministic), on CUDA (process-wide settings, set for each run).

    warn_only=True: strict mode raises on every op flagged as non-deterministic on CUDA, such as
    the backward of adaptive pooling (the ResNet's global average pool), whose atomic adds are
    reproducible anyway where each input element gets one (non-overlapping windows, as here).
    Attention's are not: the fused kernels' backward passes (flash, memory-efficient, cuDNN)
    accumulate in a varying order unless strict mode is on, so a deterministic run computes
    attention with the math kernel (the sequences here are short). tests/gpu checks the result.
    """
    if device.type == "cuda":
        if deterministic:  # deterministic cuBLAS; read when CUDA first creates its handle
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # CPU kernels are deterministic at a fixed thread count already; on CPU this call would
        # also import torch._inductor (1.5 s per job, most of a small job's time).
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic
        for switch in FUSED_ATTENTION_SWITCHES:
            if hasattr(torch.backends.cuda, switch):  # enable_cudnn_sdp: torch >= 2.3
                getattr(torch.backends.cuda, switch)(not deterministic)
