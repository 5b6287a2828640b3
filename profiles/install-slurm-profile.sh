#!/usr/bin/env bash
# Install profiles/slurm as your global Snakemake profile `slurm`, so that
# `snakemake --profile slurm` works from any directory as HPC users type it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm"
mkdir -p "$(dirname "$dest")"
if [ -e "$dest" ] && [ ! -L "$dest" ]; then
  echo "refusing to overwrite $dest (not a link made by this script); move it away first" >&2
  exit 1
fi
ln -sfn "$here/slurm" "$dest"
echo "installed: $dest -> $here/slurm (edit the SITE SETTINGS block there)"
