"""`gpu-concurrency`: aggregate training throughput of a pack trained K runs at a time.

For each case (experiments/paper.yaml's nokd run keys of CIFAR-10 ResNet-18 at widths 8 and 64,
VGG-19, the CIFAR ViT, the audio CNN and the char GRU, at their recipes' batch sizes), a pack of
`--pack-runs` runs (seeds 0, 1, ...) on synthetic data of the real shapes is trained by
kdtransfer.training.pack.train_pack, as a training job does, with training.pack_concurrency
K = 1, 2, 4, 8: images per second summed over the pack = runs x epochs x train images / the
pack's wall time, worker start-up included (a real pack pays it too). Ratio: K's rate / K = 1's
(one run at a time: each run alone). The bare loop of gpu-training is the per-run ceiling to
compare the K = 1 row with. Before the timed packs, one pack of one run warms the caches up.

Each run of a timed pack must write what it writes at K = 1 (the identity the workflow relies
on): the bench checks that every run's predictions are byte-identical across K and says so.
`--gpu-smoke` runs it on the CPU with tiny sizes and K = 1, 2, to check the code, not to measure.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import Row, write_results
from bench.gpu import PaperRuns, device_note, pick_device
from bench.paper import synthetic_dataset

CASES = (  # (label, nokd run key's dataset / student / recipe, as in experiments/paper.yaml)
    ("CIFAR-10 / ResNet-18 width 8", "nokd/cifar10/resnet18_w8/cifar_sgd"),
    ("CIFAR-10 / ResNet-18 width 64", "nokd/cifar10/resnet18/cifar_sgd"),
    ("CIFAR-10 / VGG-19", "nokd/cifar10/vgg19/cifar_sgd"),
    ("CIFAR-10 / ViT", "nokd/cifar10/vit_small/cifar_vit"),
    ("SpeechCommands / audio CNN", "nokd/speech_commands/audio_cnn/audio_sgd"),
    ("Names / char GRU", "nokd/names/char_gru/text"),
)
AGGREGATE = "aggregate throughput (images/s over the pack)"


def run_key(runs: PaperRuns, prefix: str) -> str:
    keys = sorted({r.key for r in runs.plan.runs if r.condition == "nokd" and r.key.startswith(prefix + "-")})
    if len(keys) != 1:
        raise SystemExit(f"bench/concurrency.py: experiments/paper.yaml has {keys or 'no'} nokd run key {prefix}-*")
    return keys[0]


def pack_runs(spec, seeds, out: Path):
    from kdtransfer.spec import RunSpec
    from kdtransfer.training.pack import PackRun

    runs = []
    for seed in seeds:
        d = out / f"seed{seed}"
        params = {**spec.params(), "seed": seed}
        runs.append(
            PackRun(
                RunSpec.from_params(params), str(d / "model.pt"), str(d / "h.parquet"), {"test": str(d / "p.parquet")}
            )
        )
    return runs


def time_pack(spec, data_path: str, seeds, concurrency: int, workdir: Path) -> tuple[float, list[bytes]]:
    """(wall seconds of train_pack, each run's predictions file) for a fresh pack."""
    from kdtransfer.training.pack import train_pack

    out = Path(tempfile.mkdtemp(prefix=f"pack-k{concurrency}-", dir=workdir))
    try:
        runs = pack_runs(spec, seeds, out)
        started = time.perf_counter()
        train_pack(runs, data_path, checkpoint_every=spec.recipe.epochs, concurrency=concurrency, threads=concurrency)
        seconds = time.perf_counter() - started
        return seconds, [Path(r.predictions["test"]).read_bytes() for r in runs]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure_case(runs: PaperRuns, label: str, prefix: str, args, workdir: Path) -> list[Row]:
    from kdtransfer.data import save_arrays

    smoke = getattr(args, "gpu_smoke", False)
    key = run_key(runs, prefix)
    _, size = runs.dataset_of("nokd", key)
    batch = 4 if smoke else None
    spec = runs.spec("nokd", key, epochs=args.concurrency_epochs, batch=batch)
    # A smoke run's few steps still draw every class (the prepared-data check refuses a missing one).
    steps = -(-10 * size.num_classes // spec.recipe.batch_size) if smoke else args.concurrency_steps
    data = synthetic_dataset(size, steps * spec.recipe.batch_size, 8 if smoke else 1000)
    data_path = str(workdir / f"{prefix.replace('/', '_')}.npz")
    save_arrays(data, data_path)
    seeds = list(range(args.pack_runs))
    images = len(seeds) * spec.recipe.epochs * len(data.y_train)
    time_pack(spec, data_path, seeds[:1], 1, workdir)  # warm-up: caches, lazy imports
    rows, reference = [], None
    for k in sorted({1, *args.concurrency_values}):  # K = 1 first: the reference
        seconds, predictions = time_pack(spec, data_path, seeds, k, workdir)
        reference = reference or (seconds, predictions)
        same = predictions == reference[1]
        rows.append(
            Row(
                label,
                f"K = {k}",
                AGGREGATE,
                images / seconds,
                "img/s",
                ratio=reference[0] / seconds,
                note=f"{len(seeds)} runs x {spec.recipe.epochs} epochs x {len(data.y_train):,} images of batch "
                f"{spec.recipe.batch_size} in {seconds:.1f} s; predictions "
                + ("byte-identical to K = 1" if same else "DIFFER from K = 1"),
            )
        )
        print(f"[concurrency] {label} K={k}: {images / seconds:,.0f} img/s ({seconds:.1f} s)", flush=True)
        if not same:
            args.failures = [*getattr(args, "failures", []), f"{label} K={k}: predictions differ from K = 1"]
    return rows


def run_concurrency(args) -> tuple[list[Row], list[str]]:
    device = pick_device(args)
    runs = PaperRuns()
    notes = [
        device_note(device),
        "A pack of runs of one nokd run key (seeds 0, 1, ...) trained by train_pack with pack_concurrency = K "
        "(K worker processes on one GPU, each training every K-th run); ratio = K = 1's wall time / K's. "
        "Worker start-up (interpreter, torch, CUDA context) is inside the timed pack, as in a training job.",
        f"Recipes and models are experiments/paper.yaml's; data is synthetic ({args.concurrency_steps} steps per "
        f"epoch, {args.concurrency_epochs} epochs per run).",
    ]
    rows: list[Row] = []
    wanted = [w.strip().lower() for w in (args.concurrency_cases or "").split(",") if w.strip()]
    with tempfile.TemporaryDirectory(prefix="kdtransfer-concurrency-") as tmp:
        for label, prefix in CASES:
            if wanted and not any(w in label.lower() for w in wanted):
                continue
            try:
                rows += measure_case(runs, label, prefix, args, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one run on a lent machine: report and carry on
                traceback.print_exc()
                args.failures = [*getattr(args, "failures", []), label]
                notes.append(
                    f"FAILED: {label}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                )
            part = f"gpu-concurrency-{args.tag}" if args.tag else "gpu-concurrency"
            write_results(part, "GPU training: a pack K runs at a time", rows, notes, args.command, args.results_dir)
    return rows, notes
