"""Seeds derived from (run seed, role), so runs that must share randomness share it exactly.

Roles: `init` (teacher, kd, rcd and nokd of one seed start from the same weights when their
architectures match), `order/teacher`, `order/student` (kd, rcd, nokd see one batch order),
`init/independent` and `order/independent` (the fresh reference), `noise` (rcd targets).
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *roles: object) -> int:
    key = ":".join([str(int(seed)), *map(str, roles)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def run_roles(condition: str) -> tuple[str, str]:
    """(init role, data-order role) of a condition, per the table of runs in docs/protocol.md ("Runs")."""
    if condition == "teacher":
        return "init", "order/teacher"
    if condition in ("kd", "rcd", "nokd"):
        return "init", "order/student"
    if condition == "independent":
        return "init/independent", "order/independent"
    raise ValueError(f"unknown condition {condition!r}")
