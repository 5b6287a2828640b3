"""What the GPU tests share: their device, the paper's runs as the pipeline plans them, small
synthetic data of the paper's shapes, and bit-level comparisons of trained models.

The device: CUDA when there is one; `KDTRANSFER_TEST_DEVICE=cuda` insists on it (bench/gpu_check.sh
sets it, so a machine whose CUDA is broken fails these tests instead of skipping them), and
`KDTRANSFER_TEST_DEVICE=cpu` runs the same tests on the CPU with smaller batches, which checks
their logic on a machine without a GPU (on the CPU, bf16, channels_last, compile and the
determinism switch do not apply). Without either, a machine without CUDA skips them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(REPO))

from bench.paper import dataset_size, read_config, synthetic_dataset  # noqa: E402
from kdtransfer.plan.runs import Plan  # noqa: E402
from kdtransfer.spec import RunSpec  # noqa: E402
from kdtransfer.training.loop import train_run  # noqa: E402
from kdtransfer.training.models import create_model_for  # noqa: E402

DEVICE_VARIABLE = "KDTRANSFER_TEST_DEVICE"


def chosen_device() -> torch.device | None:
    wanted = os.environ.get(DEVICE_VARIABLE, "").strip().lower()
    if wanted not in ("", "cpu", "cuda"):
        raise ValueError(f"{DEVICE_VARIABLE}={wanted!r}: use cuda, cpu, or leave it unset (CUDA when there is one)")
    if wanted == "cpu":
        return torch.device("cpu")
    if wanted == "cuda" or torch.cuda.is_available():
        return torch.device("cuda")
    return None


DEVICE = chosen_device()
ON_CUDA = DEVICE is not None and DEVICE.type == "cuda"
SKIP_WITHOUT_DEVICE = f"no CUDA device (set {DEVICE_VARIABLE}=cpu to run these tests' logic on the CPU)"
if ON_CUDA:  # what a training job sets before its first cuBLAS call; these tests share one process
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
elif DEVICE is not None:
    torch.set_num_threads(1)  # as training jobs run; tiny batches on a shared machine stall on more

# Batches per epoch, epochs, batch size: a few steps of each run. Smaller on the CPU, where the
# paper's full-width models take a second a step.
STEPS, EPOCHS = (3, 2) if ON_CUDA else (2, 2)
BATCH = 32 if ON_CUDA else 4
N_TEST = 64 if ON_CUDA else 8

PAPER = read_config()
PLAN = Plan(PAPER)
PAPER_SETUPS = list(PAPER["setups"])  # as written, before sweeps: one per architecture family and variant


def require_device() -> torch.device:
    if ON_CUDA and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_VARIABLE}=cuda, but torch {torch.__version__} sees no CUDA device")
    return DEVICE


def setup_data(setup_name: str, n_train: int | None = None, seed: int = 0):
    """Synthetic data of the setup's dataset: its sample shape, dtype and classes, few samples."""
    dataset = PAPER["datasets"][PLAN.setups[setup_name]["dataset"]]
    size = dataset_size(dataset["loader"], dataset["options"])
    return synthetic_dataset(size, BATCH * STEPS if n_train is None else n_train, N_TEST, seed=seed)


def paper_spec(
    setup_name: str, condition: str, *, epochs: int = EPOCHS, kd: dict | None = None, **training
) -> tuple[RunSpec, dict | None]:
    """(the run a job of this setup and condition trains, shortened; its teacher's model entry).

    The spec is Plan.run_spec's, so model options, recipe and KD settings are the paper's; the
    recipe is cut to `epochs` of STEPS batches of BATCH; `training` overrides the paper's
    training flags (deterministic, bf16, compile); `kd` updates the KD settings."""
    key = PLAN.run_key(condition, setup_name)
    params = PLAN.run_spec(condition, key, 0)
    params["recipe"] = dict(params["recipe"], epochs=epochs, batch_size=BATCH)
    params.update(training)
    if kd:
        params["kd"] = dict(params["kd"], **kd)
    return RunSpec.from_params(params), PLAN.teacher_model(condition, key)


def random_teacher(entry: dict, data, path: Path) -> str:
    """Untrained teacher weights: a teacher's signal needs no training to be distilled from."""
    if not path.exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            torch.save(create_model_for(entry, data).state_dict(), path)
    return str(path)


def train(
    spec: RunSpec,
    data,
    run_dir: Path,
    teacher_weights: str | None = None,
    teacher_model: dict | None = None,
    *,
    checkpoint_every: int = 100,
):
    """train_run on the test device; by default a checkpoint only when a SIGTERM asks for one."""
    return train_run(
        spec,
        data,
        teacher_weights=teacher_weights if spec.condition == "kd" else None,
        teacher_model=teacher_model,
        checkpoint_path=run_dir / "checkpoint.pt",
        checkpoint_every=checkpoint_every,
        device=require_device(),
    )


def weight_bytes(model: torch.nn.Module) -> dict[str, tuple[str, bytes]]:
    """Every tensor of the state dict as (dtype, bytes in NCHW order): equal means bit-identical."""
    return {k: (str(v.dtype), v.detach().cpu().contiguous().numpy().tobytes()) for k, v in model.state_dict().items()}


def loss_curve(history: list[dict]) -> list[dict]:
    """The per-epoch history without its timings."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def difference(a: tuple[dict, list], b: tuple[dict, list]) -> str:
    """Where two (weight_bytes, loss_curve) results differ: for a failure message."""
    (weights_a, curve_a), (weights_b, curve_b) = a, b
    tensors = [k for k in weights_a if weights_a.get(k) != weights_b.get(k)]
    epochs = [i + 1 for i, (x, y) in enumerate(zip(curve_a, curve_b)) if x != y]
    shown = f"{tensors[:6]}{' ...' if len(tensors) > 6 else ''}"
    return f"differing tensors {shown} of {len(weights_a)}; differing epochs {epochs}"


@contextlib.contextmanager
def nondeterminism_alerts():
    """Collects the warnings of ops without a deterministic CUDA kernel (warn_only mode)."""
    import warnings

    alerts: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield alerts
    alerts += sorted({str(w.message).split(" does not have")[0] for w in caught if "deterministic" in str(w.message)})


@contextlib.contextmanager
def sigterm_at_step(monkeypatch, step: int):
    """Send this process a real SIGTERM during training step `step` (1-based, counted over the
    run), from inside the student's forward: train_run's own handler receives it, as it would a
    scheduler's, and the run saves a checkpoint at the end of that step and stops."""
    import kdtransfer.training.loop as train_module

    create = train_module.create_model_for
    calls = {"n": 0}

    def signal_at_step(module, inputs, output):
        if module.training:  # a training step's forward (feature shapes and evaluation run in eval mode)
            calls["n"] += 1
            if calls["n"] == step:
                os.kill(os.getpid(), signal.SIGTERM)

    def create_with_signal(entry, data):
        model = create(entry, data)
        model.register_forward_hook(signal_at_step)
        return model

    monkeypatch.setattr(train_module, "create_model_for", create_with_signal)
    try:
        yield calls
    finally:
        monkeypatch.setattr(train_module, "create_model_for", create)
