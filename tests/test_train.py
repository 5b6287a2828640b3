"""Training: reproducible bit for bit on CPU; kd/rcd/nokd share init and batch order."""

import numpy as np
import pytest
import torch

from kdtransfer.data import load_dataset, save_arrays
from kdtransfer.predictions import read_predictions
from kdtransfer.train import RunSpec, epoch_permutation, train_and_save
from kdtransfer.seeding import derive_seed, run_roles

RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 2, "batch_size": 64}
MODEL = {"arch": "mlp", "options": {"hidden": [16]}}


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    save_arrays(load_dataset("digits", test_fraction=0.4), path)
    return str(path)


def spec(condition, seed=0, **kw):
    extra = {}
    if condition in ("kd", "rcd"):
        extra["kd"] = {"alpha": 0.9, "temperature": 4}
    if condition == "rcd":
        extra["rcd"] = {"noise": "uniform", "resample": "step"}
    return RunSpec(run_key=f"{condition}/x", condition=condition, seed=seed, model=MODEL, recipe=RECIPE, **{**extra, **kw})


def run(tmp, name, s, data, teacher=None):
    d = tmp / name
    info = train_and_save(s, data, weights_out=str(d / "model.pt"), predictions_out={"test": str(d / "p.parquet")},
                          history_out=str(d / "h.parquet"), teacher_weights=teacher, teacher_model=MODEL if teacher else None)
    return info, read_predictions(d / "p.parquet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_npz):
    tmp = tmp_path_factory.mktemp("runs")
    out = {"teacher": run(tmp, "teacher", spec("teacher"), digits_npz)}
    teacher_weights = str(tmp / "teacher" / "model.pt")
    for c in ("kd", "rcd", "nokd", "independent"):
        out[c] = run(tmp, c, spec(c), digits_npz, teacher_weights if c == "kd" else None)
    out["kd_again"] = run(tmp, "kd_again", spec("kd"), digits_npz, teacher_weights)
    out["teacher_again"] = run(tmp, "teacher_again", spec("teacher"), digits_npz)
    return out


def test_same_seed_gives_bit_identical_predictions(runs):
    for a, b in (("teacher", "teacher_again"), ("kd", "kd_again")):
        pa, pb = runs[a][1], runs[b][1]
        assert pa.logits.tobytes() == pb.logits.tobytes()
        assert np.array_equal(pa.pred, pb.pred)


def test_students_share_teacher_init_and_one_batch_order(runs):
    init = {c: runs[c][0]["init_fingerprint"] for c in ("teacher", "kd", "rcd", "nokd", "independent")}
    order = {c: runs[c][0]["order_fingerprint"] for c in init}
    assert init["kd"] == init["rcd"] == init["nokd"] == init["teacher"]
    assert init["independent"] != init["teacher"]
    assert order["kd"] == order["rcd"] == order["nokd"]
    assert order["teacher"] != order["kd"] and order["independent"] not in (order["teacher"], order["kd"])


def test_conditions_differ_only_in_loss(runs):
    # Same init and order, different targets: the trained students must differ.
    assert not np.array_equal(runs["kd"][1].logits, runs["nokd"][1].logits)
    assert not np.array_equal(runs["rcd"][1].logits, runs["nokd"][1].logits)


def test_batch_order_is_a_function_of_seed_and_epoch():
    s = derive_seed(3, run_roles("nokd")[1])
    assert torch.equal(epoch_permutation(s, 1, 50), epoch_permutation(s, 1, 50))
    assert not torch.equal(epoch_permutation(s, 0, 50), epoch_permutation(s, 1, 50))
    assert sorted(epoch_permutation(s, 0, 50).tolist()) == list(range(50))


def test_different_seeds_give_different_models(tmp_path, digits_npz):
    _, a = run(tmp_path, "a", spec("teacher", seed=1), digits_npz)
    _, b = run(tmp_path, "b", spec("teacher", seed=2), digits_npz)
    assert not np.array_equal(a.logits, b.logits)


@pytest.mark.parametrize("nesterov,weight_decay", [(False, 0.0), (False, 5e-4), (True, 5e-4)])
def test_sgd_matches_torch_optim_sgd(nesterov, weight_decay):
    from kdtransfer.optim import SGD

    torch.manual_seed(0)
    ref = torch.nn.Linear(5, 3)
    ours = torch.nn.Linear(5, 3)
    ours.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    opt_ours = SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    for _ in range(5):
        for model, opt in ((ref, opt_ref), (ours, opt_ours)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(ref.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
