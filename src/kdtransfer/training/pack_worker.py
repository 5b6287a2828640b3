"""A worker of a concurrent pack: `python -m kdtransfer.training.pack_worker <request.json>`,
started by its job (kdtransfer.training.side_by_side), trains its share of the pack in turn
(kdtransfer.training.pack.work) and writes its result where the request says. Its log lines go
to the job's log, named by run as in a sequential pack."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from kdtransfer.io.runlog import log_to
from kdtransfer.training.side_by_side import die_with_parent, report


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text())
    die_with_parent(request["parent"])
    if request["log"]:
        log_to(request["log"], job=request["name"])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kdtransfer.training.pack import work  # torch, after the log is set up

    result = work(request)
    report(request, result)
    return 143 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
