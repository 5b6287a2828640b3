rule prepare_data:
    output:
        "results/data/{dataset}.npz",
    params:
        loader=dataset_loader,
        options=dataset_options,
    conda:
        "../../envs/train.yaml"
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    script:
        "../scripts/prepare_data.py"
