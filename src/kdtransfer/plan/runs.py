"""From a validated config to the runs to train: what each run depends on names its path.

A teacher depends on (dataset, teacher model, recipe, seed); a `nokd` or `independent`
control on (dataset, student model, recipe, seed); `kd` and `rcd` students on their setup. So
a temperature sweep reuses one set of teachers and controls, a `nokd` control is shared by every
KD variant with the same student and recipe, and Snakemake trains each distinct model once.

A run key is readable names plus a digest of everything the run's result depends on (the
contents behind those names: dataset loader and options, model, recipe, KD settings, the
teacher's own key, the training switches): `teacher/digits/mlp/digits-1a2b3c4d`,
`kd/digits_mlp-5e6f7a8b`. Two experiment files in one checkout thus share a run exactly when it
is the same run, and never overwrite each other's runs when a name means different things in
each; a changed hyper-parameter gives a new path, so everything downstream of it is re-planned.

`Plan(config)` expands the setups once and indexes every run key, so the Snakefile's input and
params functions are dictionary look-ups (planning thousands of runs stays fast).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

from kdtransfer import paths
from kdtransfer.catalog import DISTILLED_CONDITIONS
from kdtransfer.plan.packs import Pack, seed_blocks
from kdtransfer.plan.sweeps import expand_setups, setup_row
from kdtransfer.spec import RunSpec


@dataclass(frozen=True)
class Run:
    condition: str
    key: str  # path below results/runs/, e.g. "teacher/digits/mlp/digits-1a2b3c4d" or "kd/digits_mlp-5e6f7a8b"
    seed: int

    @property
    def directory(self) -> str:
        return paths.run_dir(self.key, self.seed)


def canonical(obj):
    """Dicts with sorted keys, recursively. Snakemake compares params by their repr, so a
    config whose keys are merely reordered must give identical params (no spurious reruns)."""
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def digest(obj) -> str:
    """A short, stable hex digest of a JSON-able value (key order does not matter)."""
    text = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[: paths.DIGEST_LENGTH]


def seeds_of(config: dict) -> list[int]:
    seeds = config["seeds"]
    return list(range(seeds)) if isinstance(seeds, int) else sorted(seeds)


def _kd_settings(setup: dict) -> dict:
    """What a kd/rcd student's loss depends on. Feature settings only for feature variants, so
    a logit setup's spec does not change when unrelated feature defaults do."""
    kd = setup["kd"]
    out = {
        "alpha": kd["alpha"],
        "temperature": kd["temperature"],
        "variant": kd["variant"],
        "feature_weight": 0.0,
        "layers": [],
        "teacher_layers": [],
    }
    if kd["variant"] != "logit":
        layers = list(kd["layers"])
        out.update(
            feature_weight=kd["feature_weight"], layers=layers, teacher_layers=list(kd.get("teacher_layers") or layers)
        )
    return out


