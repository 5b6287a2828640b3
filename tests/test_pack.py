"""Training packs: a run's results never depend on its pack, and nothing finished is lost.

A pack (kdtransfer.training.pack) trains the runs of one run key over a block of seeds, one
after another in one process. Every run must come out bit-identical (weights and predictions
file) to the same run trained alone, for every case of the alpha = 0 invariant
(tests/test_alpha_zero.py: augmentation, dropout, warm-up, SGD and AdamW, logit, hint and
attention KD, the GRU). A run that fails fails the pack, naming the run; its pack-mates keep
their training, and the rerun restores them from their final state instead of training them.
Kills inside a pack (SIGKILL, SIGTERM) are in tests/test_faults.py.
"""

import logging
import re
import signal
from pathlib import Path

import pytest
import torch
from conftest import run_spec
from test_alpha_zero import CASES, datasets  # noqa: F401  (datasets: the module fixture)

from kdtransfer.data import save_arrays
from kdtransfer.training.loop import train_run
from kdtransfer.training.pack import PackFailed, PackRun, train_pack

SEEDS = (2, 3, 4)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory, datasets):  # noqa: F811
    root = tmp_path_factory.mktemp("pack_data")
    files = {}
    for name, ds in datasets.items():
        save_arrays(ds, root / f"{name}.npz")
        files[name] = str(root / f"{name}.npz")
    return files


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, datasets):  # noqa: F811
    """A trained teacher per (data, teacher model, seed), saved where kd runs load it."""
    cache = {}

    def get(data_name, model, recipe, seed):
        key = (data_name, repr(model), seed)
        if key not in cache:
            d = tmp_path_factory.mktemp("pack_teacher")
            teacher, _, _ = train_run(
                run_spec("teacher", model=model, recipe=recipe, seed=seed),
                datasets[data_name],
                checkpoint_path=d / "c.pt",
                checkpoint_every=1,
            )
            torch.save(teacher.state_dict(), d / "model.pt")
            cache[key] = str(d / "model.pt")
        return cache[key]

    return get


def case_runs(out: Path, case: str, condition: str, seeds, teachers) -> tuple[list[PackRun], dict | None]:
    """The runs of one case's kd (or rcd) run key over `seeds`, writing below `out`."""
    data_name, model, recipe, variant, layers, teacher_layers, teacher_model = CASES[case]
    kd = {"alpha": 0.9, "temperature": 4.0, "variant": variant}
    if variant != "logit":
        kd.update(layers=layers, teacher_layers=teacher_layers, feature_weight=1.0)
    runs = []
    for seed in seeds:
        spec = run_spec(
            condition,
            model=model,
            recipe=recipe,
            kd=kd,
            rcd={"noise": "gaussian", "resample": "step"},
            teacher=teacher_model,
            seed=seed,
        )
        d = out / f"seed{seed}"
        runs.append(
            PackRun(
                spec,
                str(d / "model.pt"),
                str(d / "history.parquet"),
                {"test": str(d / "predictions_test.parquet")},
                teachers(data_name, teacher_model, recipe, seed) if condition == "kd" else None,
            )
        )
    return runs, (teacher_model if condition == "kd" or variant != "logit" else None)


def outputs(run: PackRun) -> tuple[dict, bytes]:
    return torch.load(run.weights, weights_only=True), Path(run.predictions["test"]).read_bytes()


def same_outputs(a: PackRun, b: PackRun) -> bool:
    (weights_a, preds_a), (weights_b, preds_b) = outputs(a), outputs(b)
    return (
        weights_a.keys() == weights_b.keys()
        and preds_a == preds_b
        and all(weights_a[k].numpy().tobytes() == weights_b[k].numpy().tobytes() for k in weights_a)
    )


