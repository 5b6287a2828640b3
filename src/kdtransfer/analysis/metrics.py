"""Functional-similarity metrics between a student and its teacher (docs/protocol.md, "Metrics").

Array-level functions are vectorised numpy and take per-sample arrays; `run_metrics` compares
two prediction files; `setup_metrics` builds the per-run metrics table of one setup, and
`setup_tables` that table and, in the same pass over the files, the per-seed matched-pairs counts
of the per-sample tests (kdtransfer.analysis.persample).

All divergences use the natural logarithm and are computed in float64. Where logits are at
hand (run_metrics), KL and JS are computed from log-softmax so that a probability that
underflows to 0 never turns a finite divergence into inf. The run level is what analysis
spends its time on (10 million prediction rows in seconds): it works block by block in the CPU
cache and rearranges the sums so that each needs one pass (see _compare); the array-level
functions are the plain definitions it is tested against.

No torch here: analysis depends only on numpy/pandas/pyarrow/scipy/statsmodels/matplotlib.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd

from kdtransfer.analysis.persample import discordance_table
from kdtransfer.catalog import STUDENT_CONDITIONS
from kdtransfer.io.predictions import Predictions, PredictionsError, check_aligned, read_predictions

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

# Facts about the row's model (the student; the teacher itself on "teacher" rows), from the
# predictions file's metadata: NaN where a file does not record them.
RUN_INFO_KEYS = ("num_parameters",)


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
    if probs.shape[0] == 0:
        return math.nan
    return _calibration_error(probs.max(axis=1), probs.argmax(axis=1) == label, n_bins)


def _calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """ECE from per-sample top-1 confidence and correctness (see expected_calibration_error)."""
    n = confidence.shape[0]
    if n == 0:
        return math.nan
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    sum_conf = np.bincount(bins, weights=confidence, minlength=n_bins)
    sum_acc = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    return float(np.abs(sum_acc - sum_conf).sum() / n)


# --------------------------------------------------------------------------------------------
# Run level
# --------------------------------------------------------------------------------------------

# Run-level metrics walk the samples in blocks of about this many values per [rows, classes]
# array: the dozen float64 temporaries of a block then stay in the CPU cache, where whole
# [n, classes] arrays would stream through memory once per operation (about 3x slower).
_BLOCK_VALUES = 1 << 15
# Teachers' softmax blocks are kept between comparisons while all of a setup's fit in this.
_KEPT_SOFTMAX_BYTES = 256 * 2**20
# The smallest positive float64: m * log(max(m, this)) is m * log(m) for every m > 0 and 0 for
# m = 0 (the convention 0 log 0 = 0), without a mask.
_SMALLEST = np.finfo(np.float64).smallest_subnormal


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_c a[i, c] * b[i, c] for every row i (einsum: no [rows, classes] temporary)."""
    return np.einsum("ij,ij->i", a, b)