class Plan:
    """Every run of one validated config, indexed by (condition, run key)."""

    def __init__(self, config: dict):
        self.config = config
        self.setups = expand_setups(config)
        self.seeds = seeds_of(config)
        self.conditions = ["teacher", *config["conditions"]]
        self._data_digests = {name: digest(entry) for name, entry in config["datasets"].items()}
        self.data_keys = {name: paths.DATA_KEY.format(dataset=name, digest=d) for name, d in self._data_digests.items()}
        # (condition, run key) -> name of the first setup that produces it (shared runs are
        # identical whichever setup names them: the key holds everything they depend on).
        self._setup_of_key: dict[tuple[str, str], str] = {}
        self._keys: dict[tuple[str, str], str] = {}  # (condition, setup name) -> run key
        for name, setup in self.setups.items():
            for condition in self.conditions:
                key = self._keys[(condition, name)] = self._run_key(condition, name, setup)
                self._setup_of_key.setdefault((condition, key), name)
        self.runs = [Run(c, k, s) for (c, k) in self._setup_of_key for s in self.seeds]
        # Training jobs: each run key's seeds in blocks of training.pack_size (kdtransfer.plan.packs).
        self.seed_blocks = seed_blocks(self.seeds, config["training"]["pack_size"])
        self.packs = [Pack(c, k, block) for (c, k) in self._setup_of_key for block in self.seed_blocks]

    def data_file(self, dataset: str) -> str:
        """The prepared arrays of a dataset, named by the digest of its loader and options."""
        return paths.DATA_FILE.format(dataset=dataset, digest=self._data_digests[dataset])

    def _spec_body(self, condition: str, setup: dict) -> dict:
        """A run's specification without its key and seed."""
        model_name = setup["teacher"] if condition == "teacher" else setup["student"]
        training = self.config["training"]
        body = {
            "condition": condition,
            "model": copy.deepcopy(self.config["models"][model_name]),
            "recipe": copy.deepcopy(self.config["recipes"][setup["recipe"]]),
            "deterministic": training["deterministic"],
            "bf16": training["bf16"],
            "compile": training["compile"],
        }
        if condition in DISTILLED_CONDITIONS:
            body["kd"] = _kd_settings(setup)
        if condition == "rcd":
            body["rcd"] = dict(setup["rcd"])
        return body

    def _run_key(self, condition: str, setup_name: str, setup: dict) -> str:
        identity = {
            **self._spec_body(condition, setup),
            "data": self.data_keys[setup["dataset"]],
            "teacher": self._teacher_identity(condition, setup),
        }
        if condition in DISTILLED_CONDITIONS:
            return paths.DISTILLED_KEY.format(condition=condition, setup=setup_name, digest=digest(identity))
        model = setup["teacher"] if condition == "teacher" else setup["student"]
        return paths.REFERENCE_KEY.format(
            condition=condition, dataset=setup["dataset"], model=model, recipe=setup["recipe"], digest=digest(identity)
        )

    def _teacher_identity(self, condition: str, setup: dict):
        """What a distilled run takes from its teacher: kd the trained teacher (its run key),
        rcd of a feature variant the teacher's architecture (the shapes of the noise maps)."""
        if condition == "kd":
            return self._run_key("teacher", "", setup)
        if condition == "rcd" and setup["kd"]["variant"] != "logit":
            return canonical(self.config["models"][setup["teacher"]])
        return None

    def run_key(self, condition: str, setup_name: str) -> str:
        return self._keys[(condition, setup_name)]

    def setup_for_key(self, condition: str, key: str) -> dict:
        try:
            return self.setups[self._setup_of_key[(condition, key)]]
        except KeyError:
            raise KeyError(f"no setup of this config produces a {condition} run with key {key!r}") from None

    def setup_runs(self, setup_name: str) -> dict[str, list[Run]]:
        """Runs a setup's analysis needs, by condition (teacher first)."""
        return {c: [Run(c, self.run_key(c, setup_name), s) for s in self.seeds] for c in self.conditions}

    def pack_spec(self, condition: str, key: str) -> dict:
        """What determines the results of a run key's runs, every seed alike: run_spec without the
        seed (a training pack's params).

        A KD temperature is in a `kd` run's spec but not in its `nokd` control's, so changing it
        re-runs only what it changes. `training.checkpoint_every` and `training.pack_size` are not
        here: resuming is bit-identical and a run trains alike in any pack, so neither how often a
        run checkpoints nor which pack it is in ever changes its result.
        """
        body = self._spec_body(condition, self.setup_for_key(condition, key))
        return canonical({"run_key": key, **body})

    def run_spec(self, condition: str, key: str, seed: int) -> dict:
        """Everything that determines one run's result, and nothing else (RunSpec.from_params)."""
        return canonical({**self.pack_spec(condition, key), "seed": int(seed)})

    def spec(self, condition: str, setup_name: str, seed: int) -> RunSpec:
        """The RunSpec of a setup's run, as its training job builds it from run_spec's params."""
        return RunSpec.from_params(self.run_spec(condition, self.run_key(condition, setup_name), seed))

    def teacher_run_key(self, condition: str, key: str) -> str | None:
        """The teacher whose weights a run loads: kd students only (rcd never sees a teacher)."""
        if condition != "kd":
            return None
        self.setup_for_key(condition, key)  # an unknown key is named
        return self.run_key("teacher", self._setup_of_key[(condition, key)])

    def teacher_model(self, condition: str, key: str) -> dict | None:
        """The teacher's model entry a distilled run needs: kd always (to load its weights); rcd
        of a feature variant too, for the shapes of the noise feature maps (no weights)."""
        if condition not in DISTILLED_CONDITIONS:
            return None
        setup = self.setup_for_key(condition, key)
        if condition == "rcd" and setup["kd"]["variant"] == "logit":
            return None
        return canonical(self.config["models"][setup["teacher"]])

    def swept_keys(self) -> set[str]:
        """The sweep keys (temperature, model, ...) that expand at least one setup into variants."""
        return {
            key
            for name, s in self.setups.items()
            if s["sweep_group"] and s["sweep_group"] != name
            for key in s["sweep_params"]
        }

    def setup_table(self) -> list[dict]:
        """One row per setup for figures and tables (display names, sweep groups)."""
        return canonical([setup_row(name, s) for name, s in self.setups.items()])
