# The two quick-start commands (README): `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: setup run test report clean

# torch/torchvision are pinned in pyproject.toml; an unpinned torch would download GBs.
$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[train,workflow,test]"
	touch $@

setup: $(BIN)/snakemake

run: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf results logs benchmarks .snakemake
