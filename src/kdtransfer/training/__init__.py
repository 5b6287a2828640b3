"""The training half: one loop for every condition, the objective that tells the conditions
apart, checkpoints that resume bit-identically, and the models. Imports torch; the analysis half
never imports this package.

- `loop`: `train_run`, one run from a RunSpec (kdtransfer.spec), and `train_and_save`, what the
  training rule runs;
- `objective`: one objective per run: cross-entropy, or distillation towards the teacher (kd)
  or noise (rcd), with the hint / attention feature terms;
- `state`: everything a resumed run continues from, and the checkpoint files;
- `losses`, `batches`, `optim`, `seeding`, `device`; `models/`.
"""
