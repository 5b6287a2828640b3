"""Functional-similarity metrics between a student and its teacher (PROTOCOL.md, "Metrics").

Array-level functions are vectorised numpy and take per-sample arrays; `run_metrics` compares
two prediction files; `setup_metrics` builds the per-run metrics table of one setup.

All divergences use the natural logarithm and are computed in float64. Where logits are at
hand (run_metrics), KL and JS are computed from log-softmax so that a probability that
underflows to 0 never turns a finite divergence into inf.

No torch here: analysis depends only on numpy/pandas/pyarrow/scipy/statsmodels/matplotlib.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd

from kdtransfer.predictions import Predictions, check_aligned, read_predictions

METRIC_KEYS = (
    "n",
    "accuracy",
    "teacher_accuracy",
    "agreement",
    "agreement_correct",
    "agreement_incorrect",
    "n_teacher_correct",
    "n_teacher_incorrect",
    "js",
    "activation_distance",
    "kl",
    "ece",
)
# Metrics that compare a model with the teacher; NaN on the "teacher" rows (see setup_metrics).
COMPARISON_KEYS = ("agreement", "agreement_correct", "agreement_incorrect", "js", "activation_distance", "kl")

STUDENT_CONDITIONS = ("nokd", "rcd", "kd", "independent")


# --------------------------------------------------------------------------------------------
# Array-level functions
# --------------------------------------------------------------------------------------------


def accuracy(pred, label) -> float:
    """Fraction of samples whose predicted class equals the label (NaN for no samples)."""
    pred = np.asarray(pred)
    label = np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"pred and label shapes differ: {pred.shape} vs {label.shape}")
    return float(np.mean(pred == label)) if pred.size else math.nan


def agreement(pred_s, pred_t) -> float:
    """Top-1 agreement: fraction of samples where student and teacher predict the same class."""
    return accuracy(pred_s, pred_t)


def agreement_on(mask, pred_s, pred_t) -> float:
    """Top-1 agreement restricted to samples where boolean `mask` is True; NaN if none are."""
    mask = np.asarray(mask, dtype=bool)
    pred_s = np.asarray(pred_s)
    pred_t = np.asarray(pred_t)
    if not mask.any():
        return math.nan
    return float(np.mean(pred_s[mask] == pred_t[mask]))


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable log-softmax over the last axis of logits / temperature (float64)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax over the last axis of logits / temperature (float64)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _xlogy_ratio(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Elementwise p * log(p / q) with 0 * log(0 / q) = 0 (inf where p > 0 and q = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = p * (np.log(p) - np.log(q))
    return np.where(p > 0, out, 0.0)


def kl_divergence(p, q) -> np.ndarray:
    """Per-sample KL(p || q) = sum_c p_c log(p_c / q_c), natural log, rows of probabilities.

    Zeros in p contribute 0; a zero in q where p > 0 gives inf (the true value).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return _xlogy_ratio(p, q).sum(axis=-1)


def js_divergence(p, q) -> np.ndarray:
    """Per-sample Jensen-Shannon divergence, natural log: KL(p||m)/2 + KL(q||m)/2, m = (p+q)/2.

    Bounded in [0, log 2]; always finite (m > 0 wherever p or q is).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = 0.5 * (p + q)
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def activation_distance(p, q) -> np.ndarray:
    """Per-sample L2 norm of the difference of two probability vectors (softmax outputs)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return np.sqrt(((p - q) ** 2).sum(axis=-1))


def kl_divergence_logits(logits_p, logits_q, temperature: float = 1.0) -> np.ndarray:
    """Per-sample KL(softmax(p/T) || softmax(q/T)) computed from log-softmax (never spuriously inf)."""
    lp = log_softmax(logits_p, temperature)
    lq = log_softmax(logits_q, temperature)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def expected_calibration_error(probs, label, n_bins: int = 15) -> float:
    """Expected calibration error of top-1 confidence, `n_bins` equal-width bins on [0, 1].

    Confidence = max probability; bin b holds confidences in (b/n_bins, (b+1)/n_bins] (the first
    bin also holds 0). ECE = sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|.
    """
    probs = np.asarray(probs, dtype=np.float64)
    label = np.asarray(label)
    n = probs.shape[0]
    if n == 0:
        return math.nan
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == label).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=correct, minlength=n_bins)
    return float(np.abs(sum_acc - sum_conf).sum() / n)


# --------------------------------------------------------------------------------------------
# Run level
# --------------------------------------------------------------------------------------------


class _Prepared:
    """A run's predictions with its log-softmax computed once (teachers are reused)."""

    def __init__(self, preds: Predictions):
        if preds.logits is None:
            raise ValueError(f"{preds.path}: metrics need logits; read with logits=True")
        self.preds = preds
        self.logp = log_softmax(preds.logits)
        self.p = np.exp(self.logp)
        # argmax of the stored logits: the file's own pred column (written as logits.argmax)
        self.pred = np.asarray(preds.pred)
        self.correct = self.pred == np.asarray(preds.label)


