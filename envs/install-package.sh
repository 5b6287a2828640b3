#!/bin/sh
# Every environment's post-deploy script (<env>.post-deploy.sh, a link to this file): Snakemake
# (--sdm conda) copies it and runs it once, inside the environment it has just created from
# <env>.yaml, from Snakemake's working directory. It installs the package from
# this checkout, editable, without dependencies (the .yaml file lists them). Why here and why
# editable: see train.yaml. KDTRANSFER_ROOT names the checkout when Snakemake does not run in it.
set -eu
root="${KDTRANSFER_ROOT:-$(pwd -P)}"
if ! grep -qs '^name = "kdtransfer"$' "$root/pyproject.toml"; then
    echo "kdtransfer: $root is not a kdtransfer checkout (no pyproject.toml naming kdtransfer)," >&2
    echo "so the package cannot be installed into this conda environment. Run snakemake from" >&2
    echo "the repository root, or set KDTRANSFER_ROOT=/path/to/the/checkout." >&2
    exit 1
fi
exec "$CONDA_PREFIX/bin/python" -m pip install --no-deps --editable "$root"
