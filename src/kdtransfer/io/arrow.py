"""Arrow arrays and tables built without pandas, for the training jobs' result files.

`pa.array(...)` and `pa.Table.from_pylist(...)` ask pyarrow's pandas shim whether their input is
a pandas object, which imports pandas (~0.3 s): more than a small training run takes to train,
paid by each of the default experiment's 160 jobs. Building arrays from buffers never does.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY_TO_ARROW = {
    np.dtype(np.float32): pa.float32(),
    np.dtype(np.float64): pa.float64(),
    np.dtype(np.int16): pa.int16(),
    np.dtype(np.int32): pa.int32(),
    np.dtype(np.int64): pa.int64(),
}


def array_from_numpy(values: np.ndarray) -> pa.Array:
    """A 1-D numeric numpy array as an Arrow array (no nulls), zero-copy."""
    values = np.ascontiguousarray(values)
    if values.ndim != 1 or values.dtype not in _NUMPY_TO_ARROW:
        raise TypeError(
            f"expected a 1-D array of {sorted(map(str, _NUMPY_TO_ARROW))}, got {values.dtype} {values.shape}"
        )
    return pa.Array.from_buffers(_NUMPY_TO_ARROW[values.dtype], len(values), [None, pa.py_buffer(values)])


def string_array(texts: list[str]) -> pa.Array:
    """Strings as an Arrow string array (no nulls)."""
    encoded = [t.encode() for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    )


def table_from_records(records: list[dict]) -> pa.Table:
    """Rows of str/int/float/bool values (same keys in every row) as a table: int64, float64, string."""
    if not records:
        raise ValueError("no records")
    columns = {}
    for name in records[0]:
        values = [record[name] for record in records]
        if all(isinstance(v, str) for v in values):
            columns[name] = string_array(values)
        elif all(isinstance(v, (bool, int, np.integer)) for v in values):
            columns[name] = array_from_numpy(np.asarray(values, dtype=np.int64))
        else:
            columns[name] = array_from_numpy(np.asarray(values, dtype=np.float64))
    return pa.table(columns)
