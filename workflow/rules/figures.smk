# Figures and tables from the analysis tables alone: regenerating them never touches a model.
# The report shows the answer first: categories are numbered in reading order (verdicts,
# robustness, functional transfer, regulariser, significance, sweeps, summary), and every item
# carries a label instead of its file name (kdtransfer.analysis.report_items).
from kdtransfer.analysis import report_items

FIGURES = report_items.figures(PLAN.swept_keys())
TABLES = report_items.tables(PLAN.swept_keys())


rule figures:
    input:
        metrics=rules.tests.output.metrics,
        tests=rules.tests.output.tests,
    output:
        **{
            name: report(
                f"results/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category=category,
                labels={"result": label},
            )
            for name, (category, label) in FIGURES.items()
        },
        **{f"{name}_pdf": f"results/figures/{name}.pdf" for name in FIGURES},
    params:
        setups=setup_info_rows,
        analysis=analysis_params,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/figures/figures.log",
    localrule: True
    script:
        "../scripts/figures.py"


rule tables:
    input:
        metrics=rules.tests.output.metrics,
        tests=rules.tests.output.tests,
        verdicts=rules.tests.output.verdicts,
    output:
        **{
            f"{name}_html": report(
                f"results/tables/{name}.html",
                caption=f"../report/table_{name}.rst",
                category=category,
                labels={"result": label},
            )
            for name, (category, label) in TABLES.items()
        },
        **{name: f"results/tables/{name}.csv" for name in TABLES},
        **{f"{name}_tex": f"results/tables/{name}.tex" for name in TABLES},
    params:
        setups=setup_info_rows,
        analysis=analysis_params,
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/tables/tables.log",
    localrule: True
    script:
        "../scripts/tables.py"
