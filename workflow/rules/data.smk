# Prepared arrays of each dataset, and the by-hand downloads of those that do not ship with a
# package (CONFIG_DOWNLOADS: common.smk).


rule prepare_data:
    output:
        paths.DATA_FILE,
    params:
        loader=dataset_loader,
        options=dataset_options,
    conda:
        "../../envs/train.yaml"
    log:
        "logs/prepare_data/{dataset}-{digest}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}-{digest}.tsv"
    script:
        "../scripts/prepare_data.py"


# Run by hand where there is internet (a login node), never as a dependency: no ordinary run
# downloads anything, and prepare_data fails with the command to run when data is missing.
# Fills the loaders' default roots below the marker's folder (resources/data); the marker
# records URL and checksums.
rule download_dataset:
    output:
        paths.DOWNLOAD_MARKER,
    wildcard_constraints:
        name="|".join(sorted(DOWNLOAD_NAMES.values())),
    conda:
        "../../envs/train.yaml"
    log:
        "logs/download_dataset/{name}.log",
    benchmark:
        "benchmarks/download_dataset/{name}.tsv"
    localrule: True
    script:
        "../scripts/download_data.py"


# Named target: every download the config's datasets need, e.g.
# `snakemake --cores 1 download_data --configfile experiments/paper.yaml`.
rule download_data:
    input:
        expand(paths.DOWNLOAD_MARKER, name=CONFIG_DOWNLOADS),
    localrule: True
