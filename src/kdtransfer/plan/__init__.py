"""The plan: from a config file to the runs to train, before any job runs and without torch.

- `config`: validation (YAML syntax, the schema with its defaults, cross-references), with
  messages that name the key and the fix;
- `sweeps`: a setup's sweeps expanded into setups;
- `runs`: `Plan`, every run of a validated config: its key, its specification (the training
  rule's params) and its teacher; the setup table the figures and tables show;
- `packs`: seed blocks, which runs one training job (a pack) trains.
Where files live is kdtransfer.paths (the rules' output templates, below every layer).
"""