@pytest.mark.parametrize("condition", ["kd", "rcd"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_run_trained_in_a_pack_is_bit_identical_to_it_trained_alone(tmp_path, data_files, teachers, case, condition):
    data = data_files[CASES[case][0]]
    pack, teacher_model = case_runs(tmp_path / "pack", case, condition, SEEDS, teachers)
    train_pack(pack, data, checkpoint_every=1, teacher_model=teacher_model)
    # The last run of the pack, after two pack-mates have trained in the same process, against
    # the same run trained by a pack of its own.
    alone, _ = case_runs(tmp_path / "alone", case, condition, SEEDS[-1:], teachers)
    train_pack(alone, data, checkpoint_every=1, teacher_model=teacher_model)
    assert same_outputs(pack[-1], alone[0]), f"{case} {condition}: a run's result depends on its pack"
    # Not trivially so: the pack-mates are other runs, with other results.
    assert not same_outputs(pack[0], alone[0])
    # Each run writes its own files; the final states (checkpoints) are gone once the pack is done.
    assert all(Path(p).exists() for run in pack for p in (run.weights, run.history, *run.predictions.values()))
    assert not list((tmp_path / "pack").rglob("checkpoint*"))


def test_a_failed_run_fails_the_pack_and_the_rerun_trains_only_it(tmp_path, data_files, teachers, caplog):
    caplog.set_level(logging.INFO, logger="kdtransfer")
    case, data = "logit-sgd", data_files["digits"]
    clean, teacher_model = case_runs(tmp_path / "clean", case, "kd", SEEDS, teachers)
    train_pack(clean, data, checkpoint_every=1, teacher_model=teacher_model)

    runs, _ = case_runs(tmp_path / "pack", case, "kd", SEEDS, teachers)
    broken = Path(tmp_path / "broken_teacher.pt")
    broken.write_bytes(b"not a checkpoint")
    runs[1] = PackRun(runs[1].spec, runs[1].weights, runs[1].history, runs[1].predictions, str(broken))
    with pytest.raises(PackFailed) as failure:
        train_pack(runs, data, checkpoint_every=1, teacher_model=teacher_model)
    message = str(failure.value)
    assert f"1 of 3 runs of pack {runs[0].spec.run_key} seeds 2-4 failed" in message
    assert f"{runs[1].spec.name} (" in message and "broken_teacher.pt" in message
    # The runs before and after the failed one trained, and keep their final state for the rerun.
    for run in (runs[0], runs[2]):
        assert Path(run.weights).exists() and (Path(run.weights).parent / "checkpoint.pt").exists()
    assert not Path(runs[1].weights).exists()

    # Snakemake deletes every output of a failed job; the cause is fixed; the same pack again.
    for run in runs:
        for path in (run.weights, run.history, *run.predictions.values()):
            Path(path).unlink(missing_ok=True)
    fixed = [PackRun(r.spec, r.weights, r.history, r.predictions, c.teacher_weights) for r, c in zip(runs, clean)]
    caplog.clear()
    train_pack(fixed, data, checkpoint_every=1, teacher_model=teacher_model)
    trained = set(re.findall(r"epoch 1/\d+ loss", caplog.text))
    assert len(trained) == 1 and caplog.text.count("epoch 1/") == 1  # one run trained: the failed one
    for run in (runs[0], runs[2]):
        assert f"restored {run.spec.name} from" in caplog.text and "not trained again" in caplog.text
    assert all(same_outputs(a, b) for a, b in zip(fixed, clean))
    assert not list((tmp_path / "pack").rglob("checkpoint*"))


@pytest.mark.parametrize(
    "case,condition,concurrency",
    [("logit-dropout", "kd", 2), ("hint-flip_crop", "rcd", 3), ("attention-flip_crop-adamw", "kd", 2)],
)
def test_runs_trained_side_by_side_are_bit_identical_to_them_trained_in_turn(
    tmp_path, data_files, teachers, case, condition, concurrency
):
    """training.pack_concurrency: K worker processes, each training every K-th run; every run's
    weights and predictions as in a sequential pack (dropout, augmentation, feature KD, AdamW)."""
    data = data_files[CASES[case][0]]
    in_turn, teacher_model = case_runs(tmp_path / "in_turn", case, condition, SEEDS, teachers)
    train_pack(in_turn, data, checkpoint_every=1, teacher_model=teacher_model)
    side, _ = case_runs(tmp_path / "side", case, condition, SEEDS, teachers)
    log = tmp_path / "pack.log"
    train_pack(side, data, checkpoint_every=1, teacher_model=teacher_model, concurrency=concurrency, log_path=str(log))
    assert all(same_outputs(a, b) for a, b in zip(side, in_turn)), f"{case} {condition}: a run depends on K"
    text = log.read_text()
    # K workers, each naming its runs in the job's log, as a sequential pack does.
    assert text.count(f"share (1 of {concurrency} at a time) of") == concurrency
    for run in side:
        assert f"[{run.spec.name}] kdtransfer.training.pack: run " in text
    assert not list((tmp_path / "side").rglob("checkpoint*"))


def test_a_failed_run_of_a_concurrent_pack_fails_only_itself(tmp_path, data_files, teachers):
    """A worker's run that fails is named by the job; its pack-mates, in its worker and in the
    other, train to the end and keep their final state for the rerun."""
    case, data = "logit-sgd", data_files["digits"]
    runs, teacher_model = case_runs(tmp_path, case, "kd", SEEDS, teachers)
    broken = Path(tmp_path / "broken_teacher.pt")
    broken.write_bytes(b"not a checkpoint")
    runs[0] = PackRun(runs[0].spec, runs[0].weights, runs[0].history, runs[0].predictions, str(broken))
    with pytest.raises(PackFailed) as failure:
        train_pack(runs, data, checkpoint_every=1, teacher_model=teacher_model, concurrency=2)
    message = str(failure.value)
    assert f"1 of 3 runs of pack {runs[0].spec.run_key} seeds 2-4 failed" in message
    assert f"{runs[0].spec.name} (" in message and "broken_teacher.pt" in message
    for run in runs[1:]:  # seed 4 shared the failed run's worker, seed 3 had the other one
        assert Path(run.weights).exists() and (Path(run.weights).parent / "checkpoint.pt").exists()


def test_a_worker_that_dies_fails_the_runs_it_had_not_reported(tmp_path, data_files, teachers, monkeypatch):
    from kdtransfer.training import side_by_side

    (tmp_path / "dying_worker.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(side_by_side, "WORKER_MODULE", "dying_worker")
    runs, _ = case_runs(tmp_path, "logit-sgd", "rcd", SEEDS, teachers)
    with pytest.raises(PackFailed) as failure:
        train_pack(runs, data_files["digits"], checkpoint_every=1, concurrency=2)
    assert "3 of 3 runs" in str(failure.value)
    assert str(failure.value).count(f"its worker process ended with exit code {-signal.SIGKILL} before reporting") == 3


def test_out_of_memory_names_the_setting_that_uses_the_memory(tmp_path, data_files, teachers, monkeypatch):
    from kdtransfer.training import pack

    runs, _ = case_runs(tmp_path, "logit-sgd", "rcd", SEEDS[:2], teachers)

    def out_of_memory(spec, *args, **kwargs):
        if spec.seed == SEEDS[0]:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(spec, *args, **kwargs)

    real = pack.train_and_save
    monkeypatch.setattr(pack, "train_and_save", out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(PackFailed) as failure:
        train_pack(runs, data_files["digits"], checkpoint_every=1)
    message = str(failure.value)
    assert "1 of 2 runs" in message and f"{runs[0].spec.name} (OutOfMemory: CUDA out of memory with one run" in message
    assert "recipe.batch_size (now 64)" in message
    assert Path(runs[1].weights).exists()
    side = pack.out_of_memory_message(runs[0].spec, 4)
    assert "4 runs of the pack training at once" in side and "lower training.pack_concurrency (now 4)" in side


def test_a_pack_holds_one_run_key(tmp_path, data_files, teachers):
    a, _ = case_runs(tmp_path, "logit-sgd", "rcd", SEEDS[:1], teachers)
    b, _ = case_runs(tmp_path, "logit-dropout", "rcd", SEEDS[1:2], teachers)
    with pytest.raises(ValueError, match="one run key"):
        train_pack(a + b, data_files["digits"], checkpoint_every=1)


def test_a_pack_holds_its_data_on_the_device_once_for_all_its_runs(tmp_path, data_files, teachers, monkeypatch):
    """On a GPU the upload is the cost: one ResidentData per pack, passed to every run."""
    from kdtransfer.training import batches

    runs, teacher_model = case_runs(tmp_path, "logit-sgd", "kd", SEEDS, teachers)  # the teachers trained first
    made = []
    original = batches.ResidentData.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(batches.ResidentData, "__init__", counting)
    train_pack(runs, data_files["digits"], checkpoint_every=1, teacher_model=teacher_model)
    assert len(made) == 1 and all(Path(r.predictions["test"]).exists() for r in runs)
