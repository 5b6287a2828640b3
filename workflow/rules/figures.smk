# Figures and tables from the analysis tables alone: regenerating them never touches a model.
# The report shows the answer first: categories are numbered in reading order (verdicts,
# robustness, functional transfer, regulariser, significance, sweeps, summary), and every item
# carries a label instead of its file name (FIGURES and TABLES: kdtransfer.analysis.report_items).


rule figures:
    input:
        metrics=rules.statistics.output.metrics,
        tests=rules.statistics.output.tests,
    output:
        **{
            name: report(
                paths.FIGURE.format(name=name, ext="png"),
                caption=f"../report/{name}.rst",
                category=category,
                labels={"result": label},
            )
            for name, (category, label) in FIGURES.items()
        },
        **{f"{name}_pdf": paths.FIGURE.format(name=name, ext="pdf") for name in FIGURES},
    params:
        setups=setup_info_rows,
        analysis=analysis_params,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/figures/figures.log",
    benchmark:
        "benchmarks/figures/figures.tsv"
    localrule: True
    script:
        "../scripts/figures.py"


rule tables:
    input:
        metrics=rules.statistics.output.metrics,
        tests=rules.statistics.output.tests,
        verdicts=rules.statistics.output.verdicts,
    output:
        **{
            f"{name}_html": report(
                paths.TABLE.format(name=name, ext="html"),
                caption=f"../report/table_{name}.rst",
                category=category,
                labels={"result": label},
            )
            for name, (category, label) in TABLES.items()
        },
        **{name: paths.TABLE.format(name=name, ext="csv") for name in TABLES},
        **{f"{name}_tex": paths.TABLE.format(name=name, ext="tex") for name in TABLES},
    params:
        setups=setup_info_rows,
        analysis=analysis_params,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/tables/tables.log",
    benchmark:
        "benchmarks/tables/tables.tsv"
    localrule: True
    script:
        "../scripts/tables.py"
