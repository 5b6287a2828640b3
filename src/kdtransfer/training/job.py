"""One run's outputs: train (or resume) it, then write its weights, its per-sample predictions
(the predictions contract, the analysis half's only input) and its per-epoch history."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from kdtransfer.io.atomic import atomic_path
from kdtransfer.spec import RunSpec
from kdtransfer.training.batches import ResidentData, predict_logits
from kdtransfer.training.device import pick_device
from kdtransfer.training.loop import train_run
from kdtransfer.training.state import remove_checkpoints
from kdtransfer.training.timing import timed

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # beside the weights; removed once the run's outputs are safe


def checkpoint_path(weights_out: str | os.PathLike) -> Path:
    return Path(weights_out).parent / CHECKPOINT


def resident_data(data: str | os.PathLike | ResidentData, device: torch.device | None = None) -> ResidentData:
    """The dataset on the device a run trains on, from its prepared file (or as a pack holds it)."""
    if isinstance(data, ResidentData):
        return data
    from kdtransfer.data import load_arrays

    return ResidentData(load_arrays(data), device or pick_device())


def train_and_save(
    spec: RunSpec,
    data: str | os.PathLike | ResidentData,
    *,
    weights_out: str,
    predictions_out: dict[str, str],
    history_out: str,
    checkpoint_every: int,
    teacher_weights: str | None = None,
    teacher_model: dict | None = None,
    threads: int = 1,
    keep_final_state: bool = False,
) -> dict:
    """Train `spec` on `data` (a prepared .npz, or a pack's ResidentData), checkpointing beside
    `weights_out`, then write the outputs; returns the run info (fingerprints, parameter count,
    device). `keep_final_state`: leave the final checkpoint (a pack removes it once every run of
    the pack is done, so that a failed pack-mate costs this run no training)."""
    torch.set_num_threads(max(1, threads))
    resident = resident_data(data)
    checkpoint = checkpoint_path(weights_out)
    model, history, info = train_run(
        spec,
        resident,
        teacher_weights=teacher_weights,
        teacher_model=teacher_model,
        checkpoint_path=checkpoint,
        checkpoint_every=checkpoint_every,
    )
    with timed("outputs"):
        write_outputs(
            spec,
            model,
            history,
            info,
            resident,
            weights_out=weights_out,
            predictions_out=predictions_out,
            history_out=history_out,
        )
    if not keep_final_state:
        remove_checkpoints(checkpoint)  # the run is complete; checkpoints would only waste disk
    log.info(
        "done %s: test accuracy %.4f, %d parameters", spec.name, history[-1]["test_accuracy"], info["num_parameters"]
    )
    return info


def write_outputs(
    spec: RunSpec,
    model: torch.nn.Module,
    history: list[dict],
    info: dict,
    resident: ResidentData,
    *,
    weights_out: str,
    predictions_out: dict[str, str],
    history_out: str,
) -> None:
    """A trained run's files: per-sample predictions of each split, per-epoch history, weights."""
    import pyarrow.parquet as pq

    from kdtransfer.io.arrow import table_from_records  # not pandas: its import costs ~0.3 s per job
    from kdtransfer.io.predictions import write_predictions

    arrays = resident.data
    for split, path in predictions_out.items():
        x, y = (resident.x_test, arrays.y_test) if split == "test" else (resident.x_train, arrays.y_train)
        logits = predict_logits(model, x, inputs=resident.inputs, bf16=spec.bf16).cpu().numpy()
        write_predictions(
            path,
            run_key=spec.run_key,
            condition=spec.condition,
            seed=spec.seed,
            split=split,
            sample_idx=np.arange(len(y)),
            label=y,
            logits=logits,
            extra_metadata=info,
        )
    with atomic_path(history_out) as tmp:
        pq.write_table(table_from_records([{**epoch, **info} for epoch in history]), tmp)
    with atomic_path(weights_out) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
