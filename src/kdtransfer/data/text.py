"""Character-level name classification from a CSV file (e.g. the 18-language surnames set).

Each name becomes int64 token ids [max_len]: 0 = padding, 1 = a character not seen in the
train split, 2.. = the train split's characters in sorted (code point) order. Names longer
than max_len keep their first max_len characters.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kdtransfer.data.core import ArrayDataset, DatasetError, loader, missing_data_error, stratified_split
from kdtransfer.options import COUNT, FRACTION, SEED
from kdtransfer.paths import DATA_DIR

NAMES_CSV_PATH = f"{DATA_DIR}/names.csv"
PAD, UNKNOWN = 0, 1


def read_labelled_names(path: Path, name_column: str, label_column: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in (name_column, label_column):
            if column not in columns:
                raise DatasetError(f"{path} has no column {column!r}; its columns: {', '.join(columns)}")
        names, labels = [], []
        for line, row in enumerate(reader, start=2):
            name, label = (row[name_column] or "").strip(), (row[label_column] or "").strip()
            if not name or not label:
                raise DatasetError(f"{path} line {line}: empty {name_column if not name else label_column}")
            names.append(name)
            labels.append(label)
    if not names:
        raise DatasetError(f"{path} has a header but no names")
    return names, labels


def character_vocabulary(names: list[str]) -> dict[str, int]:
    return {ch: i for i, ch in enumerate(sorted(set("".join(names))), start=2)}


def encode_names(names: list[str], vocabulary: dict[str, int], max_len: int) -> np.ndarray:
    tokens = np.full((len(names), max_len), PAD, np.int64)
    for row, name in enumerate(names):
        ids = [vocabulary.get(ch, UNKNOWN) for ch in name[:max_len]]
        tokens[row, : len(ids)] = ids
    return tokens


@loader(
    sample_shape=lambda max_len, **_: (max_len,), tokens=True, max_len=COUNT, test_fraction=FRACTION, split_seed=SEED
)
def load_names_csv(
    path: str = NAMES_CSV_PATH,
    name_column: str = "name",
    label_column: str = "label",
    max_len: int = 20,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    drop_duplicates: bool = True,
) -> ArrayDataset:
    """Names and labels from a UTF-8 CSV with a header. Labels: the sorted unique label strings
    -> 0..C-1. Split: stratified by label, `test_fraction` per class, fixed by `split_seed`.
    drop_duplicates: keep one row per (name, label), so an exact duplicate cannot sit in both
    splits (the PyTorch tutorial's files repeat some names within a language)."""
    csv_path = Path(path)
    if not csv_path.is_file():
        raise missing_data_error(
            "Names CSV",
            csv_path,
            csv_path,
            f"a UTF-8 CSV with columns {name_column},{label_column}",
            "names",
            NAMES_CSV_PATH,
            option="path",
        )
    names, labels = read_labelled_names(csv_path, name_column, label_column)
    if drop_duplicates:
        # dict keeps first occurrences in file order.
        pairs = list(dict.fromkeys(zip(names, labels)))
        names, labels = [n for n, _ in pairs], [lab for _, lab in pairs]
    class_names = sorted(set(labels))
    index = {label: i for i, label in enumerate(class_names)}
    y = np.array([index[label] for label in labels], np.int64)
    train_idx, test_idx = stratified_split(y, test_fraction, split_seed)
    vocabulary = character_vocabulary([names[i] for i in train_idx])
    x = encode_names(names, vocabulary, max_len)
    return ArrayDataset(
        x[train_idx],
        y[train_idx],
        x[test_idx],
        y[test_idx],
        len(class_names),
        "text",
        vocab_size=len(vocabulary) + 2,
        class_names=class_names,
    )
