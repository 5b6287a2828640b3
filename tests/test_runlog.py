"""A job's failure reason lands in its rule log (the file Snakemake shows for a failed job)."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from kdtransfer.io.runlog import log_to
log_to(sys.argv[1])
if sys.argv[2] == "own":
    from kdtransfer.io.predictions import PredictionsError
    raise PredictionsError("predictions file results/x.parquet is unreadable; re-run rule train_reference")
raise ZeroDivisionError("deep inside a library")
"""


@pytest.mark.parametrize("kind", ["own", "foreign"])
def test_uncaught_error_is_written_to_the_job_log(tmp_path, kind):
    log = tmp_path / "job.log"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(log), kind], capture_output=True, text=True)
    assert proc.returncode == 1
    text = log.read_text()
    if kind == "own":
        # kdtransfer's errors explain themselves: the message, no traceback.
        assert "PredictionsError: predictions file results/x.parquet is unreadable" in text
        assert "Traceback" not in text and "Traceback" not in proc.stderr
    else:
        assert "ZeroDivisionError: deep inside a library" in text and "Traceback" in text


JOB_SCRIPT = """
import logging, sys
from kdtransfer.io.runlog import log_to
log = log_to(sys.argv[1], job="kd/digits_mlp-1a2b3c4d seed 3")
log.info("training starts")
logging.getLogger("kdtransfer.training.loop").info("epoch 1/4 loss 0.5")
raise ZeroDivisionError("deep inside a library")
"""


def test_every_line_of_a_job_names_its_run_and_seed(tmp_path):
    # Two training jobs interleave on the console: each line must say whose it is.
    log = tmp_path / "job.log"
    proc = subprocess.run([sys.executable, "-c", JOB_SCRIPT, str(log)], capture_output=True, text=True)
    for text in (log.read_text(), proc.stderr):
        records = [line for line in text.splitlines() if line[:4].isdigit()]  # timestamped lines
        assert len(records) == 3
        assert all("[kd/digits_mlp-1a2b3c4d seed 3]" in line for line in records)


PACK_SCRIPT = """
import logging, sys
from kdtransfer.io.runlog import about, log_to
log = log_to(sys.argv[1], job="kd/digits_mlp-1a2b3c4d seeds 0-1")
log.info("pack of 2 runs")
for seed in (0, 1):
    with about(f"kd/digits_mlp-1a2b3c4d seed {seed}"):
        logging.getLogger("kdtransfer.training.loop").info("epoch 1/4 loss 0.5")
log.info("pack done")
"""


def test_every_line_of_a_pack_names_the_run_it_is_about(tmp_path):
    log = tmp_path / "job.log"
    proc = subprocess.run([sys.executable, "-c", PACK_SCRIPT, str(log)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for text in (log.read_text(), proc.stderr):
        prefixes = [line.split("] ")[0].split(" [", 1)[1] for line in text.splitlines() if line[:4].isdigit()]
        assert prefixes == [
            "kd/digits_mlp-1a2b3c4d seeds 0-1",
            "kd/digits_mlp-1a2b3c4d seed 0",
            "kd/digits_mlp-1a2b3c4d seed 1",
            "kd/digits_mlp-1a2b3c4d seeds 0-1",
        ]
