# The two quick-start commands (README): `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# Test processes (pytest-xdist): half the suite's time is Python start-up, imports and waiting on
# Snakemake subprocesses, so two workers keep two cores busy (21 min serial vs 15 min on 2 cores).
TEST_WORKERS ?= 2
BIN := $(VENV)/bin

.PHONY: setup run test test-slurm test-gpu gpu-check bench report clean

# torch/torchvision are pinned in pyproject.toml; an unpinned torch would download GBs.
$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,workflow,test]"
	touch $@

setup: $(BIN)/snakemake

# Ends with the verdicts in a few lines and the report's path (kdtransfer.analysis.verdict_summary).
run: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html
	$(BIN)/python -m kdtransfer.analysis.verdict_summary --results results --report results/report.html

# Lint and format first (ruff, configured in pyproject.toml): a second or two.
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) tests

# The SLURM profile on a real single-node SLURM cluster started on this machine (needs root and
# apt; 6 min 45 s on 2 cores on 2026-12-03, the apt install included): tests/test_slurm_cluster.py.
# Not part of `make test`.
test-slurm: setup
	$(BIN)/python -m pytest -m slurm -s -rs --durations=0 tests/test_slurm_cluster.py

# On a machine with a CUDA GPU: the GPU tests alone (tests/gpu, a few minutes), or the whole GPU
# check (bench/gpu_check.sh: the GPU tests, then the CUDA benchmarks; tables and log under GPU_OUT).
GPU_OUT ?= gpu-check
test-gpu: setup
	KDTRANSFER_TEST_DEVICE=cuda $(BIN)/python -m pytest -m gpu -v tests/gpu

gpu-check: setup
	OUT=$(GPU_OUT) PYTHON=$(BIN)/python bash bench/gpu_check.sh

# Benchmarks (bench/): side-by-side timings printed as tables and written to bench/results/.
# Not part of `make test`. BENCH_ARGS picks parts, e.g. BENCH_ARGS="--only e2e,regen" or "--all".
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf results logs benchmarks .snakemake
