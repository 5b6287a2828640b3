# Training: one script, one loop, for every condition. Teachers and controls are keyed by what
# they depend on (dataset/model/recipe), kd and rcd students by their setup; each key ends in the
# digest of the run's specification (kdtransfer.plan.runs), so a changed hyper-parameter is a new
# path. The key templates and file names are kdtransfer.plan.paths'.


rule train_reference:
    input:
        data=reference_data,
    output:
        weights=run_outputs(paths.REFERENCE_KEY, paths.WEIGHTS),
        history=run_outputs(paths.REFERENCE_KEY, paths.HISTORY),
        predictions=ensure(run_prediction_outputs(paths.REFERENCE_KEY), non_empty=True),
    wildcard_constraints:
        condition="|".join(REFERENCE_CONDITIONS),
    params:
        spec=reference_spec,
        splits=SPLITS,
        revision=kdtransfer.TRAINING_REVISION,
    conda:
        "../../envs/train.yaml"
    log:
        paths.TRAIN_LOG.format(key=paths.REFERENCE_KEY, seed="{seed}"),
    benchmark:
        paths.TRAIN_BENCHMARK.format(key=paths.REFERENCE_KEY, seed="{seed}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/train.py"


rule train_distilled:
    input:
        unpack(distilled_inputs),
    output:
        weights=run_outputs(paths.DISTILLED_KEY, paths.WEIGHTS),
        history=run_outputs(paths.DISTILLED_KEY, paths.HISTORY),
        predictions=ensure(run_prediction_outputs(paths.DISTILLED_KEY), non_empty=True),
    wildcard_constraints:
        condition="|".join(DISTILLED_CONDITIONS),
    params:
        spec=distilled_spec,
        teacher_model=distilled_teacher_model,
        splits=SPLITS,
        revision=kdtransfer.TRAINING_REVISION,
    conda:
        "../../envs/train.yaml"
    log:
        paths.TRAIN_LOG.format(key=paths.DISTILLED_KEY, seed="{seed}"),
    benchmark:
        paths.TRAIN_BENCHMARK.format(key=paths.DISTILLED_KEY, seed="{seed}")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/train.py"
