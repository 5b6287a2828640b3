"""`python -m bench`: run the benchmarks, print their tables, write bench/results/<part>.md|csv.

Parts (default: all but e2e and regen, which train the whole default experiment):

    training   project training loop vs DataLoader loops; cost of distillation per step
    planning   snakemake -n on the default, a 2,000-run and the paper-scale config
    analysis   10 M prediction rows: project metrics + tests vs naive pandas; time, peak RSS
    e2e        snakemake --cores 2 on config.yaml (about 5 min), per-rule totals
    regen      --forcerun figures tables, --forcerun metrics in the finished e2e copy
    gpu-training    CUDA: the project's loop vs a DataLoader and the bare loop; per-epoch cost of the paper's runs
    gpu-projection  GPU-hours of experiments/paper.yaml from gpu-training's CSV (runs anywhere)
    gpu-compile     CUDA: torch.compile of ResNet-18, compile time and throughput
    gpu-concurrency CUDA: a pack's aggregate throughput at training.pack_concurrency K = 1, 2, 4, 8
    (bench/gpu_check.sh runs the gpu-* parts with the GPU tests; bench/gpu.py says what they measure)

Examples:

    python -m bench                          # training, planning, analysis
    python -m bench --only e2e,regen         # the embedded default end to end
    python -m bench --only analysis --repeats 5
    python -m bench --all                    # everything
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from bench.common import RESULTS_DIR, markdown_table, write_results

PARTS = {
    "training": ("Training throughput and the cost of distillation", "bench.training", "run"),
    "planning": ("Planning time (snakemake -n)", "bench.planning", "run"),
    "analysis": ("Analysis of 10 million prediction rows", "bench.analysis", "run"),
    "e2e": ("The embedded default end to end", "bench.end_to_end", "run_full"),
    "regen": ("Regeneration from cached predictions", "bench.end_to_end", "run_regen"),
    "gpu-training": (
        "GPU training: the project's loop vs a DataLoader loop and the bare loop; cost of the paper's runs",
        "bench.gpu",
        "run_training",
    ),
    "gpu-projection": ("Projected GPU-hours of experiments/paper.yaml", "bench.gpu", "run_projection"),
    "gpu-compile": ("GPU training with torch.compile (ResNet-18)", "bench.gpu", "run_compile"),
    "gpu-concurrency": ("GPU training: a pack K runs at a time", "bench.concurrency", "run_concurrency"),
}
DEFAULT_PARTS = ("training", "planning", "analysis")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help=f"comma-separated parts to run ({', '.join(PARTS)})")
    parser.add_argument("--skip", help="comma-separated parts to leave out")
    parser.add_argument("--all", action="store_true", help="every part but the gpu-* ones, e2e and regen included")
    parser.add_argument(
        "--repeats", type=int, default=3, help="repeats per measurement (medians are reported); default 3"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for the training part (default 1, as a training job)"
    )
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="training device (auto: CUDA when present)"
    )
    parser.add_argument(
        "--training-cases", default="", help="comma-separated substrings of training case names (default: all)"
    )
    parser.add_argument(
        "--cifar-images", type=int, default=512, help="images in the synthetic CIFAR-shaped set (default 512)"
    )
    parser.add_argument(
        "--cifar-epochs", type=int, default=1, help="epochs on the synthetic CIFAR-shaped set (default 1)"
    )
    parser.add_argument(
        "--analysis-shape",
        default="5x50000",
        help="SETUPSxSAMPLES[,...] of the synthetic predictions (10 seeds x 4 runs each); default 5x50000 = 10 M rows",
    )
    parser.add_argument(
        "--compare-src",
        default="",
        help="LABEL=PATH: also time the analysis with the kdtransfer package under PATH (e.g. an older checkout's src)",
    )
    parser.add_argument(
        "--profile-planning", action="store_true", help="also write a cProfile of the 2,000-run dry run"
    )
    parser.add_argument("--tag", default="", help="write bench/results/<part>-<tag>.md|csv instead of <part>.md|csv")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="folder for the tables (default bench/results)")
    parser.add_argument(
        "--gpu-smoke",
        action="store_true",
        help="gpu-* parts on the CPU with tiny sizes: checks the code, measures nothing",
    )
    parser.add_argument(
        "--gpu-cases", default="", help="comma-separated substrings of gpu-training's loop comparisons (default: all)"
    )
    parser.add_argument(
        "--gpu-classes", default="", help="comma-separated substrings of gpu-training's cost classes (default: all)"
    )
    parser.add_argument(
        "--concurrency-cases", default="", help="comma-separated substrings of gpu-concurrency's cases (default: all)"
    )
    parser.add_argument("--pack-runs", type=int, default=8, help="gpu-concurrency: runs per timed pack (default 8)")
    parser.add_argument(
        "--concurrency-values",
        type=lambda text: [int(k) for k in text.split(",")],
        default=None,
        help="gpu-concurrency: the K to time, comma-separated (default 1,2,4,8; 1,2 with --gpu-smoke)",
    )
    parser.add_argument(
        "--concurrency-steps", type=int, default=40, help="gpu-concurrency: steps per epoch (default 40)"
    )
    parser.add_argument("--concurrency-epochs", type=int, default=2, help="gpu-concurrency: epochs per run (default 2)")
    parser.add_argument(
        "--gpu-csv", default="", help="gpu-projection's input (default: <results-dir>/gpu-training.csv)"
    )
    args = parser.parse_args(argv)
    if args.only:
        parts = [p.strip() for p in args.only.split(",") if p.strip()]
    elif args.all:  # the gpu-* parts need a GPU: bench/gpu_check.sh runs them
        parts = [p for p in PARTS if not p.startswith("gpu-")]
    else:
        parts = list(DEFAULT_PARTS)
    skip = {p.strip() for p in (args.skip or "").split(",") if p.strip()}
    unknown = (set(parts) | skip) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; valid: {', '.join(PARTS)}")
    args.parts = [p for p in parts if p not in skip]
    if args.concurrency_values is None:
        args.concurrency_values = [1, 2] if args.gpu_smoke else [1, 2, 4, 8]
    if args.gpu_smoke:
        args.pack_runs = min(args.pack_runs, 2)
    return args


def main(argv=None) -> int:
    import importlib

    args = parse_args(argv)
    words = list(sys.argv[1:] if argv is None else argv)
    if "--results-dir" in words:  # a machine's folder: left out of the command the tables record
        at = words.index("--results-dir")
        del words[at : at + 2]
    args.command = ("python -m bench " + " ".join(shlex.quote(a) for a in words)).strip()
    for part in args.parts:
        title, module, function = PARTS[part]
        print(f"== {part}: {title}", flush=True)
        started = time.perf_counter()
        rows, notes = getattr(importlib.import_module(module), function)(args)
        path = write_results(
            f"{part}-{args.tag}" if args.tag else part, title, rows, notes, args.command, args.results_dir
        )
        print(markdown_table(rows))
        for note in notes:
            print(f"  - {note}")
        print(f"== {part} took {time.perf_counter() - started:.0f} s; written to {path}\n", flush=True)
    failures = getattr(args, "failures", [])
    if failures:  # measurements a part reported as failed and went on without
        print(f"FAILED: {'; '.join(failures)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
