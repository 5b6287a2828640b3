# Analysis reads predictions only (never weights): it is cheap and runs locally, even under a
# cluster profile, so no GPU job is queued for a table.


rule metrics:
    input:
        setup_prediction_files,
    output:
        metrics="results/analysis/metrics/{setup}.parquet",
        # per seed: samples where kd agrees with the teacher and the control does not, and the
        # reverse (the per-sample tests' counts, from the same read of the predictions)
        discordance="results/analysis/discordance/{setup}.parquet",
    params:
        paths=setup_prediction_paths,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/metrics/{setup}.log",
    localrule: True
    script:
        "../scripts/metrics.py"


rule tests:
    input:
        metrics=expand(rules.metrics.output.metrics, setup=SETUPS),
        discordance=expand(rules.metrics.output.discordance, setup=SETUPS),
    output:
        metrics="results/analysis/metrics.parquet",
        tests="results/analysis/tests.parquet",
        verdicts="results/analysis/verdicts.parquet",
    params:
        analysis=analysis_params,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/tests/tests.log",
    localrule: True
    script:
        "../scripts/tests.py"
