# Training: one script, one loop, for every condition. Teachers and controls are keyed by what
# they depend on (dataset/model/recipe), kd and rcd students by their setup; each key ends in the
# digest of the run's specification (kdtransfer.plan.runs), so a changed hyper-parameter is a new path.


rule train_reference:
    input:
        data=reference_data,
    output:
        weights="results/runs/{condition}/{dataset}/{model}/{recipe}-{digest}/seed{seed}/model.pt",
        history="results/runs/{condition}/{dataset}/{model}/{recipe}-{digest}/seed{seed}/history.parquet",
        predictions=ensure(
            expand("results/runs/{{condition}}/{{dataset}}/{{model}}/{{recipe}}-{{digest}}/seed{{seed}}/predictions_{split}.parquet", split=SPLITS),
            non_empty=True,
        ),
    wildcard_constraints:
        condition="|".join(REFERENCE_CONDITIONS),
    params:
        spec=reference_spec,
        splits=SPLITS,
        revision=kdtransfer.TRAINING_REVISION,
    conda:
        "../../envs/train.yaml"
    log:
        "logs/train/{condition}/{dataset}/{model}/{recipe}-{digest}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{condition}/{dataset}/{model}/{recipe}-{digest}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/train.py"


rule train_distilled:
    input:
        data=distilled_data,
        teacher=distilled_teacher_weights,
    output:
        weights="results/runs/{condition}/{setup}-{digest}/seed{seed}/model.pt",
        history="results/runs/{condition}/{setup}-{digest}/seed{seed}/history.parquet",
        predictions=ensure(
            expand("results/runs/{{condition}}/{{setup}}-{{digest}}/seed{{seed}}/predictions_{split}.parquet", split=SPLITS),
            non_empty=True,
        ),
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
        "logs/train/{condition}/{setup}-{digest}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{condition}/{setup}-{digest}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/train.py"
