"""The GPU machine's Python, emulated where the packages it lacks are installed.

`GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh` puts this folder first on PYTHONPATH, so Python runs
this file at start-up (site imports `sitecustomize`) in every process of the smoke run: an
import of a package the GPU machine does not have then fails here as it would there, instead of
succeeding quietly.
"""

import importlib.abc
import sys

ABSENT_ON_THE_GPU_MACHINE = ("jsonschema", "snakemake", "mnist1d", "mlxtend")


class AbsentPackages(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT_ON_THE_GPU_MACHINE:
            raise ModuleNotFoundError(
                f"No module named {name!r} (bench/device_env: not installed on the GPU machine)", name=name
            )
        return None


sys.meta_path.insert(0, AbsentPackages())
