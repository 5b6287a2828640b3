"""The predictions contract: one Parquet file per run and split, one row per sample.

Training writes these; analysis reads only these. The schema is fixed and checked on read, so
a truncated, foreign or misaligned file is an error that names the file, never a silent wrong
number.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kdtransfer import __version__
from kdtransfer.io.arrow import array_from_numpy, string_array
from kdtransfer.io.atomic import atomic_path
from kdtransfer.paths import training_rule_of

IDENTITY_COLUMNS = ("run_key", "condition", "seed", "split")


def prediction_schema(num_classes: int) -> pa.Schema:
    return pa.schema(
        [
            ("run_key", pa.string()),
            ("condition", pa.string()),
            ("seed", pa.int32()),
            ("split", pa.string()),
            ("sample_idx", pa.int32()),
            ("label", pa.int16()),
            ("pred", pa.int16()),
            ("logits", pa.list_(pa.float32(), num_classes)),
        ]
    )


class PredictionsError(ValueError):
    """A predictions file is missing, unreadable or breaks the contract."""


def _remake_hint(path: str) -> str:
    return f"delete it and re-run {training_rule_of(path)}, which makes it (snakemake --forcerun {path})"


@dataclass
class Predictions:
    """Per-sample predictions of one run on one split, as numpy arrays."""

    run_key: str
    condition: str
    seed: int
    split: str
    sample_idx: np.ndarray  # int32 [n]
    label: np.ndarray  # int16 [n]
    pred: np.ndarray  # int16 [n]
    logits: np.ndarray | None  # float32 [n, C], None when not read
    path: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return int(self.sample_idx.shape[0])


def write_predictions(
    path: str | os.PathLike,
    *,
    run_key: str,
    condition: str,
    seed: int,
    split: str,
    sample_idx: np.ndarray,
    label: np.ndarray,
    logits: np.ndarray,
    extra_metadata: dict | None = None,
) -> None:
    """Write predictions atomically (temp file + rename): a reader never sees half a file."""
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    n, num_classes = logits.shape
    if not (len(sample_idx) == len(label) == n):
        raise ValueError(f"sample_idx, label and logits disagree on length for {path}")
    if not np.isfinite(logits).all():
        raise PredictionsError(f"non-finite logits for run {run_key} seed {seed}; refusing to write {path}")
    pred = logits.argmax(axis=1).astype(np.int16)
    schema = prediction_schema(num_classes)
    flat = array_from_numpy(logits.reshape(-1))
    table = pa.table(
        {
            "run_key": string_array([run_key] * n),
            "condition": string_array([condition] * n),
            "seed": array_from_numpy(np.full(n, seed, dtype=np.int32)),
            "split": string_array([split] * n),
            "sample_idx": array_from_numpy(np.asarray(sample_idx, dtype=np.int32)),
            "label": array_from_numpy(np.asarray(label, dtype=np.int16)),
            "pred": array_from_numpy(pred),
            "logits": pa.FixedSizeListArray.from_arrays(flat, num_classes),
        },
        schema=schema,
    )
    meta = {"kdtransfer_version": __version__, "num_classes": num_classes, **(extra_metadata or {})}
    table = table.replace_schema_metadata({b"kdtransfer": json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_predictions(path: str | os.PathLike, *, logits: bool = True) -> Predictions:
    """Read and check one predictions file. `logits=False` skips the widest column."""
    path = str(path)
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise PredictionsError(
            f"predictions file {path} does not exist; re-run {training_rule_of(path)}, which makes it"
        ) from None
    except Exception as exc:  # pyarrow raises several types for truncated/corrupt files
        raise PredictionsError(f"predictions file {path} is unreadable ({exc}); {_remake_hint(path)}") from None
    schema = pf.schema_arrow
    expected = [name for name in prediction_schema(1).names]
    if schema.names != expected:
        raise PredictionsError(f"predictions file {path} has columns {schema.names}, expected {expected}")
    logits_type = schema.field("logits").type
    if not pa.types.is_fixed_size_list(logits_type) or logits_type.value_type != pa.float32():
        raise PredictionsError(
            f"predictions file {path}: column 'logits' must be fixed_size_list<float32>, got {logits_type}"
        )
    num_classes = logits_type.list_size
    if not schema.equals(prediction_schema(num_classes)):
        raise PredictionsError(
            f"predictions file {path} has schema {schema}, expected {prediction_schema(num_classes)}"
        )
    if pf.metadata.num_rows == 0:
        raise PredictionsError(f"predictions file {path} has no rows; {_remake_hint(path)}")
    # The identity columns hold one value repeated on every row: when the row-group statistics
    # prove that (min == max, no nulls), take it from there rather than decode a string per row
    # (a third of the read time of a file). Otherwise read the columns and check them row by row.
    identity = _identity_from_statistics(pf)
    columns = ["sample_idx", "label", "pred"] + (["logits"] if logits else [])
    if identity is None:
        columns = [*IDENTITY_COLUMNS, *columns]
    try:
        table = pf.read(columns=columns)
    except Exception as exc:
        raise PredictionsError(f"predictions file {path} is unreadable ({exc}); {_remake_hint(path)}") from None
    if identity is None:
        identity = {}
        for name in IDENTITY_COLUMNS:
            values = table.column(name).unique()
            if len(values) != 1:
                raise PredictionsError(
                    f"predictions file {path}: column {name!r} must hold one value, found {len(values)}"
                )
            identity[name] = values[0].as_py()
    meta = {}
    raw = (schema.metadata or {}).get(b"kdtransfer")
    if raw:
        meta = json.loads(raw)
    logit_array = None
    if logits:
        # Zero-copy where Arrow allows it (one chunk, no nulls): the array is then read-only.
        column = table.column("logits")
        chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        logit_array = chunk.flatten().to_numpy(zero_copy_only=False).reshape(table.num_rows, num_classes)
    return Predictions(
        run_key=identity["run_key"],
        condition=identity["condition"],
        seed=int(identity["seed"]),
        split=identity["split"],
        sample_idx=table.column("sample_idx").to_numpy(),
        label=table.column("label").to_numpy(),
        pred=table.column("pred").to_numpy(),
        logits=logit_array,
        path=path,
        metadata=meta,
    )


def _identity_from_statistics(pf: pq.ParquetFile) -> dict | None:
    """The identity columns' values if every row group's statistics show a single, non-null value
    (one row group per file as written here), else None: then the caller reads the columns."""
    meta = pf.metadata
    leaf_index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    identity = {}
    for name in IDENTITY_COLUMNS:
        values = set()
        for rg in range(meta.num_row_groups):
            group = meta.row_group(rg)
            stats = group.column(leaf_index[name]).statistics
            if (
                stats is None
                or not stats.has_min_max
                or not stats.has_null_count
                or stats.null_count != 0
                or stats.num_values != group.num_rows
                or stats.min != stats.max
            ):
                return None
            values.add(stats.min)
        if len(values) != 1:
            return None
        identity[name] = values.pop()
    return identity


def check_aligned(a: Predictions, b: Predictions) -> None:
    """Two runs may be compared sample by sample only if they hold the same samples and labels."""
    if a.split != b.split:
        raise PredictionsError(f"{a.path} is split {a.split!r} but {b.path} is split {b.split!r}")
    if a.num_samples != b.num_samples or not np.array_equal(a.sample_idx, b.sample_idx):
        raise PredictionsError(
            f"{a.path} and {b.path} hold different sample sets ({a.num_samples} vs {b.num_samples} rows); "
            "they come from different data preparations: re-run the older one"
        )
    if not np.array_equal(a.label, b.label):
        n_diff = int((a.label != b.label).sum())
        raise PredictionsError(f"{a.path} and {b.path} disagree on the labels of {n_diff} samples")
    if a.logits is not None and b.logits is not None and a.logits.shape[1] != b.logits.shape[1]:
        raise PredictionsError(f"{a.path} has {a.logits.shape[1]} classes but {b.path} has {b.logits.shape[1]}")
