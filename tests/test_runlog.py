"""A job's failure reason lands in its rule log (the file Snakemake shows for a failed job)."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
from kdtransfer.runlog import log_to
log_to(sys.argv[1])
if sys.argv[2] == "own":
    from kdtransfer.predictions import PredictionsError
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
