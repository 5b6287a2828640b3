"""Logging for rule scripts: one file per job (the rule's `log:`), line-buffered for `tail -f`."""

from __future__ import annotations

import logging
import sys


def log_to(path: str, level: int = logging.INFO) -> logging.Logger:
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler, logging.StreamHandler(sys.stderr)]
    root.setLevel(level)
    logging.captureWarnings(True)
    return logging.getLogger("kdtransfer")
