"""End to end on a shrunken default: run, nothing left to do, a param change reruns only what it
should, and everything downstream of predictions regenerates without model weights."""

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, counts, planned, planned_jobs, run_dir, snakemake
from report_browser import ReportBrowser, find_chromium

from kdtransfer.io.predictions import read_predictions

pytestmark = pytest.mark.e2e
TINY = ["--configfile", "tests/configs/tiny.yaml"]
PLAN = planned(REPO / "tests/configs/tiny.yaml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("e2e"))
    snakemake(wf, "--cores", "2", *TINY)
    return wf


def test_outputs_exist_and_trace_to_predictions(finished):
    for name in (
        "agreement_by_condition",
        "asymmetric_payoff",
        "accuracy_by_condition",
        "tests_overview",
        "temperature",
        "scaling",
    ):
        assert (finished / "results" / "figures" / f"{name}.png").stat().st_size > 1000
        assert (finished / "results" / "figures" / f"{name}.pdf").stat().st_size > 1000
    for name in ("summary", "tests", "verdicts"):
        assert (finished / "results" / "tables" / f"{name}.csv").stat().st_size > 0
        assert "\\toprule" in (finished / "results" / "tables" / f"{name}.tex").read_text()
    metrics = pd.read_parquet(finished / "results" / "analysis" / "metrics.parquet")
    # Recompute one number from the Parquet predictions by hand.
    row = metrics.query("setup == 'digits_mlp' and condition == 'kd' and seed == 1").iloc[0]
    student = read_predictions(finished / run_dir(PLAN, "kd", "digits_mlp", 1) / "predictions_test.parquet")
    teacher = read_predictions(finished / run_dir(PLAN, "teacher", "digits_mlp", 1) / "predictions_test.parquet")
    assert row["agreement"] == pytest.approx((student.pred == teacher.pred).mean())
    assert row["accuracy"] == pytest.approx((student.pred == student.label).mean())
    wrong = teacher.pred != teacher.label
    assert row["agreement_incorrect"] == pytest.approx((student.pred[wrong] == teacher.pred[wrong]).mean())
    tests = pd.read_parquet(finished / "results" / "analysis" / "tests.parquet")
    assert {"agreement: kd > nokd", "agreement: kd > rcd"} <= set(tests["test"])


def test_a_pack_logs_each_run_with_its_progress_and_one_line_per_epoch(finished):
    key = PLAN.run_key("teacher", "digits_mlp")
    log = (finished / f"logs/train/{key}/seeds0to9.log").read_text()  # one pack: seeds 0-3 of the block 0-9
    lines = [line for line in log.splitlines() if line[:4].isdigit()]
    for seed in range(4):
        mine = [line for line in lines if f"[{key} seed {seed}] " in line]
        assert f"run {seed + 1}/4 of the pack" in mine[0]
        assert len([line for line in mine if re.search(r"epoch \d+/4 loss", line)]) == 4
    # every line names its run, or the pack
    assert all(f"[{key} seed " in line or f"[{key} seeds 0-3] " in line for line in lines)


def test_second_run_has_nothing_to_do(finished):
    out = snakemake(finished, "-n", *TINY).stdout
    assert "Nothing to be done" in out


def test_temperature_change_reruns_only_that_setups_kd_and_rcd(finished, tmp_path):
    cfg = yaml.safe_load((finished / "tests/configs/tiny.yaml").read_text())
    cfg["setups"]["mnist1d_cnn"]["kd"]["temperature"] = 2
    changed = finished / "tests/configs/tiny_t2.yaml"
    changed.write_text(yaml.safe_dump(cfg))
    out = snakemake(finished, "-n", "--configfile", str(changed)).stdout
    jobs = planned_jobs(out)
    trained = [(r, w) for r, w in jobs if r.startswith("train_")]
    # the kd and rcd packs of that setup (seeds 0-3), nothing else
    assert sorted((r, w["condition"], w["setup"]) for r, w in trained) == [
        ("train_distilled_seeds0to9", c, "mnist1d_cnn") for c in ("kd", "rcd")
    ]
    assert [w["setup"] for r, w in jobs if r == "metrics"] == ["mnist1d_cnn"]
    assert counts(out) == Counter(
        {"train_distilled_seeds0to9": 2, "metrics": 1, "statistics": 1, "figures": 1, "tables": 1, "all": 1}
    )


def test_figures_tables_report_regenerate_without_weights(finished):
    weights = list((finished / "results" / "runs").rglob("model.pt"))
    assert len(weights) == 56  # 24 teachers and controls + 32 kd/rcd students
    for w in weights:
        w.unlink()
    assert "Nothing to be done" in snakemake(finished, "-n", *TINY).stdout
    before = (finished / "results/tables/summary.csv").read_text()
    proc = snakemake(finished, "--cores", "2", "--forcerun", "metrics", "figures", "tables", *TINY)
    ran = counts(proc.stdout + proc.stderr)  # Snakemake 9 logs its jobs to stderr
    assert ran["metrics"] == 4 and ran["figures"] == 1 and not any(rule.startswith("train_") for rule in ran)
    assert (finished / "results/tables/summary.csv").read_text() == before
    snakemake(finished, "--report", "report.html", *TINY)
    assert (finished / "report.html").stat().st_size > 10_000


def test_deleted_pdf_or_tex_is_remade(finished):
    """Every file the figures and tables rules write is a declared output: deleting one plans its
    rule again (the PDFs and .tex files were undeclared: "Nothing to be done"), and the remade
    files are the ones deleted: the same LaTeX table, the same figure."""
    pdf, tex = finished / "results/figures/robustness.pdf", finished / "results/tables/verdicts.tex"
    pdf_before, tex_before = pdf.read_bytes(), tex.read_text()
    pdf.unlink()
    tex.unlink()
    out = snakemake(finished, "-n", *TINY).stdout
    assert counts(out) == Counter({"figures": 1, "tables": 1, "all": 1})
    snakemake(finished, "--cores", "1", *TINY)
    assert tex.read_text() == tex_before and "\\begin{table}" in tex_before
    remade = pdf.read_bytes()
    pages = re.compile(rb"/Type /Page\b")
    assert remade[:5] == b"%PDF-" and len(pages.findall(remade)) == len(pages.findall(pdf_before)) >= 1
    assert abs(len(remade) - len(pdf_before)) < 0.02 * len(pdf_before)  # only the creation date may differ
    assert "Nothing to be done" in snakemake(finished, "-n", *TINY).stdout


def test_report_shows_the_verdicts_in_a_browser(finished):
    """Open the report in a real headless Chromium, click "1. Verdicts", open the verdicts
    table: the verdict of every setup is visible text, and the robustness table beside it."""
    if find_chromium() is None:
        pytest.skip(
            "no chromium binary: install it with `apt-get install -y chromium` (or set $CHROMIUM) to check the "
            "report in a browser"
        )
    report = finished / "results" / "report.html"
    snakemake(finished, "--report", "results/report.html", *TINY)
    verdicts = pd.read_parquet(finished / "results/analysis/verdicts.parquet")
    shown = pd.read_csv(finished / "results/tables/verdicts.csv")
    with ReportBrowser(report) as browser:
        assert "1. Verdicts" in browser.page_text()
        menu = browser.evaluate(
            "[...document.querySelectorAll('a')].map(a => a.textContent.trim()).filter(t => /^[0-9]\\. /.test(t))"
        )
        assert menu[:2] == ["1. Verdicts", "2. Robustness"] and menu == sorted(menu)
        browser.click_menu("1. Verdicts")
        browser.open_result("Verdicts per setup")
        text = browser.shown_text()
        assert "Verdicts per setup" in text and "transfer: kd > nokd" in text
        lines = text.splitlines()
        for _, table_row in shown.iterrows():  # each setup's row, every claim's answer, as written in verdicts.csv
            row = next(line for line in lines if line.startswith(table_row["setup"] + "\t"))
            assert row.split("\t") == [str(cell) for cell in table_row], row
        answers = [cell.split(" ")[0] for cell in shown["transfer: kd > nokd"]]
        assert answers == ["yes" if flag else "no" for flag in verdicts["transfer_kd_vs_nokd"]]
        browser.click_menu("2. Robustness")
        assert browser.result_labels() == ["Verdicts along each sweep", "Verdicts along each sweep: effect sizes"]
        browser.open_result("Verdicts along each sweep")
        assert "summary (2 values)" in browser.shown_text()


def test_truncated_predictions_stop_analysis_naming_the_file_and_keep_other_results(finished):
    victim_path = f"{run_dir(PLAN, 'kd', 'mnist1d_cnn', 0)}/predictions_test.parquet"
    victim = finished / victim_path
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 3])
    summary_before = (finished / "results/tables/summary.csv").read_text()
    proc = snakemake(finished, "--cores", "2", "--forcerun", "metrics", *TINY, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert victim_path in out and "unreadable" in out
    assert "re-run its training pack (rule train_distilled_seeds...)" in out
    # Work finished before the fault is untouched: other setups' metrics, all tables.
    assert (finished / "results/analysis/metrics/digits_mlp.parquet").exists()
    assert (finished / "results/tables/summary.csv").read_text() == summary_before
    assert (
        read_predictions(finished / run_dir(PLAN, "rcd", "mnist1d_cnn", 0) / "predictions_test.parquet").num_samples > 0
    )
