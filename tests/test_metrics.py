"""Metrics against hand-worked examples, and setup_metrics on real Parquet files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdtransfer.analysis import metrics as M
from kdtransfer.io.predictions import PredictionsError, read_predictions, write_predictions

# Hand-worked example: 3 samples, 3 classes. Logits are log-probabilities, so softmax = probs.
T_PROBS = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.5, 0.25, 0.25]])
S_PROBS = np.array([[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]])
LABEL = np.array([0, 1, 1])
# teacher predicts [0, 1, 0]: right on samples 0, 1; wrong on sample 2.
# student predicts [0, 0, 0]: agrees with the teacher on samples 0 and 2.
LN2 = math.log(2)
JS_SAMPLE1 = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3)  # m = (.375, .375, .25)
EXPECTED = {
    "n": 3,
    "accuracy": 1 / 3,
    "teacher_accuracy": 2 / 3,
    "agreement": 2 / 3,
    "agreement_correct": 1 / 2,  # samples 0 (agree), 1 (disagree)
    "agreement_incorrect": 1.0,  # sample 2: student repeats the teacher's wrong label 0
    "n_teacher_correct": 2,
    "n_teacher_incorrect": 1,
    "js": JS_SAMPLE1 / 3,  # = 0.0141584
    "activation_distance": math.sqrt(0.125) / 3,  # sample 1: diff (-.25, .25, 0)
    "kl": 0.25 * LN2 / 3,  # KL(t||s) sample 1: .25 ln(.5) + .5 ln 2
    "ece": 1 / 6,  # one bin, confidence 0.5, accuracy 1/3
}


def test_accuracy_agreement_by_hand():
    assert M.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 0])) == pytest.approx(0.5)
    assert M.agreement(np.array([0, 0, 0]), np.array([0, 1, 0])) == pytest.approx(2 / 3)
    mask = np.array([True, True, False])
    assert M.agreement_on(mask, np.array([0, 0, 0]), np.array([0, 1, 0])) == pytest.approx(0.5)
    assert math.isnan(M.agreement_on(np.zeros(3, bool), np.array([0, 0, 0]), np.array([0, 1, 0])))


def test_softmax_stable_and_temperature():
    p = M.softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]], atol=1e-300)
    assert np.isfinite(p).all()
    # softmax([0, ln 4] / 2) = softmax([0, ln 2]) = [1/3, 2/3]
    np.testing.assert_allclose(M.softmax(np.array([0.0, math.log(4)]), temperature=2.0), [1 / 3, 2 / 3])
    np.testing.assert_allclose(M.softmax(np.log(T_PROBS)), T_PROBS)


def test_divergences_by_hand():
    np.testing.assert_allclose(M.kl_divergence(T_PROBS, S_PROBS), [0.0, 0.25 * LN2, 0.0], atol=1e-12)
    np.testing.assert_allclose(M.js_divergence(T_PROBS, S_PROBS), [0.0, JS_SAMPLE1, 0.0], atol=1e-12)
    np.testing.assert_allclose(M.activation_distance(T_PROBS, S_PROBS), [0.0, math.sqrt(0.125), 0.0], atol=1e-12)
    # zeros: 0 log 0 = 0; p > 0 where q = 0 is infinite
    assert M.kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(LN2)
    assert M.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == math.inf
    # JS of disjoint distributions is ln 2 (its maximum), finite
    assert M.js_divergence(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(LN2)
    # KL from logits never overflows to inf for extreme logits
    kl = M.kl_divergence_logits(np.array([[0.0, 0.0]]), np.array([[0.0, -2000.0]]))
    assert kl[0] == pytest.approx(0.5 * 2000 - LN2, rel=1e-9)


def test_ece_by_hand():
    assert M.expected_calibration_error(S_PROBS, LABEL) == pytest.approx(1 / 6)
    probs = np.array([[0.9, 0.1, 0.0], [0.62, 0.38, 0.0], [0.29, 0.29, 0.42], [0.91, 0.09, 0.0]])
    label = np.array([0, 1, 2, 1])
    # bins (of 15): 0.9 and 0.91 -> bin 13 (acc 1/2, conf .905); 0.62 -> bin 9 (acc 0); 0.42 -> bin 6 (acc 1)
    expected = 2 / 4 * abs(0.5 - 0.905) + 1 / 4 * 0.62 + 1 / 4 * (1 - 0.42)
    assert expected == pytest.approx(0.5025)
    assert M.expected_calibration_error(probs, label, n_bins=15) == pytest.approx(0.5025)
    # a perfectly calibrated one-bin case
    assert M.expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == pytest.approx(0.0)


def _write(path, probs_or_logits, *, condition, seed, label=LABEL, sample_idx=None, run_key=None, logits=False):
    z = probs_or_logits if logits else np.log(probs_or_logits)
    n = len(z)
    write_predictions(
        path,
        run_key=run_key or f"toy-{condition}-s{seed}",
        condition=condition,
        seed=seed,
        split="test",
        sample_idx=np.arange(n) if sample_idx is None else sample_idx,
        label=label,
        logits=z,
    )
    return str(path)


def test_run_metrics_by_hand(tmp_path):
    t = read_predictions(_write(tmp_path / "t.parquet", T_PROBS, condition="teacher", seed=0))
    s = read_predictions(_write(tmp_path / "s.parquet", S_PROBS, condition="kd", seed=0))
    got = M.run_metrics(s, t)
    assert set(got) == set(EXPECTED)
    for key, value in EXPECTED.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    assert EXPECTED["js"] == pytest.approx(0.0141584, abs=1e-6)


def test_agreement_incorrect_nan_when_teacher_perfect(tmp_path):
    t = read_predictions(
        _write(tmp_path / "t.parquet", T_PROBS, condition="teacher", seed=0, label=np.array([0, 1, 0]))
    )
    s = read_predictions(_write(tmp_path / "s.parquet", S_PROBS, condition="kd", seed=0, label=np.array([0, 1, 0])))
    got = M.run_metrics(s, t)
    assert math.isnan(got["agreement_incorrect"]) and got["n_teacher_incorrect"] == 0


def _toy_setup(tmp_path, rng, seeds=(0, 1, 2), n=40, c=5, conditions=("kd", "nokd", "rcd")):
    label = rng.integers(0, c, n)
    teachers = {
        s: _write(
            tmp_path / f"teacher_s{s}.parquet",
            rng.normal(size=(n, c)),
            condition="teacher",
            seed=s,
            label=label,
            logits=True,
        )
        for s in seeds
    }
    students = {
        cond: {
            s: _write(
                tmp_path / f"{cond}_s{s}.parquet",
                rng.normal(size=(n, c)),
                condition=cond,
                seed=s,
                label=label,
                logits=True,
            )
            for s in seeds
        }
        for cond in conditions
    }
    return teachers, students


def test_setup_metrics_rows_and_values(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    teachers, students = _toy_setup(tmp_path, rng)
    reads = []
    real = M.read_predictions
    monkeypatch.setattr(M, "read_predictions", lambda p, **kw: reads.append(str(p)) or real(p, **kw))
    df = M.setup_metrics("toy", teachers, students)
    # every file read exactly once
    assert sorted(reads) == sorted([*teachers.values(), *(p for d in students.values() for p in d.values())])
    assert list(df.columns[:6]) == ["setup", "condition", "seed", "run_key", "path", "teacher_path"]
    assert set(M.METRIC_KEYS) <= set(df.columns)
    counts = df.groupby("condition").size().to_dict()
    assert counts == {"teacher": 3, "kd": 3, "nokd": 3, "rcd": 3, "teacher_other_seed": 3}
    assert (df["setup"] == "toy").all()
    # each student compared with the teacher of the same seed
    for _, row in df[df["condition"].isin(["kd", "nokd", "rcd"])].iterrows():
        expect = M.run_metrics(real(row["path"]), real(teachers[row["seed"]]))
        assert row["teacher_path"] == teachers[row["seed"]]
        for key, value in expect.items():
            assert row[key] == pytest.approx(value, nan_ok=True), key
    # teacher rows: own accuracy / ece, comparison metrics NaN
    trow = df[(df["condition"] == "teacher") & (df["seed"] == 1)].iloc[0]
    tp = real(teachers[1])
    assert trow["accuracy"] == pytest.approx(np.mean(tp.pred == tp.label))
    assert trow["ece"] == pytest.approx(M.expected_calibration_error(M.softmax(tp.logits), tp.label))
    assert all(math.isnan(trow[k]) for k in M.COMPARISON_KEYS)
    # teacher_other_seed: seed s compares the teacher of the next seed (cyclic) with teacher s
    for s, other in ((0, 1), (1, 2), (2, 0)):
        row = df[(df["condition"] == "teacher_other_seed") & (df["seed"] == s)].iloc[0]
        assert row["path"] == teachers[other] and row["teacher_path"] == teachers[s]
        assert row["agreement"] == pytest.approx(M.run_metrics(real(teachers[other]), real(teachers[s]))["agreement"])


def test_setup_metrics_single_seed_no_other_seed_rows(tmp_path):
    teachers, students = _toy_setup(tmp_path, np.random.default_rng(1), seeds=(3,), conditions=("kd",))
    df = M.setup_metrics("toy", teachers, students)
    assert sorted(df["condition"]) == ["kd", "teacher"]


@pytest.mark.parametrize("what", ["sample_idx", "label"])
def test_setup_metrics_misaligned_names_both_files(tmp_path, what):
    rng = np.random.default_rng(2)
    teachers, students = _toy_setup(tmp_path, rng, seeds=(0, 1), conditions=("kd",))
    n, c = 40, 5
    t = read_predictions(teachers[1])
    bad = tmp_path / "bad_kd_s1.parquet"
    if what == "sample_idx":
        _write(
            bad,
            rng.normal(size=(n, c)),
            condition="kd",
            seed=1,
            label=t.label,
            sample_idx=np.arange(n) + 1,
            logits=True,
        )
    else:
        label = t.label.copy()
        label[0] = (label[0] + 1) % c
        _write(bad, rng.normal(size=(n, c)), condition="kd", seed=1, label=label, logits=True)
    students["kd"][1] = str(bad)
    with pytest.raises(PredictionsError) as err:
        M.setup_metrics("toy", teachers, students)
    assert str(bad) in str(err.value) and teachers[1] in str(err.value)


def test_setup_metrics_carries_each_rows_parameter_count(tmp_path):
    """num_parameters = the row's model's count from its predictions metadata (the student's; the
    teacher's own on teacher rows; the other teacher's on teacher_other_seed rows); NaN if absent."""
    rng = np.random.default_rng(3)
    n, c = 30, 4
    label = rng.integers(0, c, n)
    counts = {"teacher": 5000, "kd": 1200, "nokd": 1200}

    def write(name, condition, seed, num_parameters):
        meta = {} if num_parameters is None else {"num_parameters": num_parameters}
        path = tmp_path / f"{name}.parquet"
        write_predictions(
            path,
            run_key=f"{condition}/toy",
            condition=condition,
            seed=seed,
            split="test",
            sample_idx=np.arange(n),
            label=label,
            logits=rng.normal(size=(n, c)),
            extra_metadata=meta,
        )
        return str(path)

    teachers = {s: write(f"teacher_s{s}", "teacher", s, counts["teacher"] + s) for s in (0, 1)}
    students = {
        "kd": {s: write(f"kd_s{s}", "kd", s, counts["kd"]) for s in (0, 1)},
        "nokd": {0: write("nokd_s0", "nokd", 0, counts["nokd"]), 1: write("nokd_s1", "nokd", 1, None)},
    }
    df = M.setup_metrics("toy", teachers, students).set_index(["condition", "seed"])
    assert df["num_parameters"].dtype == np.float64
    assert df.loc[("teacher", 0), "num_parameters"] == 5000 and df.loc[("teacher", 1), "num_parameters"] == 5001
    assert (df.loc["kd", "num_parameters"] == 1200).all()
    assert df.loc[("nokd", 0), "num_parameters"] == 1200 and math.isnan(df.loc[("nokd", 1), "num_parameters"])
    # seed 0's reference row compares the teacher of seed 1 (the row's model) with teacher 0
    assert df.loc[("teacher_other_seed", 0), "num_parameters"] == 5001
    assert df.loc[("teacher_other_seed", 1), "num_parameters"] == 5000


def test_pred_column_that_is_not_the_argmax_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    teachers, students = _toy_setup(tmp_path, rng, seeds=(0,), conditions=("kd",))
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = students["kd"][0]
    preds = read_predictions(path)
    table = pq.read_table(path)
    wrong = (preds.pred.astype(np.int16) + 1) % preds.logits.shape[1]
    table = table.set_column(table.schema.get_field_index("pred"), "pred", pa.array(wrong, pa.int16()))
    pq.write_table(table, path)
    with pytest.raises(PredictionsError, match="not the argmax"):
        M.setup_metrics("toy", teachers, students)


def test_identity_columns_are_checked_without_statistics(tmp_path):
    """Files whose statistics do not prove a single identity value are read row by row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = _write(tmp_path / "t.parquet", T_PROBS, condition="teacher", seed=7)
    table = pq.read_table(path)
    pq.write_table(table, path, write_statistics=False)
    got = read_predictions(path)
    assert (got.condition, got.seed, got.split) == ("teacher", 7, "test")
    mixed = table.set_column(table.schema.get_field_index("seed"), "seed", pa.array(np.array([7, 8, 7], np.int32)))
    pq.write_table(mixed, path)
    with pytest.raises(PredictionsError, match="'seed' must hold one value, found 2"):
        read_predictions(path)
