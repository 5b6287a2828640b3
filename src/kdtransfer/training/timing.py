"""Where a training job's time goes, for its log: seconds summed per phase (loading the data;
setting a run up: model, objective, teacher, optimizer, resuming; training steps; the per-epoch
test accuracy; checkpoints; predictions and result files).

A pack reports the sums when it is done ("pack done: 10 runs in 41.2 s: ..."), so a user sees
what the job spent beside training, and bench/end_to_end.py reads the same line.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

PHASES = ("data", "set-up", "training", "evaluation", "checkpoints", "outputs")
_seconds: dict[str, float] = defaultdict(float)


@contextlib.contextmanager
def timed(phase: str):
    """Add the block's wall time to `phase`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        _seconds[phase] += time.perf_counter() - started


def add(phase: str, seconds: float) -> None:
    _seconds[phase] += seconds


def reset() -> None:
    _seconds.clear()


def summary(total: float) -> str:
    """`data 0.40 s, set-up 1.20 s, training 30.10 s, ..., other 0.05 s` of `total` seconds."""
    other = max(0.0, total - sum(_seconds.get(phase, 0.0) for phase in PHASES))
    return ", ".join(f"{phase} {_seconds.get(phase, 0.0):.2f} s" for phase in PHASES) + f", other {other:.2f} s"


def seconds() -> dict[str, float]:
    """The sums so far, per phase (a pack worker reports them to its job)."""
    return dict(_seconds)