class _Run:
    """One run's predictions, ready for the run-level metrics.

    The logits stay float32 as read; their softmax is computed in float64 block by block when a
    comparison needs it. A teacher takes part in up to six comparisons, so `keep_softmax=True`
    keeps its blocks after the first pass (setup_metrics allows it while all the teachers'
    float64 probabilities fit in _KEPT_SOFTMAX_BYTES; at 1,000 classes they would not).
    """

    def __init__(self, preds: Predictions, *, keep_softmax: bool = False):
        if preds.logits is None:
            raise ValueError(f"{preds.path}: metrics need logits; read with logits=True")
        self.preds = preds
        self.logits = preds.logits
        self.pred = np.asarray(preds.pred)
        self.label = np.asarray(preds.label)
        self.correct = self.pred == self.label
        self.block_rows = max(1, _BLOCK_VALUES // self.logits.shape[1])
        self.keep_softmax = keep_softmax
        self._kept: list | None = None

    @property
    def num_parameters(self) -> float:
        value = self.preds.metadata.get("num_parameters")
        return math.nan if value is None else float(value)

    def softmax_blocks(self):
        """(rows, p, log_p, sum_c p log p, max_c p) per block of samples, in float64.

        p = e / sum(e) with e = exp(z - max z), as `softmax`; log_p = z - max z - log sum(e), as
        `log_softmax`. The largest e is exp(0) = 1, so max_c p = 1 / sum(e) exactly.
        """
        if self._kept is not None:
            return self._kept
        blocks = self._compute_blocks()
        if self.keep_softmax:
            self._kept = list(blocks)
            return self._kept
        return blocks

    def _compute_blocks(self):
        ones = np.ones(self.logits.shape[1])
        for start in range(0, self.logits.shape[0], self.block_rows):
            rows = slice(start, start + self.block_rows)
            z = self.logits[rows].astype(np.float64)
            pred = self.pred[rows]
            # The row maximum is the logit at `pred`, which the contract makes the argmax: one
            # gather, where numpy's max over a short last axis (10 classes) loops per row and
            # costs more than the rest of the softmax. Checked: nothing may exceed it.
            z -= z[np.arange(pred.shape[0]), pred][:, None]
            if z.max() > 0:
                raise PredictionsError(
                    f"{self.preds.path}: column 'pred' is not the argmax of 'logits' (rows {start}.."
                    f"{start + pred.shape[0] - 1}); the file does not follow the predictions contract"
                )
            p = np.exp(z)
            total = p @ ones
            p /= total[:, None]
            z -= np.log(total)[:, None]  # z is now log p
            yield rows, p, z, _row_dot(p, z), 1.0 / total

    def calibration_error(self, n_bins: int = 15) -> float:
        confidence = np.empty(self.logits.shape[0])
        for rows, _, _, _, top in self.softmax_blocks():
            confidence[rows] = top
        return _calibration_error(confidence, self.correct, n_bins)


def _compare(s: _Run, t: _Run) -> dict:
    check_aligned(s.preds, t.preds)
    n = t.label.shape[0]
    js, kl, act, confidence = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for (rows, p_s, logp_s, plogp_s, top_s), (_, p_t, logp_t, plogp_t, _) in zip(
        s.softmax_blocks(), t.softmax_blocks()
    ):
        m = p_s + p_t
        m *= 0.5
        # JS = KL(s||m)/2 + KL(t||m)/2 = (sum p_s log p_s + sum p_t log p_t)/2 - sum m log m
        js[rows] = 0.5 * (plogp_s + plogp_t) - _row_dot(m, np.log(np.maximum(m, _SMALLEST)))
        # KL(t||s) = sum p_t log p_t - sum p_t log p_s
        kl[rows] = plogp_t - _row_dot(p_t, logp_s)
        diff = np.subtract(p_s, p_t, out=m)
        act[rows] = np.sqrt(_row_dot(diff, diff))
        confidence[rows] = top_s
    n_corr = int(t.correct.sum())
    agree = s.pred == t.pred
    n_agree_correct = int(np.count_nonzero(agree & t.correct))
    # = agreement_on(mask, ...): a mean of booleans is their count over their number, exactly
    return {
        "n": int(n),
        "accuracy": accuracy(s.pred, t.label),
        "teacher_accuracy": accuracy(t.pred, t.label),
        "agreement": agreement(s.pred, t.pred),
        "agreement_correct": n_agree_correct / n_corr if n_corr else math.nan,
        "agreement_incorrect": (int(np.count_nonzero(agree)) - n_agree_correct) / (n - n_corr)
        if n > n_corr
        else math.nan,
        "n_teacher_correct": n_corr,
        "n_teacher_incorrect": int(n - n_corr),
        "js": float(js.mean()),
        "activation_distance": float(act.mean()),
        "kl": float(kl.mean()),
        "ece": _calibration_error(confidence, s.correct, 15),
    }


def run_metrics(student: Predictions, teacher: Predictions) -> dict:
    """All metrics of docs/protocol.md ("Metrics") of `student` against `teacher` (same samples, checked).

    Keys: n, accuracy, teacher_accuracy, agreement, agreement_correct, agreement_incorrect (NaN if
    the teacher makes no error), n_teacher_correct, n_teacher_incorrect, js, activation_distance,
    kl (= mean KL(teacher || student), T = 1), ece (student, 15 bins). Raises PredictionsError
    (naming both files) if the two files hold different samples or labels.
    """
    return _compare(_Run(student), _Run(teacher))


def _teacher_self_row(t: _Run) -> dict:
    n = int(t.label.shape[0])
    n_corr = int(t.correct.sum())
    row = {k: math.nan for k in METRIC_KEYS}
    row.update(
        n=n,
        accuracy=accuracy(t.pred, t.label),
        teacher_accuracy=accuracy(t.pred, t.label),
        n_teacher_correct=n_corr,
        n_teacher_incorrect=n - n_corr,
        ece=t.calibration_error(15),
    )
    return row


def _read_ahead(paths: list[str]):
    """read_predictions of each path in order, the next file read in a background thread while
    the caller computes on the current one (Parquet decoding releases the GIL): reading is a
    third of the analysis, and overlapping it with the arithmetic hides most of it."""
    if not paths:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read_predictions, paths[0], logits=True)
        for following in paths[1:]:
            current, pending = pending, pool.submit(read_predictions, following, logits=True)
            yield current.result()
        yield pending.result()


