"""Logging for rule scripts: one file per job (the rule's `log:`), line-buffered for `tail -f`.

An exception that ends the job is written to that log too (Snakemake prints the log of a failed
job), so the reason for a failure is where the user looks. kdtransfer's own errors (bad config,
missing data, corrupt predictions, diverged training) carry a message that names the problem
and the fix: they are logged without a traceback. Anything else keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import sys


def _is_explained(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("kdtransfer")


def _log_uncaught(exc_type, exc, tb) -> None:
    log = logging.getLogger("kdtransfer")
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if _is_explained(exc):
        log.error("%s: %s", exc_type.__name__, exc)
    else:
        log.error("job failed", exc_info=(exc_type, exc, tb))


_job_names: list[str] = []  # what the lines are about, innermost last: the job, then a run of it


class _JobPrefix(logging.Filter):
    """Puts `[<job>] ` into every record: the innermost of _job_names."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job = f"[{_job_names[-1]}] " if _job_names else ""
        return True


def log_to(path: str, level: int = logging.INFO, *, job: str = "") -> logging.Logger:
    """Log to the job's file and to stderr. `job` (e.g. "kd/digits_mlp-1a2b3c4d seeds 0-9") starts
    every line, and `about(name)` names a run of the job for the lines logged meanwhile, so the
    lines of jobs that run side by side can be told apart on the console."""
    _job_names[:] = [job] if job else []
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(job)s%(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers = [logging.FileHandler(path, mode="a"), logging.StreamHandler(sys.stderr)]
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_JobPrefix())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    return logging.getLogger("kdtransfer")


@contextlib.contextmanager
def about(name: str):
    """Lines logged inside the block start with `[<name>]` (one run of a pack: "<run key> seed 3")."""
    _job_names.append(name)
    try:
        yield
    finally:
        _job_names.pop()
