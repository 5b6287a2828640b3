# Analysis reads predictions only (never weights): it is cheap and runs locally, even under a
# cluster profile, so no GPU job is queued for a table.


rule metrics:
    input:
        setup_prediction_files,
    output:
        metrics=paths.SETUP_METRICS,
        # per seed: samples where kd agrees with the teacher and the control does not, and the
        # reverse (the per-sample tests' counts, from the same read of the predictions)
        discordance=paths.SETUP_DISCORDANCE,
    params:
        paths=setup_prediction_paths,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/metrics/{setup}.log",
    benchmark:
        "benchmarks/metrics/{setup}.tsv"
    localrule: True
    script:
        "../scripts/metrics.py"


# The paired tests over seeds and samples, and the verdicts they decide (tests.parquet is the
# table of statistical tests, not the test suite).
rule statistics:
    input:
        metrics=expand(rules.metrics.output.metrics, setup=SETUPS),
        discordance=expand(rules.metrics.output.discordance, setup=SETUPS),
    output:
        metrics=paths.METRICS,
        tests=paths.TESTS,
        verdicts=paths.VERDICTS,
    params:
        analysis=analysis_params,
        # The setups covered: their metrics files are the inputs, named here too because input
        # sets are not a rerun trigger (profiles/default).
        setups=list(SETUPS),
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/statistics/statistics.log",
    benchmark:
        "benchmarks/statistics/statistics.tsv"
    localrule: True
    script:
        "../scripts/statistics.py"