class SetupTables(NamedTuple):
    metrics: pd.DataFrame  # one row per (condition, seed): setup_metrics
    discordance: pd.DataFrame  # one row per (seed, comparison, subset): persample.discordance_table


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

    Columns: setup, condition, seed, run_key, path, teacher_path, then METRIC_KEYS, then
    num_parameters (the row's model's parameter count from its predictions file's metadata, NaN
    if absent: the student's, or the teacher's own on "teacher" rows). Every file is read once;
    only the teachers' float32 logits are held, softmax is recomputed per block (see _Run).
    """
    return setup_tables(setup, teachers, students).metrics


def setup_tables(setup: str, teachers: Mapping[int, str], students: Mapping[str, Mapping[int, str]]) -> SetupTables:
    """setup_metrics's table and, from the same single read of each file, the per-sample
    discordance counts (persample.discordance_table: per seed, kd vs nokd and kd vs rcd, all
    samples and the teacher's errors). Arguments as setup_metrics."""
    teachers = {int(k): str(v) for k, v in teachers.items()}
    students = {cond: {int(k): str(v) for k, v in runs.items()} for cond, runs in students.items()}
    teacher_seeds = sorted(teachers)
    ordered = [c for c in STUDENT_CONDITIONS if c in students] + sorted(
        c for c in students if c not in STUDENT_CONDITIONS
    )
    student_runs = [
        (condition, seed, students[condition][seed]) for condition in ordered for seed in sorted(students[condition])
    ]
    for condition, seed, path in student_runs:
        if seed not in teachers:
            raise ValueError(f"setup {setup}: {condition} run of seed {seed} ({path}) has no teacher of seed {seed}")

    reader = _read_ahead([teachers[seed] for seed in teacher_seeds] + [path for _, _, path in student_runs])
    try:
        prepared_t = {seed: _Run(next(reader)) for seed in teacher_seeds}
        # p and log p in float64: 16 bytes per logit
        keep = sum(t.logits.size for t in prepared_t.values()) * 16 <= _KEPT_SOFTMAX_BYTES
        for t in prepared_t.values():
            t.keep_softmax = keep

        rows = []

        def add(condition, seed, run: _Run, path, teacher_path, metrics):
            rows.append(
                {
                    "setup": setup,
                    "condition": condition,
                    "seed": int(seed),
                    "run_key": run.preds.run_key,
                    "path": str(path),
                    "teacher_path": str(teacher_path),
                    **metrics,
                    "num_parameters": run.num_parameters,
                }
            )

        for seed in teacher_seeds:
            t = prepared_t[seed]
            add("teacher", seed, t, teachers[seed], teachers[seed], _teacher_self_row(t))

        agrees = {}  # (condition, seed) -> student agrees with its teacher, per sample
        for condition, seed, path in student_runs:
            s = _Run(next(reader))
            add(condition, seed, s, path, teachers[seed], _compare(s, prepared_t[seed]))
            agrees[(condition, seed)] = s.pred == prepared_t[seed].pred
    finally:
        reader.close()

    if len(teacher_seeds) >= 2:
        for i, seed in enumerate(teacher_seeds):
            other = teacher_seeds[(i + 1) % len(teacher_seeds)]
            o = prepared_t[other]
            add("teacher_other_seed", seed, o, teachers[other], teachers[seed], _compare(o, prepared_t[seed]))

    columns = ["setup", "condition", "seed", "run_key", "path", "teacher_path", *METRIC_KEYS, *RUN_INFO_KEYS]
    df = pd.DataFrame(rows, columns=columns)
    df["num_parameters"] = df["num_parameters"].astype("float64")
    for key in ("n", "n_teacher_correct", "n_teacher_incorrect", "seed"):
        df[key] = df[key].astype("int64")
    return SetupTables(df, discordance_table(setup, agrees, {seed: t.correct for seed, t in prepared_t.items()}))
