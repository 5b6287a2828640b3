"""Benchmarks of the kdtransfer pipeline against the obvious alternatives (issue #7).

Run `python -m bench --help` (or `make bench`). Every comparison is measured side by side in one
process tree, alternatives interleaved and repeated, and reported as medians and ratios: the
machines these run on are shared, so absolute times drift while ratios hold. Nothing here is
part of the test suite, and no test asserts on a time.
"""
