# Figures and tables from the analysis tables alone: regenerating them never touches a model.

FIGURES = {
    "agreement_by_condition": "Functional transfer",
    "asymmetric_payoff": "Functional transfer",
    "accuracy_by_condition": "Regulariser",
    "tests_overview": "Significance",
    "temperature": "Sweeps",
    "scaling": "Sweeps",
}
# Drawn only when the config has such a sweep (with at least one value besides the base setup's).
SWEEP_FIGURES = {"temperature": {"temperature"}, "scaling": set(plan.SIZE_SWEEPS)}
FIGURES = {name: category for name, category in FIGURES.items()
           if name not in SWEEP_FIGURES or SWEEP_FIGURES[name] & PLAN.swept_keys()}
TABLES = {"summary": "Tables", "tests": "Tables", "verdicts": "Tables"}


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
            )
            for name, category in FIGURES.items()
        },
    params:
        setups=setup_info_rows,
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
            name: report(f"results/tables/{name}.csv", caption=f"../report/table_{name}.rst", category=category)
            for name, category in TABLES.items()
        },
        **{f"{name}_tex": f"results/tables/{name}.tex" for name in TABLES},
    params:
        setups=setup_info_rows,
        alpha=config["analysis"]["alpha"],
        revision=kdtransfer.ANALYSIS_REVISION,
    conda:
        "../../envs/analysis.yaml"
    log:
        "logs/tables/tables.log",
    localrule: True
    script:
        "../scripts/tables.py"
