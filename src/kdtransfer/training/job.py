"""What the training rule runs: train (or resume) one run, then write its weights, its
per-sample predictions (the predictions contract, the analysis half's only input) and its
per-epoch history."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from kdtransfer.io.atomic import atomic_path
from kdtransfer.spec import RunSpec
from kdtransfer.training.batches import BatchInputs, predict_logits
from kdtransfer.training.loop import train_run
from kdtransfer.training.state import remove_checkpoints

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # beside the weights; removed when the run is complete


def train_and_save(
    spec: RunSpec,
    data_path: str,
    *,
    weights_out: str,
    predictions_out: dict[str, str],
    history_out: str,
    checkpoint_every: int,
    teacher_weights: str | None = None,
    teacher_model: dict | None = None,
    threads: int = 1,
) -> dict:
    """Train `spec` on the arrays at `data_path` (checkpointing beside `weights_out`), then write
    the outputs; returns the run info (fingerprints, parameter count, device)."""
    import pyarrow.parquet as pq

    from kdtransfer.data import load_arrays
    from kdtransfer.io.arrow import table_from_records  # not pandas: its import costs ~0.3 s per job
    from kdtransfer.io.predictions import write_predictions

    torch.set_num_threads(max(1, threads))
    data = load_arrays(data_path)
    checkpoint = Path(weights_out).parent / CHECKPOINT
    model, history, info = train_run(spec, data, teacher_weights=teacher_weights, teacher_model=teacher_model,
                                     checkpoint_path=checkpoint, checkpoint_every=checkpoint_every)
    device = next(model.parameters()).device
    inputs = BatchInputs(data, device)
    for split, path in predictions_out.items():
        x = data.x_test if split == "test" else data.x_train
        y = data.y_test if split == "test" else data.y_train
        logits = predict_logits(model, torch.from_numpy(x).to(device), inputs=inputs, bf16=spec.bf16).cpu().numpy()
        write_predictions(path, run_key=spec.run_key, condition=spec.condition, seed=spec.seed, split=split,
                          sample_idx=np.arange(len(y)), label=y, logits=logits, extra_metadata=info)
    with atomic_path(history_out) as tmp:
        pq.write_table(table_from_records([{**epoch, **info} for epoch in history]), tmp)
    with atomic_path(weights_out) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    remove_checkpoints(checkpoint)  # the run is complete; checkpoints would only waste disk
    log.info("done %s: test accuracy %.4f, %d parameters", spec.name,
             history[-1]["test_accuracy"], info["num_parameters"])
    return info
