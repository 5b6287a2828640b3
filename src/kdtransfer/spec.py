"""What one run is: everything its result depends on, typed, and nothing else. Torch-free.

The plan builds a run's specification as the training rule's params (Plan.run_spec: plain,
canonical dicts, which Snakemake compares to decide what to rerun); a training job turns them
into a RunSpec here. Every value is the config's, with the schema's defaults filled in once, by
config validation: a RunSpec has no defaults of its own, and a missing or unknown key is an
error that names it. Build specs through the plan (Plan.spec), in tests and benchmarks too.

How often a run checkpoints is not here: resuming is bit-identical, so it never changes a result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from kdtransfer.catalog import DISTILLED_CONDITIONS, FEATURE_VARIANTS, KD_VARIANTS, REFERENCE_CONDITIONS


class SpecError(ValueError):
    """Params that do not describe a run (a key missing or unknown, an impossible setting)."""


@dataclass(frozen=True)
class Recipe:
    """How a run is trained (a config `recipes` entry; workflow/schemas/config.schema.yaml)."""

    optimizer: str  # sgd | adamw
    lr: float
    momentum: float  # sgd only
    nesterov: bool  # sgd only
    weight_decay: float
    epochs: int
    batch_size: int
    schedule: str  # constant | cosine, after the warm-up
    warmup_epochs: float
    augment: str  # none | flip_crop
    drop_last: bool


@dataclass(frozen=True)
class KDSettings:
    """The loss of kd and rcd: (1-α)·CE + α·T²·KL(target ‖ student) + β·feature term."""

    alpha: float
    temperature: float
    variant: str  # logit | hint | attention
    feature_weight: float  # β; 0 for logit
    layers: tuple[str, ...]  # student modules whose maps are matched (hint, attention)
    teacher_layers: tuple[str, ...]  # the teacher's, paired one for one with `layers`

    @property
    def feature_variant(self) -> bool:
        return self.variant in FEATURE_VARIANTS


@dataclass(frozen=True)
class RCDSettings:
    """The random control: what noise replaces every teacher signal, and how often it is drawn."""

    noise: str  # uniform | gaussian
    resample: str  # step | fixed


@dataclass(frozen=True)
class RunSpec:
    run_key: str
    condition: str  # teacher | kd | rcd | nokd | independent
    seed: int
    model: dict  # a config `models` entry: {"arch": ..., "options": {...}}
    recipe: Recipe
    kd: KDSettings | None  # kd and rcd only
    rcd: RCDSettings | None  # rcd only
    deterministic: bool  # deterministic kernels (CUDA)
    bf16: bool  # bfloat16 autocast (CUDA)
    compile: bool  # torch.compile the student (CUDA)

    @property
    def name(self) -> str:
        """How messages and logs name the run: `<run_key> seed <seed>`."""
        return f"{self.run_key} seed {self.seed}"

    @classmethod
    def from_params(cls, params: dict) -> RunSpec:
        """The RunSpec of a training rule's params (Plan.run_spec)."""
        where = f"run spec of {params.get('run_key', '?')}"
        condition = params.get("condition")
        if condition not in (*REFERENCE_CONDITIONS, *DISTILLED_CONDITIONS):
            raise SpecError(f"{where}: unknown condition {condition!r}")
        sections = (["kd"] if condition in DISTILLED_CONDITIONS else []) + (["rcd"] if condition == "rcd" else [])
        _check_keys(where, params, [f.name for f in fields(cls) if f.name not in ("kd", "rcd")] + sections)
        kd = _checked_kd(where, _settings(KDSettings, params["kd"], f"{where}: kd")) if "kd" in sections else None
        rcd = _settings(RCDSettings, params["rcd"], f"{where}: rcd") if "rcd" in sections else None
        return cls(
            run_key=params["run_key"],
            condition=condition,
            seed=params["seed"],
            model=params["model"],
            recipe=_settings(Recipe, params["recipe"], f"{where}: recipe"),
            kd=kd,
            rcd=rcd,
            deterministic=params["deterministic"],
            bf16=params["bf16"],
            compile=params["compile"],
        )

    def params(self) -> dict:
        """The params this spec was made from (from_params inverted)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("recipe", "kd", "rcd")}
        out["recipe"] = asdict(self.recipe)
        for name in ("kd", "rcd"):
            settings = getattr(self, name)
            if settings is not None:
                out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
        return out

    @property
    def fingerprint(self) -> str:
        """Identifies what a checkpoint was trained for, so a stale one is never resumed: the
        digest of every field, absent kd / rcd settings as {} (the form checkpoints in use carry,
        so that they stay resumable)."""
        body = {"kd": {}, "rcd": {}, **self.params()}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pack_name(run_key: str, seeds) -> str:
    """How messages and logs name a pack of runs of one run key: `<run_key> seeds 0-9` (a range),
    `<run_key> seeds 0,3,7`, or `<run_key> seed 3` (RunSpec.name) for one."""
    seeds = sorted(seeds)
    if len(seeds) == 1:
        return f"{run_key} seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{run_key} seeds {seeds[0]}-{seeds[-1]}"
    return f"{run_key} seeds " + ",".join(map(str, seeds))


def _check_keys(where: str, given: dict, expected: list[str]) -> None:
    missing = [k for k in expected if k not in given]
    if missing:
        raise SpecError(
            f"{where} lacks {', '.join(missing)}: build run specs with kdtransfer.plan.runs.Plan, which "
            "fills in the schema's defaults"
        )
    unknown = sorted(set(given) - set(expected))
    if unknown:
        raise SpecError(f"{where} has keys no {given['condition']} run takes: {', '.join(unknown)}")


def _settings(cls, values: dict, where: str):
    names = [f.name for f in fields(cls)]
    missing = [n for n in names if n not in values]
    unknown = sorted(set(values) - set(names))
    if missing or unknown:
        problem = "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unknown {', '.join(unknown)}"] if unknown else [])
        )
        raise SpecError(
            f"{where}: {problem} (valid: {', '.join(names)}); build run specs with kdtransfer.plan.runs.Plan, "
            "which fills in the schema's defaults"
        )
    return cls(**{n: tuple(values[n]) if isinstance(values[n], list) else values[n] for n in names})


def _checked_kd(where: str, kd: KDSettings) -> KDSettings:
    if kd.variant not in KD_VARIANTS:
        raise SpecError(f"{where}: unknown kd.variant {kd.variant!r}; valid: {', '.join(KD_VARIANTS)}")
    if kd.feature_variant and (not kd.layers or len(kd.layers) != len(kd.teacher_layers)):
        raise SpecError(
            f"{where}: kd.variant {kd.variant!r} needs kd.layers (student module names) and as many "
            f"kd.teacher_layers; got {list(kd.layers)} and {list(kd.teacher_layers)}"
        )
    return kd
