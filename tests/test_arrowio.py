"""Arrow arrays built without pandas (kdtransfer.io.arrow), and training jobs that never import it."""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from conftest import run_params

from kdtransfer.io.arrow import array_from_numpy, string_array, table_from_records


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32, np.int64])
def test_numeric_arrays_match_pa_array(dtype):
    values = (np.arange(7) * 3 - 5).astype(dtype)
    assert array_from_numpy(values).equals(pa.array(values))
    # a strided view is copied into a contiguous buffer, not read with the wrong stride
    assert array_from_numpy(values[::2]).equals(pa.array(values[::2]))


def test_strings_and_records():
    texts = ["kd/digits_mlp", "", "é"]
    assert string_array(texts).equals(pa.array(texts, type=pa.string()))
    table = table_from_records(
        [{"epoch": 1, "loss": 0.5, "device": "cpu"}, {"epoch": 2, "loss": 0.25, "device": "cpu"}]
    )
    assert table.equals(
        pa.table({"epoch": pa.array([1, 2], pa.int64()), "loss": [0.5, 0.25], "device": ["cpu", "cpu"]})
    )
    with pytest.raises(TypeError, match="1-D array"):
        array_from_numpy(np.zeros((2, 2)))


def test_a_training_job_never_imports_pandas(tmp_path):
    """pandas costs ~0.3 s to import, a tenth of a small job: the training path must not need it."""
    params = run_params(
        "teacher", model={"arch": "mlp", "options": {"hidden": [8]}}, recipe={"lr": 0.05, "epochs": 1, "batch_size": 64}
    )
    code = f"""
import sys
sys.modules["pandas"] = None  # any import of pandas now fails
from kdtransfer.data import load_dataset, save_arrays
from kdtransfer.spec import RunSpec
from kdtransfer.training.job import train_and_save
save_arrays(load_dataset("digits", test_fraction=0.4), r"{tmp_path}/d.npz")
train_and_save(RunSpec.from_params({params!r}), r"{tmp_path}/d.npz", weights_out=r"{tmp_path}/model.pt",
               predictions_out={{"test": r"{tmp_path}/p.parquet"}}, history_out=r"{tmp_path}/h.parquet",
               checkpoint_every=1)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pandas as pd

    assert pd.read_parquet(tmp_path / "h.parquet")["epoch"].tolist() == [1]
