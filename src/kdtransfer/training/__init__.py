"""The training half: one loop for every condition, the objective that tells the conditions
apart, checkpoints that resume bit-identically, and the models. Imports torch; the analysis half
never imports this package.

- `pack`: `train_pack`, what a training job runs: the runs of a pack in turn, or K at a time in
  worker processes (`side_by_side`, `pack_worker`); `gpus`: the GPU a job claims;
- `job`: `train_and_save`, one run and its outputs; `loop`: `train_run`, one run from a RunSpec
  (kdtransfer.spec);
- `objective`: one objective per run: cross-entropy, or distillation towards the teacher (kd)
  or noise (rcd), with the hint / attention feature terms; `signals`: the teacher or the noise;
- `state`: everything a resumed run continues from, and the checkpoint files;
- `losses`, `batches`, `optim`, `progress`, `seeding`, `device`, `timing`; `models/`.
"""
