"""Atomic result files: write to a temp file beside the target, then rename, so a killed job
never leaves a partial file that a later job would read as a result."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp"


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temp path beside `path`; on success rename it onto `path`, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_temp_prefix(path)}{os.getpid()}")
    tmp.unlink(missing_ok=True)  # left by a killed writer that had our pid: stale
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def leftover_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temp files of `path` that killed writers left behind (a SIGKILL skips the clean-up)."""
    path = Path(path)
    return sorted(path.parent.glob(f"{_temp_prefix(path)}*"))


def write_parquet(df, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
