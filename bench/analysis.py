"""Analysis on millions of prediction rows: the project's metrics + tests vs straightforward pandas.

Synthetic predictions shaped like real output (written with `kdtransfer.io.predictions.
write_predictions`, laid out as `results/runs/...` is): `setups` setups x `seeds` seeds x
(teacher, kd, rcd, nokd) x `samples` test samples x `classes` classes. The default, 5 x 10 x 4 x
50,000, is 10 million rows (ImageNet-validation-sized test splits); `--analysis-shape 25x10000`
gives the same rows as CIFAR-sized splits (more, smaller files).

Both sides run in their own child process (so each has its own peak RSS), alternately, and each
produces the full metrics table of every setup (teacher, kd, rcd, nokd and teacher_other_seed rows)
and then the same `kdtransfer.analysis.stats.setup_tests` on it. The bench asserts that both give the same
numbers before it reports a time.

The naive side is what an analyst writes with pandas: `pd.read_parquet` each file (all columns),
`merge` the student with the teacher on `sample_idx`, `np.stack` the logits column, scipy's
softmax / `jensenshannon` / `rel_entr`, `pd.cut` + `groupby` for the ECE. It is vectorised over
rows (a per-row `apply` would take hours on 10 M rows and would be a straw man); teachers are
read once per setup.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from bench.common import CACHE_DIR, Row, analysis_defaults, median, peak_rss_bytes, run_child

CONDITIONS = ("teacher", "kd", "rcd", "nokd")
GENERATOR_VERSION = 1  # bump when the synthetic data changes, so a stale cache is not reused
NUM_PARAMETERS = {"teacher": 11_173_962, "kd": 11_173_962, "rcd": 11_173_962, "nokd": 11_173_962}
COMPARED_COLUMNS = (
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


# --------------------------------------------------------------------------------------------
# Synthetic predictions
# --------------------------------------------------------------------------------------------


def run_key(condition: str, setup: str) -> str:
    if condition in ("teacher", "nokd"):
        return f"{condition}/{setup}_data/resnet/recipe"
    return f"{condition}/{setup}"


def generate(root: Path, setups: int, seeds: int, samples: int, classes: int) -> dict:
    """Write the synthetic predictions under `root` (once; reused while the shape is unchanged).

    Returns the manifest {setup: {condition: {seed: path}}}. Teachers are ~90% accurate; a
    student is its seed's teacher plus noise (kd least, rcd and nokd more), so agreement,
    divergences and ECE take realistic, distinct values.
    """
    manifest_path = root / "manifest.json"
    if manifest_path.exists():
        return json.loads(manifest_path.read_text())["setups"]
    from kdtransfer.io.predictions import write_predictions

    rng = np.random.default_rng(20240607)
    manifest: dict = {}
    noise_by_condition = {"kd": 1.0, "rcd": 1.6, "nokd": 1.8}
    for k in range(setups):
        setup = f"setup{k}"
        label = rng.integers(0, classes, samples).astype(np.int16)
        manifest[setup] = {c: {} for c in CONDITIONS}
        for seed in range(seeds):
            confident = rng.random(samples) < 0.9
            target = np.where(confident, label, rng.integers(0, classes, samples))
            teacher = rng.normal(0.0, 1.0, (samples, classes)).astype(np.float32)
            teacher[np.arange(samples), target] += 4.0
            logits = {"teacher": teacher}
            for condition, noise in noise_by_condition.items():
                logits[condition] = (teacher + rng.normal(0.0, noise, (samples, classes))).astype(np.float32)
            for condition in CONDITIONS:
                key = run_key(condition, setup)
                path = root / "results" / "runs" / key / f"seed{seed}" / "predictions_test.parquet"
                write_predictions(
                    path,
                    run_key=key,
                    condition=condition,
                    seed=seed,
                    split="test",
                    sample_idx=np.arange(samples),
                    label=label,
                    logits=logits[condition],
                    extra_metadata={
                        "num_parameters": NUM_PARAMETERS[condition],
                        "device": "cpu",
                        "init_fingerprint": f"{seed:016x}",
                        "order_fingerprint": f"{seed:016x}",
                    },
                )
                manifest[setup][condition][str(seed)] = str(path)
    manifest_path.write_text(json.dumps({"setups": manifest, "shape": [setups, seeds, samples, classes]}))
    return manifest


# --------------------------------------------------------------------------------------------
# The naive pandas analysis
# --------------------------------------------------------------------------------------------


def naive_compare(student, teacher) -> dict:
    """Student vs teacher DataFrames (as pd.read_parquet gives them) -> the metrics of one row."""
    from scipy.spatial.distance import jensenshannon
    from scipy.special import rel_entr, softmax

    merged = student.merge(teacher[["sample_idx", "label", "pred", "logits"]], on="sample_idx", suffixes=("_s", "_t"))
    if len(merged) != len(student) or len(merged) != len(teacher) or not (merged["label_s"] == merged["label_t"]).all():
        raise ValueError("student and teacher hold different samples")
    p_s = softmax(np.stack(merged["logits_s"].to_numpy()).astype(np.float64), axis=1)
    p_t = softmax(np.stack(merged["logits_t"].to_numpy()).astype(np.float64), axis=1)
    merged["agree"] = merged["pred_s"] == merged["pred_t"]
    merged["teacher_correct"] = merged["pred_t"] == merged["label_t"]
    merged["student_correct"] = merged["pred_s"] == merged["label_s"]
    merged["js"] = jensenshannon(p_s, p_t, axis=1) ** 2  # scipy returns the distance, sqrt(JS), natural log
    merged["activation_distance"] = np.linalg.norm(p_s - p_t, axis=1)
    merged["kl"] = rel_entr(p_t, p_s).sum(axis=1)
    by_teacher = merged.groupby("teacher_correct")["agree"].mean()
    n_correct = int(merged["teacher_correct"].sum())
    row = {
        "n": len(merged),
        "accuracy": merged["student_correct"].mean(),
        "teacher_accuracy": merged["teacher_correct"].mean(),
        "agreement": merged["agree"].mean(),
        "agreement_correct": by_teacher.get(True, math.nan),
        "agreement_incorrect": by_teacher.get(False, math.nan),
        "n_teacher_correct": n_correct,
        "n_teacher_incorrect": len(merged) - n_correct,
        "js": merged["js"].mean(),
        "activation_distance": merged["activation_distance"].mean(),
        "kl": merged["kl"].mean(),
        "ece": naive_ece(p_s, merged["label_s"].to_numpy()),
    }
    return {
        k: float(v) if k not in ("n", "n_teacher_correct", "n_teacher_incorrect") else int(v) for k, v in row.items()
    }


def naive_ece(probs: np.ndarray, label: np.ndarray, n_bins: int = 15) -> float:
    import pandas as pd

    frame = pd.DataFrame({"confidence": probs.max(axis=1), "correct": probs.argmax(axis=1) == label})
    frame["bin"] = pd.cut(frame["confidence"], np.linspace(0.0, 1.0, n_bins + 1), include_lowest=True)
    bins = frame.groupby("bin", observed=True).agg(
        confidence=("confidence", "mean"), accuracy=("correct", "mean"), count=("correct", "size")
    )
    return float((bins["count"] / len(frame) * (bins["accuracy"] - bins["confidence"]).abs()).sum())


def naive_setup_metrics(setup: str, paths: dict):
    """The metrics table of one setup, as setup_metrics builds it, the pandas way."""
    import pandas as pd

    teachers = {int(s): pd.read_parquet(p) for s, p in paths["teacher"].items()}
    rows = []
    for seed, t in sorted(teachers.items()):
        own = naive_compare(t, t)
        row = {k: math.nan for k in COMPARED_COLUMNS}
        row.update(
            {
                k: own[k]
                for k in ("n", "accuracy", "teacher_accuracy", "n_teacher_correct", "n_teacher_incorrect", "ece")
            }
        )
        rows.append({"setup": setup, "condition": "teacher", "seed": seed, **row})
    for condition in ("nokd", "rcd", "kd"):
        for seed, path in sorted((int(s), p) for s, p in paths[condition].items()):
            rows.append(
                {
                    "setup": setup,
                    "condition": condition,
                    "seed": seed,
                    **naive_compare(pd.read_parquet(path), teachers[seed]),
                }
            )
    seeds = sorted(teachers)
    for i, seed in enumerate(seeds):
        other = seeds[(i + 1) % len(seeds)]
        rows.append(
            {
                "setup": setup,
                "condition": "teacher_other_seed",
                "seed": seed,
                **naive_compare(teachers[other], teachers[seed]),
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Child processes: one analysis each
# --------------------------------------------------------------------------------------------


def worker(impl: str, manifest_path: str, out: str) -> None:
    import pandas as pd

    from kdtransfer.analysis.stats import setup_tests

    manifest = json.loads(Path(manifest_path).read_text())["setups"]
    started = time.perf_counter()
    tables = []
    for setup, paths in manifest.items():
        if impl == "naive":
            tables.append(naive_setup_metrics(setup, paths))
        else:
            from kdtransfer.analysis.metrics import setup_metrics

            students = {c: {int(s): p for s, p in paths[c].items()} for c in ("kd", "rcd", "nokd")}
            tables.append(setup_metrics(setup, {int(s): p for s, p in paths["teacher"].items()}, students))
    metrics = pd.concat(tables, ignore_index=True)
    metrics_done = time.perf_counter()
    a = analysis_defaults()
    tests = setup_tests(
        metrics,
        alpha=a["alpha"],
        fdr_family=a["fdr_family"],
        asymmetry_primary=a["asymmetry_primary"],
        n_bootstrap=a["bootstrap"],
    )
    finished = time.perf_counter()
    metrics.to_parquet(out + ".metrics.parquet")
    tests.to_parquet(out + ".tests.parquet")
    print(
        json.dumps(
            {
                "seconds": finished - started,
                "metrics_seconds": metrics_done - started,
                "tests_seconds": finished - metrics_done,
                "peak_rss_bytes": peak_rss_bytes(),
                "rows": int(sum(len(p) for paths in manifest.values() for c in paths.values() for p in c.values())),
            }
        )
    )


def check_same_numbers(project_out: str, naive_out: str) -> None:
    """Both analyses must give the same metrics and the same tests (else their times mean nothing)."""
    import pandas as pd

    key = ["setup", "condition", "seed"]
    a = pd.read_parquet(project_out + ".metrics.parquet").sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(naive_out + ".metrics.parquet").sort_values(key).reset_index(drop=True)
    if a[key].astype(str).values.tolist() != b[key].astype(str).values.tolist():
        raise AssertionError("project and naive analyses produced different (setup, condition, seed) rows")
    for column in COMPARED_COLUMNS:
        np.testing.assert_allclose(
            a[column].to_numpy(float),
            b[column].to_numpy(float),
            rtol=1e-9,
            atol=1e-12,
            equal_nan=True,
            err_msg=f"metric {column!r} differs between the project and the naive analysis",
        )
    ta = pd.read_parquet(project_out + ".tests.parquet")
    tb = pd.read_parquet(naive_out + ".tests.parquet")
    for column in ("statistic", "p_value", "p_adjusted", "effect_size", "median_diff"):
        np.testing.assert_allclose(
            ta[column].to_numpy(float),
            tb[column].to_numpy(float),
            rtol=1e-7,
            atol=1e-12,
            equal_nan=True,
            err_msg=f"test column {column!r} differs between the project and the naive analysis",
        )


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, int]:
    setups, samples = text.lower().split("x")
    return int(setups), int(samples)


def run(args) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    for shape in args.analysis_shape.split(","):
        rows += run_shape(args, *parse_shape(shape))
    notes = [
        "Each variant runs in its own child process (peak RSS = that process's VmHWM from /proc/self/status), "
        "variants alternate order between repeats; "
        "times exclude interpreter start-up and imports.",
        "Both variants' metrics tables agree to rtol 1e-9 and their test tables to rtol 1e-7 (asserted before "
        "timing is reported).",
        "Naive: pd.read_parquet of every column, DataFrame.merge on sample_idx, np.stack of the logits column, "
        "scipy.special.softmax, "
        "scipy.spatial.distance.jensenshannon**2, np.linalg.norm, scipy.special.rel_entr, pd.cut + groupby for ECE; "
        "teachers read once per setup.",
        "Both variants then run the same kdtransfer.analysis.stats.setup_tests (12 paired tests per setup, 2,000 "
        "bootstrap resamples each).",
    ]
    return rows, notes


def run_shape(args, setups: int, samples: int) -> list[Row]:
    seeds, classes = 10, 10
    root = CACHE_DIR / f"predictions_v{GENERATOR_VERSION}_{setups}x{seeds}x{len(CONDITIONS)}x{samples}x{classes}"
    started = time.perf_counter()
    generate(root, setups, seeds, samples, classes)
    print(f"[analysis] synthetic predictions ready under {root} ({time.perf_counter() - started:.0f} s)", flush=True)
    total_rows = setups * seeds * len(CONDITIONS) * samples
    case = (
        f"{total_rows / 1e6:g} M rows "
        f"({setups} setups x {seeds} seeds x 4 runs x {samples:,} samples, {classes} classes)"
    )
    variants = {
        "project": "kdtransfer.analysis.metrics.setup_metrics + stats.setup_tests",
        "naive": "pandas read/merge + scipy, same setup_tests",
    }
    compare_label, _, compare_src = args.compare_src.partition("=")
    if args.compare_src:
        variants[compare_label] = f"kdtransfer from {compare_src}"
    results: dict[str, list[dict]] = {v: [] for v in variants}
    out_dir = CACHE_DIR / "analysis_outputs"
    out_dir.mkdir(parents=True, exist_ok=True)
    for repeat in range(args.repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for variant in order:
            env = (
                {"PYTHONPATH": str(Path(compare_src).resolve())}
                if variant == compare_label and args.compare_src
                else None
            )
            impl = "naive" if variant == "naive" else "project"
            report = run_child(
                ["-m", "bench.analysis", "--worker", impl, str(root / "manifest.json"), str(out_dir / variant)], env=env
            )
            results[variant].append(report)
            print(
                f"[analysis] {setups}x{samples} repeat {repeat + 1}/{args.repeats} {variant}: {report['seconds']:.1f} "
                "s "
                f"(metrics {report['metrics_seconds']:.1f} s, tests {report['tests_seconds']:.1f} s), "
                f"peak RSS {report['peak_rss_bytes'] / 2**30:.2f} GiB",
                flush=True,
            )
        if repeat == 0:
            check_same_numbers(str(out_dir / "project"), str(out_dir / "naive"))
            print("[analysis] project and naive analyses agree on every metric and test (rtol 1e-9)", flush=True)

    rows = []
    reference = median(r["seconds"] for r in results["naive"])
    reference_metrics = median(r["metrics_seconds"] for r in results["naive"])
    for variant, reports in results.items():
        seconds = [r["seconds"] for r in reports]
        rows.append(
            Row(
                case,
                variant,
                "analysis time (metrics + tests)",
                median(seconds),
                "s",
                reference / median(seconds),
                variants[variant] + "; ratio = naive / this (speed-up)",
                seconds,
            )
        )
        metrics_seconds = [r["metrics_seconds"] for r in reports]
        rows.append(
            Row(
                case,
                variant,
                "of which metrics (setup_metrics or naive)",
                median(metrics_seconds),
                "s",
                reference_metrics / median(metrics_seconds),
                "ratio = naive / this",
                metrics_seconds,
            )
        )
        peaks = [r["peak_rss_bytes"] / 2**30 for r in reports]
        rows.append(
            Row(case, variant, "peak RSS (whole process)", max(peaks), "GiB", note="max over repeats", samples=peaks)
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "MANIFEST", "OUT"), required=True)
    args = parser.parse_args()
    worker(*args.worker)


if __name__ == "__main__":
    main()