def _compare(s: _Prepared, t: _Prepared) -> dict:
    check_aligned(s.preds, t.preds)
    label = np.asarray(t.preds.label)
    m = 0.5 * (s.p + t.p)
    with np.errstate(divide="ignore"):
        logm = np.log(m)
    js = 0.5 * (np.where(s.p > 0, s.p * (s.logp - logm), 0.0).sum(-1) + np.where(t.p > 0, t.p * (t.logp - logm), 0.0).sum(-1))
    kl = (t.p * (t.logp - s.logp)).sum(-1)
    n_corr = int(t.correct.sum())
    return {
        "n": int(label.shape[0]),
        "accuracy": accuracy(s.pred, label),
        "teacher_accuracy": accuracy(t.pred, label),
        "agreement": agreement(s.pred, t.pred),
        "agreement_correct": agreement_on(t.correct, s.pred, t.pred),
        "agreement_incorrect": agreement_on(~t.correct, s.pred, t.pred),
        "n_teacher_correct": n_corr,
        "n_teacher_incorrect": int(label.shape[0] - n_corr),
        "js": float(js.mean()),
        "activation_distance": float(activation_distance(s.p, t.p).mean()),
        "kl": float(kl.mean()),
        "ece": expected_calibration_error(s.p, label, 15),
    }


def run_metrics(student: Predictions, teacher: Predictions) -> dict:
    """All PROTOCOL metrics of `student` against `teacher` (same samples, checked).

    Keys: n, accuracy, teacher_accuracy, agreement, agreement_correct, agreement_incorrect (NaN if
    the teacher makes no error), n_teacher_correct, n_teacher_incorrect, js, activation_distance,
    kl (= mean KL(teacher || student), T = 1), ece (student, 15 bins). Raises PredictionsError
    (naming both files) if the two files hold different samples or labels.
    """
    check_aligned(student, teacher)
    return _compare(_Prepared(student), _Prepared(teacher))


def _teacher_self_row(t: _Prepared) -> dict:
    label = np.asarray(t.preds.label)
    n_corr = int(t.correct.sum())
    row = {k: math.nan for k in METRIC_KEYS}
    row.update(
        n=int(label.shape[0]),
        accuracy=accuracy(t.pred, label),
        teacher_accuracy=accuracy(t.pred, label),
        n_teacher_correct=n_corr,
        n_teacher_incorrect=int(label.shape[0] - n_corr),
        ece=expected_calibration_error(t.p, label, 15),
    )
    return row


def setup_metrics(setup: str, teachers: Mapping[int, str], students: Mapping[str, Mapping[int, str]]) -> pd.DataFrame:
    """The metrics table of one setup: one row per (condition, seed).

    `teachers`: seed -> teacher predictions path (test split). `students`: condition -> {seed:
    path}. Each student run is compared with the teacher of the same seed (a student whose seed
    has no teacher is an error). Extra rows:

    - condition "teacher": the teacher itself. accuracy / teacher_accuracy / ece / n_teacher_* are
      the teacher's; the comparison metrics (agreement*, js, activation_distance, kl) are NaN,
      because a model compared with itself is not a measurement (it would be 1 / 0 trivially).
    - condition "teacher_other_seed" (when >= 2 teachers): for seed s, the teacher of the next
      seed in sorted order (cyclic) plays the student and is compared with the teacher of seed s:
      the agreement between two independently trained models, a reference level. Its `path` is
      the other teacher's file, `teacher_path` the seed-s teacher's.

    Columns: setup, condition, seed, run_key, path, teacher_path, then METRIC_KEYS. Every file
    is read once; each teacher's softmax is computed once.
    """
    teachers = {int(k): str(v) for k, v in teachers.items()}
    students = {cond: {int(k): str(v) for k, v in runs.items()} for cond, runs in students.items()}
    teacher_seeds = sorted(teachers)
    prepared_t: dict[int, _Prepared] = {}
    for seed in teacher_seeds:
        prepared_t[seed] = _Prepared(read_predictions(teachers[seed], logits=True))

    rows = []

    def add(condition, seed, run_key, path, teacher_path, metrics):
        rows.append({"setup": setup, "condition": condition, "seed": int(seed), "run_key": run_key, "path": str(path), "teacher_path": str(teacher_path), **metrics})

    for seed in teacher_seeds:
        t = prepared_t[seed]
        add("teacher", seed, t.preds.run_key, teachers[seed], teachers[seed], _teacher_self_row(t))

    ordered = [c for c in STUDENT_CONDITIONS if c in students] + sorted(c for c in students if c not in STUDENT_CONDITIONS)
    for condition in ordered:
        for seed in sorted(students[condition]):
            path = students[condition][seed]
            if seed not in prepared_t:
                raise ValueError(f"setup {setup}: {condition} run of seed {seed} ({path}) has no teacher of seed {seed}")
            s = _Prepared(read_predictions(path, logits=True))
            add(condition, seed, s.preds.run_key, path, teachers[seed], _compare(s, prepared_t[seed]))

    if len(teacher_seeds) >= 2:
        for i, seed in enumerate(teacher_seeds):
            other = teacher_seeds[(i + 1) % len(teacher_seeds)]
            o = prepared_t[other]
            add("teacher_other_seed", seed, o.preds.run_key, teachers[other], teachers[seed], _compare(o, prepared_t[seed]))

    columns = ["setup", "condition", "seed", "run_key", "path", "teacher_path", *METRIC_KEYS]
    df = pd.DataFrame(rows, columns=columns)
    for key in ("n", "n_teacher_correct", "n_teacher_incorrect", "seed"):
        df[key] = df[key].astype("int64")
    return df
