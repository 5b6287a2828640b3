#!/usr/bin/env bash
# Install profiles/slurm as your global Snakemake profile named `slurm`, so that
# `snakemake --profile slurm` works as HPC users type it:
#
#   bash profiles/install-slurm-profile.sh            # copy (then edit the copy's SITE SETTINGS)
#   bash profiles/install-slurm-profile.sh --link     # symlink: follows this checkout's file
#   bash profiles/install-slurm-profile.sh --force    # replace an existing `slurm` profile
#
# Destination: ${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm (where Snakemake looks).
set -euo pipefail
mode=copy force=0
for a in "$@"; do
  case "$a" in
    --link) mode=link ;;
    --force) force=1 ;;
    *) echo "usage: $0 [--link] [--force]" >&2; exit 2 ;;
  esac
done
src="$(cd "$(dirname "$0")/slurm" && pwd)"
dest="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm"
if [ -e "$dest" ] || [ -L "$dest" ]; then
  if [ "$force" != 1 ]; then
    echo "$dest exists; keep it, or rerun with --force to replace it" >&2
    exit 1
  fi
  backup="$dest.bak.$(date +%Y%m%d%H%M%S)"
  mv "$dest" "$backup" && echo "moved the old profile to $backup"
fi
mkdir -p "$(dirname "$dest")"
if [ "$mode" = link ]; then ln -s "$src" "$dest"; else cp -R "$src" "$dest"; fi
echo "installed ($mode): $dest <- $src"
echo "edit the SITE SETTINGS block in $dest/config.yaml, then: snakemake --profile slurm"
